import MoEKernels

extension Transformer {
    /// Generates a completion for each prompt, all together: the prompts prefill in passes of up to
    /// `prefillTokens` tokens, then every sequence still going feeds its last token in one pass over the weights
    /// (`forward(_ chunks:)`), so a decode step reads each weight once for the whole batch, not once a sequence.
    /// Sequence i samples with `sampling[i]` (its own seed and generator) and ends on its own: at one of
    /// `stopTokens` (default: the model's end-of-sequence ids), after `maxTokens`, at the end of the context, or
    /// when `onToken(i, token)` returns false.
    ///
    /// Each completion is what `generate(prompt:maxTokens:sampling:)` gives for that prompt alone, up to float
    /// summation order (a token can differ only where two candidates' logits tie to a few ulps).
    ///
    /// ```swift
    /// let seeds = (0..<8).map { SamplingParameters(temperature: 0.7, seed: UInt64($0)) }
    /// let completions = try model.generate(prompts: Array(repeating: prompt, count: 8), maxTokens: 40, sampling: seeds)
    /// ```
    public func generate(prompts: [[Int]], maxTokens: Int, sampling: [SamplingParameters], stopTokens: Set<Int>? = nil,
                         prefillTokens: Int = 2048, onToken: (Int, Int) -> Bool = { _, _ in true }) throws -> [Generation] {
        guard sampling.count == prompts.count else {
            throw ModelError.badInput("\(prompts.count) prompts but \(sampling.count) sampling settings (one per prompt)")
        }
        if let empty = prompts.firstIndex(where: \.isEmpty) { throw ModelError.badInput("prompt \(empty) is empty") }
        var results = [Generation](repeating: Generation(), count: prompts.count)
        guard maxTokens > 0 else { return results }
        let caches = prompts.map { makeCache(capacity: min(contextLength, $0.count + maxTokens)) }
        for (prompt, cache) in zip(prompts, caches) where prompt.count >= cache.capacity {
            throw ModelError.contextOverflow(tokens: prompt.count + 1, context: cache.capacity)
        }
        let stops = stopTokens ?? eosTokenIds
        var samplers = sampling.map(Sampler.init)
        var histories = prompts
        let vocab = config.vocabSize
        /// The sequences to feed in the next pass, each with its last chosen token.
        var feed: [(sequence: Int, token: Int)] = []

        /// Samples sequence i's next token from `row`; it is fed next unless the sequence ends with it.
        func choose(_ i: Int, _ row: UnsafeMutablePointer<Float>) {
            let token = samplers[i].sample(row, count: vocab, history: histories[i], generated: results[i].tokens)
            results[i].tokens.append(token)
            histories[i].append(token)
            if stops.contains(token) || !onToken(i, token) { results[i].finishReason = .stop; return }
            if results[i].tokens.count >= maxTokens || caches[i].count >= caches[i].capacity { return }
            feed.append((i, token))
        }
        func run(_ chunks: [SequenceChunk], for sequences: [Int]) throws {
            let logits = try forward(chunks)
            for (row, i) in sequences.enumerated() { choose(i, logits.baseAddress! + row * vocab) }
        }

        var clock = ContinuousClock.now
        var start = 0
        while start < prompts.count {
            var end = start + 1, tokens = prompts[start].count
            while end < prompts.count && tokens + prompts[end].count <= prefillTokens { tokens += prompts[end].count; end += 1 }
            try run((start..<end).map { SequenceChunk(tokens: prompts[$0], cache: caches[$0]) }, for: Array(start..<end))
            start = end
        }
        let promptSeconds = seconds(since: clock)
        clock = .now
        while !feed.isEmpty {
            let step = feed
            feed.removeAll(keepingCapacity: true)
            try run(step.map { SequenceChunk(tokens: [$0.token], cache: caches[$0.sequence]) }, for: step.map(\.sequence))
        }
        let decodeSeconds = seconds(since: clock)
        for i in results.indices { results[i].promptSeconds = promptSeconds; results[i].decodeSeconds = decodeSeconds }
        return results
    }
}
