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
    public func generate(prompt: [Int], maxTokens: Int, sampling: SamplingParameters, stopTokens: Set<Int>? = nil,
                         cache: KVCache? = nil, onToken: (Int) -> Bool = { _ in true }) throws -> Generation {
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
        result.promptSeconds = seconds(since: clock)
        clock = .now
        while result.tokens.count < maxTokens {
            let next = sampler.sample(logits.baseAddress!, count: vocab, history: history, generated: result.tokens)
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

func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}
