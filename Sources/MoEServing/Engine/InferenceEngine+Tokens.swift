import Foundation
import MoEModel

/// What the engine does with each logits row it gets back (engine thread only): the prompt's scores for `echo`,
/// `logit_bias` and the constraint, sampling or verifying drafts, log-probabilities, and handing tokens on.
extension InferenceEngine {
    /// The prompt's log-probabilities from the rows after positions `from ..< from + count`: row j scores the
    /// prompt token at position `from + j + 1` (OpenAI's `echo` with `logprobs`; the alternatives as for tokens).
    func scorePrompt(_ s: Sequence, from: Int, rows: UnsafePointer<Float>, count: Int) {
        let vocab = model.config.vocabSize, prompt = s.request.prompt
        for j in 0..<count {
            let position = from + j + 1
            guard position < prompt.count, position == s.promptScores.count + 1 else { continue }
            s.promptScores.append(Self.logprob(of: prompt[position], logits: rows + j * vocab, count: vocab, top: s.request.topLogprobs ?? 0))
        }
    }

    /// OpenAI's `logit_bias` and the request's constraint, on the raw row (after the raw copy that log-probs are
    /// read from).
    func bias(_ s: Sequence, _ row: UnsafeMutablePointer<Float>) {
        for (token, b) in s.request.logitBias { row[token] += b }
        s.request.constraint?.apply(row, count: model.config.vocabSize)
    }

    /// Samples the next token of `s` from its logits row; returns whether it goes on.
    func sample(_ s: Sequence, _ row: UnsafeMutablePointer<Float>) -> Bool {
        let vocab = model.config.vocabSize
        if let c = s.request.constraint, c.isFinished, s.request.stopTokens.isEmpty || !c.canEnd {
            // Nothing may follow and no end-of-sequence token may close it: the text ends here.
            finish(s, .stop, stopToken: nil)
            return false
        }
        keepRawLogits(s, row)
        bias(s, row)
        let token = s.sampler.sample(row, count: vocab, history: s.history, generated: s.generated)
        s.request.constraint?.accept(token)
        return emit(s, token)
    }

    /// Decides the drafts of `s` from the rows after `next` and after each draft (`Sampler.verify`): the kept
    /// drafts, then the model's own token where a draft is rejected (or after the last one). The positions of
    /// rejected drafts go back to the cache (and out of the slot's token record, which prefix reuse trusts).
    /// Returns whether the sequence goes on.
    func verify(_ s: Sequence, _ rows: UnsafeMutablePointer<Float>) -> Bool {
        let vocab = model.config.vocabSize, draft = s.draft
        var kept = 0, tokens: [(Int, TokenLogprob?)] = []
        for j in 0...draft.count {
            let row = rows + j * vocab
            keepRawLogits(s, row)
            bias(s, row)
            let token: Int, accepted: Bool
            if j < draft.count {
                (token, accepted) = s.sampler.verify(row, count: vocab, draft: draft[j], history: s.history, generated: s.generated)
            } else {
                (token, accepted) = (s.sampler.sample(row, count: vocab, history: s.history, generated: s.generated), false)
            }
            s.request.constraint?.accept(token)
            tokens.append((token, logprob(s, token)))
            s.generated.append(token)
            s.history.append(token)
            if accepted { kept += 1 }
            if !accepted || s.request.stopTokens.contains(token) || s.generated.count >= s.request.maxTokens { break }
        }
        let slot = s.slot, rejected = draft.count - kept
        if rejected > 0, let saved = s.stateBeforeDrafts, slots[slot].cache.recurrent != nil {
            // The state cannot be cut back: back to before the pass, the kept tokens run again after the step.
            slots[slot].cache.restore(to: s.positionBeforeDrafts, state: saved, keepingPages: true)
            reruns.append(SequenceChunk(tokens: [s.next] + Array(draft[..<kept]), cache: slots[slot].cache, wantsLogits: false,
                                        expertBudget: s.request.expertBudget))
        } else {
            slots[slot].cache.truncate(to: slots[slot].cache.count - rejected)
        }
        slots[slot].tokens.removeLast(rejected)
        s.mtp?.dropLast(rows: rejected)
        s.generated.removeLast(tokens.count)
        s.history.removeLast(tokens.count)
        lock.lock()
        snapshot.draftTokens += draft.count
        snapshot.acceptedDraftTokens += kept
        lock.unlock()
        for (token, logprob) in tokens where !emitted(s, token, logprob) { return false }
        return true
    }

    /// Copies the raw logits row when log-probabilities are asked for (the sampler rewrites the row).
    func keepRawLogits(_ s: Sequence, _ row: UnsafePointer<Float>) {
        guard s.request.topLogprobs != nil else { return }
        let vocab = model.config.vocabSize
        if rawLogits.count < vocab { rawLogits = .init(repeating: 0, count: vocab) }
        rawLogits.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: row, count: vocab) }
    }

    func logprob(_ s: Sequence, _ token: Int) -> TokenLogprob? {
        let vocab = model.config.vocabSize
        return s.request.topLogprobs.map { top in
            rawLogits.withUnsafeBufferPointer { Self.logprob(of: token, logits: $0.baseAddress!, count: vocab, top: top) }
        }
    }

    /// Adds a chosen token of `s` (its log-probability from the kept raw row); returns whether the sequence goes on.
    func emit(_ s: Sequence, _ token: Int) -> Bool { emitted(s, token, logprob(s, token)) }

    func emitted(_ s: Sequence, _ token: Int, _ logprob: TokenLogprob?) -> Bool {
        s.generated.append(token)
        s.history.append(token)
        lock.lock()
        snapshot.generatedTokens += 1
        lock.unlock()
        if s.request.stopTokens.contains(token) {
            finish(s, .stop, stopToken: token)
            return false
        }
        s.continuation.yield(.token(token, logprob))
        s.next = token
        // The next decode step needs one free position for this token.
        if s.generated.count >= s.request.maxTokens || slots[s.slot].cache.count >= slots[s.slot].cache.capacity {
            finish(s, .length, stopToken: nil)
            return false
        }
        return true
    }

    /// log-softmax of the raw logits at `token`, and the `top` most likely tokens.
    static func logprob(of token: Int, logits: UnsafePointer<Float>, count: Int, top: Int) -> TokenLogprob {
        var maximum = -Float.infinity
        for i in 0..<count { maximum = max(maximum, logits[i]) }
        var sum: Float = 0
        for i in 0..<count { sum += expf(logits[i] - maximum) }
        let logZ = maximum + logf(sum)
        var best: [TokenLogprob.Alternative] = []
        if top > 0 {
            // A small insertion-sorted list: `top` is at most 20.
            for i in 0..<count {
                let v = logits[i]
                if best.count == top, let last = best.last, v <= last.logprob { continue }
                let at = best.firstIndex { v > $0.logprob } ?? best.count
                best.insert(.init(token: i, logprob: v), at: at)
                if best.count > top { best.removeLast() }
            }
            for j in best.indices { best[j].logprob -= logZ }
        }
        return TokenLogprob(token: token, logprob: logits[token] - logZ, top: best)
    }
}
