import Foundation
import MoETokenizer

/// OpenAI's Responses API (`POST /v1/responses`, what `client.responses.create` calls), read as the equivalent chat
/// completion: `input` (text, or message / `function_call` / `function_call_output` items) after `instructions`
/// and the conversation of `previous_response_id`; `max_output_tokens`, `text.format`, flat `tools`,
/// `tool_choice`, `reasoning.effort`. Its answer is a list of output items: reasoning, a message with
/// `output_text`, function calls.
enum ResponsesAPI {
    /// A chat completion body (as ordered JSON) for a Responses request, and the conversation it continues with
    /// its new input (what a later `previous_response_id` builds on). `history`: the earlier conversation.
    static func chatBody(_ body: TemplateValue, history: [TemplateValue]) throws(APIError) -> (chat: TemplateValue, conversation: [TemplateValue]) {
        guard case .object = body else { throw .invalidRequest("The body must be a JSON object.") }
        var conversation = history
        switch body["input"] {
        case .string(let text)?: conversation.append(["role": "user", "content": .string(text)])
        case .array(let items)?:
            for (i, item) in items.enumerated() { try append(item, index: i, to: &conversation) }
        case nil: throw .invalidRequest("Missing required parameter: 'input'.", param: "input")
        default: throw .invalidRequest("'input' must be a string or an array of input items.", param: "input")
        }
        var messages = conversation
        if let instructions = body["instructions"], instructions != .null {
            guard case .string = instructions else { throw .invalidRequest("'instructions' must be a string.", param: "instructions") }
            messages.insert(["role": "system", "content": instructions], at: 0)
        }
        var chat: [TemplateValue.TemplateEntry] = [.init("model", body["model"] ?? .null), .init("messages", .array(messages))]
        // Fields that mean the same in both APIs.
        for key in ["temperature", "top_p", "stream", "user", "parallel_tool_calls", "seed", "top_k", "min_p", "logit_bias",
                    "presence_penalty", "frequency_penalty", "repetition_penalty", "experts_per_token", "expert_threshold", "min_experts"] {
            if let v = body[key], v != .null { chat.append(.init(key, v)) }
        }
        if let v = body["max_output_tokens"], v != .null { chat.append(.init("max_tokens", v)) }
        if let effort = body["reasoning"]?["effort"], effort != .null { chat.append(.init("reasoning_effort", effort)) }
        if let format = body["text"]?["format"], format != .null { chat.append(.init("response_format", try responseFormat(format))) }
        if case .array(let tools)? = body["tools"] {
            chat.append(.init("tools", .array(try tools.enumerated().map { i, t throws(APIError) in try tool(t, index: i) })))
        } else if let t = body["tools"], t != .null {
            throw .invalidRequest("'tools' must be an array.", param: "tools")
        }
        switch body["tool_choice"] {
        case nil, .null?: break
        case .string(let s)?: chat.append(.init("tool_choice", .string(s)))
        case let choice?:
            guard choice["type"] == .string("function"), case .string(let name)? = choice["name"] else {
                throw .invalidRequest("'tool_choice' must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"name\": …}.", param: "tool_choice")
            }
            chat.append(.init("tool_choice", ["type": "function", "function": ["name": .string(name)]]))
        }
        return (.object(chat), conversation)
    }

    /// One input item as chat messages: consecutive function calls join one assistant message.
    static func append(_ item: TemplateValue, index: Int, to messages: inout [TemplateValue]) throws(APIError) {
        let type: String
        switch item["type"] {
        case .string(let t)?: type = t
        case nil: type = "message"
        default: throw .invalidRequest("'input[\(index)].type' must be a string.", param: "input")
        }
        switch type {
        case "message":
            guard case .string(let role)? = item["role"], ["user", "system", "developer", "assistant"].contains(role) else {
                throw .invalidRequest("'input[\(index)].role' must be \"user\", \"system\", \"developer\" or \"assistant\".", param: "input")
            }
            var text = ""
            switch item["content"] {
            case .string(let s)?: text = s
            case .array(let parts)?:
                for part in parts {
                    guard case .string(let t)? = part["type"], ["input_text", "output_text", "text"].contains(t), case .string(let s)? = part["text"] else {
                        throw .invalidRequest("'input[\(index)].content' parts must be text (input_text or output_text); other kinds are not supported.", param: "input")
                    }
                    text += s
                }
            default: throw .invalidRequest("'input[\(index)].content' must be a string or an array of text parts.", param: "input")
            }
            messages.append(["role": .string(role), "content": .string(text)])
        case "function_call":
            guard case .string(let callID)? = item["call_id"], case .string(let name)? = item["name"], case .string(let arguments)? = item["arguments"] else {
                throw .invalidRequest("'input[\(index)]': a function_call needs 'call_id', 'name' and 'arguments'.", param: "input")
            }
            let call: TemplateValue = ["id": .string(callID), "type": "function", "function": ["name": .string(name), "arguments": .string(arguments)]]
            if case .object(var last)? = messages.last, last.contains(where: { $0.key == "tool_calls" }),
               let k = last.firstIndex(where: { $0.key == "tool_calls" }), case .array(let calls) = last[k].value {
                last[k].value = .array(calls + [call])
                messages[messages.count - 1] = .object(last)
            } else {
                messages.append(["role": "assistant", "content": .null, "tool_calls": [call]])
            }
        case "function_call_output":
            guard case .string(let callID)? = item["call_id"], let output = item["output"] else {
                throw .invalidRequest("'input[\(index)]': a function_call_output needs 'call_id' and 'output'.", param: "input")
            }
            let text: String
            if case .string(let s) = output { text = s } else { text = output.compactJSON }
            messages.append(["role": "tool", "tool_call_id": .string(callID), "content": .string(text)])
        case "reasoning":
            break   // earlier reasoning is not sent back to the template
        default:
            throw .invalidRequest("'input[\(index)].type' \"\(type)\" is not supported (message, function_call, function_call_output).", param: "input")
        }
    }

    /// `{"type": "function", "name", "description", "parameters"}` → the chat form.
    static func tool(_ t: TemplateValue, index: Int) throws(APIError) -> TemplateValue {
        guard t["type"] == .string("function"), case .string(let name)? = t["name"], !name.isEmpty else {
            throw .invalidRequest("'tools[\(index)]' must be {\"type\": \"function\", \"name\": …} (built-in tools are not served).", param: "tools")
        }
        var function: [TemplateValue.TemplateEntry] = [.init("name", .string(name))]
        if let d = t["description"], d != .null { function.append(.init("description", d)) }
        if let p = t["parameters"], p != .null { function.append(.init("parameters", p)) }
        return ["type": "function", "function": .object(function)]
    }

    /// `text.format` → chat's `response_format`.
    static func responseFormat(_ f: TemplateValue) throws(APIError) -> TemplateValue {
        guard case .string(let type)? = f["type"] else { throw .invalidRequest("'text.format' needs a 'type'.", param: "text") }
        guard type == "json_schema" else { return ["type": .string(type)] }
        return ["type": "json_schema", "json_schema": ["name": f["name"] ?? "response", "schema": f["schema"] ?? .bool(true),
                                                      "strict": f["strict"] ?? .bool(false)]]
    }

    static func newID(_ prefix: String) -> String {
        var g = SystemRandomNumberGenerator()
        return prefix + (0..<3).map { _ in String(g.next() as UInt64, radix: 16) }.joined().prefix(32)
    }

    /// The output items of a finished choice (ids given), and the messages they add to the conversation.
    static func output(_ r: ChoiceRun.Result, ids: inout OutputIDs) -> (items: [[String: Any]], messages: [TemplateValue]) {
        var items: [[String: Any]] = []
        if !r.reasoning.isEmpty { items.append(reasoningItem(id: ids.reasoning, text: r.reasoning, done: true)) }
        if !r.text.isEmpty || r.toolCalls.isEmpty { items.append(messageItem(id: ids.message, text: r.text, done: true)) }
        for (i, call) in r.toolCalls.enumerated() {
            items.append(callItem(id: ids.call(i), callID: call.id, name: call.name, arguments: call.arguments, done: true))
        }
        var message: [TemplateValue.TemplateEntry] = [.init("role", "assistant"), .init("content", r.text.isEmpty && !r.toolCalls.isEmpty ? .null : .string(r.text))]
        if !r.toolCalls.isEmpty {
            message.append(.init("tool_calls", .array(r.toolCalls.map {
                ["id": .string($0.id), "type": "function", "function": ["name": .string($0.name), "arguments": .string($0.arguments)]]
            })))
        }
        return (items, [.object(message)])
    }

    /// Item ids of one response, made once each.
    struct OutputIDs {
        let reasoning = newID("rs_"), message = newID("msg_")
        private var calls: [Int: String] = [:]
        mutating func call(_ i: Int) -> String {
            if let id = calls[i] { return id }
            let id = newID("fc_")
            calls[i] = id
            return id
        }
    }

    static func messageItem(id: String, text: String, done: Bool) -> [String: Any] {
        let content: [Any] = done ? [textPart(text)] : []
        return ["type": "message", "id": id, "status": done ? "completed" : "in_progress", "role": "assistant", "content": content]
    }

    static func textPart(_ text: String) -> [String: Any] { ["type": "output_text", "text": text, "annotations": [Any](), "logprobs": [Any]()] }

    static func reasoningItem(id: String, text: String, done: Bool) -> [String: Any] {
        let content: [Any] = done ? [["type": "reasoning_text", "text": text]] : []
        return ["type": "reasoning", "id": id, "summary": [Any](), "content": content, "status": done ? "completed" : "in_progress"]
    }

    static func callItem(id: String, callID: String, name: String, arguments: String, done: Bool) -> [String: Any] {
        ["type": "function_call", "id": id, "call_id": callID, "name": name, "arguments": arguments, "status": done ? "completed" : "in_progress"]
    }

    /// The response object. `usage` in chat form (prompt/completion tokens) or nil while in progress.
    static func object(id: String, created: Int, model: String, request: TemplateValue, output: [[String: Any]], status: String,
                       usage: [String: Any]?) -> [String: Any] {
        func field(_ key: String) -> Any { request[key].flatMap(jsonObject) ?? NSNull() }
        var o: [String: Any] = ["id": id, "object": "response", "created_at": created, "model": model, "status": status,
                                "output": output, "error": NSNull(),
                                "incomplete_details": status == "incomplete" ? ["reason": "max_output_tokens"] as [String: Any] : NSNull(),
                                "instructions": field("instructions"), "max_output_tokens": field("max_output_tokens"),
                                "previous_response_id": field("previous_response_id"), "temperature": field("temperature"),
                                "top_p": field("top_p"), "tools": request["tools"].flatMap(jsonObject) ?? [Any](),
                                "tool_choice": request["tool_choice"].flatMap(jsonObject) ?? "auto",
                                "parallel_tool_calls": request["parallel_tool_calls"].flatMap(jsonObject) ?? true,
                                "text": request["text"].flatMap(jsonObject) ?? ["format": ["type": "text"]],
                                "metadata": request["metadata"].flatMap(jsonObject) ?? [String: Any](), "store": request["store"].flatMap(jsonObject) ?? true,
                                "usage": NSNull()]
        if let usage {
            let input = usage["prompt_tokens"] as? Int ?? 0, out = usage["completion_tokens"] as? Int ?? 0
            let cached = (usage["prompt_tokens_details"] as? [String: Any])?["cached_tokens"] as? Int ?? 0
            var shaped: [String: Any] = ["input_tokens": input, "input_tokens_details": ["cached_tokens": cached], "output_tokens": out,
                                         "output_tokens_details": ["reasoning_tokens": 0], "total_tokens": input + out]
            // A MoE model's expert budget and what the tokens kept, as chat completions report them.
            for key in ["experts_per_token", "expert_threshold", "min_experts", "active_experts_per_token"] { shaped[key] = usage[key] }
            o["usage"] = shaped
        }
        return o
    }

    /// A template value as JSONSerialization's objects.
    static func jsonObject(_ v: TemplateValue) -> Any? {
        try? JSONSerialization.jsonObject(with: Data(v.compactJSON.utf8), options: .fragmentsAllowed)
    }
}

/// The last responses, for `previous_response_id` and `GET /v1/responses/{id}`: each with the key that made it (no
/// other key sees it) and its whole conversation. The oldest go first beyond `capacity`.
final class ResponseStore: @unchecked Sendable {
    struct Entry {
        let keyHash: String
        let conversation: [TemplateValue]
        let body: [String: Any]
    }

    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    private var order: [String] = []
    let capacity: Int

    init(capacity: Int = 256) { self.capacity = capacity }

    func put(_ id: String, _ entry: Entry) {
        lock.withLock {
            entries[id] = entry
            order.append(id)
            while order.count > capacity { entries[order.removeFirst()] = nil }
        }
    }

    func get(_ id: String, keyHash: String) -> Entry? {
        lock.withLock { entries[id].flatMap { $0.keyHash == keyHash ? $0 : nil } }
    }
}
