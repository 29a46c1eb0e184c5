import Foundation
import MoETokenizer

/// Response bodies of the OpenAI API, built as JSON objects so that fields OpenAI sends as explicit `null`
/// (`logprobs`, `finish_reason` while streaming, `usage` on chunks) are sent the same way.
struct ResponseShapes: Sendable {
    let id: String
    let created: Int
    let model: String
    let tokenizer: Tokenizer
    let chat: Bool

    /// "chatcmpl-…" or "cmpl-…" plus 24 random hex digits.
    static func newID(chat: Bool) -> String {
        var g = SystemRandomNumberGenerator()
        let hex = (0..<3).map { _ in String(g.next() as UInt64, radix: 16) }.joined()
        return (chat ? "chatcmpl-" : "cmpl-") + String(hex.prefix(24))
    }

    static func usage(prompt: Int, completion: Int, cached: Int) -> [String: Any] {
        ["prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
         "prompt_tokens_details": ["cached_tokens": cached]]
    }

    /// A whole (non-streamed) response. Chat: the message's `content` (null when it is only tool calls), and
    /// `reasoning_content` and `tool_calls` where the choice has them (a harmony model's analysis channel and calls).
    func body(choices: [ChoiceRun.Result], logprobs: Bool, usage: [String: Any]) -> [String: Any] {
        let list: [[String: Any]] = choices.map { c in
            var choice: [String: Any] = ["index": c.index, "finish_reason": c.finishReason ?? "length",
                                         "logprobs": logprobs ? logprobsObject(c.logprobs, unscored: c.unscoredToken) : NSNull()]
            if chat {
                var message: [String: Any] = ["role": "assistant", "refusal": NSNull(),
                                              "content": c.text.isEmpty && !c.toolCalls.isEmpty ? NSNull() : c.text]
                if !c.reasoning.isEmpty { message["reasoning_content"] = c.reasoning }
                if !c.toolCalls.isEmpty {
                    message["tool_calls"] = c.toolCalls.map { call -> [String: Any] in
                        ["id": call.id, "type": "function", "function": ["name": call.name, "arguments": call.arguments]]
                    }
                }
                choice["message"] = message
            } else {
                choice["text"] = c.text
            }
            return choice
        }
        return ["id": id, "object": chat ? "chat.completion" : "text_completion", "created": created, "model": model,
                "system_fingerprint": ResponseShapes.fingerprint, "choices": list, "usage": usage]
    }

    /// One streamed chunk of choice `index`. `first` adds the assistant role to a chat delta; a harmony model's
    /// reasoning and tool calls stream as `reasoning_content` and `tool_calls` deltas.
    func chunk(index: Int, piece: ChoiceStream.Piece, logprobs: Bool, first: Bool, includeUsage: Bool) -> [String: Any] {
        var choice: [String: Any] = ["index": index, "finish_reason": piece.finishReason ?? NSNull(),
                                     "logprobs": logprobs ? logprobsObject(piece.logprobs, unscored: piece.unscoredToken) : NSNull()]
        if chat {
            var delta: [String: Any] = [:]
            if first { delta["role"] = "assistant" }
            if !piece.text.isEmpty || (first && piece.reasoning.isEmpty && piece.toolCalls.isEmpty) { delta["content"] = piece.text }
            if !piece.reasoning.isEmpty { delta["reasoning_content"] = piece.reasoning }
            if !piece.toolCalls.isEmpty {
                delta["tool_calls"] = piece.toolCalls.map { call -> [String: Any] in
                    var function: [String: Any] = ["arguments": call.arguments]
                    if let name = call.name { function["name"] = name }
                    var entry: [String: Any] = ["index": call.index, "function": function]
                    if let id = call.id { entry["id"] = id; entry["type"] = "function" }
                    return entry
                }
            }
            choice["delta"] = delta
        } else {
            choice["text"] = piece.text
        }
        var chunk: [String: Any] = ["id": id, "object": chat ? "chat.completion.chunk" : "text_completion", "created": created,
                                    "model": model, "system_fingerprint": ResponseShapes.fingerprint, "choices": [choice]]
        if includeUsage { chunk["usage"] = NSNull() }
        return chunk
    }

    /// The last chunk when `stream_options.include_usage`: no choices, the usage of the whole request.
    func usageChunk(_ usage: [String: Any]) -> [String: Any] {
        ["id": id, "object": chat ? "chat.completion.chunk" : "text_completion", "created": created, "model": model,
         "system_fingerprint": ResponseShapes.fingerprint, "choices": [Any](), "usage": usage]
    }

    /// Chat: `{"content": [{token, logprob, bytes, top_logprobs}]}`. Completions: `{tokens, token_logprobs,
    /// top_logprobs, text_offset}`, led by an echoed prompt's first token (`unscored`) with null log-probs.
    func logprobsObject(_ entries: [TokenLogprob], unscored: Int? = nil) -> [String: Any] {
        if chat {
            return ["content": entries.map { e -> [String: Any] in
                var entry = tokenEntry(e.token, e.logprob)
                entry["top_logprobs"] = e.top.map { tokenEntry($0.token, $0.logprob) }
                return entry
            }, "refusal": NSNull()]
        }
        var offset = 0
        var offsets: [Int] = []
        let tokens = (unscored.map { [$0] } ?? []) + entries.map(\.token)
        let texts = tokens.map { token -> String in
            let t = tokenizer.decode([token])
            offsets.append(offset)
            offset += t.utf16.count
            return t
        }
        let lead: [Any] = unscored == nil ? [] : [NSNull()]
        return ["tokens": texts, "token_logprobs": lead + entries.map { Double($0.logprob) },
                "top_logprobs": lead + entries.map { e in
                    Dictionary(e.top.map { (tokenizer.decode([$0.token]), Double($0.logprob)) }, uniquingKeysWith: { a, _ in a })
                },
                "text_offset": offsets]
    }

    private func tokenEntry(_ token: Int, _ logprob: Float) -> [String: Any] {
        let text = tokenizer.decode([token])
        return ["token": text, "logprob": Double(logprob), "bytes": Array(text.utf8).map(Int.init)]
    }

    static let fingerprint = "swift-moe"
}

/// JSON bytes of an object built above (keys sorted, so bodies are stable).
func jsonData(_ object: Any) throws -> Data {
    do {
        return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    } catch {
        // A value JSON cannot hold (a NaN, an infinity): the server's fault, never an empty 200.
        throw APIError.server("a response could not be encoded as JSON: \(error)")
    }
}
