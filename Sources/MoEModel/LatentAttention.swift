import MoEFormats
import MoEKernels

/// Multi-head latent attention (DeepSeek-V2/V3, "MLA"), as transformers' `DeepseekV3Attention` computes it:
///
///     q        = q_proj(x)   or   q_b_proj(rmsnorm(q_a_proj(x)))        [heads, nope + rope]
///     c, kRope = kv_a_proj_with_mqa(x)                                   [kvLora], [rope] (one for all heads)
///     c        = rmsnorm(c);  rope(q's rope part), rope(kRope)
///     kNope_h, v_h = kv_b_proj_h · c                                     (W_UK_h [nope×kvLora], W_UV_h [v×kvLora])
///     o_h      = softmax(scale · (q_nope_h·kNope_h + q_rope_h·kRope)) · v_h;   out = o_proj(o)
///
/// The cache keeps only [c | kRope] per position and layer (kvLora + rope floats, 576 for V3, against
/// 2 · heads · head_dim for grouped-query attention). Attention runs in latent space with the projections
/// absorbed, for prefill and decode alike: q_nope_h·kNope_h = (W_UK_hᵀ q_nope_h)·c, so each head's query becomes
/// [W_UK_hᵀ q_nope_h | q_rope_h] against the cached rows, the weighted sum is taken over the cached latents,
/// and W_UV_h maps it to the head's output. Nothing is decompressed per position.
public struct LatentAttention: @unchecked Sendable {
    let heads: Int
    public let layout: LatentAttentionLayout
    public let q: WeightMatrix?, qA: WeightMatrix?, qB: WeightMatrix?
    public let qABias: [Float]?, qANorm: [Float]?
    public let kvA: WeightMatrix, kvABias: [Float]?, kvANorm: [Float]
    /// kv_b_proj as stored (one matrix, or GGUF's k_b and v_b): for sizes.
    public let kvB: [WeightMatrix]
    /// kv_b_proj widened to f32 [heads·(nope + v), kvLora]: the absorbed products read it per head.
    let kvBFloats: [Float]
    public let o: WeightMatrix, oBias: [Float]?
    /// transformers' RMSNorm default: q_a_layernorm and kv_a_layernorm are built without the config's eps.
    let latentNormEps: Float = 1e-6

    public init(_ c: ModelConfig, _ w: WeightReader, prefix: String, layout l: LatentAttentionLayout) throws {
        heads = c.numAttentionHeads
        layout = l
        let qWidth = heads * (l.nopeDim + l.ropeDim), hidden = c.hiddenSize
        if let rank = l.qLoraRank {
            q = nil
            qA = try w.matrix("\(prefix).q_a_proj.weight", rows: rank, cols: hidden)
            qABias = l.bias ? try w.vector("\(prefix).q_a_proj.bias", count: rank) : nil
            qANorm = try w.vector("\(prefix).q_a_layernorm.weight", count: rank)
            qB = try w.matrix("\(prefix).q_b_proj.weight", rows: qWidth, cols: rank)
        } else {
            q = try w.matrix("\(prefix).q_proj.weight", rows: qWidth, cols: hidden)
            qA = nil; qABias = nil; qANorm = nil; qB = nil
        }
        kvA = try w.matrix("\(prefix).kv_a_proj_with_mqa.weight", rows: l.cachedWidth, cols: hidden)
        kvABias = l.bias ? try w.vector("\(prefix).kv_a_proj_with_mqa.bias", count: l.cachedWidth) : nil
        kvANorm = try w.vector("\(prefix).kv_a_layernorm.weight", count: l.kvLoraRank)
        // kv_b_proj [heads·(nope + v), kvLora] as transformers keeps it, or llama.cpp's split of it: attn_k_b
        // [heads, kvLora, nope] (each head's W_UK transposed) and attn_v_b [heads, v, kvLora].
        let headRows = l.nopeDim + l.valueDim
        var floats = [Float](repeating: 0, count: heads * headRows * l.kvLoraRank)
        let kName = "\(prefix).k_b_proj.weight", vName = "\(prefix).v_b_proj.weight"
        if !w.has("\(prefix).kv_b_proj.weight") && w.has(kName) {
            let (heads, rank, nope) = (heads, l.kvLoraRank, l.nopeDim)
            var row = [Float](repeating: 0, count: max(nope, rank))
            for h in 0..<heads {
                let kb = try w.stackedMatrix(kName, index: h, shape: [heads, rank, nope], rows: rank)
                let vb = try w.stackedMatrix(vName, index: h, shape: [heads, l.valueDim, rank], rows: l.valueDim)
                for j in 0..<rank {
                    row.withUnsafeMutableBufferPointer { loadRow(kb, row: j, into: $0.baseAddress!) }
                    for i in 0..<nope { floats[(h * headRows + i) * rank + j] = row[i] }
                }
                floats.withUnsafeMutableBufferPointer { f in
                    for r in 0..<l.valueDim { loadRow(vb, row: r, into: f.baseAddress! + (h * headRows + nope + r) * rank) }
                }
            }
            kvB = [try w.matrix(kName, rows: heads * rank, cols: nope, shape: [heads, rank, nope]),
                   try w.matrix(vName, rows: heads * l.valueDim, cols: rank, shape: [heads, l.valueDim, rank])]
        } else {
            let m = try w.matrix("\(prefix).kv_b_proj.weight", rows: heads * headRows, cols: l.kvLoraRank)
            floats.withUnsafeMutableBufferPointer { f in
                for r in 0..<m.rows { loadRow(m, row: r, into: f.baseAddress! + r * m.cols) }
            }
            kvB = [m]
        }
        kvBFloats = floats
        o = try w.matrix("\(prefix).o_proj.weight", rows: hidden, cols: heads * l.valueDim)
        oBias = l.bias ? try w.vector("\(prefix).o_proj.bias", count: hidden) : nil
    }

    /// Attends every sequence's rows of x [rows, hidden] and adds the output projection into `residual`, as
    /// `Attention.forward` does; the caches hold one row of `layout.cachedWidth` floats per position.
    func forward(_ x: UnsafePointer<Float>, _ pass: PassLayout, layer: Int, rope: RotaryEmbedding,
                 residual: UnsafeMutablePointer<Float>, hidden: Int, ws: Workspace, pool: WorkerPool) {
        let T = pass.rows
        let l = layout, nope = l.nopeDim, ropeDim = l.ropeDim, rank = l.kvLoraRank
        let qkDim = nope + ropeDim, qWidth = heads * qkDim, D = l.cachedWidth, headRows = nope + l.valueDim
        let heads = heads

        // Queries [T, heads·(nope + rope)].
        let qs = ws.query.reserve(T * qWidth)
        if let qA, let qB, let qANorm {
            let rankQ = qA.rows
            let qa = ws.queryLowRank.reserve(T * rankQ)
            linear(x, ldx: hidden, tokens: T, qA, into: qa, ldo: rankQ, pool: pool)
            if let qABias { addBias(qa, rows: T, stride: rankQ, bias: qABias, count: rankQ) }
            qANorm.withUnsafeBufferPointer { n in
                for t in 0..<T { rmsNorm(qa + t * rankQ, weight: n.baseAddress!, count: rankQ, eps: latentNormEps, into: qa + t * rankQ) }
            }
            linear(qa, ldx: rankQ, tokens: T, qB, into: qs, ldo: qWidth, pool: pool)
        } else if let q {
            linear(x, ldx: hidden, tokens: T, q, into: qs, ldo: qWidth, pool: pool)
        }
        // The cached rows [T, kvLora + rope]: normalised latent, rotated key.
        let kv = ws.key.reserve(T * D)
        linear(x, ldx: hidden, tokens: T, kvA, into: kv, ldo: D, pool: pool)
        if let kvABias { addBias(kv, rows: T, stride: D, bias: kvABias, count: D) }
        let half = rope.rotaryDim / 2
        let cosTable = ws.ropeCos.pointer, sinTable = ws.ropeSin.pointer
        let rotate = l.interleavedRope ? RotaryEmbedding.applyInterleaved : RotaryEmbedding.apply
        kvANorm.withUnsafeBufferPointer { n in
            for t in 0..<T {
                rmsNorm(kv + t * D, weight: n.baseAddress!, count: rank, eps: latentNormEps, into: kv + t * D)
                rotate(qs + t * qWidth + nope, heads, qkDim, ropeDim, cosTable + t * half, sinTable + t * half)
                rotate(kv + t * D + rank, 1, ropeDim, ropeDim, cosTable + t * half, sinTable + t * half)
            }
        }
        for (c, cache) in pass.caches.enumerated() {
            let first = pass.firsts[c]
            for t in 0..<pass.counts[c] {
                cache.keys(layer: layer, position: cache.count + t).update(from: kv + (first + t) * D, count: D)
            }
        }

        // Long prefill chunks attend with the keys and values decompressed (fewer products there); the rest
        // (decode, short chunks) in latent space.
        let decompressed = pass.counts.map { decompresses(tokens: $0) }
        let latent = ws.latentOutput.reserve(T * heads * rank)
        let out = ws.attention.reserve(T * heads * l.valueDim)
        kvBFloats.withUnsafeBufferPointer { kvb in
            let w = kvb.baseAddress!
            if decompressed.contains(false) {
                // Absorbed queries [T, heads·D]: per head [W_UK_hᵀ·q_nope_h | q_rope_h].
                let absorbed = ws.latentQuery.reserve(T * heads * D)
                pool.parallelFor(heads) { h in
                    sgemmNN(m: T, n: rank, k: nope, alpha: 1, a: qs + h * qkDim, lda: qWidth, b: w + h * headRows * rank, ldb: rank,
                            c: absorbed + h * D, ldc: heads * D, accumulate: false, pool: nil)
                    for t in 0..<T {
                        (absorbed + t * heads * D + h * D + rank).update(from: qs + t * qWidth + h * qkDim + nope, count: ropeDim)
                    }
                }
                ScaledDotProduct(heads: heads, group: heads, qkDim: D, valueDim: rank, valuesInKeys: true, scale: Float(l.softmaxScale))
                    .attend(absorbed, pass, layer: layer, out: latent, ws: ws, pool: pool, causalChunks: { !decompressed[$0] })
                // Each head's weighted latent through W_UV_h (rows of decompressed chunks are overwritten below).
                pool.parallelFor(heads) { h in
                    sgemmNT(m: T, n: l.valueDim, k: rank, alpha: 1, a: latent + h * rank, lda: heads * rank,
                            b: w + (h * headRows + nope) * rank, ldb: rank, c: out + h * l.valueDim, ldc: heads * l.valueDim,
                            accumulate: false, pool: nil)
                }
            }
            for (c, cache) in pass.caches.enumerated() where decompressed[c] {
                let first = pass.firsts[c]
                attendDecompressed(qs + first * qWidth, tokens: pass.counts[c], start: cache.count, cache: cache, layer: layer,
                                   kvB: w, out: out + first * heads * l.valueDim, ws: ws, pool: pool)
            }
        }
        linear(out, ldx: heads * l.valueDim, tokens: T, o, into: residual, ldo: hidden, accumulate: true, pool: pool)
        if let oBias { addBias(residual, rows: T, stride: hidden, bias: oBias, count: hidden) }
    }

    /// Whether a chunk of `tokens` queries is cheaper to attend with every position's keys and values decompressed
    /// (per position: rank·heads·(nope + v) multiply-adds, once) than in latent space (per query and position:
    /// heads·(kvLora + rope + kvLora) against heads·(nope + rope + v)).
    func decompresses(tokens: Int) -> Bool {
        let l = layout
        let saved = tokens * (2 * l.kvLoraRank + l.ropeDim - (l.nopeDim + l.ropeDim + l.valueDim))
        return tokens > 1 && saved > l.kvLoraRank * (l.nopeDim + l.valueDim)
    }

    /// A prefill chunk of T queries (rows of `qs`, already rotated) at positions start..<start+T: every cached
    /// position's latent expanded by kv_b_proj into each head's non-rotary key and value, then per head
    /// softmax(scale·(q_nope·k_noped + q_rope·k_rope) + causal mask)·v as matrix products, queries in chunks of 128.
    private func attendDecompressed(_ qs: UnsafePointer<Float>, tokens T: Int, start: Int, cache: KVCache, layer: Int,
                                    kvB: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, ws: Workspace, pool: WorkerPool) {
        let l = layout, heads = heads
        let nope = l.nopeDim, ropeDim = l.ropeDim, rank = l.kvLoraRank, v = l.valueDim
        let qkDim = nope + ropeDim, qWidth = heads * qkDim, headRows = nope + v, expandedWidth = heads * headRows
        let D = l.cachedWidth, oWidth = heads * v
        let positions = start + T
        // [positions, heads·(nope + v)]: each position's keys and values for every head.
        let expanded = ws.value.reserve(positions * expandedWidth)
        cache.forEachRun(layer: layer, positions: positions) { p0, n, rows, _ in
            sgemmNT(m: n, n: expandedWidth, k: rank, alpha: 1, a: rows, lda: D, b: kvB, ldb: rank,
                    c: expanded + p0 * expandedWidth, ldc: expandedWidth, accumulate: false, pool: pool)
        }
        let chunk = min(T, 128)
        let scores = ws.scores.reserve(heads * chunk * positions)
        let scale = Float(l.softmaxScale)
        var first = 0
        while first < T {
            let rows = min(chunk, T - first)
            pool.parallelFor(heads) { h in
                let s = scores + h * chunk * positions
                let visible = start + first + rows
                let q = qs + first * qWidth + h * qkDim
                sgemmNT(m: rows, n: visible, k: nope, alpha: scale, a: q, lda: qWidth, b: expanded + h * headRows,
                        ldb: expandedWidth, c: s, ldc: positions, accumulate: false, pool: nil)
                cache.forEachRun(layer: layer, positions: visible) { p0, n, keys, _ in
                    sgemmNT(m: rows, n: n, k: ropeDim, alpha: scale, a: q + nope, lda: qWidth, b: keys + rank, ldb: D,
                            c: s + p0, ldc: positions, accumulate: true, pool: nil)
                }
                causalSoftmax(s, rows: rows, stride: positions, firstVisible: start + first + 1, visible: visible)
                sgemmNN(m: rows, n: v, k: visible, alpha: 1, a: s, lda: positions, b: expanded + h * headRows + nope,
                        ldb: expandedWidth, c: out + first * oWidth + h * v, ldc: oWidth, accumulate: false, pool: nil)
            }
            first += rows
        }
    }
}
