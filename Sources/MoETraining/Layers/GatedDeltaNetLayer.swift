import Foundation
import MoEKernels
import MoEModel

/// The Gated DeltaNet of Qwen3-Next / Qwen3.5 in training (the math of `GatedDeltaNet` in MoEModel), over B
/// sequences of T tokens, each from a zero state. Forward saves the projections, the convolution's
/// pre-activations, the normalised q and k, β, g, the outputs before the gated norm and the state at every
/// `chunk`-th token; backward runs the recurrence in reverse chunk by chunk, recomputing the chunk's states from
/// the saved one (the "recurrence in reverse with the state saved at chunk boundaries" form).
final class GatedDeltaNetLayer: TrainableAttention {
    let layout: LinearAttentionLayout
    let hidden: Int, eps: Float
    /// Tokens between saved states.
    let chunk = 64
    // Offsets into the parameter store.
    let projections: [(offset: Int, rows: Int)]
    let conv: Int, aLog: Int, dtBias: Int, norm: Int, outProj: Int
    /// [q | k | v | z | b | a] column → column of the stored projections side by side.
    let columnOrder: [Int32]

    // Saved activations.
    let input = Floats(), mixed = Floats(), preActivation = Floats(), convolved = Floats()
    let queries = Floats(), keys = Floats(), inverseNorms = Floats(), betas = Floats(), decays = Floats()
    let states = Floats(), outputs = Floats(), outputRstd = Floats(), gated = Floats()
    // Backward scratch.
    /// (dDecays: each row's share of the gated norm's weight gradient; dBetas: dβ and dg per row and head.)
    let dGated = Floats(), dMixed = Floats(), dQueries = Floats(), dKeys = Floats(), dBetas = Floats(), dDecays = Floats()
    let dStored = Floats(), column = Floats(), chunkStates = Floats(), tapsByRow = Floats()

    init(_ store: ParameterStore, prefix: String, hidden: Int, layout l: LinearAttentionLayout, eps: Float) {
        layout = l; self.hidden = hidden; self.eps = eps
        projections = l.projections.map { (store.add("\(prefix).\($0.name).weight", shape: [$0.rows, hidden], decay: true), $0.rows) }
        conv = store.add("\(prefix).conv1d.weight", shape: [l.convChannels, 1, l.convKernel], decay: true)
        aLog = store.add("\(prefix).A_log", shape: [l.valueHeads], decay: false)
        dtBias = store.add("\(prefix).dt_bias", shape: [l.valueHeads], decay: false)
        norm = store.add("\(prefix).norm.weight", shape: [l.valueDim], decay: false)
        outProj = store.add("\(prefix).out_proj.weight", shape: [hidden, l.valueWidth], decay: true)
        columnOrder = l.storedColumns()
    }

    private var W: Int { layout.projectedWidth }

    /// The convolution's taps as [kernel, channels] (stored [channels, 1, kernel]).
    private func transposedTaps(_ store: ParameterStore) -> UnsafeMutablePointer<Float> {
        let C = layout.convChannels, K = layout.convKernel, w = store.values! + conv
        let t = tapsByRow.reserve(K * C)
        for ch in 0..<C { for j in 0..<K { t[j * C + ch] = w[ch * K + j] } }
        return t
    }
    private var zOffset: Int { layout.convChannels }
    private var bOffset: Int { layout.convChannels + layout.valueWidth }
    private var aOffset: Int { bOffset + layout.valueHeads }
    private func chunks(_ T: Int) -> Int { (T + chunk - 1) / chunk }

    func forward(_ x: UnsafePointer<Float>, batch B: Int, seqLen T: Int, rope: RopeTable, store: ParameterStore,
                 into out: UnsafeMutablePointer<Float>, accumulate: Bool, pool: WorkerPool) {
        let l = layout, n = B * T, w = store.values!, W = W, C = l.convChannels, K = l.convKernel
        let nv = l.valueHeads, dk = l.keyDim, dv = l.valueDim
        let xs = input.reserve(n * hidden)
        xs.update(from: x, count: n * hidden)
        // Projections, stored side by side, then into [q | k | v | z | b | a] order.
        let stored = dStored.reserve(n * W), p = mixed.reserve(n * W)
        var offset = 0
        for m in projections {
            let y = column.reserve(n * m.rows)
            linearForward(xs, rows: n, inputs: hidden, outputs: m.rows, weight: w + m.offset, bias: nil, into: y, pool: pool)
            let o = offset
            forEachBlock(n, pool: pool) { t in (stored + t * W + o).update(from: y + t * m.rows, count: m.rows) }
            offset += m.rows
        }
        columnOrder.withUnsafeBufferPointer { order in
            forEachBlock(n, pool: pool) { t in for c in 0..<W { p[t * W + c] = stored[t * W + Int(order[c])] } }
        }
        // Causal depthwise convolution (zeros before each sequence) and SiLU.
        // Row by row, the taps transposed to [kernel, channels] so that every step runs along a row.
        let c = preActivation.reserve(n * C), y = convolved.reserve(n * C), taps = transposedTaps(store)
        forEachBlock(n, pool: pool) { r in
            let t = r % T, cr = c + r * C, yr = y + r * C
            cr.update(repeating: 0, count: C)
            for j in 0..<K where t - (K - 1) + j >= 0 {
                let x = p + (r - (K - 1) + j) * W, tap = taps + j * C
                for ch in 0..<C { cr[ch] += tap[ch] * x[ch] }
            }
            for ch in 0..<C { yr[ch] = cr[ch] / (1 + Foundation.exp(-cr[ch])) }
        }
        // L2-normalised q (× 1/√dk) and k per key head; β and g per value head.
        let q = queries.reserve(n * l.keyWidth), k = keys.reserve(n * l.keyWidth)
        let inv = inverseNorms.reserve(n * 2 * l.keyHeads), beta = betas.reserve(n * nv), g = decays.reserve(n * nv)
        let scale = 1 / Float(dk).squareRoot()
        let bOffset = bOffset, aOffset = aOffset, zOffset = zOffset, aLog = aLog, dtBias = dtBias, norm = norm, eps = eps
        forEachBlock(n, pool: pool) { t in
            for head in 0..<(2 * l.keyHeads) {
                let src = y + t * C + head * dk
                let s = 1 / (dot(src, src, count: dk) + 1e-6).squareRoot()
                inv[t * 2 * l.keyHeads + head] = s
                let dst = head < l.keyHeads ? q + t * l.keyWidth + head * dk : k + t * l.keyWidth + (head - l.keyHeads) * dk
                let f = s * (head < l.keyHeads ? scale : 1)
                for i in 0..<dk { dst[i] = src[i] * f }
            }
            for h in 0..<nv {
                beta[t * nv + h] = 1 / (1 + Foundation.exp(-p[t * W + bOffset + h]))
                g[t * nv + h] = -Foundation.exp(w[aLog + h]) * softplus(p[t * W + aOffset + h] + w[dtBias + h])
            }
        }
        // The delta rule per (sequence, value head), saving the state entering every chunk.
        let nc = chunks(T), stateSize = dk * dv
        let saved = states.reserve(B * nv * nc * stateSize), o = outputs.reserve(n * l.valueWidth)
        pool.parallelFor(B * nv) { task in
            let b = task / nv, h = task % nv, kh = l.keyHead(ofValueHead: h)
            let S = UnsafeMutablePointer<Float>.allocate(capacity: stateSize + dv)
            defer { S.deallocate() }
            S.initialize(repeating: 0, count: stateSize)
            let kv = S + stateSize
            for t in 0..<T {
                if t % chunk == 0 { (saved + (task * nc + t / chunk) * stateSize).update(from: S, count: stateSize) }
                let row = b * T + t
                Self.step(S, q: q + row * l.keyWidth + kh * dk, k: k + row * l.keyWidth + kh * dk,
                          v: y + row * C + 2 * l.keyWidth + h * dv, beta: beta[row * nv + h], decay: Foundation.exp(g[row * nv + h]),
                          dk: dk, dv: dv, kv: kv, out: o + row * l.valueWidth + h * dv)
            }
        }
        // Gated RMSNorm, then the output projection.
        let gd = gated.reserve(n * l.valueWidth), rstd = outputRstd.reserve(n * nv)
        forEachBlock(n, pool: pool) { t in
            for h in 0..<nv {
                let oh = o + t * l.valueWidth + h * dv, z = p + t * W + zOffset + h * dv, dst = gd + t * l.valueWidth + h * dv
                let s = 1 / (dot(oh, oh, count: dv) / Float(dv) + eps).squareRoot()
                rstd[t * nv + h] = s
                for j in 0..<dv { dst[j] = oh[j] * s * w[norm + j] * z[j] / (1 + Foundation.exp(-z[j])) }
            }
        }
        linearForward(gd, rows: n, inputs: l.valueWidth, outputs: hidden, weight: w + outProj, bias: nil, into: out,
                      accumulate: accumulate, pool: pool)
    }

    /// One token of the gated delta rule on S [dk, dv]: S ← decay·S; δ = β(v − Sᵀk); S ← S + k δᵀ; out = Sᵀq.
    @inline(__always)
    static func step(_ S: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                     beta: Float, decay: Float, dk: Int, dv: Int, kv: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>?) {
        kv.update(repeating: 0, count: dv)
        for i in 0..<dk {
            let s = S + i * dv, ki = k[i]
            for j in 0..<dv { s[j] *= decay; kv[j] += s[j] * ki }
        }
        for j in 0..<dv { kv[j] = beta * (v[j] - kv[j]) }
        if let out { out.update(repeating: 0, count: dv) }
        for i in 0..<dk {
            let s = S + i * dv, ki = k[i], qi = q[i]
            for j in 0..<dv { s[j] += ki * kv[j] }
            if let out { for j in 0..<dv { out[j] += s[j] * qi } }
        }
    }

    func backward(_ dOut: UnsafePointer<Float>, batch B: Int, seqLen T: Int, rope: RopeTable, store: ParameterStore,
                  inputGrad dx: UnsafeMutablePointer<Float>, accumulate: Bool, pool: WorkerPool) {
        let l = layout, n = B * T, w = store.values!, grad = store.grads!, W = W, C = l.convChannels, K = l.convKernel
        let nv = l.valueHeads, dk = l.keyDim, dv = l.valueDim, keyHeads = l.keyHeads
        let p = mixed.pointer, c = preActivation.pointer, y = convolved.pointer, q = queries.pointer, k = keys.pointer
        let inv = inverseNorms.pointer, beta = betas.pointer, g = decays.pointer, o = outputs.pointer, rstd = outputRstd.pointer
        // Output projection.
        let dg = dGated.reserve(n * l.valueWidth)
        linearBackward(dOut, x: gated.pointer, rows: n, inputs: l.valueWidth, outputs: hidden, weight: w + outProj,
                       weightGrad: grad + outProj, biasGrad: nil, inputGrad: dg, accumulateInput: false, pool: pool)
        // Gated norm: out = ô·w·silu(z), ô = o·r. dg becomes d(o); dz goes into dP; each row's share of the
        // norm weight's gradient is summed after (rows run in parallel).
        let dp = dMixed.zeroed(n * W), normRows = dDecays.zeroed(n * dv)
        let zOffset = zOffset, bOffset = bOffset, aOffset = aOffset, norm = norm, aLog = aLog, dtBias = dtBias
        forEachBlock(n, pool: pool) { t in
            for h in 0..<nv {
                let oh = o + t * l.valueWidth + h * dv, z = p + t * W + zOffset + h * dv, d = dg + t * l.valueWidth + h * dv
                let s = rstd[t * nv + h]
                var mean: Float = 0
                for j in 0..<dv {
                    let sig = 1 / (1 + Foundation.exp(-z[j])), silu = z[j] * sig, hat = oh[j] * s
                    normRows[t * dv + j] += d[j] * hat * silu
                    dp[t * W + zOffset + h * dv + j] = d[j] * hat * w[norm + j] * sig * (1 + z[j] * (1 - sig))
                    d[j] *= w[norm + j] * silu        // d(ô)
                    mean += hat * d[j]
                }
                mean /= Float(dv)
                for j in 0..<dv { d[j] = s * (d[j] - oh[j] * s * mean) }
            }
        }
        for t in 0..<n { axpy(1, normRows + t * dv, grad + norm, count: dv) }
        // The delta rule in reverse, per (sequence, key head): its value heads one after another, so the shared
        // q and k gradients are added without races.
        let dq = dQueries.zeroed(n * l.keyWidth), dkeys = dKeys.zeroed(n * l.keyWidth)
        let dbeta = dBetas.reserve(2 * n * nv), ddecay = dbeta + n * nv
        let nc = chunks(T), stateSize = dk * dv, saved = states.pointer
        let chunkBuffer = chunkStates.reserve(B * keyHeads * (chunk + 1) * stateSize)
        pool.parallelFor(B * keyHeads) { task in
            let b = task / keyHeads, kh = task % keyHeads
            let local = chunkBuffer + task * (chunk + 1) * stateSize
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: stateSize + 5 * dv + 2 * dk)
            defer { scratch.deallocate() }
            let dS = scratch, kv = scratch + stateSize, delta = kv + dv, dDelta = delta + dv, dkv = dDelta + dv, tmp = dkv + dv
            for h in 0..<nv where l.keyHead(ofValueHead: h) == kh {
                dS.update(repeating: 0, count: stateSize)
                for ci in stride(from: nc - 1, through: 0, by: -1) {
                    let t0 = ci * chunk, t1 = min(t0 + chunk, T)
                    // local[0]: the state entering the chunk; local[i + 1]: after token t0 + i.
                    local.update(from: saved + ((b * nv + h) * nc + ci) * stateSize, count: stateSize)
                    for t in t0..<t1 {
                        let row = b * T + t, S = local + (t - t0 + 1) * stateSize
                        S.update(from: S - stateSize, count: stateSize)
                        Self.step(S, q: q + row * l.keyWidth + kh * dk, k: k + row * l.keyWidth + kh * dk,
                                  v: y + row * C + 2 * l.keyWidth + h * dv, beta: beta[row * nv + h],
                                  decay: Foundation.exp(g[row * nv + h]), dk: dk, dv: dv, kv: tmp, out: nil)
                    }
                    for t in stride(from: t1 - 1, through: t0, by: -1) {
                        let row = b * T + t
                        let prev = local + (t - t0) * stateSize, S = prev + stateSize
                        let qt = q + row * l.keyWidth + kh * dk, kt = k + row * l.keyWidth + kh * dk
                        let vt = y + row * C + 2 * l.keyWidth + h * dv, dOt = dg + row * l.valueWidth + h * dv
                        let dqt = dq + row * l.keyWidth + kh * dk, dkt = dkeys + row * l.keyWidth + kh * dk
                        let bt = beta[row * nv + h], alpha = Foundation.exp(g[row * nv + h])
                        // kv = S'ᵀk with S' = α·prev; δ = β(v − kv).
                        kv.update(repeating: 0, count: dv)
                        for i in 0..<dk { let s = prev + i * dv, ki = alpha * kt[i]; for j in 0..<dv { kv[j] += s[j] * ki } }
                        for j in 0..<dv { delta[j] = bt * (vt[j] - kv[j]) }
                        // o = Sᵀq: dS += q doᵀ, dq += S do. S = S' + kδᵀ: dδ = dSᵀk, dk += dS δ.
                        dDelta.update(repeating: 0, count: dv)
                        for i in 0..<dk {
                            let d = dS + i * dv
                            dqt[i] += dot(S + i * dv, dOt, count: dv)
                            axpy(qt[i], dOt, d, count: dv)
                            axpy(kt[i], d, dDelta, count: dv)
                            dkt[i] += dot(d, delta, count: dv)
                        }
                        // δ = β(v − kv): dβ, dv, d(kv).
                        for j in 0..<dv { kv[j] = vt[j] - kv[j] }
                        dbeta[row * nv + h] = dot(dDelta, kv, count: dv)
                        let dvt = dp + row * W + 2 * l.keyWidth + h * dv
                        axpy(bt, dDelta, dvt, count: dv)
                        for j in 0..<dv { dkv[j] = -bt * dDelta[j] }
                        // kv = S'ᵀk: dS' = dS + k dkvᵀ, dk += S' dkv; S' = α prev: dg = ⟨dS', S'⟩, dS ← α dS'.
                        var dgt: Float = 0
                        for i in 0..<dk {
                            let s = prev + i * dv, d = dS + i * dv
                            axpy(kt[i], dkv, d, count: dv)
                            dkt[i] += alpha * dot(s, dkv, count: dv)
                            dgt += alpha * dot(d, s, count: dv)
                            MoEKernels.scale(d, count: dv, by: alpha)
                        }
                        ddecay[row * nv + h] = dgt
                    }
                }
            }
        }
        // β = σ(b), g = −exp(A_log)·softplus(a + dt_bias).
        forEachBlock(n, pool: pool) { t in
            for h in 0..<nv {
                let bt = beta[t * nv + h]
                dp[t * W + bOffset + h] = dbeta[t * nv + h] * bt * (1 - bt)
                let u = p[t * W + aOffset + h] + w[dtBias + h]
                dp[t * W + aOffset + h] = ddecay[t * nv + h] * -Foundation.exp(w[aLog + h]) / (1 + Foundation.exp(-u))
            }
        }
        for t in 0..<n {
            for h in 0..<nv {
                grad[dtBias + h] += dp[t * W + aOffset + h]
                grad[aLog + h] += ddecay[t * nv + h] * g[t * nv + h]
            }
        }
        // The L2 norms back to the convolution's output y (q's and k's columns of dp; v's hold dv already):
        // saved = f·n̂ with n̂ = y·s (f = 1/√dk for q, 1 for k), so dy = s·(f·dsaved − n̂·⟨saved, dsaved⟩).
        let scale = 1 / Float(dk).squareRoot()
        forEachBlock(n, pool: pool) { t in
            for head in 0..<(2 * keyHeads) {
                let isQ = head < keyHeads, kh = isQ ? head : head - keyHeads
                let dSaved = (isQ ? dq : dkeys) + t * l.keyWidth + kh * dk
                let saved = (isQ ? q : k) + t * l.keyWidth + kh * dk
                let f: Float = isQ ? scale : 1, s = inv[t * 2 * keyHeads + head]
                let projection = dot(saved, dSaved, count: dk)
                let d = dp + t * W + head * dk
                for i in 0..<dk { d[i] = s * (f * dSaved[i] - saved[i] / f * projection) }
            }
        }
        // SiLU, then the convolution: dp's first C columns become d(pre-convolution projections).
        let dc = column.reserve(n * C + blockCount(n, pool: pool) * K * C)
        forEachBlock(n, pool: pool) { t in
            for ch in 0..<C {
                let pre = c[t * C + ch], sig = 1 / (1 + Foundation.exp(-pre))
                dc[t * C + ch] = dp[t * W + ch] * sig * (1 + pre * (1 - sig))
            }
        }
        // Row by row (the taps' gradient summed per part of the rows, then in part order).
        let taps = transposedTaps(store), dTaps = grad + conv
        let parts = blockCount(n, pool: pool), partial = column.reserve(n * C + parts * K * C) + n * C
        partial.update(repeating: 0, count: parts * K * C)
        forEachPart(n, pool: pool) { range, part in
            let acc = partial + part * K * C
            for r in range {
                let t = r % T, d = dp + r * W, g = dc + r * C
                d.update(repeating: 0, count: C)
                for j in 0..<K where t + (K - 1) - j < T {
                    let src = dc + (r + (K - 1) - j) * C, tap = taps + j * C
                    for ch in 0..<C { d[ch] += tap[ch] * src[ch] }
                }
                for j in 0..<K where t - (K - 1) + j >= 0 {
                    let x = p + (r - (K - 1) + j) * W, a = acc + j * C
                    for ch in 0..<C { a[ch] += g[ch] * x[ch] }
                }
            }
        }
        for part in 0..<parts { for j in 0..<K { for ch in 0..<C { dTaps[ch * K + j] += partial[(part * K + j) * C + ch] } } }
        // Back to the stored projections' order, then their weights and the input.
        let dstored = dStored.reserve(n * W)
        columnOrder.withUnsafeBufferPointer { order in
            forEachBlock(n, pool: pool) { t in for col in 0..<W { dstored[t * W + Int(order[col])] = dp[t * W + col] } }
        }
        var offset = 0
        for (i, m) in projections.enumerated() {
            let d = column.reserve(n * m.rows), o = offset
            forEachBlock(n, pool: pool) { t in (d + t * m.rows).update(from: dstored + t * W + o, count: m.rows) }
            linearBackward(d, x: input.pointer, rows: n, inputs: hidden, outputs: m.rows, weight: w + m.offset,
                           weightGrad: grad + m.offset, biasGrad: nil, inputGrad: dx, accumulateInput: accumulate || i > 0, pool: pool)
            offset += m.rows
        }
    }
}

/// torch's softplus (β 1, threshold 20).
@inline(__always) func softplus(_ x: Float) -> Float { x > 20 ? x : Foundation.log1p(Foundation.exp(x)) }
