import MoEKernels

extension Transformer {
    /// One decode step of many independent sequences at once, for continuous batching: `tokens[b]` is the next
    /// token of the sequence whose keys and values are in `caches[b]`, and runs at position `caches[b].count`.
    /// Returns logits [B, vocab] (row b for sequence b, valid until the next call) and advances every cache by one.
    ///
    /// ```swift
    /// let a = model.makeCache(), b = model.makeCache()
    /// try model.forward([1, 2, 3], cache: a)          // prefill each sequence on its own
    /// try model.forward([7], cache: b)
    /// let logits = try model.decode([4, 8], caches: [a, b])   // [2, vocab]; a.count == 4, b.count == 2
    /// ```
    ///
    /// Every weight is read once per step for all B rows: the embedding, norms, q/k/v/o projections, the MoE
    /// block (tokens grouped by expert across the sequences) and the LM head run over the B rows together;
    /// only attention is per sequence (one task per sequence and head). Row b's logits equal
    /// `forward([tokens[b]], cache: caches[b], logitsFor: .last)` up to float summation order.
    ///
    /// Throws, before touching any cache: `badInput` for no tokens, a count of caches unlike the count of
    /// tokens, a token outside the vocabulary, a cache shaped for another model or the same cache given twice;
    /// `contextOverflow` when a cache is full.
    public func decode(_ tokens: [Int], caches: [KVCache]) throws -> UnsafeMutableBufferPointer<Float> {
        let B = tokens.count
        guard B > 0 else { throw ModelError.badInput("no tokens to decode") }
        guard caches.count == B else {
            throw ModelError.badInput("\(B) tokens but \(caches.count) KV caches (one per sequence)")
        }
        try requireInVocabulary(tokens)
        for (b, cache) in caches.enumerated() {
            try requireFits(cache)
            guard cache.count < cache.capacity else {
                throw ModelError.contextOverflow(tokens: cache.count + 1, context: cache.capacity)
            }
            // Two rows writing the same position of one cache would race and corrupt it. B is small: a
            // pairwise check allocates nothing.
            for other in caches[..<b] where other === cache {
                throw ModelError.badInput("sequence \(b)'s KV cache is also an earlier sequence's (each needs its own)")
            }
        }

        let h = embed(tokens)
        // RoPE table row b at sequence b's own position.
        let half = rope.rotaryDim / 2
        let cosTable = ws.ropeCos.reserve(B * half), sinTable = ws.ropeSin.reserve(B * half)
        for b in 0..<B { rope.table(position: caches[b].count, cos: cosTable + b * half, sin: sinTable + b * half) }
        runLayers(h, tokens: B) { i, attention, normed in
            attention.forward(normed, caches: caches, layer: i, rope: rope, residual: h, hidden: config.hiddenSize,
                              ws: ws, pool: pool)
        }
        for cache in caches { cache.count += 1 }
        return logits(h, firstRow: 0, count: B)
    }
}
