import MoEKernels

/// softmax(q·kᵀ·scale + causal mask)·v over a paged KV cache, for grouped-query attention and for latent
/// attention alike: what differs is only where a head finds its key and value columns in the cached rows.
///
/// Queries are rows of `heads · qkDim` floats, outputs rows of `heads · valueDim`. Query head h reads key
/// columns `(h / group) · qkDim ..< + qkDim` of the cached key rows and value columns `(h / group) · valueDim
/// ..< + valueDim` of the value rows — or, with `valuesInKeys`, of the key rows themselves (latent attention
/// caches one row per position, whose first `valueDim` floats are the latent it attends over).
struct ScaledDotProduct {
    let heads: Int
    /// Query heads that share one cached head.
    let group: Int
    let qkDim: Int
    let valueDim: Int
    let valuesInKeys: Bool
    let scale: Float
    /// Attention sinks: a logit per query head that joins each softmax's denominator (gpt-oss), or nil.
    var sinks: UnsafePointer<Float>? = nil

    @inline(__always) func sink(_ h: Int) -> Float { sinks.map { $0[h] } ?? -.infinity }

    /// Attends every sequence's query rows of a pass (keys and values of this pass already in the caches, whose
    /// `count` does not include them yet) into `out` [rows, heads·valueDim]. One-token sequences attend by dot
    /// products, all (sequence, head) pairs in one parallel section; longer runs (prefill chunks) attend
    /// causally as matrix products.
    /// `causalChunks`: which multi-row chunks to attend here (default all; latent attention takes long ones
    /// elsewhere).
    func attend(_ qs: UnsafePointer<Float>, _ layout: PassLayout, layer: Int, out: UnsafeMutablePointer<Float>,
                ws: Workspace, pool: WorkerPool, causalChunks: (Int) -> Bool = { _ in true }) {
        let qWidth = heads * qkDim, oWidth = heads * valueDim
        if !layout.singles.isEmpty {
            // Every (sequence, head) pair gets a score row of the longest sequence's length: one reservation, no
            // per-step offsets table, and the rows a shorter sequence leaves unused are never touched.
            let longest = layout.singles.reduce(0) { max($0, layout.caches[$1].count + 1) }
            let scores = ws.scores.reserve(layout.singles.count * heads * longest)
            // Query heads that share a cached head attend together (one pass over the cache for all of them), in
            // blocks: as many as keep the threads busy when there are fewer (sequence, cached head) pairs than
            // threads — latent attention has one cached head for all.
            let kvHeads = heads / group
            let blocks = max(1, min(group, pool.threads / max(1, layout.singles.count * kvHeads)))
            let perBlock = (group + blocks - 1) / blocks
            let tasksPerSequence = kvHeads * blocks
            layout.caches.withUnsafeBufferPointer { caches in
                layout.singles.withUnsafeBufferPointer { singles in
                    layout.firsts.withUnsafeBufferPointer { firsts in
                        pool.parallelFor(singles.count * tasksPerSequence) { task in
                            let i = task / tasksPerSequence, rest = task % tasksPerSequence
                            let kv = rest / blocks, block = rest % blocks
                            let h0 = kv * group + block * perBlock, h1 = min(h0 + perBlock, (kv + 1) * group)
                            guard h0 < h1 else { return }
                            let c = singles[i]
                            let cache = caches[c], row = firsts[c]
                            let q = qs + row * qWidth, o = out + row * oWidth
                            let s = scores + (i * heads + h0) * longest
                            if h1 - h0 == 1 {
                                attendOne(q, head: h0, cache: cache, layer: layer, positions: cache.count + 1, scores: s, out: o)
                            } else {
                                attendHeads(q, heads: h0..<h1, cache: cache, layer: layer, positions: cache.count + 1,
                                            scores: s, scoreStride: longest, out: o)
                            }
                        }
                    }
                }
            }
        }
        for (c, cache) in layout.caches.enumerated() where layout.counts[c] > 1 && causalChunks(c) {
            let first = layout.firsts[c]
            attendCausal(qs + first * qWidth, tokens: layout.counts[c], start: cache.count, cache: cache, layer: layer,
                         out: out + first * oWidth, ws: ws, pool: pool)
        }
    }

    /// Sliding-window attention: a query at position p sees positions p − window + 1 … p, whose keys and values are
    /// those of this pass (`keys`, `values` [rows, kvWidth]) and, before them, what each sequence's ring (layer
    /// `ring` of its `RecurrentState`; position q in slot q % window) still holds. The pass's keys and values go
    /// into the rings: a decoded token's before it attends, a prefill chunk's last `window` after.
    func attendWindow(_ qs: UnsafePointer<Float>, keys ks: UnsafePointer<Float>, values vs: UnsafePointer<Float>,
                      _ layout: PassLayout, ring: Int, window W: Int, out: UnsafeMutablePointer<Float>,
                      ws: Workspace, pool: WorkerPool) {
        let qWidth = heads * qkDim, oWidth = heads * valueDim, kvWidth = heads / group * qkDim
        func store(_ c: Int, from t0: Int) {
            let cache = layout.caches[c]
            guard let state = cache.recurrent else { preconditionFailure("a cache without a ring reached a sliding-window layer") }
            let (keys, values) = state.ring(layer: ring)
            for t in t0..<layout.counts[c] {
                let slot = (cache.count + t) % W, row = layout.firsts[c] + t
                (keys + slot * kvWidth).update(from: ks + row * kvWidth, count: kvWidth)
                (values + slot * kvWidth).update(from: vs + row * kvWidth, count: kvWidth)
            }
        }
        if !layout.singles.isEmpty {
            for c in layout.singles { store(c, from: 0) }
            let scores = ws.scores.reserve(layout.singles.count * heads * W)
            layout.caches.withUnsafeBufferPointer { caches in
                layout.singles.withUnsafeBufferPointer { singles in
                    layout.firsts.withUnsafeBufferPointer { firsts in
                        pool.parallelFor(singles.count * heads) { task in
                            let c = singles[task / heads], h = task % heads, kv = h / group
                            let cache = caches[c]
                            let (keys, values) = cache.recurrent!.ring(layer: ring)
                            let n = min(cache.count + 1, W)   // filled slots (order does not matter to a softmax)
                            let q = qs + firsts[c] * qWidth + h * qkDim, o = out + firsts[c] * oWidth + h * valueDim
                            let s = scores + task * W
                            for j in 0..<n { s[j] = dot(q, keys + j * kvWidth + kv * qkDim, count: qkDim) * scale }
                            softmax(s, count: n, sink: sink(h))
                            o.update(repeating: 0, count: valueDim)
                            for j in 0..<n { axpy(s[j], values + j * kvWidth + kv * valueDim, o, count: valueDim) }
                        }
                    }
                }
            }
        }
        for (c, cache) in layout.caches.enumerated() where layout.counts[c] > 1 {
            // The positions this chunk's queries can see, in order: the ring's last window − 1, then the chunk's.
            let T = layout.counts[c], first = layout.firsts[c], start = cache.count
            let prior = min(start, W - 1), n = prior + T
            let keys = ws.windowKeys.reserve(n * kvWidth), values = ws.windowValues.reserve(n * kvWidth)
            if prior > 0 {
                let held = cache.recurrent!.ring(layer: ring)
                for j in 0..<prior {
                    let slot = (start - prior + j) % W
                    (keys + j * kvWidth).update(from: held.keys + slot * kvWidth, count: kvWidth)
                    (values + j * kvWidth).update(from: held.values + slot * kvWidth, count: kvWidth)
                }
            }
            (keys + prior * kvWidth).update(from: ks + first * kvWidth, count: T * kvWidth)
            (values + prior * kvWidth).update(from: vs + first * kvWidth, count: T * kvWidth)
            // Queries in blocks; a block's queries see at most block + window − 1 positions.
            let block = min(T, 128), span = block + W - 1
            let scores = ws.scores.reserve(heads * block * span)
            for t0 in stride(from: 0, to: T, by: block) {
                let rows = min(block, T - t0)
                let j0 = max(0, t0 + prior - W + 1), j1 = t0 + rows + prior
                pool.parallelFor(heads) { h in
                    let kv = h / group, s = scores + h * block * span
                    sgemmNT(m: rows, n: j1 - j0, k: qkDim, alpha: scale, a: qs + (first + t0) * qWidth + h * qkDim, lda: qWidth,
                            b: keys + j0 * kvWidth + kv * qkDim, ldb: kvWidth, c: s, ldc: span, accumulate: false, pool: nil)
                    for r in 0..<rows {
                        // Query t0 + r sees positions (in `keys`) t0 + r + prior − W + 1 … t0 + r + prior.
                        let row = s + r * span
                        let lo = max(j0, t0 + r + prior - W + 1) - j0, hi = t0 + r + prior + 1 - j0
                        for j in 0..<lo { row[j] = 0 }
                        softmax(row + lo, count: hi - lo, sink: sink(h))
                        for j in hi..<(j1 - j0) { row[j] = 0 }
                    }
                    sgemmNN(m: rows, n: valueDim, k: j1 - j0, alpha: 1, a: s, lda: span, b: values + j0 * kvWidth + kv * valueDim,
                            ldb: kvWidth, c: out + (first + t0) * oWidth + h * valueDim, ldc: oWidth, accumulate: false, pool: nil)
                }
            }
            store(c, from: max(0, T - W))
        }
    }

    /// Key and value columns of head h in the cached rows, and the rows' strides.
    @inline(__always)
    private func columns(_ h: Int, cache: KVCache) -> (key: Int, value: Int, keyStride: Int, valueStride: Int) {
        let kv = h / group
        return (kv * qkDim, kv * valueDim, cache.rowWidth, valuesInKeys ? cache.rowWidth : cache.valueWidth)
    }

    /// Prefill: per head, scores as matrix products (one per cache page), queries in chunks to bound the score
    /// buffer.
    private func attendCausal(_ qs: UnsafePointer<Float>, tokens T: Int, start: Int, cache: KVCache, layer: Int,
                              out: UnsafeMutablePointer<Float>, ws: Workspace, pool: WorkerPool) {
        let qWidth = heads * qkDim, oWidth = heads * valueDim
        let positions = start + T
        let chunk = min(T, 128)
        let scores = ws.scores.reserve(heads * chunk * positions)
        var first = 0
        while first < T {
            let rows = min(chunk, T - first)
            pool.parallelFor(heads) { h in
                let s = scores + h * chunk * positions
                let (kc, vc, ks, vs) = columns(h, cache: cache)
                let visible = start + first + rows   // the last query of the chunk sees this many positions
                let q = qs + first * qWidth + h * qkDim
                cache.forEachRun(layer: layer, positions: visible) { p0, n, keys, _ in
                    sgemmNT(m: rows, n: n, k: qkDim, alpha: scale, a: q, lda: qWidth, b: keys + kc, ldb: ks,
                            c: s + p0, ldc: positions, accumulate: false, pool: nil)
                }
                causalSoftmax(s, rows: rows, stride: positions, firstVisible: start + first + 1, visible: visible, sink: sink(h))
                let o = out + first * oWidth + h * valueDim
                cache.forEachRun(layer: layer, positions: visible) { p0, n, keys, values in
                    sgemmNN(m: rows, n: valueDim, k: n, alpha: 1, a: s + p0, lda: positions,
                            b: (valuesInKeys ? keys : values) + vc, ldb: vs, c: o, ldc: oWidth, accumulate: p0 > 0, pool: nil)
                }
            }
            first += rows
        }
    }

    /// Decode, query heads `hs` of one query, all reading the same cached head: scores and weighted sums as
    /// matrix products over the cache pages, so each cached row is read once for all of them. `scores` holds
    /// `hs.count` rows `scoreStride` apart.
    private func attendHeads(_ qs: UnsafePointer<Float>, heads hs: Range<Int>, cache: KVCache, layer: Int, positions: Int,
                             scores s: UnsafeMutablePointer<Float>, scoreStride: Int, out: UnsafeMutablePointer<Float>) {
        let (kc, vc, ks, vs) = columns(hs.lowerBound, cache: cache)
        let m = hs.count
        let q = qs + hs.lowerBound * qkDim, o = out + hs.lowerBound * valueDim
        cache.forEachRun(layer: layer, positions: positions) { first, n, keys, _ in
            sgemmNT(m: m, n: n, k: qkDim, alpha: scale, a: q, lda: qkDim, b: keys + kc, ldb: ks,
                    c: s + first, ldc: scoreStride, accumulate: false, pool: nil)
        }
        for r in 0..<m { softmax(s + r * scoreStride, count: positions, sink: sink(hs.lowerBound + r)) }
        cache.forEachRun(layer: layer, positions: positions) { first, n, keys, values in
            sgemmNN(m: m, n: valueDim, k: n, alpha: 1, a: s + first, lda: scoreStride,
                    b: (valuesInKeys ? keys : values) + vc, ldb: vs, c: o, ldc: valueDim, accumulate: first > 0, pool: nil)
        }
    }

    /// Decode, one head of one query: scores by dot products with the `positions` cached keys, softmax, then
    /// the weighted sum of the cached values — no packing, each cached row read once, page by page. `scores`
    /// holds `positions` floats for this head alone, so heads (and sequences) run as independent tasks.
    @inline(__always)
    private func attendOne(_ qs: UnsafePointer<Float>, head h: Int, cache: KVCache, layer: Int, positions: Int,
                           scores s: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
        let (kc, vc, ks, vs) = columns(h, cache: cache)
        let q = qs + h * qkDim, o = out + h * valueDim
        cache.forEachRun(layer: layer, positions: positions) { first, n, keys, _ in
            for j in 0..<n { s[first + j] = dot(q, keys + j * ks + kc, count: qkDim) * scale }
        }
        softmax(s, count: positions, sink: sink(h))
        o.update(repeating: 0, count: valueDim)
        cache.forEachRun(layer: layer, positions: positions) { first, n, keys, values in
            let v = (valuesInKeys ? keys : values) + vc
            for j in 0..<n { axpy(s[first + j], v + j * vs, o, count: valueDim) }
        }
    }
}

/// Softmax of `rows` score rows (`stride` apart) under the causal mask: row r sees `firstVisible + r` positions; the
/// rest of the `visible` columns become 0 (so one product over all of them adds nothing from the masked ones).
func causalSoftmax(_ s: UnsafeMutablePointer<Float>, rows: Int, stride: Int, firstVisible: Int, visible: Int,
                   sink: Float = -.infinity) {
    for r in 0..<rows {
        let row = s + r * stride
        let valid = firstVisible + r
        softmax(row, count: valid, sink: sink)
        for j in valid..<visible { row[j] = 0 }
    }
}
