import Foundation
import MoEKernels
import MoEModel

/// Query rows per block of the causal attention products (a multiple of the GEMM's 6-row and 16-column tiles
/// would waste less; 64 balances the skipped upper triangle against small-product overhead).
let attentionQueryBlock = 64

/// Causal grouped-query self-attention over a batch of `B` sequences of `T` tokens (positions 0..<T each),
/// with the options of `LayerLayout`: q/k/v (and o) biases, RMSNorm of q and k (per head, or over the whole
/// projection as OLMoE), rotary embeddings. Forward saves q, k (after norm and RoPE), v, the attention
/// probabilities and the pre-projection output; backward recomputes nothing.
final class AttentionLayer: TrainableAttention {
    let heads: Int, kvHeads: Int, headDim: Int, hidden: Int
    let qkNorm: Attention.QKNorm
    let eps: Float
    // Offsets into the parameter store.
    let q: Int, k: Int, v: Int, o: Int
    let qBias: Int?, kBias: Int?, vBias: Int?, oBias: Int?
    let qNorm: NormWeight?, kNorm: NormWeight?
    /// q_proj gives each head's query then its output gate; the output is multiplied by sigmoid(gate).
    let outputGate: Bool
    /// gpt-oss: a sink logit per head (`{prefix}.sinks`), and a sliding window.
    let sinks: Int?
    let window: Int?

    // Saved activations.
    let input = Floats(), qRaw = Floats(), kRaw = Floats(), qRstd = Floats(), kRstd = Floats()
    let qs = Floats(), ks = Floats(), vs = Floats(), probs = Floats(), attended = Floats()
    let gates = Floats(), gatedOutput = Floats()
    // Backward scratch.
    let dq = Floats(), dk = Floats(), dv = Floats(), dAttended = Floats(), dProbs = Floats(), dQueryGate = Floats()

    var qWidth: Int { heads * headDim }
    var kvWidth: Int { kvHeads * headDim }
    func shape(_ store: ParameterStore) -> CausalAttention {
        CausalAttention(heads: heads, kvHeads: kvHeads, qkDim: headDim, valueDim: headDim, scale: 1 / Float(headDim).squareRoot(),
                        window: window, sinks: sinks.map { UnsafePointer(store.values! + $0) },
                        sinkGrads: sinks.map { store.grads! + $0 })
    }

    init(_ store: ParameterStore, prefix: String, hidden: Int, heads: Int, kvHeads: Int, headDim: Int,
         qkvBias: Bool, outputBias: Bool, qkNorm: Attention.QKNorm, eps: Float, outputGate: Bool = false, normOffset: Float = 0,
         sinks: Bool = false, window: Int? = nil) {
        self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim; self.hidden = hidden
        self.qkNorm = qkNorm; self.eps = eps; self.outputGate = outputGate; self.window = window
        self.sinks = sinks ? store.add("\(prefix).sinks", shape: [heads], decay: false) : nil
        let qw = heads * headDim, kvw = kvHeads * headDim
        q = store.add("\(prefix).q_proj.weight", shape: [outputGate ? 2 * qw : qw, hidden], decay: true)
        k = store.add("\(prefix).k_proj.weight", shape: [kvw, hidden], decay: true)
        v = store.add("\(prefix).v_proj.weight", shape: [kvw, hidden], decay: true)
        o = store.add("\(prefix).o_proj.weight", shape: [hidden, qw], decay: true)
        qBias = qkvBias ? store.add("\(prefix).q_proj.bias", shape: [qw], decay: false) : nil
        kBias = qkvBias ? store.add("\(prefix).k_proj.bias", shape: [kvw], decay: false) : nil
        vBias = qkvBias ? store.add("\(prefix).v_proj.bias", shape: [kvw], decay: false) : nil
        oBias = outputBias ? store.add("\(prefix).o_proj.bias", shape: [hidden], decay: false) : nil
        switch qkNorm {
        case .none: qNorm = nil; kNorm = nil
        case .perHead:
            qNorm = NormWeight(store.add("\(prefix).q_norm.weight", shape: [headDim], decay: false), count: headDim, shift: normOffset)
            kNorm = NormWeight(store.add("\(prefix).k_norm.weight", shape: [headDim], decay: false), count: headDim, shift: normOffset)
        case .wholeProjection:
            qNorm = NormWeight(store.add("\(prefix).q_norm.weight", shape: [qw], decay: false), count: qw, shift: normOffset)
            kNorm = NormWeight(store.add("\(prefix).k_norm.weight", shape: [kvw], decay: false), count: kvw, shift: normOffset)
        }
    }

    /// The norm's (rows, dim) for q or k: per head, or the whole projection.
    private func normShape(tokens n: Int, width: Int) -> (rows: Int, dim: Int) {
        qkNorm == .perHead ? (n * width / headDim, headDim) : (n, width)
    }

    /// out[N×hidden] (+)= attention(x[N×hidden]) for N = B·T tokens.
    func forward(_ x: UnsafePointer<Float>, batch B: Int, seqLen T: Int, rope: RopeTable, store: ParameterStore,
                 into out: UnsafeMutablePointer<Float>, accumulate: Bool, pool: WorkerPool) {
        let n = B * T, w = store.values!
        let xs = input.reserve(n * hidden)
        xs.update(from: x, count: n * hidden)
        let qp = qs.reserve(n * qWidth), kp = ks.reserve(n * kvWidth), vp = vs.reserve(n * kvWidth)
        if outputGate {
            // Each head's rows of q_proj: its query, then its gate.
            let both = dQueryGate.reserve(n * 2 * qWidth), gate = gates.reserve(n * qWidth)
            linearForward(xs, rows: n, inputs: hidden, outputs: 2 * qWidth, weight: w + q, bias: qBias.map { w + $0 }, into: both, pool: pool)
            Attention.splitQueryAndGate(both, rows: n, heads: heads, headDim: headDim, query: qp, gate: gate)
        } else {
            linearForward(xs, rows: n, inputs: hidden, outputs: qWidth, weight: w + q, bias: qBias.map { w + $0 }, into: qp, pool: pool)
        }
        linearForward(xs, rows: n, inputs: hidden, outputs: kvWidth, weight: w + k, bias: kBias.map { w + $0 }, into: kp, pool: pool)
        linearForward(xs, rows: n, inputs: hidden, outputs: kvWidth, weight: w + v, bias: vBias.map { w + $0 }, into: vp, pool: pool)
        if let qNorm, let kNorm {
            let (qr, qd) = normShape(tokens: n, width: qWidth), (kr, kd) = normShape(tokens: n, width: kvWidth)
            let qraw = qRaw.reserve(n * qWidth), kraw = kRaw.reserve(n * kvWidth)
            qraw.update(from: qp, count: n * qWidth); kraw.update(from: kp, count: n * kvWidth)
            rmsNormForward(qraw, rows: qr, dim: qd, weight: qNorm.values(store), eps: eps, into: qp, rstd: qRstd.reserve(qr), pool: pool)
            rmsNormForward(kraw, rows: kr, dim: kd, weight: kNorm.values(store), eps: eps, into: kp, rstd: kRstd.reserve(kr), pool: pool)
        }
        rope.rotate(qp, batch: B, seqLen: T, heads: heads, headDim: headDim, inverse: false, pool: pool)
        rope.rotate(kp, batch: B, seqLen: T, heads: kvHeads, headDim: headDim, inverse: false, pool: pool)

        let p = probs.reserve(B * heads * T * T), att = attended.reserve(n * qWidth)
        shape(store).forward(q: qp, k: kp, v: vp, batch: B, seqLen: T, probs: p, into: att, pool: pool)
        var projected = UnsafePointer(att)
        if outputGate {
            let gated = gatedOutput.reserve(n * qWidth), gate = gates.pointer
            for i in 0..<(n * qWidth) { gated[i] = att[i] / (1 + Foundation.exp(-gate[i])) }
            projected = UnsafePointer(gated)
        }
        linearForward(projected, rows: n, inputs: qWidth, outputs: hidden, weight: w + o, bias: oBias.map { w + $0 }, into: out,
                      accumulate: accumulate, pool: pool)
    }

    /// Given dOut (the gradient of this layer's output), accumulates parameter gradients and writes (or adds)
    /// the gradient of its input into dx.
    func backward(_ dOut: UnsafePointer<Float>, batch B: Int, seqLen T: Int, rope: RopeTable, store: ParameterStore,
                  inputGrad dx: UnsafeMutablePointer<Float>, accumulate: Bool, pool: WorkerPool) {
        let n = B * T, w = store.values!, g = store.grads!
        let qw = qWidth, kvw = kvWidth, hd = headDim
        let att = attended.pointer, p = probs.pointer, qp = qs.pointer, kp = ks.pointer, vp = vs.pointer
        let dAtt = dAttended.reserve(n * qw)
        linearBackward(dOut, x: outputGate ? gatedOutput.pointer : att, rows: n, inputs: qw, outputs: hidden, weight: w + o,
                       weightGrad: g + o, biasGrad: oBias.map { g + $0 }, inputGrad: dAtt, accumulateInput: false, pool: pool)
        if outputGate {
            // out = att·σ(gate): d(att) = d(out)·σ, d(gate) = d(out)·att·σ(1 − σ) (kept in `gates`, no longer needed).
            let gate = gates.pointer
            for i in 0..<(n * qw) {
                let s = 1 / (1 + Foundation.exp(-gate[i]))
                gate[i] = dAtt[i] * att[i] * s * (1 - s)
                dAtt[i] *= s
            }
        }

        let dqp = dq.reserve(n * qw), dkp = dk.zeroed(n * kvw), dvp = dv.zeroed(n * kvw)
        shape(store).backward(dAtt, q: qp, k: kp, v: vp, probs: p, batch: B, seqLen: T, dq: dqp, dk: dkp, dv: dvp,
                       scratch: dProbs.reserve(B * kvHeads * T * T), pool: pool)
        rope.rotate(dqp, batch: B, seqLen: T, heads: heads, headDim: hd, inverse: true, pool: pool)
        rope.rotate(dkp, batch: B, seqLen: T, heads: kvHeads, headDim: hd, inverse: true, pool: pool)
        if let qNorm, let kNorm {
            let (qr, qd) = normShape(tokens: n, width: qw), (kr, kd) = normShape(tokens: n, width: kvw)
            rmsNormBackward(dqp, x: qRaw.pointer, rows: qr, dim: qd, weight: qNorm.values(store), rstd: qRstd.pointer,
                            weightGrad: g + qNorm.offset, inputGrad: dqp, accumulate: false, pool: pool)
            rmsNormBackward(dkp, x: kRaw.pointer, rows: kr, dim: kd, weight: kNorm.values(store), rstd: kRstd.pointer,
                            weightGrad: g + kNorm.offset, inputGrad: dkp, accumulate: false, pool: pool)
        }
        let xs = input.pointer
        if outputGate {
            // Back into q_proj's rows: each head's query gradient, then its gate's.
            let both = dQueryGate.reserve(n * 2 * qw)
            Attention.splitQueryAndGate(both, rows: n, heads: heads, headDim: hd, query: dqp, gate: gates.pointer, merge: true)
            linearBackward(both, x: xs, rows: n, inputs: hidden, outputs: 2 * qw, weight: w + q, weightGrad: g + q,
                           biasGrad: qBias.map { g + $0 }, inputGrad: dx, accumulateInput: accumulate, pool: pool)
        } else {
            linearBackward(dqp, x: xs, rows: n, inputs: hidden, outputs: qw, weight: w + q, weightGrad: g + q,
                           biasGrad: qBias.map { g + $0 }, inputGrad: dx, accumulateInput: accumulate, pool: pool)
        }
        linearBackward(dkp, x: xs, rows: n, inputs: hidden, outputs: kvw, weight: w + k, weightGrad: g + k,
                       biasGrad: kBias.map { g + $0 }, inputGrad: dx, accumulateInput: true, pool: pool)
        linearBackward(dvp, x: xs, rows: n, inputs: hidden, outputs: kvw, weight: w + v, weightGrad: g + v,
                       biasGrad: vBias.map { g + $0 }, inputGrad: dx, accumulateInput: true, pool: pool)
    }
}

/// A layer's self-attention in training: grouped-query (`AttentionLayer`) or latent (`LatentAttentionLayer`).
protocol TrainableAttention: AnyObject {
    /// out[N×hidden] (+)= attention(x[N×hidden]) for N = B·T tokens; saves what backward needs.
    func forward(_ x: UnsafePointer<Float>, batch B: Int, seqLen T: Int, rope: RopeTable, store: ParameterStore,
                 into out: UnsafeMutablePointer<Float>, accumulate: Bool, pool: WorkerPool)
    /// Accumulates parameter gradients and writes (or adds) the gradient of the input into dx.
    func backward(_ dOut: UnsafePointer<Float>, batch B: Int, seqLen T: Int, rope: RopeTable, store: ParameterStore,
                  inputGrad dx: UnsafeMutablePointer<Float>, accumulate: Bool, pool: WorkerPool)
}

/// softmax(scale·q·kᵀ + causal mask)·v for B sequences of T tokens, query heads in groups sharing a key/value
/// head: q rows [B·T × heads·qkDim], k [B·T × kvHeads·qkDim], v [B·T × kvHeads·valueDim]. Forward keeps the
/// probabilities [B·heads × T × T]; backward recomputes nothing. Grouped-query and latent attention share it.
/// With a `window`, query r sees keys r − window + 1 … r; with `sinks`, head h's softmax has one more logit in its
/// denominator (gpt-oss), whose gradient backward adds into `sinkGrads`.
struct CausalAttention {
    let heads: Int, kvHeads: Int, qkDim: Int, valueDim: Int
    let scale: Float
    var window: Int? = nil
    var sinks: UnsafePointer<Float>? = nil
    var sinkGrads: UnsafeMutablePointer<Float>? = nil

    func forward(q qp: UnsafePointer<Float>, k kp: UnsafePointer<Float>, v vp: UnsafePointer<Float>, batch B: Int,
                 seqLen T: Int, probs p: UnsafeMutablePointer<Float>, into att: UnsafeMutablePointer<Float>, pool: WorkerPool) {
        let group = heads / kvHeads, hd = qkDim, vd = valueDim
        let qw = heads * hd, kw = kvHeads * hd, vw = kvHeads * vd, ow = heads * vd
        let scale = scale, window = window ?? T, sinks = sinks
        pool.parallelFor(B * heads) { task in
            let b = task / heads, h = task % heads, kvh = h / group
            let sink = sinks.map { $0[h] } ?? -.infinity
            let s = p + task * T * T
            let qh = qp + b * T * qw + h * hd, kh = kp + b * T * kw + kvh * hd, vh = vp + b * T * vw + kvh * vd
            let ah = att + b * T * ow + h * vd
            // Causal: queries r0..<r1 see keys 0..<r1 only, so each block multiplies just that much. Row r of P
            // holds r + 1 probabilities, zeros up to r1 and stale values after (never read).
            var r0 = 0
            while r0 < T {
                let r1 = min(r0 + attentionQueryBlock, T)
                sgemmNT(m: r1 - r0, n: r1, k: hd, alpha: scale, a: qh + r0 * qw, lda: qw, b: kh, ldb: kw, c: s + r0 * T,
                        ldc: T, accumulate: false, pool: nil)
                for r in r0..<r1 {
                    let row = s + r * T, first = max(0, r - window + 1)
                    row.update(repeating: 0, count: first)
                    softmax(row + first, count: r + 1 - first, sink: sink)
                    (row + r + 1).update(repeating: 0, count: r1 - r - 1)
                }
                sgemmNN(m: r1 - r0, n: vd, k: r1, alpha: 1, a: s + r0 * T, lda: T, b: vh, ldb: vw, c: ah + r0 * ow, ldc: ow,
                        accumulate: false, pool: nil)
                r0 = r1
            }
        }
    }

    /// dq is written; dk and dv must be zero (heads sharing a key/value head add into them).
    func backward(_ dAtt: UnsafePointer<Float>, q qp: UnsafePointer<Float>, k kp: UnsafePointer<Float>,
                  v vp: UnsafePointer<Float>, probs p: UnsafePointer<Float>, batch B: Int, seqLen T: Int,
                  dq dqp: UnsafeMutablePointer<Float>, dk dkp: UnsafeMutablePointer<Float>, dv dvp: UnsafeMutablePointer<Float>,
                  scratch dps: UnsafeMutablePointer<Float>, pool: WorkerPool) {
        let group = heads / kvHeads, hd = qkDim, vd = valueDim
        let qw = heads * hd, kw = kvHeads * hd, vw = kvHeads * vd, ow = heads * vd
        let scale = scale, heads = heads, kvHeads = kvHeads
        // Each (sequence, head)'s sink gradient, summed over the sequences after the parallel part.
        var sinkParts = [Float](repeating: 0, count: sinkGrads == nil ? 0 : B * heads)
        sinkParts.withUnsafeMutableBufferPointer { sinkPartsBuffer in
        let sinkPart = sinkGrads == nil ? nil : sinkPartsBuffer.baseAddress   // (an empty array may have an address)
        // One task per (sequence, kv head): the heads sharing a kv head add into the same dK, dV rows.
        pool.parallelFor(B * kvHeads) { task in
            let b = task / kvHeads, kvh = task % kvHeads
            let ds = dps + task * T * T
            let kh = kp + b * T * kw + kvh * hd, vh = vp + b * T * vw + kvh * vd
            let dkh = dkp + b * T * kw + kvh * hd, dvh = dvp + b * T * vw + kvh * vd
            for h in kvh * group ..< (kvh + 1) * group {
                let s = p + (b * heads + h) * T * T
                let doh = dAtt + b * T * ow + h * vd, qh = qp + b * T * qw + h * hd, dqh = dqp + b * T * qw + h * hd
                // The forward's causal query blocks: rows r0..<r1 of P (and dS) are zero beyond key r.
                var r0 = 0
                while r0 < T {
                    let r1 = min(r0 + attentionQueryBlock, T), rb = r1 - r0
                    let pb = s + r0 * T, db = ds + r0 * T
                    // dV += Pᵀ·dO; dP = dO·Vᵀ
                    sgemmTN(m: r1, n: vd, k: rb, alpha: 1, a: pb, lda: T, b: doh + r0 * ow, ldb: ow, c: dvh, ldc: vw,
                            accumulate: true, pool: nil)
                    sgemmNT(m: rb, n: r1, k: vd, alpha: 1, a: doh + r0 * ow, lda: ow, b: vh, ldb: vw, c: db, ldc: T,
                            accumulate: false, pool: nil)
                    // dS = P ⊙ (dP − ⟨dP, P⟩) over the visible keys; masked entries have P = 0. A sink's logit σ has
                    // probability 1 − Σ P and no output: dσ = −(1 − Σ P)·⟨dP, P⟩.
                    for r in r0..<r1 {
                        let pr = s + r * T, dr = ds + r * T
                        let c = dot(pr, dr, count: r + 1)
                        if let sinkPart {
                            var total: Float = 0
                            for j in 0...r { total += pr[j] }
                            sinkPart[b * heads + h] -= (1 - total) * c
                        }
                        for j in 0...r { dr[j] = pr[j] * (dr[j] - c) }
                        (dr + r + 1).update(repeating: 0, count: r1 - r - 1)
                    }
                    // dQ = scale·dS·K; dK += scale·dSᵀ·Q
                    sgemmNN(m: rb, n: hd, k: r1, alpha: scale, a: db, lda: T, b: kh, ldb: kw, c: dqh + r0 * qw, ldc: qw,
                            accumulate: false, pool: nil)
                    sgemmTN(m: r1, n: hd, k: rb, alpha: scale, a: db, lda: T, b: qh + r0 * qw, ldb: qw, c: dkh, ldc: kw,
                            accumulate: true, pool: nil)
                    r0 = r1
                }
            }
        }
        if let sinkGrads, let sinkPart {
            for b in 0..<B { for h in 0..<heads { sinkGrads[h] += sinkPart[b * heads + h] } }
        }
        }
    }
}

/// cos/sin of every position up to the sequence length, and the rotation (and its inverse, for gradients)
/// in HF's rotate-half form.
final class RopeTable {
    let rotaryDim: Int
    let cos: [Float], sin: [Float]   // [positions × rotaryDim/2]
    let positions: Int

    init(_ rope: RotaryEmbedding, positions: Int) {
        rotaryDim = rope.rotaryDim
        self.positions = positions
        let half = rope.rotaryDim / 2
        var c = [Float](repeating: 0, count: positions * half), s = c
        c.withUnsafeMutableBufferPointer { cp in
            s.withUnsafeMutableBufferPointer { sp in
                for t in 0..<positions { rope.table(position: t, cos: cp.baseAddress! + t * half, sin: sp.baseAddress! + t * half) }
            }
        }
        cos = c; sin = s
    }

    /// Rotates [B·T × heads·headDim] rows in place by their position t; `inverse` rotates by −angle
    /// (the transpose of the rotation, which is what the gradient needs).
    func rotate(_ x: UnsafeMutablePointer<Float>, batch B: Int, seqLen T: Int, heads: Int, headDim: Int, inverse: Bool,
                pool: WorkerPool?) {
        rotate(x, rows: B * T, seqLen: T, rowStride: heads * headDim, offset: 0, heads: heads, headStride: headDim,
               interleaved: false, inverse: inverse, pool: pool)
    }

    /// The general form: in each of `rows` rows (`rowStride` apart, position row % T), `heads` vectors at
    /// `offset + h·headStride` have their first `rotaryDim` values rotated, in halves or in interleaved pairs
    /// (2i, 2i+1) (DeepSeek's `rope_interleave`).
    func rotate(_ x: UnsafeMutablePointer<Float>, rows: Int, seqLen T: Int, rowStride: Int, offset: Int, heads: Int,
                headStride: Int, interleaved: Bool, inverse: Bool, pool: WorkerPool?) {
        let half = rotaryDim / 2
        // (a, b) of pair i: positions i and i + half, or 2i and 2i + 1.
        let (stride, step) = interleaved ? (2, 1) : (1, half)
        let sign: Float = inverse ? -1 : 1
        cos.withUnsafeBufferPointer { cp in
            sin.withUnsafeBufferPointer { sp in
                let cp = cp.baseAddress!, sp = sp.baseAddress!
                forEachBlock(rows, pool: pool) { row in
                    let t = row % T
                    let x = x + row * rowStride + offset, c = cp + t * half, s = sp + t * half
                    for h in 0..<heads {
                        let v = x + h * headStride
                        for i in 0..<half {
                            let ia = i * stride, ib = ia + step
                            let a = v[ia], b = v[ib], si = sign * s[i]
                            v[ia] = a * c[i] - b * si
                            v[ib] = b * c[i] + a * si
                        }
                    }
                }
            }
        }
    }
}
