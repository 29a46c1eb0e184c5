import Foundation
import Testing
@testable import MoEModel

/// Largest |a − b| over the row, relative to the row's scale (logits of the larger fixtures reach ~10).
private func relativeDifference(_ a: UnsafeBufferPointer<Float>, _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var diff: Float = 0, scale: Float = 1
    for i in 0..<b.count { diff = max(diff, abs(a[i] - b[i])); scale = max(scale, abs(b[i])) }
    return diff / scale
}

/// Token ids from a fixed linear congruential walk, so every run decodes the same sequences.
private func tokens(_ count: Int, seed: Int, vocab: Int) -> [Int] {
    var s = UInt64(seed) &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    return (0..<count).map { _ in
        s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Int((s >> 33) % UInt64(vocab))
    }
}

@Suite struct BatchedDecodeTests {
    /// `generate(prompts:)` gives each prompt what `generate(prompt:)` gives it alone: greedy and seeded sampling,
    /// prompts of 1–11 tokens prefilled in passes of at most 8, sequences ending at different steps (a stop token,
    /// `onToken`, `maxTokens`).
    @Test(arguments: Fixtures.cases)
    func batchedGenerationEqualsGeneratingEachPromptAlone(_ name: String) throws {
        let model = try Transformer(directory: Fixtures.directory(name), threads: 2)
        let vocab = model.config.vocabSize
        let prompts = [tokens(1, seed: 1, vocab: vocab), tokens(6, seed: 2, vocab: vocab), tokens(11, seed: 3, vocab: vocab),
                       tokens(4, seed: 4, vocab: vocab)]
        let sampling = [SamplingParameters(temperature: 0), SamplingParameters(temperature: 1, seed: 7),
                        SamplingParameters(temperature: 0.7, topK: 5, seed: 8), SamplingParameters(temperature: 1.2, topP: 0.9, seed: 9)]
        // The first sequence's fourth greedy token stops it.
        let stop: Set<Int> = [try model.generate(prompt: prompts[0], maxTokens: 4, sampling: sampling[0], stopTokens: []).tokens[3]]
        let alone = try zip(prompts, sampling).map { try model.generate(prompt: $0, maxTokens: 12, sampling: $1, stopTokens: stop) }
        let together = try model.generate(prompts: prompts, maxTokens: 12, sampling: sampling, stopTokens: stop, prefillTokens: 8)
        for i in prompts.indices {
            #expect(together[i].tokens == alone[i].tokens, "\(name), sequence \(i)")
            #expect(together[i].finishReason == alone[i].finishReason, "\(name), sequence \(i)")
        }
        #expect(together[0].tokens.count <= 4 && together[0].finishReason == .stop)

        var seen = [Int](repeating: 0, count: prompts.count)
        let cut = try model.generate(prompts: prompts, maxTokens: 12, sampling: sampling, stopTokens: []) { i, _ in
            seen[i] += 1
            return !(i == 2 && seen[i] == 3)
        }
        #expect(cut[2].tokens.count == 3 && cut[2].finishReason == .stop)
        #expect(cut[1].tokens.count == 12 && cut[1].finishReason == .length)
        #expect(throws: ModelError.self) { try model.generate(prompts: prompts, maxTokens: 4, sampling: [sampling[0]]) }
        #expect(throws: ModelError.self) { try model.generate(prompts: [[]], maxTokens: 4, sampling: [sampling[0]]) }
    }

    /// Sequences with prompts of 1, 5 and 9 tokens decode together, a fourth joins after two steps and the
    /// shortest leaves after five; at every step each row's logits must equal that sequence decoded alone.
    @Test(arguments: Fixtures.cases, [1, 2])
    func batchedDecodeEqualsDecodingEachSequenceAlone(_ name: String, threads: Int) throws {
        let model = try Transformer(directory: Fixtures.directory(name), threads: threads)
        let vocab = model.config.vocabSize
        let steps = 8
        struct Sequence { var prompt: [Int]; var next: [Int]; var joins: Int; var leaves: Int }
        let sequences = [
            Sequence(prompt: tokens(1, seed: 1, vocab: vocab), next: tokens(steps, seed: 11, vocab: vocab), joins: 0, leaves: 5),
            Sequence(prompt: tokens(5, seed: 2, vocab: vocab), next: tokens(steps, seed: 12, vocab: vocab), joins: 0, leaves: steps),
            Sequence(prompt: tokens(9, seed: 3, vocab: vocab), next: tokens(steps, seed: 13, vocab: vocab), joins: 0, leaves: steps),
            Sequence(prompt: tokens(3, seed: 4, vocab: vocab), next: tokens(steps, seed: 14, vocab: vocab), joins: 2, leaves: steps),
        ]
        // Reference: each sequence alone, prefill then one `forward` per token.
        let expected: [[[Float]]] = try sequences.map { s in
            let cache = model.makeCache(capacity: 32)
            try model.forward(s.prompt, cache: cache, logitsFor: .none)
            return try s.next[s.joins..<s.leaves].map { Array(try model.forward([$0], cache: cache, logitsFor: .last)) }
        }

        let caches = sequences.map { _ in model.makeCache(capacity: 32) }
        for step in 0..<steps {
            for (i, s) in sequences.enumerated() where s.joins == step {
                try model.forward(s.prompt, cache: caches[i], logitsFor: .none)
            }
            let active = sequences.indices.filter { sequences[$0].joins <= step && step < sequences[$0].leaves }
            let logits = try model.decode(active.map { sequences[$0].next[step] }, caches: active.map { caches[$0] })
            #expect(logits.count == active.count * vocab)
            for (row, i) in active.enumerated() {
                let got = UnsafeBufferPointer(rebasing: logits[(row * vocab)..<((row + 1) * vocab)])
                let diff = relativeDifference(got, expected[i][step - sequences[i].joins])
                #expect(diff <= 1e-4, "\(name), \(threads) threads, step \(step), sequence \(i): relative |Δlogit| = \(diff)")
            }
        }
        for (i, s) in sequences.enumerated() {
            #expect(caches[i].count == s.prompt.count + s.leaves - s.joins)
        }
    }

    /// More sequences than the small-token GEMV takes at once (the LM head and projections then run as a GEMM,
    /// and experts see groups of many rows).
    @Test(arguments: ["qwen3_moe", "qwen2_moe", "llama", "deepseek_v3"])
    func manySequencesAtOnce(_ name: String) throws {
        let model = try Transformer(directory: Fixtures.directory(name), threads: 2)
        let vocab = model.config.vocabSize
        let B = 20
        let prompts = (0..<B).map { tokens(1 + $0 % 6, seed: 100 + $0, vocab: vocab) }
        let next = tokens(B, seed: 7, vocab: vocab)
        var expected: [[Float]] = []
        let caches = try prompts.map { p in
            let reference = model.makeCache(capacity: 16)
            try model.forward(p, cache: reference, logitsFor: .none)
            expected.append(Array(try model.forward([next[expected.count]], cache: reference, logitsFor: .last)))
            let cache = model.makeCache(capacity: 16)
            try model.forward(p, cache: cache, logitsFor: .none)
            return cache
        }
        let logits = try model.decode(next, caches: caches)
        for b in 0..<B {
            let diff = relativeDifference(UnsafeBufferPointer(rebasing: logits[(b * vocab)..<((b + 1) * vocab)]), expected[b])
            #expect(diff <= 1e-4, "\(name) sequence \(b): relative |Δlogit| = \(diff)")
        }
    }

    /// Chunked prefill mixed with decoding: one pass runs a decoding sequence's next token, a whole prompt, the
    /// second chunk of a prompt whose first chunk ran in an earlier pass, and a prompt chunk that wants no logits;
    /// each chunk's logits (and the caches it leaves) must equal that chunk run alone.
    @Test(arguments: ["qwen3_moe", "olmoe", "llama", "deepseek_v2_group", "glm4_moe"], [1, 2])
    func mixedPassEqualsEachChunkAlone(_ name: String, threads: Int) throws {
        let model = try Transformer(directory: Fixtures.directory(name), threads: threads)
        let vocab = model.config.vocabSize
        let histories = [tokens(7, seed: 31, vocab: vocab), [], tokens(5, seed: 32, vocab: vocab), tokens(2, seed: 33, vocab: vocab)]
        let chunks = [tokens(1, seed: 41, vocab: vocab), tokens(19, seed: 42, vocab: vocab), tokens(6, seed: 43, vocab: vocab),
                      tokens(4, seed: 44, vocab: vocab)]
        let wants = [true, true, true, false]
        var expected: [[Float]] = [], next: [[Float]] = []
        for (history, chunk) in zip(histories, chunks) {
            let cache = model.makeCache(capacity: 40)
            if !history.isEmpty { try model.forward(history, cache: cache, logitsFor: .none) }
            expected.append(Array(try model.forward(chunk, cache: cache, logitsFor: .last)))
            next.append(Array(try model.forward([3], cache: cache, logitsFor: .last)))
        }
        let caches = try histories.map { history in
            let cache = model.makeCache(capacity: 40)
            if !history.isEmpty { try model.forward(history, cache: cache, logitsFor: .none) }
            return cache
        }
        let logits = try model.forward((0..<4).map { SequenceChunk(tokens: chunks[$0], cache: caches[$0], wantsLogits: wants[$0]) })
        #expect(logits.count == 3 * vocab)
        for c in 0..<3 {
            let diff = relativeDifference(UnsafeBufferPointer(rebasing: logits[(c * vocab)..<((c + 1) * vocab)]), expected[c])
            #expect(diff <= 1e-4, "\(name), \(threads) threads, chunk \(c): relative |Δlogit| = \(diff)")
        }
        // The caches hold what each would hold alone: the next token decodes the same.
        for c in 0..<4 {
            #expect(caches[c].count == histories[c].count + chunks[c].count)
            let step = try model.decode([3], caches: [caches[c]])
            let diff = relativeDifference(UnsafeBufferPointer(step), next[c])
            #expect(diff <= 1e-4, "\(name), \(threads) threads, after chunk \(c): relative |Δlogit| = \(diff)")
        }
        #expect(throws: ModelError.self) { try model.forward([SequenceChunk(tokens: [], cache: model.makeCache())]) }
        #expect(throws: ModelError.self) { try model.forward([]) }
        let small = model.makeCache(capacity: 3)
        #expect(throws: ModelError.contextOverflow(tokens: 4, context: 3)) {
            try model.forward([SequenceChunk(tokens: [1], cache: caches[0]), SequenceChunk(tokens: [1, 2, 3, 4], cache: small)])
        }
        #expect(small.count == 0 && caches[0].count == 9)
    }

    @Test func badBatchesAreRefusedBeforeAnyCacheMoves() throws {
        let model = try Transformer(directory: Fixtures.directory("qwen3_moe"), threads: 2)
        let a = model.makeCache(capacity: 4), b = model.makeCache(capacity: 4)
        try model.forward([1, 2], cache: a)
        try model.forward([1, 2, 3, 4], cache: b)   // full
        #expect(throws: ModelError.self) { try model.decode([], caches: []) }
        #expect(throws: ModelError.self) { try model.decode([1, 2], caches: [a]) }
        #expect(throws: ModelError.self) { try model.decode([1], caches: [a, b]) }
        #expect(throws: ModelError.contextOverflow(tokens: 5, context: 4)) { try model.decode([1, 2], caches: [a, b]) }
        #expect(throws: ModelError.self) { try model.decode([1, model.config.vocabSize], caches: [a, model.makeCache()]) }
        #expect(throws: ModelError.self) { try model.decode([1, -1], caches: [a, model.makeCache()]) }
        #expect(throws: ModelError.self) { try model.decode([1, 2], caches: [a, a]) }
        let other = try Transformer(directory: Fixtures.directory("llama"), threads: 1)
        #expect(throws: ModelError.self) { try model.decode([1], caches: [other.makeCache()]) }
        #expect(a.count == 2 && b.count == 4)
        // A good batch still runs after the refusals.
        _ = try model.decode([3], caches: [a])
        #expect(a.count == 3)
    }

    /// A cache given a copied prefix continues exactly as one that computed the prefix itself.
    @Test(arguments: ["qwen3_moe", "olmoe", "qwen2", "deepseek_v2_lite"])
    func copiedPrefixContinuesLikeARecomputedOne(_ name: String) throws {
        let model = try Transformer(directory: Fixtures.directory(name), threads: 2)
        let vocab = model.config.vocabSize
        let shared = tokens(6, seed: 21, vocab: vocab), rest = tokens(3, seed: 22, vocab: vocab)
        let source = model.makeCache(capacity: 32)
        try model.forward(shared + tokens(4, seed: 23, vocab: vocab), cache: source, logitsFor: .none)   // more than the prefix

        let recomputed = model.makeCache(capacity: 32)
        let expected = Array(try model.forward(shared + rest, cache: recomputed, logitsFor: .last))
        let expectedStep = Array(try model.forward([5], cache: recomputed, logitsFor: .last))

        let copy = model.makeCache(capacity: 16)   // capacities may differ
        try model.forward([9, 9, 9], cache: copy, logitsFor: .none)   // stale contents that must not survive
        try copy.copyPrefix(from: source, count: shared.count)
        #expect(copy.count == shared.count)
        let got = try model.forward(rest, cache: copy, logitsFor: .last)
        #expect(relativeDifference(UnsafeBufferPointer(got), expected) <= 1e-5)
        let step = try model.decode([5], caches: [copy])
        #expect(relativeDifference(UnsafeBufferPointer(step), expectedStep) <= 1e-4)
    }

    @Test func copyPrefixRefusesMismatches() throws {
        let model = try Transformer(directory: Fixtures.directory("qwen3_moe"), threads: 1)
        let other = try Transformer(directory: Fixtures.directory("llama"), threads: 1)
        let source = model.makeCache(capacity: 8)
        try model.forward([1, 2, 3, 4, 5], cache: source)
        let small = model.makeCache(capacity: 2)
        #expect(throws: ModelError.self) { try other.makeCache().copyPrefix(from: source, count: 2) }
        #expect(throws: ModelError.self) { try model.makeCache().copyPrefix(from: source, count: 6) }
        #expect(throws: ModelError.self) { try model.makeCache().copyPrefix(from: source, count: -1) }
        #expect(throws: ModelError.contextOverflow(tokens: 3, context: 2)) { try small.copyPrefix(from: source, count: 3) }
        try source.copyPrefix(from: source, count: 3)   // onto itself: keeps the prefix
        #expect(source.count == 3)
    }

    /// Caches in pages of a shared pool (4 positions a page, so prompts and decode steps cross page boundaries,
    /// in the middle of prefill chunks too) give the logits of caches laid out contiguously.
    @Test(arguments: ["qwen3_moe", "olmoe", "llama", "deepseek_v3", "deepseek_v2_lite"])
    func pagedCachesEqualContiguousOnes(_ name: String) throws {
        let model = try Transformer(directory: Fixtures.directory(name), threads: 2)
        let vocab = model.config.vocabSize
        let pool = try model.makePagePool(pages: 24, pageSize: 4)
        let prompts = [tokens(11, seed: 51, vocab: vocab), tokens(4, seed: 52, vocab: vocab), tokens(1, seed: 53, vocab: vocab)]
        let steps = tokens(6, seed: 54, vocab: vocab)
        let paged = try prompts.map { _ in try KVCache(pool: pool, capacity: 32) }
        let contiguous = prompts.map { _ in model.makeCache(capacity: 32) }
        for (c, prompt) in prompts.enumerated() {
            let expected = Array(try model.forward(prompt, cache: contiguous[c], logitsFor: .all))
            let got = try model.forward(prompt, cache: paged[c], logitsFor: .all)
            #expect(relativeDifference(UnsafeBufferPointer(got), expected) <= 1e-5, "\(name) prompt \(c)")
        }
        for token in steps {
            let expected = Array(try model.decode(Array(repeating: token, count: 3), caches: contiguous))
            let got = try model.decode(Array(repeating: token, count: 3), caches: paged)
            #expect(relativeDifference(UnsafeBufferPointer(got), expected) <= 1e-4, "\(name) decode")
        }
        // (Free pages first: the caches live until their last use below, then give their pages back.)
        #expect(pool.freePages == 24 - 10)
        #expect(paged.map(\.pagesHeld) == [5, 3, 2])   // 17, 10 and 7 positions
    }

    /// A prefix copied within one pool shares its pages: nothing is copied until one of the two caches writes
    /// into a shared page, which it then copies (copy on write) — and each continues as if alone. Pages go back
    /// when caches are truncated or freed; a pool that runs out refuses the pass before any cache moves.
    @Test(arguments: ["qwen3_moe", "deepseek_v3"])
    func sharedPagesAreCopiedOnWriteAndReturned(_ name: String) throws {
        let model = try Transformer(directory: Fixtures.directory(name), threads: 2)
        let vocab = model.config.vocabSize
        let pool = try model.makePagePool(pages: 8, pageSize: 4)
        let prompt = tokens(10, seed: 61, vocab: vocab)
        var a: KVCache? = try KVCache(pool: pool, capacity: 32)
        try model.forward(prompt, cache: a!, logitsFor: .none)
        #expect(pool.freePages == 5)
        let b = try KVCache(pool: pool, capacity: 40)
        try b.copyPrefix(from: a!, count: 10)
        #expect(pool.freePages == 5 && b.pagesHeld == 3, "shared, not copied")

        let alone = model.makeCache(capacity: 32)
        try model.forward(prompt, cache: alone, logitsFor: .none)
        let expectedA = Array(try model.forward([7], cache: alone, logitsFor: .last))
        alone.truncate(to: 10)
        let expectedB = Array(try model.forward([8, 9], cache: alone, logitsFor: .last))

        let gotB = try model.forward([8, 9], cache: b, logitsFor: .last)   // writes into the shared third page: copies it
        #expect(relativeDifference(UnsafeBufferPointer(gotB), expectedB) <= 1e-5)
        #expect(pool.freePages == 4)
        let gotA = try model.forward([7], cache: a!, logitsFor: .last)    // its own third page again (b let go of it)
        #expect(relativeDifference(UnsafeBufferPointer(gotA), expectedA) <= 1e-5)
        #expect(pool.freePages == 4)

        b.truncate(to: 3)
        #expect(b.pagesHeld == 1 && pool.freePages == 5)   // b's copy went back; its other pages are still a's
        a = nil
        #expect(pool.freePages == 7)
        // 3 + 30 positions need 9 pages, 8 more than b holds; 7 are free: refused, nothing moved.
        #expect(throws: ModelError.kvPagesExhausted(needed: 8, free: 7)) {
            try model.forward(tokens(30, seed: 62, vocab: vocab), cache: b)
        }
        #expect(b.count == 3 && pool.freePages == 7)
        b.reset()
        #expect(pool.freePages == 8)
    }
}
