import Foundation
import MoEFormats
import MoEKernels

/// Grouped-query self-attention with RoPE and a KV cache, in the variants the supported architectures use:
/// optional q/k/v (and o) biases, optional RMSNorm of q and k (per head as Qwen3, or over the whole
/// projection as OLMoE), optional clamping of q, k, v (OLMoE's `clip_qkv`), attention sinks and a sliding window
/// (gpt-oss: the layer's keys and values then live in the sequence's ring, not in the KV cache).
public struct Attention: @unchecked Sendable {
    public enum QKNorm: Sendable {
        case none
        /// RMSNorm over `headDim`, the same weights for every head (Qwen3, Qwen3-MoE).
        case perHead
        /// RMSNorm over the whole q (heads·headDim) and k (kvHeads·headDim) projections (OLMoE).
        case wholeProjection
    }

    let heads: Int, kvHeads: Int, headDim: Int
    let q: WeightMatrix, k: WeightMatrix, v: WeightMatrix, o: WeightMatrix
    let qBias: [Float]?, kBias: [Float]?, vBias: [Float]?, oBias: [Float]?
    let qkNorm: QKNorm
    let qNormWeight: [Float], kNormWeight: [Float]
    let clip: Float?
    /// q_proj gives [query | gate] per head; the output is multiplied by sigmoid(gate) (Qwen3-Next / 3.5).
    let outputGate: Bool
    /// A logit per head in each softmax's denominator (empty: none).
    let sinks: [Float]
    /// Sliding window: positions a query sees, its own included (nil: all before it).
    let window: Int?
    let eps: Float

    /// Reads `{prefix}.q_proj.weight` … `{prefix}.o_proj.weight` and the optional biases and norms.
    public init(_ c: ModelConfig, _ w: WeightReader, prefix: String, qkvBias: Bool, outputBias: Bool,
                qkNorm: QKNorm = .none, clip: Double? = nil, outputGate: Bool = false, normOffset: Float = 0,
                sinks: Bool = false, window: Int? = nil) throws {
        heads = c.numAttentionHeads; kvHeads = c.numKeyValueHeads; headDim = c.headDim
        let qWidth = heads * headDim, kvWidth = kvHeads * headDim
        self.outputGate = outputGate
        q = try w.matrix("\(prefix).q_proj.weight", rows: outputGate ? 2 * qWidth : qWidth, cols: c.hiddenSize)
        k = try w.matrix("\(prefix).k_proj.weight", rows: kvWidth, cols: c.hiddenSize)
        v = try w.matrix("\(prefix).v_proj.weight", rows: kvWidth, cols: c.hiddenSize)
        o = try w.matrix("\(prefix).o_proj.weight", rows: c.hiddenSize, cols: qWidth)
        qBias = qkvBias ? try w.vector("\(prefix).q_proj.bias", count: qWidth) : nil
        kBias = qkvBias ? try w.vector("\(prefix).k_proj.bias", count: kvWidth) : nil
        vBias = qkvBias ? try w.vector("\(prefix).v_proj.bias", count: kvWidth) : nil
        oBias = outputBias ? try w.vector("\(prefix).o_proj.bias", count: c.hiddenSize) : nil
        self.qkNorm = qkNorm
        switch qkNorm {
        case .none:
            qNormWeight = []; kNormWeight = []
        case .perHead:
            qNormWeight = try w.norm("\(prefix).q_norm.weight", count: headDim, offset: normOffset)
            kNormWeight = try w.norm("\(prefix).k_norm.weight", count: headDim, offset: normOffset)
        case .wholeProjection:
            qNormWeight = try w.norm("\(prefix).q_norm.weight", count: qWidth, offset: normOffset)
            kNormWeight = try w.norm("\(prefix).k_norm.weight", count: kvWidth, offset: normOffset)
        }
        self.clip = clip.map(Float.init)
        self.sinks = sinks ? try w.vector("\(prefix).sinks", count: heads) : []
        self.window = window
        eps = Float(c.rmsNormEps)
    }

    /// Attends every sequence's rows of x [rows, hidden] (`layout`: which rows, which cache; the caller
    /// advances the caches afterwards) and adds the output projection into `residual` [rows, hidden].
    /// `ws.ropeCos`/`ws.ropeSin` hold one table row per row, for its position. The projections run over all
    /// rows at once; `ScaledDotProduct` attends.
    func forward(_ x: UnsafePointer<Float>, _ layout: PassLayout, layer: Int, rope: RotaryEmbedding,
                 residual: UnsafeMutablePointer<Float>, hidden: Int, ws: Workspace, pool: WorkerPool) {
        let T = layout.rows
        let qWidth = heads * headDim, kvWidth = kvHeads * headDim
        let (qs, ks, vs) = project(x, tokens: T, rope: rope, hidden: hidden, ws: ws, pool: pool)
        let out = ws.attention.reserve(T * qWidth)
        sinks.withUnsafeBufferPointer { sinks in
            let attention = ScaledDotProduct(heads: heads, group: heads / kvHeads, qkDim: headDim, valueDim: headDim, valuesInKeys: false,
                                             scale: 1 / Float(headDim).squareRoot(), sinks: sinks.isEmpty ? nil : sinks.baseAddress)
            if let window {
                attention.attendWindow(qs, keys: ks, values: vs, layout, ring: layer, window: window, out: out, ws: ws, pool: pool)
                return
            }
            // Append this pass's keys and values to each sequence's cache.
            for (c, cache) in layout.caches.enumerated() {
                let first = layout.firsts[c]
                for t in 0..<layout.counts[c] {
                    cache.keys(layer: layer, position: cache.count + t).update(from: ks + (first + t) * kvWidth, count: kvWidth)
                    cache.values(layer: layer, position: cache.count + t).update(from: vs + (first + t) * kvWidth, count: kvWidth)
                }
            }
            attention.attend(qs, layout, layer: layer, out: out, ws: ws, pool: pool)
        }
        if outputGate {
            let gates = ws.gate.pointer
            for i in 0..<(T * qWidth) { out[i] *= 1 / (1 + Foundation.exp(-gates[i])) }
        }
        outputProjection(out, tokens: T, residual: residual, hidden: hidden, pool: pool)
    }

    /// q [T, heads·headDim], k and v [T, kvHeads·headDim] in the workspace: the projections of x [T, hidden] with
    /// their biases, q/k norms and clipping, and RoPE applied to q and k (row t by table row t of
    /// `ws.ropeCos`/`ws.ropeSin`). Shared by prefill, decode and batched decode.
    private func project(_ x: UnsafePointer<Float>, tokens T: Int, rope: RotaryEmbedding, hidden: Int, ws: Workspace,
                         pool: WorkerPool) -> (q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>,
                                               v: UnsafeMutablePointer<Float>) {
        let qWidth = heads * headDim, kvWidth = kvHeads * headDim
        let qs = ws.query.reserve(T * qWidth)
        let ks = ws.key.reserve(T * kvWidth)
        let vs = ws.value.reserve(T * kvWidth)
        if outputGate {
            // Each head's rows of q_proj hold its query then its gate: split them (the gates wait in ws.gate).
            let both = ws.up.reserve(T * 2 * qWidth), gates = ws.gate.reserve(T * qWidth)
            linear(x, ldx: hidden, tokens: T, q, into: both, ldo: 2 * qWidth, pool: pool)
            Self.splitQueryAndGate(both, rows: T, heads: heads, headDim: headDim, query: qs, gate: gates)
        } else {
            linear(x, ldx: hidden, tokens: T, q, into: qs, ldo: qWidth, pool: pool)
        }
        linear(x, ldx: hidden, tokens: T, k, into: ks, ldo: kvWidth, pool: pool)
        linear(x, ldx: hidden, tokens: T, v, into: vs, ldo: kvWidth, pool: pool)
        if let qBias { addBias(qs, rows: T, stride: qWidth, bias: qBias, count: qWidth) }
        if let kBias { addBias(ks, rows: T, stride: kvWidth, bias: kBias, count: kvWidth) }
        if let vBias { addBias(vs, rows: T, stride: kvWidth, bias: vBias, count: kvWidth) }

        let half = rope.rotaryDim / 2
        let cosTable = ws.ropeCos.pointer, sinTable = ws.ropeSin.pointer
        qNormWeight.withUnsafeBufferPointer { qn in
            kNormWeight.withUnsafeBufferPointer { kn in
                for t in 0..<T {
                    let qRow = qs + t * qWidth, kRow = ks + t * kvWidth, vRow = vs + t * kvWidth
                    switch qkNorm {
                    case .none: break
                    case .perHead:
                        for h in 0..<heads { rmsNorm(qRow + h * headDim, weight: qn.baseAddress!, count: headDim, eps: eps, into: qRow + h * headDim) }
                        for h in 0..<kvHeads { rmsNorm(kRow + h * headDim, weight: kn.baseAddress!, count: headDim, eps: eps, into: kRow + h * headDim) }
                    case .wholeProjection:
                        rmsNorm(qRow, weight: qn.baseAddress!, count: qWidth, eps: eps, into: qRow)
                        rmsNorm(kRow, weight: kn.baseAddress!, count: kvWidth, eps: eps, into: kRow)
                    }
                    if let clip {
                        for i in 0..<qWidth { qRow[i] = min(max(qRow[i], -clip), clip) }
                        for i in 0..<kvWidth { kRow[i] = min(max(kRow[i], -clip), clip) }
                        for i in 0..<kvWidth { vRow[i] = min(max(vRow[i], -clip), clip) }
                    }
                    RotaryEmbedding.apply(qRow, heads: heads, headDim: headDim, rotaryDim: rope.rotaryDim,
                                          cos: cosTable + t * half, sin: sinTable + t * half)
                    RotaryEmbedding.apply(kRow, heads: kvHeads, headDim: headDim, rotaryDim: rope.rotaryDim,
                                          cos: cosTable + t * half, sin: sinTable + t * half)
                }
            }
        }
        return (qs, ks, vs)
    }

    /// Gated attention's q_proj output [rows, heads·2·headDim] (each head's query, then its gate) into the queries and
    /// the gates, [rows, heads·headDim] each; `merge` does the reverse (training's gradients).
    public static func splitQueryAndGate(_ both: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int,
                                         query: UnsafeMutablePointer<Float>, gate: UnsafeMutablePointer<Float>, merge: Bool = false) {
        let width = heads * headDim
        for t in 0..<rows {
            for h in 0..<heads {
                let packed = both + (t * heads + h) * 2 * headDim, at = t * width + h * headDim
                if merge {
                    packed.update(from: query + at, count: headDim)
                    (packed + headDim).update(from: gate + at, count: headDim)
                } else {
                    (query + at).update(from: packed, count: headDim)
                    (gate + at).update(from: packed + headDim, count: headDim)
                }
            }
        }
    }

    /// residual[T, hidden] += o(attention output [T, heads·headDim]) (+ o's bias).
    private func outputProjection(_ out: UnsafePointer<Float>, tokens T: Int, residual: UnsafeMutablePointer<Float>,
                                  hidden: Int, pool: WorkerPool) {
        linear(out, ldx: heads * headDim, tokens: T, o, into: residual, ldo: hidden, accumulate: true, pool: pool)
        if let oBias { addBias(residual, rows: T, stride: hidden, bias: oBias, count: hidden) }
    }
}

/// Where each sequence's rows sit in a pass (built once per pass, read by every layer's attention): rows
/// `firsts[c] ..< firsts[c] + counts[c]` belong to the sequence whose keys and values are in `caches[c]`.
struct PassLayout {
    let caches: [KVCache]
    let firsts: [Int]
    let counts: [Int]
    /// The sequences with one row (decoding).
    let singles: [Int]
    let rows: Int

    init(_ chunks: [SequenceChunk]) {
        caches = chunks.map(\.cache)
        counts = chunks.map(\.tokens.count)
        var firsts: [Int] = [], rows = 0
        for n in counts { firsts.append(rows); rows += n }
        self.firsts = firsts
        self.rows = rows
        let counts = counts
        singles = counts.indices.filter { counts[$0] == 1 }
    }
}
