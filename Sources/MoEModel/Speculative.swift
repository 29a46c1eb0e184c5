import Foundation

/// Where speculative decoding gets its draft tokens: tokens the model is likely to produce next, checked by the
/// model itself in one batched forward pass (so correct drafts cost a fraction of a decode step each).
public enum Drafter: Sendable, Equatable {
    /// Prompt lookup (n-gram) decoding, as HF's `prompt_lookup_num_tokens` and llama.cpp's lookup decoding: the
    /// last `ngram` tokens (down to one) are searched for earlier in the prompt and text so far, and the `tokens`
    /// that followed their latest earlier occurrence are proposed. Pays on text that repeats its context
    /// (summaries, code edits, extraction, chat turns quoting the prompt).
    case promptLookup(ngram: Int = 3, tokens: Int = 8)
    /// Self-speculation with the checkpoint's multi-token-prediction module (DeepSeek-V3, GLM-4.5, or a model
    /// trained with `--mtp-depth 1`): the module's most likely next token after the model's, then (for `tokens`
    /// > 1) the module run again on its own output. Drafts come from the model's state, not the text: see
    /// `MTPDrafts`.
    case multiTokenPrediction(tokens: Int = 1)

    /// Up to `limit` draft tokens to follow `history` (none for `multiTokenPrediction`, which drafts from the
    /// model's hidden states).
    public func draft(after history: [Int], limit: Int) -> [Int] {
        switch self {
        case .multiTokenPrediction:
            return []
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

/// Multi-token-prediction drafting for one sequence: the module's KV cache, and the model's last-layer states
/// of the positions whose next token is known but which the module has not yet seen.
///
/// Position i of the module joins h_i (the model's) with token i+1 and predicts token i+2. After every model
/// pass, `commit` feeds the module the pass's positions that became text, with the tokens that followed them;
/// the module's prediction after the last of them is the first draft. Further drafts run the module on its own
/// output and are taken back from its cache before the next commit.
public final class MTPDrafts {
    let model: Transformer
    let cache: KVCache
    let tokens: Int
    /// h rows (hidden each) of the positions `cache.count…` not yet fed to the module.
    var pending: [Float] = []

    public init(model: Transformer, capacity: Int, tokens: Int) throws {
        guard model.mtp != nil else {
            throw ModelError.unsupported("--speculative mtp needs a checkpoint with a multi-token-prediction module (num_nextn_predict_layers and model.layers.\(model.config.numHiddenLayers).eh_proj.weight); train one with --mtp-depth 1")
        }
        self.model = model
        self.tokens = max(1, tokens)
        cache = model.makeMTPCache(capacity: capacity)
    }

    /// Keeps the last model pass's last-layer states of rows `rows` (call right after the pass), the positions
    /// after those recorded before.
    public func record(rows: Range<Int>) { model.appendLastHidden(rows: rows, to: &pending) }

    /// Positions the module has seen: the recorded ones start here.
    public var fed: Int { cache.count }
    /// Positions recorded and not yet fed.
    public var recorded: Int { pending.count / model.config.hiddenSize }

    /// Forgets the last `rows` recorded positions (drafts the model rejected).
    public func dropLast(rows: Int) { pending.removeLast(min(rows, recorded) * model.config.hiddenSize) }

    public func reset() { cache.reset(); pending = [] }

    /// Feeds the module the recorded positions with `next` (the token that followed each, in order) and returns
    /// up to `limit` drafts for the tokens after the last of them.
    public func commit(next: [Int], limit: Int) throws -> [Int] {
        let H = model.config.hiddenSize
        precondition(next.count * H == pending.count, "MTPDrafts: \(next.count) tokens for \(pending.count / H) recorded rows")
        let committed = cache.count + next.count
        let room = min(limit, tokens, cache.capacity - committed + 1)
        guard room > 0 else {
            // Nothing to draft: the positions still go to the module, so that later drafts see them.
            if !next.isEmpty, committed <= cache.capacity { _ = try model.mtpForward(nextTokens: next, hidden: pending, cache: cache) }
            pending = []
            return []
        }
        var (logits, output) = try model.mtpForward(nextTokens: next, hidden: pending, cache: cache)
        pending = []
        var drafts = [argmax(logits)]
        while drafts.count < room {
            (logits, output) = try model.mtpForward(nextTokens: [drafts.last!], hidden: output, cache: cache)
            drafts.append(argmax(logits))
        }
        cache.truncate(to: committed)
        return drafts
    }

    private func argmax(_ logits: UnsafeMutableBufferPointer<Float>) -> Int {
        var best = 0
        for i in 1..<logits.count where logits[i] > logits[best] { best = i }
        return best
    }
}
