import Foundation
import MoEGrammar
import MoEModel
import MoETokenizer

// Request bodies of the OpenAI API, as JSON names them. Unknown fields are ignored (as vLLM and llama.cpp do);
// a known field of the wrong type or out of range is a 400 naming it.

/// `POST /v1/chat/completions`.
struct ChatCompletionRequest: Decodable {
    var model: String
    var messages: [Message]
    /// Function definitions for the chat template (`{"type": "function", "function": {name, description, parameters}}`).
    var tools: [TemplateValue]?
    var toolChoice: TemplateValue?
    /// Several calls in one answer (default true).
    var parallelToolCalls: Bool?
    /// "low", "medium" or "high": reaches the chat template as `reasoning_effort` (gpt-oss's harmony reads it).
    var reasoningEffort: String?
    var generation: GenerationFields

    struct Message: Decodable {
        var role: String
        var content: String?
        var name: String?
        /// An assistant's earlier calls, `arguments` parsed into an object (what chat templates write with `tojson`).
        var toolCalls: [TemplateValue]?
        /// A tool result's call.
        var toolCallId: String?
        /// An assistant's earlier reasoning (`reasoning_content`, or `reasoning` / `thinking` as other servers name it).
        var reasoning: String?

        enum CodingKeys: String, CodingKey {
            case role, content, name, reasoning, thinking
            case toolCalls = "tool_calls", toolCallId = "tool_call_id", reasoningContent = "reasoning_content"
        }

        init(role: String, content: String?) { self.role = role; self.content = content }

        /// `content` is a string, null, or an array of parts of which the text parts are kept.
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            role = try c.decode(String.self, forKey: .role)
            name = try c.decodeIfPresent(String.self, forKey: .name)
            if let text = try? c.decodeIfPresent(String.self, forKey: .content) {
                content = text
            } else if let parts = try? c.decodeIfPresent([ContentPart].self, forKey: .content) {
                content = parts.compactMap(\.text).joined()
            } else if try c.decodeNil(forKey: .content) {
                content = nil
            } else {
                throw DecodingError.typeMismatch(String.self, .init(codingPath: c.codingPath + [CodingKeys.content],
                                                                    debugDescription: "content must be a string or an array of text parts"))
            }
            toolCalls = try c.decodeIfPresent([TemplateValue].self, forKey: .toolCalls)?.map(Self.argumentsParsed)
            toolCallId = try c.decodeIfPresent(String.self, forKey: .toolCallId)
            reasoning = try c.decodeIfPresent(String.self, forKey: .reasoningContent) ?? c.decodeIfPresent(String.self, forKey: .reasoning)
                ?? c.decodeIfPresent(String.self, forKey: .thinking)
        }

        /// OpenAI sends a call's `arguments` as a JSON string; templates expect the object (transformers' convention,
        /// which vLLM and llama.cpp follow). A string that is not JSON stays a string.
        static func argumentsParsed(_ call: TemplateValue) -> TemplateValue {
            guard case .object(var entries) = call, let f = entries.firstIndex(where: { $0.key == "function" }),
                  case .object(var function) = entries[f].value, let a = function.firstIndex(where: { $0.key == "arguments" }),
                  case .string(let text) = function[a].value, let parsed = try? TemplateValue(decoding: Data(text.utf8)) else { return call }
            function[a].value = parsed
            entries[f].value = .object(function)
            return .object(entries)
        }

        var chatMessage: ChatMessage {
            ChatMessage(role: role, content: content ?? "", reasoningContent: reasoning, toolCalls: toolCalls, toolCallId: toolCallId, name: name)
        }
    }

    struct ContentPart: Decodable {
        var type: String
        var text: String?
    }

    enum CodingKeys: String, CodingKey {
        case model, messages, tools
        case toolChoice = "tool_choice", reasoningEffort = "reasoning_effort", parallelToolCalls = "parallel_tool_calls"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(String.self, forKey: .model)
        messages = try c.decode([Message].self, forKey: .messages)
        tools = try c.decodeIfPresent([TemplateValue].self, forKey: .tools)
        toolChoice = try c.decodeIfPresent(TemplateValue.self, forKey: .toolChoice)
        parallelToolCalls = try c.decodeIfPresent(Bool.self, forKey: .parallelToolCalls)
        reasoningEffort = try c.decodeIfPresent(String.self, forKey: .reasoningEffort)
        generation = try GenerationFields(from: decoder)
    }

    /// OpenAI's `tool_choice`.
    enum ToolChoice: Equatable {
        case auto, none, required
        case function(String)
    }

    /// What the chat template gets besides the messages: the tools (none with `tool_choice` "none") and the reasoning
    /// effort; and the tool choice. Refuses what it cannot honour, naming the field.
    func templateInputs() throws(APIError) -> (tools: [TemplateValue]?, extra: [String: TemplateValue], choice: ToolChoice) {
        var extra: [String: TemplateValue] = [:]
        if let effort = reasoningEffort {
            guard ["low", "medium", "high"].contains(effort) else {
                throw .invalidRequest("'reasoning_effort' must be \"low\", \"medium\" or \"high\"; got \"\(effort)\".", param: "reasoning_effort")
            }
            extra["reasoning_effort"] = .string(effort)
        }
        var names: [String] = []
        for (i, tool) in (tools ?? []).enumerated() {
            guard tool["type"] == .string("function"), case .string(let name)? = tool["function"]?["name"], !name.isEmpty else {
                throw .invalidRequest("'tools[\(i)]' must be {\"type\": \"function\", \"function\": {\"name\": …}}.", param: "tools")
            }
            names.append(name)
        }
        let given = tools?.isEmpty == false ? tools : nil
        switch toolChoice {
        case nil, .string("auto")?: return (given, extra, given == nil ? .none : .auto)
        case .string("none")?: return (nil, extra, .none)
        case .string("required")?:
            guard given != nil else { throw .invalidRequest("'tool_choice' \"required\" needs 'tools'.", param: "tool_choice") }
            return (given, extra, .required)
        case let choice?:
            guard choice["type"] == .string("function"), case .string(let name)? = choice["function"]?["name"] else {
                throw .invalidRequest("'tool_choice' must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": …}}.",
                                      param: "tool_choice")
            }
            guard names.contains(name) else {
                throw .invalidRequest("'tool_choice' names the function '\(name)', which is not among 'tools'.", param: "tool_choice")
            }
            return (given, extra, .function(name))
        }
    }

    /// The tools a required or named call may use, with their parameter schemas.
    func callable(_ choice: ToolChoice) -> [ToolCallGrammar.Tool] {
        (tools ?? []).compactMap { tool in
            guard case .string(let name)? = tool["function"]?["name"] else { return nil }
            if case .function(let only) = choice, only != name { return nil }
            return ToolCallGrammar.Tool(name: name, parameters: tool["function"]?["parameters"])
        }
    }
}

/// `POST /v1/completions`.
struct CompletionRequest: Decodable {
    var model: String
    var prompt: Prompt
    /// Return the prompt before the completion (and, with `logprobs`, its tokens' log-probabilities).
    var echo: Bool
    var suffix: String?
    var generation: GenerationFields

    /// A string, or token ids (one prompt per request: arrays of several prompts are refused).
    enum Prompt {
        case text(String)
        case tokens([Int])
    }

    enum CodingKeys: String, CodingKey { case model, prompt, echo, suffix }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(String.self, forKey: .model)
        echo = try c.decodeIfPresent(Bool.self, forKey: .echo) ?? false
        suffix = try c.decodeIfPresent(String.self, forKey: .suffix)
        if let text = try? c.decode(String.self, forKey: .prompt) {
            prompt = .text(text)
        } else if let ids = try? c.decode([Int].self, forKey: .prompt) {
            prompt = .tokens(ids)
        } else if let texts = try? c.decode([String].self, forKey: .prompt), texts.count == 1 {
            prompt = .text(texts[0])
        } else if let batches = try? c.decode([[Int]].self, forKey: .prompt), batches.count == 1 {
            prompt = .tokens(batches[0])
        } else if c.contains(.prompt) {
            throw DecodingError.typeMismatch(String.self, .init(codingPath: [CodingKeys.prompt],
                                                                debugDescription: "prompt must be a string or an array of token ids (one prompt per request)"))
        } else {
            throw DecodingError.keyNotFound(CodingKeys.prompt, .init(codingPath: [], debugDescription: "prompt is required"))
        }
        generation = try GenerationFields(from: decoder)
    }
}

/// The generation fields both endpoints share, as sent.
struct GenerationFields: Decodable {
    var temperature: Double?
    var topP: Double?
    var topK: Int?
    var minP: Double?
    var repetitionPenalty: Double?
    var presencePenalty: Double?
    var frequencyPenalty: Double?
    var maxTokens: Int?
    var maxCompletionTokens: Int?
    var n: Int?
    var seed: Int64?
    var stop: [String]?
    var stream: Bool?
    var streamOptions: StreamOptions?
    /// Chat: a boolean. Completions: the number of alternatives (0…20).
    var logprobs: LogprobsField?
    var topLogprobs: Int?
    var ignoreEos: Bool?
    var user: String?
    /// Token id (as a string key, as OpenAI sends it) → bias in −100…100.
    var logitBias: [String: Double]?
    /// `{"type": "text" | "json_object" | "json_schema", "json_schema": {"name", "schema", "strict"}}`.
    var responseFormat: TemplateValue?
    /// Extension (llama.cpp's server): a GBNF grammar the output must match.
    var grammar: String?
    /// Extension: speculative decoding for this request ("lookup": prompt-lookup drafts), `draft_tokens` per step.
    var speculative: String?
    var draftTokens: Int?
    /// Extension: fewer experts per token than the model's (`ExpertBudget`), reported back in `usage`.
    var expertsPerToken: Int?
    var expertThreshold: Double?
    var minExperts: Int?

    struct StreamOptions: Decodable {
        var includeUsage: Bool?
        enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
    }

    enum LogprobsField {
        case flag(Bool)
        case count(Int)
    }

    enum CodingKeys: String, CodingKey {
        case temperature, n, seed, stop, stream, logprobs, user
        case topP = "top_p", topK = "top_k", minP = "min_p"
        case repetitionPenalty = "repetition_penalty", presencePenalty = "presence_penalty"
        case frequencyPenalty = "frequency_penalty", maxTokens = "max_tokens"
        case maxCompletionTokens = "max_completion_tokens", streamOptions = "stream_options"
        case topLogprobs = "top_logprobs", ignoreEos = "ignore_eos"
        case speculative, grammar, draftTokens = "draft_tokens", logitBias = "logit_bias", responseFormat = "response_format"
        case expertsPerToken = "experts_per_token", expertThreshold = "expert_threshold", minExperts = "min_experts"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        temperature = try c.decodeIfPresent(Double.self, forKey: .temperature)
        topP = try c.decodeIfPresent(Double.self, forKey: .topP)
        minP = try c.decodeIfPresent(Double.self, forKey: .minP)
        repetitionPenalty = try c.decodeIfPresent(Double.self, forKey: .repetitionPenalty)
        presencePenalty = try c.decodeIfPresent(Double.self, forKey: .presencePenalty)
        frequencyPenalty = try c.decodeIfPresent(Double.self, forKey: .frequencyPenalty)
        // JSONDecoder reports a number that does not fit (1e300 for an Int, 1.5 for an Int) as corrupt data
        // with no path; name the field instead.
        func integer<T: Decodable & FixedWidthInteger>(_ key: CodingKeys, _ type: T.Type = Int.self) throws -> T? {
            do {
                return try c.decodeIfPresent(T.self, forKey: key)
            } catch let error as DecodingError {
                guard case .dataCorrupted = error else { throw error }
            } catch {}
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [key],
                                                    debugDescription: "expected an integer between \(T.min) and \(T.max)."))
        }
        topK = try integer(.topK)
        maxTokens = try integer(.maxTokens)
        maxCompletionTokens = try integer(.maxCompletionTokens)
        n = try integer(.n)
        seed = try integer(.seed, Int64.self)
        if let one = try? c.decodeIfPresent(String.self, forKey: .stop) {
            stop = [one]
        } else {
            stop = try c.decodeIfPresent([String].self, forKey: .stop)
        }
        stream = try c.decodeIfPresent(Bool.self, forKey: .stream)
        streamOptions = try c.decodeIfPresent(StreamOptions.self, forKey: .streamOptions)
        if let flag = try? c.decodeIfPresent(Bool.self, forKey: .logprobs) {
            logprobs = .flag(flag)
        } else if let count = try integer(.logprobs) {
            logprobs = .count(count)
        }
        topLogprobs = try integer(.topLogprobs)
        ignoreEos = try c.decodeIfPresent(Bool.self, forKey: .ignoreEos)
        user = try c.decodeIfPresent(String.self, forKey: .user)
        logitBias = try c.decodeIfPresent([String: Double].self, forKey: .logitBias)
        responseFormat = try c.decodeIfPresent(TemplateValue.self, forKey: .responseFormat)
        grammar = try c.decodeIfPresent(String.self, forKey: .grammar)
        speculative = try c.decodeIfPresent(String.self, forKey: .speculative)
        draftTokens = try integer(.draftTokens)
        expertsPerToken = try integer(.expertsPerToken)
        expertThreshold = try c.decodeIfPresent(Double.self, forKey: .expertThreshold)
        minExperts = try integer(.minExperts)
    }
}

/// A validated request, ready for the engine.
struct GenerationPlan: Sendable {
    var prompt: [Int]
    var maxTokens: Int
    var sampling: SamplingParameters
    var stopTokens: Set<Int>
    var stopStrings: [String]
    var choices: Int
    var topLogprobs: Int?
    var stream: Bool
    var includeUsage: Bool
    var drafter: Drafter?
    var logitBias: [Int: Float] = [:]
    /// `echo` with `logprobs` (completions): the prompt's tokens are scored too.
    var promptLogprobs = false
    /// OpenAI's `user`, kept in the ledger row.
    var user: String?
    /// Constrained decoding: makes each choice's constraint (`response_format`, `grammar`).
    var constraint: (@Sendable () -> any LogitsConstraint)?
    /// `experts_per_token` / `expert_threshold` / `min_experts`, and the count of what the choices kept.
    var experts: ExpertUsage?

    /// Checks every field against OpenAI's ranges. `defaultMaxTokens` is nil for "the rest of the context".
    /// `context`: the positions a sequence may use on this server (`--ctx-size`); `maxTokensLimit`: the most
    /// tokens one choice may generate (`--max-tokens-limit`; more is cut, as the context cuts it).
    /// `echo`: completions that return their prompt, which may then generate nothing (`max_tokens` 0, as
    /// lm-evaluation-harness asks for prompt log-probs).
    init(_ f: GenerationFields, prompt: [Int], chat: Bool, model: Transformer, context: Int, maxTokensLimit: Int? = nil,
         stopTokens: Set<Int>, defaultMaxTokens: Int?, echo: Bool = false) throws(APIError) {
        guard !prompt.isEmpty else { throw .invalidRequest("The prompt is empty.", param: chat ? "messages" : "prompt") }
        guard prompt.count < context else {
            throw .invalidRequest("This model's maximum context length is \(context) tokens; the prompt has \(prompt.count) (one position must be left to generate).",
                                  param: chat ? "messages" : "prompt", code: "context_length_exceeded")
        }
        self.prompt = prompt
        let room = context - prompt.count
        let asked = f.maxCompletionTokens ?? f.maxTokens
        if let asked, asked < (echo ? 0 : 1) {
            throw .invalidRequest("'\(f.maxCompletionTokens != nil ? "max_completion_tokens" : "max_tokens")' must be at least \(echo ? 0 : 1); got \(asked).",
                                  param: f.maxCompletionTokens != nil ? "max_completion_tokens" : "max_tokens")
        }
        // More than the context leaves is cut to what fits: the choice then ends with finish_reason "length".
        maxTokens = min(asked ?? defaultMaxTokens ?? room, room, maxTokensLimit ?? Int.max)

        // Unset fields: the model's generation_config when it samples by default (as vLLM does), else OpenAI's
        // defaults (temperature 1, top_p 1).
        var s = model.generation.doSample == true ? model.defaultSampling : SamplingParameters(temperature: 1)
        func check(_ value: Double?, _ name: String, _ range: ClosedRange<Double>) throws(APIError) -> Float? {
            guard let value else { return nil }
            guard value.isFinite, range.contains(value) else {
                throw .invalidRequest("'\(name)' must be between \(range.lowerBound) and \(range.upperBound); got \(value).", param: name)
            }
            return Float(value)
        }
        if let t = try check(f.temperature, "temperature", 0...2) { s.temperature = t }
        if let p = try check(f.topP, "top_p", 0...1) {
            guard p > 0 else { throw .invalidRequest("'top_p' must be greater than 0; got 0.", param: "top_p") }
            s.topP = p
        }
        if let k = f.topK {
            guard k >= -1 else { throw .invalidRequest("'top_k' must be -1 or 0 (off) or a positive integer; got \(k).", param: "top_k") }
            s.topK = max(k, 0)
        }
        if let m = try check(f.minP, "min_p", 0...1) { s.minP = m }
        if let r = try check(f.repetitionPenalty, "repetition_penalty", 0...10) {
            guard r > 0 else { throw .invalidRequest("'repetition_penalty' must be greater than 0.", param: "repetition_penalty") }
            s.repetitionPenalty = r
        }
        if let p = try check(f.presencePenalty, "presence_penalty", -2...2) { s.presencePenalty = p }
        if let p = try check(f.frequencyPenalty, "frequency_penalty", -2...2) { s.frequencyPenalty = p }
        s.seed = f.seed.map { UInt64(bitPattern: $0) }
        sampling = s

        choices = f.n ?? 1
        guard (1...16).contains(choices) else { throw .invalidRequest("'n' must be between 1 and 16; got \(choices).", param: "n") }
        let stops = (f.stop ?? []).filter { !$0.isEmpty }
        guard stops.count <= 4 else { throw .invalidRequest("'stop' holds at most 4 sequences; got \(stops.count).", param: "stop") }
        stopStrings = stops
        self.stopTokens = f.ignoreEos == true ? [] : stopTokens

        switch (chat, f.logprobs) {
        case (_, nil), (true, .flag(false)?):
            guard f.topLogprobs == nil || f.topLogprobs == 0 || chat == false else {
                throw .invalidRequest("'top_logprobs' needs 'logprobs': true.", param: "top_logprobs")
            }
            topLogprobs = nil
        case (true, .flag(true)?):
            let top = f.topLogprobs ?? 0
            guard (0...20).contains(top) else { throw .invalidRequest("'top_logprobs' must be between 0 and 20; got \(top).", param: "top_logprobs") }
            topLogprobs = top
        case (false, .count(let top)?):
            guard (0...20).contains(top) else { throw .invalidRequest("'logprobs' must be between 0 and 20; got \(top).", param: "logprobs") }
            topLogprobs = top
        case (true, .count?):
            throw .invalidRequest("'logprobs' must be a boolean for chat completions (use 'top_logprobs' for alternatives).", param: "logprobs")
        case (false, .flag?):
            throw .invalidRequest("'logprobs' must be an integer (0 to 20) for completions.", param: "logprobs")
        }
        switch f.speculative {
        case nil:
            guard f.draftTokens == nil else { throw .invalidRequest("'draft_tokens' needs 'speculative'.", param: "draft_tokens") }
            drafter = nil
        case "lookup"?:
            let n = f.draftTokens ?? 8
            guard (1...16).contains(n) else { throw .invalidRequest("'draft_tokens' must be between 1 and 16; got \(n).", param: "draft_tokens") }
            drafter = .promptLookup(ngram: 3, tokens: n)
        case "mtp"?:
            guard model.mtp != nil else {
                throw .invalidRequest("'speculative': \"mtp\" needs a model with a multi-token-prediction module; this one has none.", param: "speculative")
            }
            let n = f.draftTokens ?? 1
            guard (1...4).contains(n) else { throw .invalidRequest("'draft_tokens' must be between 1 and 4 with \"mtp\"; got \(n).", param: "draft_tokens") }
            drafter = .multiTokenPrediction(tokens: n)
        case let other?:
            throw .invalidRequest("'speculative' must be \"lookup\" or \"mtp\"; got \"\(other)\".", param: "speculative")
        }
        for (key, value) in f.logitBias ?? [:] {
            guard let token = Int(key), token >= 0, token < model.config.vocabSize else {
                throw .invalidRequest("'logit_bias' keys must be token ids (0 to \(model.config.vocabSize - 1)); got \"\(key)\".", param: "logit_bias")
            }
            guard value.isFinite, (-100...100).contains(value) else {
                throw .invalidRequest("'logit_bias' values must be between -100 and 100; got \(value) for token \(token).", param: "logit_bias")
            }
            logitBias[token] = Float(value)
        }
        experts = try ExpertUsage(f, model: model)
        promptLogprobs = echo && topLogprobs != nil
        if let u = f.user, u.count > 256 {
            throw .invalidRequest("'user' holds at most 256 characters; got \(u.count).", param: "user")
        }
        user = f.user
        stream = f.stream ?? false
        includeUsage = f.streamOptions?.includeUsage ?? false
        if f.streamOptions != nil && !stream {
            throw .invalidRequest("'stream_options' is only allowed when 'stream' is true.", param: "stream_options")
        }
    }

    /// The engine request of choice `index` (`seed + index`, so choices differ but stay reproducible).
    func request(choice index: Int) -> GenerationRequest {
        var s = sampling
        if let seed = s.seed { s.seed = seed &+ UInt64(index) }
        return GenerationRequest(prompt: prompt, maxTokens: maxTokens, sampling: s, stopTokens: stopTokens, topLogprobs: topLogprobs,
                                 drafter: drafter, logitBias: logitBias, promptLogprobs: promptLogprobs, constraint: constraint?(),
                                 expertBudget: experts?.requested, expertTally: experts?.tally)
    }
}

/// A request's expert budget (the extension fields) and what its tokens kept, for `usage`:
/// `experts_per_token` (the cap in force), `expert_threshold` and `min_experts` when one applies, and
/// `active_experts_per_token`, the mean over every token run and MoE layer.
struct ExpertUsage: Sendable {
    /// The request's own budget (nil: the server's).
    var requested: ExpertBudget?
    /// The budget in force: the request's or the server's.
    var budget: ExpertBudget
    var topK: Int
    let tally = ExpertTally()

    /// nil for a dense model (which refuses the fields).
    init?(_ f: GenerationFields, model: Transformer) throws(APIError) {
        let asked = f.expertsPerToken != nil || f.expertThreshold != nil || f.minExperts != nil
        guard model.expertsPerToken > 0 else {
            if asked {
                throw .invalidRequest("'experts_per_token' and 'expert_threshold' need a mixture-of-experts model; this one is dense.",
                                      param: f.expertsPerToken != nil ? "experts_per_token" : "expert_threshold")
            }
            return nil
        }
        topK = model.expertsPerToken
        if let k = f.expertsPerToken, !(1...topK).contains(k) {
            throw .invalidRequest("'experts_per_token' must be between 1 and the model's \(topK); got \(k).", param: "experts_per_token")
        }
        if let t = f.expertThreshold, !(t.isFinite && (0...1).contains(t)) {
            throw .invalidRequest("'expert_threshold' must be between 0 and 1; got \(t).", param: "expert_threshold")
        }
        if let m = f.minExperts {
            guard f.expertThreshold != nil else { throw .invalidRequest("'min_experts' needs 'expert_threshold'.", param: "min_experts") }
            guard (1...topK).contains(m) else { throw .invalidRequest("'min_experts' must be between 1 and \(topK); got \(m).", param: "min_experts") }
        }
        requested = asked ? ExpertBudget(expertsPerToken: f.expertsPerToken, threshold: f.expertThreshold.map(Float.init), minExperts: f.minExperts ?? 1) : nil
        budget = requested ?? model.expertBudget
    }

    var usageFields: [String: Any] {
        var out: [String: Any] = ["experts_per_token": budget.expertsPerToken ?? topK]
        if let t = budget.threshold { out["expert_threshold"] = (Double(t) * 1e6).rounded() / 1e6; out["min_experts"] = budget.minExperts }
        if let mean = tally.meanExpertsPerToken { out["active_experts_per_token"] = (mean * 1000).rounded() / 1000 }
        return out
    }
}
