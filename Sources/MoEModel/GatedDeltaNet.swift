import Foundation
import MoEFormats
import MoEKernels

/// A Gated DeltaNet's shapes (Qwen3-Next / Qwen3.5 `linear_*` config keys): `keyHeads` query/key heads of
/// `keyDim`, `valueHeads` value heads of `valueDim` (a multiple of the key heads: each key head serves
/// `valueHeads / keyHeads` consecutive value heads), a causal depthwise convolution of `convKernel` taps.
public struct LinearAttentionLayout: Sendable, Equatable {
    public var keyHeads: Int
    public var valueHeads: Int
    public var keyDim: Int
    public var valueDim: Int
    public var convKernel: Int
    /// Qwen3-Next's q, k, v and z projections, fused per key head (`in_proj_qkvz`: [q | k | v | z] per key head),
    /// rather than Qwen3.5's `in_proj_qkv` ([all q | all k | all v]) and `in_proj_z`.
    public var fusedQKVZ: Bool
    /// Qwen3-Next's `in_proj_ba` ([b | a] per key head) rather than `in_proj_b` and `in_proj_a`.
    public var fusedBA: Bool
    /// Value heads in llama.cpp's qwen35moe order: value head h reads key head h mod keyHeads (its files tile the
    /// heads for ggml's broadcast), rather than transformers' h / (valueHeads / keyHeads).
    public var tiledValueHeads = false

    public init(keyHeads: Int, valueHeads: Int, keyDim: Int, valueDim: Int, convKernel: Int, fusedQKVZ: Bool, fusedBA: Bool) {
        self.keyHeads = keyHeads; self.valueHeads = valueHeads; self.keyDim = keyDim; self.valueDim = valueDim
        self.convKernel = convKernel; self.fusedQKVZ = fusedQKVZ; self.fusedBA = fusedBA
    }

    /// The key head value head `h` reads.
    @inline(__always) public func keyHead(ofValueHead h: Int) -> Int {
        tiledValueHeads ? h % keyHeads : h / (valueHeads / keyHeads)
    }

    /// The kernel sizes the convolution supports (checkpoints use 4).
    public static let supportedKernels = 1...8

    public func validate() throws {
        for (name, v) in [("linear_num_key_heads", keyHeads), ("linear_num_value_heads", valueHeads),
                          ("linear_key_head_dim", keyDim), ("linear_value_head_dim", valueDim)] where v <= 0 {
            throw ModelError.badInput("\(name) must be positive, found \(v)")
        }
        guard valueHeads % keyHeads == 0 else {
            throw ModelError.badInput("linear_num_value_heads (\(valueHeads)) is not a multiple of linear_num_key_heads (\(keyHeads))")
        }
        guard Self.supportedKernels.contains(convKernel) else {
            throw ModelError.unsupported("linear_conv_kernel_dim \(convKernel) is not supported (\(Self.supportedKernels.lowerBound)...\(Self.supportedKernels.upperBound))")
        }
    }

    public var keyWidth: Int { keyHeads * keyDim }
    public var valueWidth: Int { valueHeads * valueDim }
    /// Channels the convolution runs over: [q | k | v].
    public var convChannels: Int { 2 * keyWidth + valueWidth }
    /// One row of the projections in the order the layer reads them: [q | k | v | z | b | a].
    public var projectedWidth: Int { convChannels + valueWidth + 2 * valueHeads }
    /// The input projections as a checkpoint stores them (`{prefix}.{name}.weight`, rows × hidden), in order.
    public var projections: [(name: String, rows: Int)] {
        (fusedQKVZ ? [("in_proj_qkvz", convChannels + valueWidth)] : [("in_proj_qkv", convChannels), ("in_proj_z", valueWidth)])
            + (fusedBA ? [("in_proj_ba", 2 * valueHeads)] : [("in_proj_b", valueHeads), ("in_proj_a", valueHeads)])
    }

    /// Whether the stored projections' outputs, side by side, are in another order than [q | k | v | z | b | a].
    public var reorders: Bool { fusedQKVZ || fusedBA }

    /// For each column of a [q | k | v | z | b | a] row, its column in the stored projections' outputs laid side
    /// by side. Per key head g, in_proj_qkvz holds [q keyDim | k keyDim | v r·valueDim | z r·valueDim] and
    /// in_proj_ba [b r | a r] (r = valueHeads / keyHeads); the separate projections are in order already.
    public func storedColumns() -> [Int32] {
        let r = valueHeads / keyHeads, qkvzRows = convChannels + valueWidth
        var order = (0..<Int32(projectedWidth)).map { $0 }
        let vOffset = 2 * keyWidth, zOffset = convChannels, bOffset = zOffset + valueWidth, aOffset = bOffset + valueHeads
        for g in 0..<keyHeads {
            if fusedQKVZ {
                let base = g * (2 * keyDim + 2 * r * valueDim)
                for i in 0..<keyDim {
                    order[g * keyDim + i] = Int32(base + i)
                    order[keyWidth + g * keyDim + i] = Int32(base + keyDim + i)
                }
                for i in 0..<(r * valueDim) {
                    order[vOffset + g * r * valueDim + i] = Int32(base + 2 * keyDim + i)
                    order[zOffset + g * r * valueDim + i] = Int32(base + 2 * keyDim + r * valueDim + i)
                }
            }
            if fusedBA {
                for j in 0..<r {
                    order[bOffset + g * r + j] = Int32(qkvzRows + g * 2 * r + j)
                    order[aOffset + g * r + j] = Int32(qkvzRows + g * 2 * r + r + j)
                }
            }
        }
        return order
    }

    /// Floats of one sequence's state in one layer: the convolution's last `convKernel − 1` inputs and one
    /// keyDim × valueDim matrix per value head.
    public var stateFloats: Int { (convKernel - 1) * convChannels + valueHeads * keyDim * valueDim }
}

/// Gated DeltaNet (Yang et al. 2024), the linear-attention layer of Qwen3-Next and Qwen3.5, as transformers'
/// `Qwen3NextGatedDeltaNet` computes it:
///
///     q, k, v  = SiLU(causal depthwise conv(in_proj(x)))     (kernel 4, over the last inputs in the state)
///     q, k     = l2norm per head;  q /= √keyDim
///     β        = sigmoid(b);  g = −exp(A_log) · softplus(a + dt_bias)
///     per value head, S (keyDim × valueDim):  S ← e^g S;  S ← S + k ⊗ β(v − Sᵀk);  o = Sᵀq
///     out      = out_proj(RMSNorm(o) · w · SiLU(z))          (per value head)
///
/// Prefill runs the chunked form (matrix products over chunks of 64 tokens), decode the recurrent one; the state
/// (conv window and S) is a fixed size per sequence, kept in the sequence's `KVCache.recurrent`, so memory does
/// not grow with the context.
public struct GatedDeltaNet: @unchecked Sendable {
    public let layout: LinearAttentionLayout
    /// The input projections as stored: [in_proj_qkvz, in_proj_ba] or [in_proj_qkv, in_proj_z, in_proj_b, in_proj_a].
    public let projections: [WeightMatrix]
    /// Fused projections: for each column of a [q | k | v | z | b | a] row, its column in the stored outputs
    /// [qkvz | ba] (empty for separate projections, already in that order).
    let columnOrder: [Int32]
    /// The convolution's taps, [convChannels, convKernel].
    public let conv: [Float]
    /// −exp(A_log) per value head.
    let negativeA: [Float]
    public let dtBias: [Float]
    /// The gated RMSNorm's weight [valueDim] (a plain norm: not zero-centred).
    public let normWeight: [Float]
    public let outProj: WeightMatrix
    let eps: Float

    public init(_ c: ModelConfig, _ w: WeightReader, prefix: String, layout l: LinearAttentionLayout) throws {
        try l.validate()
        layout = l
        let H = c.hiddenSize, nv = l.valueHeads
        projections = try l.projections.map { try w.matrix("\(prefix).\($0.name).weight", rows: $0.rows, cols: H) }
        columnOrder = l.reorders ? l.storedColumns() : []
        conv = try FloatEncoding.floats(w.store.tensor("\(prefix).conv1d.weight", shape: [l.convChannels, 1, l.convKernel]))
        negativeA = try w.vector("\(prefix).A_log", count: nv).map { -Foundation.exp($0) }
        dtBias = try w.vector("\(prefix).dt_bias", count: nv)
        normWeight = try w.vector("\(prefix).norm.weight", count: l.valueDim)
        outProj = try w.matrix("\(prefix).out_proj.weight", rows: H, cols: l.valueWidth)
        eps = Float(c.rmsNormEps)
    }

    /// Runs every sequence's rows of x [rows, hidden] through the layer, advancing each sequence's state in
    /// `layer` of its cache's `recurrent`, and adds the output projection into `residual`.
    func forward(_ x: UnsafePointer<Float>, _ pass: PassLayout, layer: Int, residual: UnsafeMutablePointer<Float>,
                 hidden: Int, ws: Workspace, pool: WorkerPool) {
        let l = layout, T = pass.rows, W = l.projectedWidth
        let p = ws.linearMixed.reserve(T * W)
        if l.reorders {
            let stored = ws.expertInput.reserve(T * W)
            var offset = 0
            for m in projections {
                linear(x, ldx: hidden, tokens: T, m, into: stored + offset, ldo: W, pool: pool)
                offset += m.rows
            }
            columnOrder.withUnsafeBufferPointer { order in
                for t in 0..<T {
                    let from = stored + t * W, to = p + t * W
                    for i in 0..<W { to[i] = from[Int(order[i])] }
                }
            }
        } else {
            var offset = 0
            for m in projections {
                linear(x, ldx: hidden, tokens: T, m, into: p + offset, ldo: W, pool: pool)
                offset += m.rows
            }
        }
        let out = ws.attention.reserve(T * l.valueWidth)
        for (c, cache) in pass.caches.enumerated() {
            guard let state = cache.recurrent else { preconditionFailure("a cache without recurrent state reached a DeltaNet layer") }
            let rows = p + pass.firsts[c] * W
            let n = pass.counts[c]
            convolve(rows, tokens: n, window: state.convWindow(layer: layer))
            normaliseQueriesAndKeys(rows, tokens: n)
            let o = out + pass.firsts[c] * l.valueWidth, matrices = state.matrices(layer: layer)
            if n >= Self.chunkedFrom {
                chunkedDeltaRule(rows, tokens: n, matrices: matrices, out: o, pool: pool)
            } else {
                deltaRule(rows, tokens: n, matrices: matrices, out: o, pool: pool)
            }
        }
        gatedNorm(out, p, tokens: T)
        linear(out, ldx: l.valueWidth, tokens: T, outProj, into: residual, ldo: hidden, accumulate: true, pool: pool)
    }

    /// The causal depthwise convolution and SiLU over the [q | k | v] channels of n rows (stride
    /// `projectedWidth`), in place; `window` [channels, kernel − 1] holds each channel's previous inputs, oldest
    /// first, and is left holding the last ones.
    func convolve(_ rows: UnsafeMutablePointer<Float>, tokens n: Int, window: UnsafeMutablePointer<Float>) {
        let l = layout, K = l.convKernel, W = l.projectedWidth
        conv.withUnsafeBufferPointer { taps in
            var last = [Float](repeating: 0, count: K)
            last.withUnsafeMutableBufferPointer { last in
                for ch in 0..<l.convChannels {
                    let w = taps.baseAddress! + ch * K, win = window + ch * (K - 1)
                    // last[0..<K-1]: the previous inputs, oldest first; last[K-1]: the current one.
                    for j in 0..<(K - 1) { last[j] = win[j] }
                    for t in 0..<n {
                        let x = rows + t * W + ch
                        last[K - 1] = x.pointee
                        var s: Float = 0
                        for j in 0..<K { s += w[j] * last[j] }
                        x.pointee = s / (1 + Foundation.exp(-s))
                        for j in 0..<(K - 1) { last[j] = last[j + 1] }
                    }
                    for j in 0..<(K - 1) { win[j] = last[j] }
                }
            }
        }
    }

    /// q and k of each key head L2-normalised (eps 1e-6 under the root, as transformers' l2norm), q then
    /// scaled by 1/√keyDim.
    func normaliseQueriesAndKeys(_ rows: UnsafeMutablePointer<Float>, tokens n: Int) {
        let l = layout, W = l.projectedWidth, dk = l.keyDim
        let scale = 1 / Float(dk).squareRoot()
        for t in 0..<n {
            for head in 0..<(2 * l.keyHeads) {
                let v = rows + t * W + head * dk
                var ss: Float = 0
                for i in 0..<dk { ss += v[i] * v[i] }
                let f = 1 / (ss + 1e-6).squareRoot() * (head < l.keyHeads ? scale : 1)
                for i in 0..<dk { v[i] *= f }
            }
        }
    }

    /// The gated delta rule over n rows, token by token, each value head on its own (in parallel): S decays,
    /// takes the β-weighted correction toward v at key k, and is read at q; o [n, valueWidth].
    func deltaRule(_ rows: UnsafeMutablePointer<Float>, tokens n: Int, matrices: UnsafeMutablePointer<Float>,
                   out: UnsafeMutablePointer<Float>, pool: WorkerPool) {
        let l = layout, W = l.projectedWidth, dk = l.keyDim, dv = l.valueDim
        let zOffset = l.convChannels, bOffset = zOffset + l.valueWidth, aOffset = bOffset + l.valueHeads
        negativeA.withUnsafeBufferPointer { negA in
            dtBias.withUnsafeBufferPointer { dt in
                pool.parallelFor(l.valueHeads) { h in
                    let S = matrices + h * dk * dv
                    var scratch = [Float](repeating: 0, count: dv)
                    scratch.withUnsafeMutableBufferPointer { kv in
                        let kv = kv.baseAddress!
                        for t in 0..<n {
                            let row = rows + t * W
                            let kh = l.keyHead(ofValueHead: h)
                            let q = row + kh * dk, k = row + l.keyWidth + kh * dk, v = row + 2 * l.keyWidth + h * dv
                            let beta = 1 / (1 + Foundation.exp(-row[bOffset + h]))
                            let decay = Foundation.exp(negA[h] * softplus(row[aOffset + h] + dt[h]))
                            // S ← decay·S and kv = Sᵀk, in one sweep.
                            kv.update(repeating: 0, count: dv)
                            for i in 0..<dk {
                                let s = S + i * dv, ki = k[i]
                                for j in 0..<dv { s[j] *= decay; kv[j] += s[j] * ki }
                            }
                            for j in 0..<dv { kv[j] = beta * (v[j] - kv[j]) }
                            // S ← S + k ⊗ δ and o = Sᵀq.
                            let o = out + t * l.valueWidth + h * dv
                            o.update(repeating: 0, count: dv)
                            for i in 0..<dk {
                                let s = S + i * dv, ki = k[i], qi = q[i]
                                for j in 0..<dv { s[j] += ki * kv[j]; o[j] += s[j] * qi }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Runs of at least this many tokens take the chunked form (prefill); shorter ones (decode, drafts) the recurrent.
    static let chunkedFrom = 8
    /// Tokens per chunk of the chunked form (transformers' `torch_chunk_gated_delta_rule` uses 64).
    static let chunk = 64

    /// The same rule over n rows in the chunked form (Yang et al.'s WY representation, as transformers'
    /// `torch_chunk_gated_delta_rule`), so that most of the work is matrix products. Per chunk of c tokens, with
    /// γ the cumulative log-decay and A[i][j] = β_i (k_i·k_j) e^{γ_i−γ_j} (j < i):
    ///
    ///     U = (I + A)⁻¹ βV,   W = (I + A)⁻¹ (β e^γ K)         (forward substitution)
    ///     V' = U − W S                                        (the chunk's corrections, given the state entering)
    ///     O = (e^γ Q) S + ((QKᵀ) ⊙ e^{γ_i−γ_j}, j ≤ i) V'
    ///     S ← e^{γ_last} S + (e^{γ_last−γ} K)ᵀ V'
    func chunkedDeltaRule(_ rows: UnsafeMutablePointer<Float>, tokens n: Int, matrices: UnsafeMutablePointer<Float>,
                          out: UnsafeMutablePointer<Float>, pool: WorkerPool) {
        let l = layout, W = l.projectedWidth, dk = l.keyDim, dv = l.valueDim, C = Self.chunk, ow = l.valueWidth
        let bOffset = l.convChannels + l.valueWidth, aOffset = bOffset + l.valueHeads
        negativeA.withUnsafeBufferPointer { negA in
            dtBias.withUnsafeBufferPointer { dt in
                pool.parallelFor(l.valueHeads) { h in
                    let kh = l.keyHead(ofValueHead: h), S = matrices + h * dk * dv
                    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 2 * C * C + C * dv + 2 * C * dk + 2 * C)
                    defer { scratch.deallocate() }
                    let A = scratch, M = A + C * C, U = M + C * C, Wk = U + C * dv, Qd = Wk + C * dk
                    let gamma = Qd + C * dk, beta = gamma + C
                    var t0 = 0
                    while t0 < n {
                        let c = min(C, n - t0), base = rows + t0 * W
                        let q = base + kh * dk, k = base + l.keyWidth + kh * dk, v = base + 2 * l.keyWidth + h * dv
                        var decay: Float = 0
                        for i in 0..<c {
                            let row = base + i * W
                            beta[i] = 1 / (1 + Foundation.exp(-row[bOffset + h]))
                            decay += negA[h] * softplus(row[aOffset + h] + dt[h])
                            gamma[i] = decay
                        }
                        // A = β KKᵀ ⊙ e^{γ_i−γ_j}, strictly lower.
                        sgemmNT(m: c, n: c, k: dk, alpha: 1, a: k, lda: W, b: k, ldb: W, c: A, ldc: C, accumulate: false, pool: nil)
                        for i in 0..<c { for j in 0..<i { A[i * C + j] *= beta[i] * Foundation.exp(gamma[i] - gamma[j]) } }
                        // U and W by forward substitution, row by row.
                        for i in 0..<c {
                            let u = U + i * dv, wk = Wk + i * dk, vi = v + i * W, ki = k + i * W
                            let f = beta[i] * Foundation.exp(gamma[i])
                            for j in 0..<dv { u[j] = beta[i] * vi[j] }
                            for j in 0..<dk { wk[j] = f * ki[j] }
                            for j in 0..<i {
                                let a = A[i * C + j]
                                axpy(-a, U + j * dv, u, count: dv)
                                axpy(-a, Wk + j * dk, wk, count: dk)
                            }
                        }
                        // V' = U − W S (in U).
                        sgemmNN(m: c, n: dv, k: dk, alpha: -1, a: Wk, lda: dk, b: S, ldb: dv, c: U, ldc: dv, accumulate: true, pool: nil)
                        // O = (e^γ Q) S + (QKᵀ ⊙ e^{γ_i−γ_j}, lower with the diagonal) V'.
                        sgemmNT(m: c, n: c, k: dk, alpha: 1, a: q, lda: W, b: k, ldb: W, c: M, ldc: C, accumulate: false, pool: nil)
                        for i in 0..<c {
                            for j in 0...i { M[i * C + j] *= Foundation.exp(gamma[i] - gamma[j]) }
                            for j in (i + 1)..<max(i + 1, c) { M[i * C + j] = 0 }
                            let qi = q + i * W, e = Foundation.exp(gamma[i])
                            for j in 0..<dk { Qd[i * dk + j] = qi[j] * e }
                        }
                        let o = out + t0 * ow + h * dv
                        sgemmNN(m: c, n: dv, k: dk, alpha: 1, a: Qd, lda: dk, b: S, ldb: dv, c: o, ldc: ow, accumulate: false, pool: nil)
                        sgemmNN(m: c, n: dv, k: c, alpha: 1, a: M, lda: C, b: U, ldb: dv, c: o, ldc: ow, accumulate: true, pool: nil)
                        // S ← e^{γ_last} S + (e^{γ_last−γ} K)ᵀ V'.
                        let last = gamma[c - 1]
                        scale(S, count: dk * dv, by: Foundation.exp(last))
                        for i in 0..<c {
                            let ki = k + i * W, e = Foundation.exp(last - gamma[i])
                            for j in 0..<dk { Qd[i * dk + j] = ki[j] * e }
                        }
                        sgemmTN(m: dk, n: dv, k: c, alpha: 1, a: Qd, lda: dk, b: U, ldb: dv, c: S, ldc: dv, accumulate: true, pool: nil)
                        t0 += c
                    }
                }
            }
        }
    }

    /// o ← RMSNorm(o)·w·SiLU(z) per value head of each row, z from the projections.
    func gatedNorm(_ o: UnsafeMutablePointer<Float>, _ p: UnsafePointer<Float>, tokens T: Int) {
        let l = layout, dv = l.valueDim
        normWeight.withUnsafeBufferPointer { w in
            for t in 0..<T {
                for h in 0..<l.valueHeads {
                    let x = o + t * l.valueWidth + h * dv, z = p + t * l.projectedWidth + l.convChannels + h * dv
                    rmsNorm(x, weight: w.baseAddress!, count: dv, eps: eps, into: x)
                    for j in 0..<dv { x[j] *= z[j] / (1 + Foundation.exp(-z[j])) }
                }
            }
        }
    }
}

/// torch's softplus (β 1, threshold 20): log(1 + eˣ), x itself above 20.
@inline(__always) func softplus(_ x: Float) -> Float { x > 20 ? x : Foundation.log1p(Foundation.exp(x)) }
