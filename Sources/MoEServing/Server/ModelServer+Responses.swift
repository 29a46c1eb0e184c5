import Foundation
import Hummingbird
import MoETokenizer
import NIOCore

/// `POST /v1/responses` and `GET /v1/responses/{id}` (see `ResponsesAPI`): a chat completion underneath, answered
/// as a response object or as its typed stream events, billed like the other endpoints.
extension ModelServer {
    func responses(_ request: Request, context: ServerContext) async throws -> Response {
        try await metered(request, endpoint: .responses, context: context) { keyHash, start in
            try await self.respond(request, keyHash: keyHash, start: start, context: context)
        }
    }

    func storedResponse(_ request: Request, context: ServerContext) throws -> Response {
        let keyHash = try authorize(request)
        let id = context.parameters.get("id") ?? ""
        guard let entry = responseStore.get(id, keyHash: keyHash) else {
            throw APIError(status: 404, message: "No response with id '\(id)' (the last \(responseStore.capacity) are kept, in memory).",
                           type: "invalid_request_error", param: "id")
        }
        return try json(entry.body)
    }

    private func respond(_ request: Request, keyHash: String, start: ContinuousClock.Instant, context: ServerContext) async throws -> Response {
        let data = Data(try await readBody(request).readableBytesView)
        guard let tokenizer else { throw APIError.invalidRequest("The model '\(modelID)' has no tokenizer.json, so it cannot take text.") }
        guard !data.isEmpty else { throw APIError.invalidRequest("The request body is empty; send a JSON object.") }
        let body: TemplateValue
        do { body = try TemplateValue(decoding: data) } catch { throw APIError.invalidRequest("The body is not valid JSON: \(error)") }
        guard case .string(let model)? = body["model"] else { throw APIError.invalidRequest("Missing required parameter: 'model'.", param: "model") }
        try checkModel(model)
        var history: [TemplateValue] = []
        switch body["previous_response_id"] {
        case nil, .null?: break
        case .string(let id)?:
            guard let previous = responseStore.get(id, keyHash: keyHash) else {
                throw APIError.invalidRequest("Previous response with id '\(id)' not found (the last \(responseStore.capacity) are kept, in memory).",
                                              param: "previous_response_id")
            }
            history = previous.conversation
        default: throw APIError.invalidRequest("'previous_response_id' must be a string.", param: "previous_response_id")
        }
        let (chatBody, conversation) = try ResponsesAPI.chatBody(body, history: history)
        var chat = try decode(ChatCompletionRequest.self, ByteBuffer(string: chatBody.compactJSON))
        if case .array(let tools)? = chatBody["tools"] { chat.tools = tools }
        chat.generation.responseFormat = chatBody["response_format"]
        var (plan, parser) = try prepareChat(chat, tokenizer: tokenizer)
        let (streams, hold) = try await submit(&plan, keyHash: keyHash)
        let run = ChoiceRun(streams: streams, tokenizer: tokenizer, stopStrings: plan.stopStrings, parser: parser)
        let account = Accounting(server: self, keyHash: keyHash, endpoint: .responses, hold: hold, start: start,
                                 promptTokens: plan.prompt.count, requestID: context.requestID, user: plan.user, experts: plan.experts)
        let id = ResponsesAPI.newID("resp_"), created = Int(Date().timeIntervalSince1970)
        let store = body["store"] != .bool(false)
        @Sendable func finished(_ result: ChoiceRun.Result, output: [[String: Any]], adding: [TemplateValue], usage: [String: Any]) -> [String: Any] {
            let object = ResponsesAPI.object(id: id, created: created, model: modelID, request: body, output: output,
                                             status: result.finishReason == "length" ? "incomplete" : "completed", usage: usage)
            if store { responseStore.put(id, .init(keyHash: keyHash, conversation: conversation + adding, body: object)) }
            return object
        }
        if plan.stream {
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                            body: ResponseBody { writer in
                                var events = ResponseEvents(writer: writer)
                                try await events.send("response.created", ["response": ResponsesAPI.object(
                                    id: id, created: created, model: self.modelID, request: body, output: [], status: "in_progress", usage: nil)])
                                do {
                                    try await run.forEachPiece { _, piece in try await events.add(piece) }
                                    try await events.close()
                                } catch {
                                    _ = try? await account.commit(run.results, status: 499)
                                    self.metrics.request(endpoint: "responses", status: 499)
                                    throw error
                                }
                                let results = run.results
                                let usage = try await account.commit(results, status: 200)
                                let object = finished(results[0], output: events.items, adding: ResponsesAPI.output(results[0], ids: &events.ids).messages,
                                                      usage: usage)
                                // Always "response.completed" (its response says "incomplete" when it is): the official
                                // client's stream helper waits for that event (vLLM does the same).
                                try await events.send("response.completed", ["response": object])
                                try await writer.finish(nil)
                                self.metrics.request(endpoint: "responses", status: 200)
                            })
        }
        let results = try await collect(run, account: account, context: context)
        let usage: [String: Any]
        do { usage = try await account.commit(results, status: 200) } catch { throw CommittedError(error: error) }
        metrics.request(endpoint: "responses", status: 200)
        var ids = ResponsesAPI.OutputIDs()
        let (items, adding) = ResponsesAPI.output(results[0], ids: &ids)
        do { return try json(finished(results[0], output: items, adding: adding, usage: usage)) } catch { throw CommittedError(error: error) }
    }
}

/// The typed events of a streamed response: each output item opened (`response.output_item.added`), its text or
/// arguments as deltas, and closed (`….done`, `response.output_item.done`), numbered in order.
struct ResponseEvents {
    var writer: any ResponseBodyWriter
    var ids = ResponsesAPI.OutputIDs()
    /// Finished items, in order.
    private(set) var items: [[String: Any]] = []
    private var sequence = 0
    private enum Open { case none, reasoning(String), message(String), call(index: Int, id: String, name: String, arguments: String) }
    private var open = Open.none
    private var calls = 0

    init(writer: any ResponseBodyWriter) { self.writer = writer }

    mutating func send(_ type: String, _ payload: [String: Any]) async throws {
        var p = payload
        p["type"] = type
        p["sequence_number"] = sequence
        sequence += 1
        var buffer = ByteBuffer(string: "event: \(type)\ndata: ")
        buffer.writeBytes(try jsonData(p))
        buffer.writeString("\n\n")
        try await writer.write(buffer)
    }

    mutating func add(_ piece: ChoiceStream.Piece) async throws {
        if !piece.reasoning.isEmpty {
            if case .reasoning = open {} else {
                try await close()
                try await send("response.output_item.added", ["output_index": items.count, "item": ResponsesAPI.reasoningItem(id: ids.reasoning, text: "", done: false)])
                open = .reasoning("")
            }
            if case .reasoning(let text) = open { open = .reasoning(text + piece.reasoning) }
            try await send("response.reasoning_text.delta", ["item_id": ids.reasoning, "output_index": items.count, "content_index": 0, "delta": piece.reasoning])
        }
        if !piece.text.isEmpty {
            try await openMessage()
            if case .message(let text) = open { open = .message(text + piece.text) }
            try await send("response.output_text.delta", ["item_id": ids.message, "output_index": items.count, "content_index": 0,
                                                          "delta": piece.text, "logprobs": [Any]()])
        }
        for call in piece.toolCalls {
            if let name = call.name {
                try await close()
                let id = ids.call(calls)
                try await send("response.output_item.added", ["output_index": items.count,
                                                              "item": ResponsesAPI.callItem(id: id, callID: call.id ?? "", name: name, arguments: "", done: false)])
                open = .call(index: calls, id: call.id ?? "", name: name, arguments: "")
                calls += 1
            }
            guard !call.arguments.isEmpty, case .call(let i, let callID, let name, let arguments) = open else { continue }
            open = .call(index: i, id: callID, name: name, arguments: arguments + call.arguments)
            try await send("response.function_call_arguments.delta", ["item_id": ids.call(i), "output_index": items.count, "delta": call.arguments])
        }
    }

    private mutating func openMessage() async throws {
        if case .message = open { return }
        try await close()
        try await send("response.output_item.added", ["output_index": items.count, "item": ResponsesAPI.messageItem(id: ids.message, text: "", done: false)])
        try await send("response.content_part.added", ["item_id": ids.message, "output_index": items.count, "content_index": 0,
                                                       "part": ResponsesAPI.textPart("")])
        open = .message("")
    }

    /// Closes the open item (an answer with nothing at all still gets its empty message).
    mutating func close() async throws {
        let index = items.count
        switch open {
        case .none: return
        case .reasoning(let text):
            try await send("response.reasoning_text.done", ["item_id": ids.reasoning, "output_index": index, "content_index": 0, "text": text])
            items.append(ResponsesAPI.reasoningItem(id: ids.reasoning, text: text, done: true))
        case .message(let text):
            try await send("response.output_text.done", ["item_id": ids.message, "output_index": index, "content_index": 0, "text": text, "logprobs": [Any]()])
            try await send("response.content_part.done", ["item_id": ids.message, "output_index": index, "content_index": 0, "part": ResponsesAPI.textPart(text)])
            items.append(ResponsesAPI.messageItem(id: ids.message, text: text, done: true))
        case .call(let i, let callID, let name, let arguments):
            try await send("response.function_call_arguments.done", ["item_id": ids.call(i), "output_index": index, "arguments": arguments])
            items.append(ResponsesAPI.callItem(id: ids.call(i), callID: callID, name: name, arguments: arguments, done: true))
        }
        try await send("response.output_item.done", ["output_index": index, "item": items[index]])
        open = .none
    }
}
