import Foundation
import MoEModel

/// What one sequence should generate: the engine's unit of work (an OpenAI request with `n` choices is `n`
/// of these).
public struct GenerationRequest: Sendable {
    /// Prompt token ids (at least one, fewer than the context length).
    public var prompt: [Int]
    /// Generate at most this many tokens (the end of the context stops a sequence earlier).
    public var maxTokens: Int
    public var sampling: SamplingParameters
    /// Ids that end the sequence (finish reason `stop`); they are counted as generated but not shown.
    public var stopTokens: Set<Int>
    /// nil: no log-probabilities. 0…20: each token's log-probability plus this many most likely alternatives.
    public var topLogprobs: Int?
    /// Speculative decoding: where draft tokens come from (nil: off). The drafts of every sequence that has one
    /// are verified in the same batched step as the others' tokens.
    public var drafter: Drafter?
    /// OpenAI's `logit_bias`: added to the raw logits before penalties and sampling (not to reported log-probs).
    public var logitBias: [Int: Float]
    /// Score the prompt too (`echo` with `logprobs`): the log-probability of each prompt token after the ones before
    /// it, sent once as `.promptLogprobs` before `.prefilled`. The prompt then runs whole (no cached prefix).
    public var promptLogprobs: Bool
    /// Constrained decoding (a grammar, a JSON schema): masks each row before sampling, drafts included; the
    /// sequence ends where it allows nothing more. This sequence's own (it keeps the sequence's state).
    public var constraint: (any LogitsConstraint)?
    /// The experts each token may spend (nil: the model's `expertBudget`, the server's default). A prefix is only
    /// reused from a sequence that ran with the same budget.
    public var expertBudget: ExpertBudget?
    /// Counts the experts this sequence's tokens kept (shared by a request's choices), for `usage`.
    public var expertTally: ExpertTally?

    public init(prompt: [Int], maxTokens: Int, sampling: SamplingParameters, stopTokens: Set<Int>,
                topLogprobs: Int? = nil, drafter: Drafter? = nil, logitBias: [Int: Float] = [:], promptLogprobs: Bool = false,
                constraint: (any LogitsConstraint)? = nil, expertBudget: ExpertBudget? = nil, expertTally: ExpertTally? = nil) {
        self.prompt = prompt
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stopTokens = stopTokens
        self.topLogprobs = topLogprobs
        self.drafter = drafter
        self.logitBias = logitBias
        self.promptLogprobs = promptLogprobs
        self.constraint = constraint
        self.expertBudget = expertBudget
        self.expertTally = expertTally
    }
}

/// Experts kept by the tokens of one request, as the engine runs them (every token a pass ran, prompt and drafts
/// included, in every MoE layer).
public final class ExpertTally: @unchecked Sendable {
    private let lock = NSLock()
    private var kept = 0, tokenLayers = 0

    public init() {}

    func add(kept: Int, tokenLayers: Int) { lock.withLock { self.kept += kept; self.tokenLayers += tokenLayers } }

    /// Experts a token kept per MoE layer, on average (nil before any ran).
    public var meanExpertsPerToken: Double? {
        lock.withLock { tokenLayers > 0 ? Double(kept) / Double(tokenLayers) : nil }
    }
}

/// A token's log-probability under the model (log-softmax of the raw logits, before penalties and
/// temperature, as vLLM and llama.cpp report them) and the most likely alternatives at its position.
public struct TokenLogprob: Sendable, Equatable {
    public struct Alternative: Sendable, Equatable {
        public var token: Int
        public var logprob: Float
    }
    public var token: Int
    public var logprob: Float
    public var top: [Alternative]
}

/// What the engine reports for one sequence, in order: `promptLogprobs` once when asked for, `prefilled` once,
/// `token` per shown token, then `finished` once (unless the consumer cancelled first).
public enum GenerationEvent: Sendable, Equatable {
    /// Prompt tokens 1… each under the tokens before it (the first token has none).
    case promptLogprobs([TokenLogprob])
    /// The prompt ran; `cachedTokens` of it were reused from an earlier prompt's KV cache.
    case prefilled(promptTokens: Int, cachedTokens: Int)
    case token(Int, TokenLogprob?)
    /// `stopToken` is the end-of-sequence id that ended it (generated, counted, not shown).
    case finished(FinishReason, stopToken: Int?)
}

/// Why the engine refused a request.
public enum EngineError: Error, Equatable, CustomStringConvertible {
    /// The waiting queue is full (the server answers 429).
    case queueFull(limit: Int)
    /// The engine has stopped (the server is shutting down).
    case shutDown
    /// The request cannot run (empty prompt, prompt over the context, bad token id).
    case invalid(String)

    public var description: String {
        switch self {
        case .queueFull(let limit): return "the server is busy: \(limit) requests are already waiting; retry later"
        case .shutDown: return "the server is shutting down"
        case .invalid(let message): return message
        }
    }
}
