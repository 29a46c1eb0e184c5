import Foundation

/// Where speculative decoding gets its draft tokens: tokens the model is likely to produce next, checked by the
/// model itself in one batched forward pass (so correct drafts cost a fraction of a decode step each).
public enum Drafter: Sendable, Equatable {
    /// Prompt lookup (n-gram) decoding, as HF's `prompt_lookup_num_tokens` and llama.cpp's lookup decoding: the
    /// last `ngram` tokens (down to one) are searched for earlier in the prompt and text so far, and the `tokens`
    /// that followed their latest earlier occurrence are proposed. Pays on text that repeats its context
    /// (summaries, code edits, extraction, chat turns quoting the prompt).
    case promptLookup(ngram: Int = 3, tokens: Int = 8)

    /// Up to `limit` draft tokens to follow `history`.
    public func draft(after history: [Int], limit: Int) -> [Int] {
        switch self {
        case let .promptLookup(ngram, tokens):
            let count = min(tokens, limit)
            guard count > 0 else { return [] }
            for n in stride(from: min(ngram, history.count - 1), through: 1, by: -1) {
                let tail = history.count - n
                // The latest earlier occurrence of the last n tokens with at least one token after it.
                var start = tail - 1
                while start >= 0 {
                    var match = true
                    for i in 0..<n where history[start + i] != history[tail + i] { match = false; break }
                    if match {
                        let from = start + n
                        return Array(history[from..<min(from + count, history.count)])
                    }
                    start -= 1
                }
            }
            return []
        }
    }
}

extension Sampler {
    /// Decides a draft token from the logits of the position it would take (speculative sampling with a drafter
    /// that proposes one token with certainty): greedy keeps it when it is the argmax; sampling keeps it with
    /// probability p(draft) and otherwise draws from p without it, renormalised — together exactly p, so the
    /// output follows the distribution of plain sampling. Returns the token to emit and whether it is the draft.
    public mutating func verify(_ logits: UnsafeMutablePointer<Float>, count: Int, draft: Int, history: some Collection<Int>,
                                generated: some Collection<Int>) -> (token: Int, accepted: Bool) {
        guard parameters.doSample else {
            let token = sample(logits, count: count, history: history, generated: generated)
            return (token, token == draft)
        }
        process(logits, count: count, history: history, generated: generated)
        var maxValue = -Float.infinity
        for i in 0..<count { maxValue = max(maxValue, logits[i]) }
        var total: Double = 0
        for i in 0..<count where logits[i] > -.infinity { total += Double(Foundation.exp(logits[i] - maxValue)) }
        let p = draft >= 0 && draft < count && logits[draft] > -.infinity
            ? Double(Foundation.exp(logits[draft] - maxValue)) / total : 0
        if generator.nextUnit() < p { return (draft, true) }
        // Rejected: p with the draft removed. (`sample` re-applies the processors: they leave processed logits as
        // they are, and the draft's -infinity stays out.)
        if draft >= 0 && draft < count { logits[draft] = -.infinity }
        let u = generator.nextUnit()
        return (drawProcessed(logits, count: count, unit: u), false)
    }
}
