import Foundation
import MoEFormats

/// Why generation stopped, named as the OpenAI API names it.
public enum FinishReason: String, Sendable, Codable {
    /// An end-of-sequence token was produced.
    case stop
    /// `maxTokens` were produced, or the context is full.
    case length
}

/// The outcome of one `generate` call.
public struct Generation: Sendable {
    public var tokens: [Int] = []
    public var finishReason: FinishReason = .length
    public var promptSeconds: Double = 0
    public var decodeSeconds: Double = 0
    /// Speculative decoding: draft tokens proposed, and how many of them were kept.
    public var draftTokens = 0
    public var acceptedDraftTokens = 0
}

extension Transformer {
    /// End-of-sequence ids: generation_config.json's, else config.json's.
    public var eosTokenIds: Set<Int> {
        Set(generation.eosTokenIds.isEmpty ? config.eosTokenIds : generation.eosTokenIds)
    }

    /// Sampling settings from generation_config.json, as HF `generate` would use them by default
    /// (greedy unless `do_sample` is true).
    public var defaultSampling: SamplingParameters {
        var p = SamplingParameters.greedy
        if generation.doSample == true {
            p.temperature = Float(generation.temperature ?? 1)
            p.topK = generation.topK ?? 50   // HF's GenerationConfig default
            p.topP = Float(generation.topP ?? 1)
            p.minP = Float(generation.minP ?? 0)
        }
        p.repetitionPenalty = Float(generation.repetitionPenalty ?? 1)
        return p
    }

    /// Prefills `prompt` in one pass, then decodes one token at a time until an end-of-sequence id,
    /// `maxTokens` tokens, or the end of the context. `onToken` sees each token as it is chosen and may
    /// return false to stop early.
    ///
    /// With a `drafter`, each step feeds the last token and the drafter's guesses in one pass and keeps the guesses
    /// the model agrees with (`Sampler.verify`), plus the model's own next token: the same tokens as without it
    /// for greedy decoding, the same distribution for sampling. A `constraint` masks each row before sampling
    /// (drafts it does not allow are rejected) and ends generation where it allows nothing more.
    public func generate(prompt: [Int], maxTokens: Int, sampling: SamplingParameters, stopTokens: Set<Int>? = nil,
                         cache: KVCache? = nil, drafter: Drafter? = nil, constraint: (any LogitsConstraint)? = nil,
                         onToken: (Int) -> Bool = { _ in true }) throws -> Generation {
        guard !prompt.isEmpty else { throw ModelError.badInput("the prompt is empty") }
        // Room for the prompt and what may be generated; a cache of the whole context is mostly untouched
        // (and so never committed) memory anyway, but there is no need to ask for it.
        let cache = cache ?? makeCache(capacity: min(contextLength, prompt.count + max(maxTokens, 1)))
        cache.reset()
        guard prompt.count < min(cache.capacity, contextLength) else {
            throw ModelError.contextOverflow(tokens: prompt.count + 1, context: min(cache.capacity, contextLength))
        }
        let stops = stopTokens ?? eosTokenIds
        var sampler = Sampler(sampling)
        var result = Generation()
        var history = prompt
        let vocab = config.vocabSize

        var clock = ContinuousClock.now
        var logits = try forward(prompt, cache: cache, logitsFor: .last)
        var mtp: MTPDrafts?
        if case let .multiTokenPrediction(tokens)? = drafter {
            mtp = try MTPDrafts(model: self, capacity: cache.capacity, tokens: tokens)
            mtp?.record(rows: 0..<prompt.count)
        }
        result.promptSeconds = seconds(since: clock)
        clock = .now
        if let drafter {
            try speculate(drafter, mtp: mtp, logits: logits, cache: cache, maxTokens: maxTokens, sampler: &sampler, stops: stops,
                          constraint: constraint, history: &history, result: &result, onToken: onToken)
            result.decodeSeconds = seconds(since: clock)
            return result
        }
        while result.tokens.count < maxTokens {
            if let constraint {
                if constraint.isFinished && (stops.isEmpty || !constraint.canEnd) { result.finishReason = .stop; break }
                constraint.apply(logits.baseAddress!, count: vocab)
            }
            let next = sampler.sample(logits.baseAddress!, count: vocab, history: history, generated: result.tokens)
            constraint?.accept(next)
            result.tokens.append(next)
            history.append(next)
            if stops.contains(next) { result.finishReason = .stop; break }
            if !onToken(next) { result.finishReason = .stop; break }
            if result.tokens.count >= maxTokens || cache.count >= cache.capacity { break }
            logits = try forward([next], cache: cache, logitsFor: .last)
        }
        result.decodeSeconds = seconds(since: clock)
        return result
    }
}

extension Transformer {
    /// The decode loop of `generate` with drafts: the last token and up to `tokens` drafts go through one pass;
    /// row j's logits decide draft j, the first rejected draft is replaced by the model's token (and the cache
    /// gives back the positions of the drafts after it), and when every draft is kept the last row gives one more.
    /// With `mtp`, drafts come from the multi-token-prediction module, fed each pass's kept positions.
    private func speculate(_ drafter: Drafter, mtp: MTPDrafts?, logits first: UnsafeMutableBufferPointer<Float>, cache: KVCache,
                           maxTokens: Int, sampler: inout Sampler, stops: Set<Int>, constraint: (any LogitsConstraint)?,
                           history: inout [Int], result: inout Generation, onToken: (Int) -> Bool) throws {
        let vocab = config.vocabSize
        var done = false
        /// Adds a chosen token; false when generation ends with it.
        func emit(_ token: Int) -> Bool {
            constraint?.accept(token)
            result.tokens.append(token)
            history.append(token)
            if stops.contains(token) || !onToken(token) { result.finishReason = .stop; return false }
            if let c = constraint, c.isFinished && (stops.isEmpty || !c.canEnd) { result.finishReason = .stop; return false }
            // As the plain loop: the token just chosen must still fit in the cache to be fed.
            return result.tokens.count < maxTokens && history.count - 1 < cache.capacity
        }
        constraint?.apply(first.baseAddress!, count: vocab)
        var last = sampler.sample(first.baseAddress!, count: vocab, history: history, generated: result.tokens)
        // The tokens that followed the positions of the last pass, for the module (the prompt's: all but its first).
        var followed = Array(history.dropFirst())
        if !emit(last) { return }
        // A linear-attention state cannot be cut back: it is saved before each pass, and after a rejected draft
        // restored and run again over the kept tokens.
        let saved = cache.recurrent?.snapshot()
        while !done {
            // Room: the pass writes 1 + drafts positions, and the drafts may not overshoot maxTokens.
            let room = max(0, min(maxTokens - result.tokens.count, cache.capacity - cache.count - 1))
            let draft = try mtp.map { try $0.commit(next: followed + [last], limit: room) } ?? drafter.draft(after: history, limit: room)
            let fed = [last] + draft, start = cache.count
            if let saved, let state = cache.recurrent { saved.copy(from: state) }
            let rows = try forward(fed, cache: cache, logitsFor: .all)
            result.draftTokens += draft.count
            var kept = 0
            while true {
                let row = rows.baseAddress! + kept * vocab
                constraint?.apply(row, count: vocab)
                if kept < draft.count {
                    let (token, accepted) = sampler.verify(row, count: vocab, draft: draft[kept], history: history,
                                                          generated: result.tokens)
                    if accepted {
                        result.acceptedDraftTokens += 1
                        kept += 1
                        if !emit(token) { done = true; break }
                        continue
                    }
                    // The drafts from `kept` on are not part of the text: their positions go back.
                    if let saved {
                        cache.restore(to: start, state: saved)
                        try forward(Array(fed[...kept]), cache: cache, logitsFor: .none)
                    } else {
                        cache.truncate(to: cache.count - (draft.count - kept))
                    }
                    last = token
                } else {
                    last = sampler.sample(row, count: vocab, history: history, generated: result.tokens)
                }
                if !emit(last) { done = true }
                break
            }
            // The positions that became text: the pass's first row and its kept drafts, followed by the kept drafts.
            mtp?.record(rows: 0..<(kept + 1))
            followed = Array(draft[..<kept])
        }
    }
}

func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}
