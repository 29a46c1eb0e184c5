import MoEKernels

/// The next tokens of one sequence in a mixed pass, and the KV cache holding that sequence's earlier positions:
/// one token for a sequence that is decoding, a run of prompt tokens for one that is prefilling.
public struct SequenceChunk {
    public var tokens: [Int]
    public var cache: KVCache
    /// Whether the pass returns the logits of this chunk's last token (a prompt chunk that is not the prompt's
    /// last needs none, and skipping it skips an LM-head row).
    public var wantsLogits: Bool
    /// Whether the pass returns the logits after every token of the chunk (drafts being verified), not only the
    /// last.
    public var logitsForAll: Bool
    /// The experts this sequence's tokens may spend (nil: the model's `expertBudget`).
    public var expertBudget: ExpertBudget?

    public init(tokens: [Int], cache: KVCache, wantsLogits: Bool = true, logitsForAll: Bool = false, expertBudget: ExpertBudget? = nil) {
        self.tokens = tokens
        self.cache = cache
        self.wantsLogits = wantsLogits
        self.logitsForAll = logitsForAll
        self.expertBudget = expertBudget
    }
}

extension Transformer {
    /// One pass over several independent sequences at once, for continuous batching with chunked prefill:
    /// chunk c's tokens run at positions `chunks[c].cache.count …` of its own sequence. Returns logits
    /// [rows, vocab] (valid until the next call), one row per chunk that wants them, in order: the logits
    /// after that chunk's last token (after each of its tokens for `logitsForAll`). Every cache advances by its
    /// chunk's length.
    ///
    /// ```swift
    /// let a = model.makeCache(), b = model.makeCache()
    /// try model.forward([1, 2, 3], cache: a)
    /// // a decodes its next token while b's prompt runs, in one pass over the weights:
    /// let logits = try model.forward([SequenceChunk(tokens: [4], cache: a), SequenceChunk(tokens: [7, 8, 9], cache: b)])
    /// ```
    ///
    /// Every weight is read once per pass for all rows: the embedding, norms, q/k/v/o projections, the MoE
    /// block (tokens grouped by expert across the sequences) and the LM head run over the rows together;
    /// only attention is per sequence. A chunk's logits equal `forward(chunk.tokens, cache:, logitsFor: .last)`
    /// run alone, up to float summation order.
    ///
    /// Throws, before touching any cache: `badInput` for no chunks, an empty chunk, a token outside the
    /// vocabulary, a cache shaped for another model or the same cache given twice; `contextOverflow` when a
    /// chunk does not fit its cache; `kvPagesExhausted` when the caches' pool has too few free pages for the
    /// new positions (a cache with a pool of its own never runs short).
    public func forward(_ chunks: [SequenceChunk]) throws -> UnsafeMutableBufferPointer<Float> {
        try validate(chunks)
        var rows: [Int] = []
        var end = 0
        for chunk in chunks {
            let start = end
            end += chunk.tokens.count
            if chunk.logitsForAll { rows += start..<end } else if chunk.wantsLogits { rows.append(end - 1) }
        }
        let h = run(chunks)
        return logits(h, rows: rows)
    }

    /// Throws, before any cache moves, for chunks a pass cannot run (see `forward(_ chunks:)`).
    func validate(_ chunks: [SequenceChunk], layers: Int? = nil) throws {
        guard !chunks.isEmpty else { throw ModelError.badInput("no sequences to run") }
        for (c, chunk) in chunks.enumerated() {
            guard !chunk.tokens.isEmpty else { throw ModelError.badInput("sequence \(c) has no tokens to run") }
            try requireInVocabulary(chunk.tokens)
            try requireFits(chunk.cache, layers: layers)
            guard chunk.cache.count + chunk.tokens.count <= chunk.cache.capacity else {
                throw ModelError.contextOverflow(tokens: chunk.cache.count + chunk.tokens.count, context: chunk.cache.capacity)
            }
            // Two chunks writing one cache would race and corrupt it. There are few chunks: a pairwise check
            // allocates nothing.
            for other in chunks[..<c] where other.cache === chunk.cache {
                throw ModelError.badInput("sequence \(c)'s KV cache is also an earlier sequence's (each needs its own)")
            }
        }
        // Pages for the new positions: all or none (caches of one pool compete for its free pages).
        var missing: [ObjectIdentifier: (needed: Int, free: Int)] = [:]
        for chunk in chunks {
            let pool = chunk.cache.pool
            let needed = chunk.cache.pagesMissing(upTo: chunk.cache.count + chunk.tokens.count)
            missing[ObjectIdentifier(pool), default: (0, pool.freePages)].needed += needed
        }
        if let short = missing.values.first(where: { $0.needed > $0.free }) {
            throw ModelError.kvPagesExhausted(needed: short.needed, free: short.free)
        }
        for chunk in chunks { _ = chunk.cache.reserve(upTo: chunk.cache.count + chunk.tokens.count) }
    }

    /// One decode step of many sequences: `tokens[b]` is the next token of the sequence in `caches[b]`.
    /// Returns logits [B, vocab], row b for sequence b; `forward(_ chunks:)` with one-token chunks.
    ///
    /// ```swift
    /// let logits = try model.decode([4, 8], caches: [a, b])   // [2, vocab]; each cache advances by one
    /// ```
    public func decode(_ tokens: [Int], caches: [KVCache]) throws -> UnsafeMutableBufferPointer<Float> {
        guard caches.count == tokens.count else {
            throw ModelError.badInput("\(tokens.count) tokens but \(caches.count) KV caches (one per sequence)")
        }
        return try forward(zip(tokens, caches).map { SequenceChunk(tokens: [$0], cache: $1) })
    }
}
