import Foundation
import Hummingbird
import MoEGrammar
import MoEModel
import MoETokenizer
import NIOCore

/// The context of one request: Hummingbird's, plus the connection (to notice a client that hangs up while a
/// non-streaming answer is computed) and the id that names the request in the log and in error messages.
public struct ServerContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel
    let requestID = APIError.newRequestID()

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// The HTTP API: OpenAI's `/v1/chat/completions`, `/v1/completions`, `/v1/models`, plus `/health`,
/// `/metrics`, `/tokenize`, `/detokenize`, `/openapi.json` (described in `OpenAPI.swift`) and a chat page at `/`.
extension ModelServer {
    public func makeRouter() -> Router<ServerContext> {
        let router = Router(context: ServerContext.self)
        router.middlewares.add(OpenAIErrorMiddleware(metrics: metrics, maxBodyBytes: options.maxBodyBytes))
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: ChatPage.html(model: self.modelID))))
        }
        router.get("/health") { _, _ in
            // "degraded" once a usage row could not be written: the server answers, but billing lost something.
            let failures = self.metrics.ledgerWriteFailures
            return try json(["status": failures == 0 ? "ok" : "degraded", "model": self.modelID,
                             "active": self.engine.statistics.active, "waiting": self.engine.statistics.waiting,
                             "ledger_write_failures": failures])
        }
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(string: self.openAPIDocument)))
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(bytes: self.metrics.render(engine: self.engine.statistics))))
        }
        router.get("/v1/models") { request, _ in
            _ = try self.authorize(request)
            return try json(["object": "list", "data": [self.modelObject]])
        }
        router.get("/v1/models/:id") { request, context in
            _ = try self.authorize(request)
            let id = context.parameters.get("id") ?? ""
            guard id == self.modelID else { throw APIError.unknownModel(id, available: self.modelID) }
            return try json(self.modelObject)
        }
        router.post("/v1/chat/completions") { request, context in try await self.completions(request, chat: true, context: context) }
        router.post("/v1/completions") { request, context in try await self.completions(request, chat: false, context: context) }
        router.post("/v1/responses") { request, context in try await self.responses(request, context: context) }
        router.get("/v1/responses/:id") { request, context in try self.storedResponse(request, context: context) }
        router.post("/tokenize") { request, _ in try await self.tokenize(request) }
        router.post("/detokenize") { request, _ in try await self.detokenize(request) }
        return router
    }

    var modelObject: [String: Any] {
        ["id": modelID, "object": "model", "created": created, "owned_by": "swift-moe",
         "max_model_len": engine.contextSize]
    }

    // MARK: - Completions

    /// Both completion endpoints.
    func completions(_ request: Request, chat: Bool, context: ServerContext) async throws -> Response {
        try await metered(request, endpoint: chat ? .chatCompletions : .completions, context: context) { keyHash, start in
            try await self.answer(request, chat: chat, endpoint: chat ? .chatCompletions : .completions, keyHash: keyHash, start: start,
                                  context: context)
        }
    }

    /// A generating endpoint's key, rate limit and ledger: every request that reaches it is a ledger row — answered
    /// ones from `answer` (through `Accounting`), refused or failed ones (no tokens, cost 0, their status) here.
    func metered(_ request: Request, endpoint: UsageRecord.Endpoint, context: ServerContext,
                 _ answer: (_ keyHash: String, _ start: ContinuousClock.Instant) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var keyHash = UsageLedger.unauthenticatedKeyHash
        do {
            keyHash = try authorize(request)
            if let limiter = rateLimiter, let wait = limiter.take(keyHash: keyHash) {
                throw APIError.rateLimited(perMinute: limiter.perMinute, retryAfter: wait)
            }
            return try await answer(keyHash, start)
        } catch let error as CommittedError {
            throw error.error
        } catch {
            let status = (error as? APIError)?.status ?? 500
            let record = UsageRecord(keyHash: keyHash, model: modelID, endpoint: endpoint, promptTokens: 0, completionTokens: 0,
                                     latencyMs: milliseconds(start.duration(to: .now)), finishReason: .error, costUSD: 0,
                                     status: status, requestID: context.requestID)
            do { try await ledger.record(record) } catch { metrics.ledgerWriteFailed(error, requestID: context.requestID) }
            throw error
        }
    }

    /// An error thrown after the request's row was written (it must not get a second one).
    struct CommittedError: Error { let error: any Error }

    /// Parse and validate, check the quota, submit `n` choices, then answer as one JSON body or as server-sent
    /// events. The ledger row is committed before the last byte is sent.
    private func answer(_ request: Request, chat: Bool, endpoint: UsageRecord.Endpoint, keyHash: String,
                        start: ContinuousClock.Instant, context: ServerContext) async throws -> Response {
        let body = try await readBody(request)
        guard let tokenizer else {
            throw APIError.invalidRequest("The model '\(modelID)' has no tokenizer.json, so it cannot take text.")
        }
        var plan: GenerationPlan
        var echo: (text: String, firstToken: Int)?
        var parser: (any ChatOutputParser)?
        // The body as sent, objects in their order (decoding lost it): schemas and tools keep theirs.
        let ordered = try? TemplateValue(decoding: Data(body.readableBytesView))
        if chat {
            var r = try decode(ChatCompletionRequest.self, body)
            try checkModel(r.model)
            if case .array(let tools)? = ordered?["tools"], tools.count == r.tools?.count { r.tools = tools }
            if let format = ordered?["response_format"] { r.generation.responseFormat = format }
            (plan, parser) = try prepareChat(r, tokenizer: tokenizer)
        } else {
            let r = try decode(CompletionRequest.self, body)
            try checkModel(r.model)
            let prompt: [Int]
            switch r.prompt {
            case .text(let text):
                guard let ids = tokenizer.encode(text, atMost: engine.contextSize - 1) else { throw overContext(param: "prompt") }
                prompt = ids
            case .tokens(let ids):
                if let bad = ids.first(where: { $0 < 0 || $0 >= model.config.vocabSize }) {
                    throw APIError.invalidRequest("Token id \(bad) is outside the vocabulary (0..<\(model.config.vocabSize)).", param: "prompt")
                }
                prompt = ids
            }
            // OpenAI's default for the legacy completions endpoint.
            if r.suffix != nil {
                throw APIError.invalidRequest("'suffix' is not supported: insertion needs a fill-in-the-middle prompt format, which this server does not know for its model.",
                                              param: "suffix")
            }
            plan = try GenerationPlan(r.generation, prompt: prompt, chat: false, model: model,
                                      context: engine.contextSize, maxTokensLimit: options.maxTokensLimit, stopTokens: stopTokens,
                                      defaultMaxTokens: 16, echo: r.echo)
            if r.echo {
                // The prompt as sent (ids decoded), as OpenAI and vLLM echo it.
                if case .text(let text) = r.prompt { echo = (text, prompt[0]) } else { echo = (tokenizer.decode(prompt), prompt[0]) }
            }
            var generation = r.generation
            if let format = ordered?["response_format"] { generation.responseFormat = format }
            try constrain(&plan, generation, chat: false)
        }

        let (streams, hold) = try await submit(&plan, keyHash: keyHash)
        let shapes = ResponseShapes(id: ResponseShapes.newID(chat: chat), created: Int(Date().timeIntervalSince1970),
                                    model: modelID, tokenizer: tokenizer, chat: chat)
        let run = ChoiceRun(streams: streams, tokenizer: tokenizer, stopStrings: plan.stopStrings, parser: parser, echo: echo)
        let account = Accounting(server: self, keyHash: keyHash, endpoint: endpoint, hold: hold, start: start,
                                 promptTokens: plan.prompt.count, requestID: context.requestID, user: plan.user, experts: plan.experts)
        if plan.stream {
            let plan = plan
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                            body: ResponseBody { writer in
                                try await self.stream(run, shapes: shapes, plan: plan, account: account, writer: &writer)
                            })
        }
        let results = try await collect(run, account: account, context: context)
        let usage: [String: Any]
        do { usage = try await account.commit(results, status: 200) } catch { throw CommittedError(error: error) }
        metrics.request(endpoint: endpoint.rawValue, status: 200)
        do { return try json(shapes.body(choices: results, logprobs: plan.topLogprobs != nil, usage: usage)) } catch { throw CommittedError(error: error) }
    }

    /// A chat request as a plan (its messages through the template, its structured output or required tool call
    /// as a constraint), and how its answer is read.
    func prepareChat(_ r: ChatCompletionRequest, tokenizer: Tokenizer) throws -> (GenerationPlan, (any ChatOutputParser)?) {
        guard !r.messages.isEmpty else { throw APIError.invalidRequest("'messages' must hold at least one message.", param: "messages") }
        let (tools, extra, choice) = try r.templateInputs()
        let reading = try toolCalls(r, choice: choice)
        var plan = try GenerationPlan(r.generation, prompt: try render(r.messages, tokenizer, tools: tools, extra: extra,
                                                                       atMost: engine.contextSize - 1),
                                      chat: true, model: model,
                                      context: engine.contextSize, maxTokensLimit: options.maxTokensLimit, stopTokens: stopTokens,
                                      defaultMaxTokens: nil)
        try constrain(&plan, r.generation, chat: true, toolGrammar: reading.grammar)
        return (plan, reading.parser)
    }

    /// `response_format` / `grammar`, or a required tool call's grammar, as the plan's constraint.
    func constrain(_ plan: inout GenerationPlan, _ generation: GenerationFields, chat: Bool, toolGrammar: Grammar? = nil) throws {
        if let grammar = try StructuredOutput.grammar(responseFormat: generation.responseFormat, grammar: generation.grammar) {
            if chat && harmony {
                throw APIError.invalidRequest("Structured output is not supported for harmony models yet (their answer follows a reasoning channel).",
                                              param: generation.grammar != nil ? "grammar" : "response_format")
            }
            if toolGrammar != nil {
                throw APIError.invalidRequest("A required or named tool call cannot go with '\(generation.grammar != nil ? "grammar" : "response_format")'.",
                                              param: "tool_choice")
            }
            plan.constraint = StructuredOutput.constraints(grammar, trie: tokenTrie!.value, stopTokens: plan.stopTokens)
        }
        if let toolGrammar { plan.constraint = StructuredOutput.constraints(toolGrammar, trie: toolTrie!.value, stopTokens: plan.stopTokens) }
    }

    /// Reserves the worst case against the key's quota (cutting generation to what is left today) and submits
    /// every choice; on failure nothing stays reserved or running.
    func submit(_ plan: inout GenerationPlan, keyHash: String) async throws -> (streams: [InferenceEngine.Stream], hold: QuotaHold) {
        // The quota must cover the worst case of every choice: generation is capped by what is left today.
        if let left = try await quota.tokensLeft(keyHash: keyHash) {
            let room = left / plan.choices - plan.prompt.count
            guard room >= 1 else {
                throw APIError.quotaExceeded("This key's daily quota of \(options.dailyTokenQuota ?? 0) tokens is spent (\(left) left; "
                                             + "this request needs \(plan.choices * (plan.prompt.count + 1))). It resets at 00:00 UTC.")
            }
            plan.maxTokens = min(plan.maxTokens, room)
        }
        let reserved = plan.choices * (plan.prompt.count + plan.maxTokens)
        let hold: QuotaHold
        do { hold = try await quota.hold(keyHash: keyHash, tokens: reserved) } catch let e as QuotaExceeded {
            throw APIError.quotaExceeded(e.description)
        }
        var streams: [InferenceEngine.Stream] = []
        do {
            for i in 0..<plan.choices { streams.append(try engine.submit(plan.request(choice: i))) }
        } catch {
            for s in streams { s.cancel() }
            await quota.release(hold, used: 0, recorded: true)   // nothing ran: nothing to count
            switch error {
            case .queueFull, .shutDown: throw APIError.overloaded(error.description)
            case .invalid(let message): throw APIError.invalidRequest(message)
            }
        }
        return (streams, hold)
    }

    /// Runs every choice to its end. A client that hangs up while its whole answer is computed: its choices stop at the next step, and the row
        // says `cancelled` with what was used. (Streaming notices through its failed writes.)
        // Polled rather than a closeFuture callback: those would pile up on a keep-alive connection, one per request.
    func collect(_ run: ChoiceRun, account: Accounting, context: ServerContext) async throws -> [ChoiceRun.Result] {
        let streams = run.streams
        let hungUp = HangUp()
        let channel = context.channel
        // A connection already closed here hung up before the handler ran: that too cancels at once.
        let watched = options.watchesConnections
        let watcher = Task {
            while watched && !Task.isCancelled {
                if !channel.isActive {
                    hungUp.set()
                    for s in streams { s.cancel() }
                    return
                }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        let results = await run.collect()
        watcher.cancel()
        if hungUp.isSet {
            do { _ = try await account.commit(results, status: 499) } catch { throw CommittedError(error: error) }
            throw CommittedError(error: APIError(status: 499, message: "The client closed the connection.", type: "invalid_request_error"))
        }
        return results
    }

    /// Server-sent events: one chunk per piece of text, the finish reason on each choice's last chunk, the
    /// usage chunk when asked for, the ledger commit, then `data: [DONE]`.
    func stream(_ run: ChoiceRun, shapes: ResponseShapes, plan: GenerationPlan, account: Accounting,
                writer: inout any ResponseBodyWriter) async throws {
        var started = Set<Int>()
        do {
            try await run.forEachPiece { index, piece in
                let first = started.insert(index).inserted
                let chunk = shapes.chunk(index: index, piece: piece, logprobs: plan.topLogprobs != nil, first: first,
                                         includeUsage: plan.includeUsage)
                try await writer.write(try event(chunk))
            }
        } catch {
            // The client went away: its choices were cancelled; bill what was generated.
            _ = try? await account.commit(run.results, status: 499)
            metrics.request(endpoint: account.endpoint.rawValue, status: 499)
            throw error
        }
        let usage = try await account.commit(run.results, status: 200)
        if plan.includeUsage { try await writer.write(try event(shapes.usageChunk(usage))) }
        try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
        try await writer.finish(nil)
        metrics.request(endpoint: account.endpoint.rawValue, status: 200)
    }

    private func event(_ object: [String: Any]) throws -> ByteBuffer {
        var buffer = ByteBuffer(string: "data: ")
        buffer.writeBytes(try jsonData(object))
        buffer.writeString("\n\n")
        return buffer
    }

    /// How a chat's answer is read (harmony, or the template's tool-call syntax when tools are offered) and, for
    /// a required or named call, the grammar that makes the answer that call.
    func toolCalls(_ r: ChatCompletionRequest, choice: ChatCompletionRequest.ToolChoice) throws -> (parser: (any ChatOutputParser)?, grammar: Grammar?) {
        if harmony {
            if choice == .required || (choice != .auto && choice != .none) {
                throw APIError.invalidRequest("'tool_choice' must be \"auto\" or \"none\" for harmony models: a required or named call is not constrained in harmony yet.",
                                              param: "tool_choice")
            }
            return (HarmonyParser(), nil)
        }
        guard choice != .none else { return (nil, nil) }
        guard let format = toolFormat else {
            guard choice == .auto else {
                throw APIError.invalidRequest("This model's chat template has no tool-call syntax that the server knows, so a call cannot be required.",
                                              param: "tool_choice")
            }
            return (nil, nil)
        }
        guard choice != .auto else { return (ToolCallParser(format: format), nil) }
        let named: Bool
        if case .function = choice { named = true } else { named = false }
        let grammar: Grammar
        do throws(GrammarError) {
            let gbnf = try ToolCallGrammar.gbnf(format: format, tools: r.callable(choice), parallel: !named && r.parallelToolCalls != false,
                                                template: tokenizer?.chatTemplate ?? "")
            grammar = try GBNF.parse(gbnf)
        } catch {
            throw APIError.invalidRequest("'tools': \(error.message)", param: error.keyword == "tool_choice" ? "tool_choice" : "tools")
        }
        return (ToolCallParser(format: format), grammar)
    }

    // MARK: - Tokenizer endpoints

    /// vLLM's `{"prompt"}` or `{"messages"}`, or llama.cpp's `{"content"}` → `{"tokens", "count", "max_model_len"}`.
    func tokenize(_ request: Request) async throws -> Response {
        struct Body: Decodable {
            var model: String?
            var prompt: String?
            var content: String?
            var messages: [ChatCompletionRequest.Message]?
            var addSpecialTokens: Bool?
            enum CodingKeys: String, CodingKey {
                case model, prompt, content, messages
                case addSpecialTokens = "add_special_tokens"
            }
        }
        let (r, tokenizer) = try await tokenizerRequest(request, Body.self, model: \.model)
        let tokens: [Int]
        if let messages = r.messages {
            tokens = try render(messages, tokenizer)
        } else if let text = r.prompt ?? r.content {
            tokens = tokenizer.encode(text, addSpecialTokens: r.addSpecialTokens ?? true)
        } else {
            throw APIError.invalidRequest("Missing required parameter: 'prompt' (or 'messages').", param: "prompt")
        }
        return try json(["tokens": tokens, "count": tokens.count, "max_model_len": engine.contextSize])
    }

    /// `{"tokens": [...]}` → `{"prompt": text, "content": text}` (vLLM's and llama.cpp's names).
    func detokenize(_ request: Request) async throws -> Response {
        struct Body: Decodable {
            var model: String?
            var tokens: [Int]
        }
        let (r, tokenizer) = try await tokenizerRequest(request, Body.self, model: \.model)
        if let bad = r.tokens.first(where: { $0 < 0 || $0 >= max(model.config.vocabSize, tokenizer.vocabSize) }) {
            throw APIError.invalidRequest("Token id \(bad) is outside the vocabulary.", param: "tokens")
        }
        let text = tokenizer.decode(r.tokens)
        return try json(["prompt": text, "content": text])
    }

    /// What the tokenizer endpoints start with: the key, the body, its model (when named), the tokenizer.
    private func tokenizerRequest<T: Decodable>(_ request: Request, _ type: T.Type, model: KeyPath<T, String?>) async throws -> (T, Tokenizer) {
        _ = try authorize(request)
        let body = try await readBody(request)
        guard let tokenizer else { throw APIError.invalidRequest("The model '\(modelID)' has no tokenizer.json.") }
        let r = try decode(T.self, body)
        if let name = r[keyPath: model] { try checkModel(name) }
        return (r, tokenizer)
    }

    // MARK: - Shared checks

    /// Messages through the model's chat template, as token ids; tokenizing stops past `limit` ids (a prompt
    /// over the context costs no more than the context's worth).
    func render(_ messages: [ChatCompletionRequest.Message], _ tokenizer: Tokenizer, tools: [TemplateValue]? = nil,
                extra: [String: TemplateValue] = [:], atMost limit: Int = .max) throws -> [Int] {
        let ids: [Int]?
        do {
            ids = try tokenizer.encodeChat(messages.map(\.chatMessage), tools: tools, extra: extra, atMost: limit)
        } catch {
            throw APIError.invalidRequest("The chat template could not render these messages: \(error)", param: "messages")
        }
        guard let ids else { throw overContext(param: "messages") }
        return ids
    }

    /// A prompt whose tokenizing stopped at the context: the count beyond is not known (nor worth the work).
    func overContext(param: String) -> APIError {
        .invalidRequest("This model's maximum context length is \(engine.contextSize) tokens; the prompt has more than "
                        + "\(engine.contextSize - 1) (one position must be left to generate).", param: param, code: "context_length_exceeded")
    }

    /// The hash of the request's key; "open" when the server has no key file. Throws 401.
    func authorize(_ request: Request) throws -> String {
        guard let keys else { return "open" }
        // "Authorization: Bearer KEY" (the scheme is case-insensitive, RFC 9110 §11.1).
        let header = request.headers[.authorization] ?? ""
        let token = header.lowercased().hasPrefix("bearer ") ? String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces) : nil
        guard let hash = keys.authorize(bearer: token) else { throw APIError.unauthorized }
        return hash
    }

    func readBody(_ request: Request) async throws -> ByteBuffer {
        let limit = options.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit { throw APIError.bodyTooLarge(limit: limit) }
        do {
            return try await request.body.collect(upTo: limit)
        } catch let error as HTTPResponseError where error.status == .contentTooLarge {
            throw APIError.bodyTooLarge(limit: limit)
        }
    }

    func decode<T: Decodable>(_ type: T.Type, _ body: ByteBuffer) throws -> T {
        let data = Data(body.readableBytesView)
        guard !data.isEmpty else { throw APIError.invalidRequest("The request body is empty; send a JSON object.") }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as DecodingError {
            throw APIError.decoding(error)
        } catch {
            throw APIError.invalidRequest("The body is not valid JSON: \(error.localizedDescription)")
        }
    }

    func checkModel(_ name: String) throws {
        guard name == modelID else { throw APIError.unknownModel(name, available: modelID) }
    }

    /// End-of-sequence ids of the model and of its tokenizer.
    var stopTokens: Set<Int> { model.eosTokenIds.union(tokenizer?.eosTokenIds ?? []) }
}

/// A JSON response.
func json(_ object: Any, status: HTTPResponse.Status = .ok) throws -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try jsonData(object))))
}

/// Set once, by the task that sees the connection closed; read by the request's task.
final class HangUp: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

/// Answers every error in OpenAI's shape; anything that is not an `APIError` or an HTTP error is the
/// server's fault (500).
struct OpenAIErrorMiddleware: RouterMiddleware {
    typealias Context = ServerContext
    let metrics: ServerMetrics
    let maxBodyBytes: Int
    /// On every response: the id of the request in the log and in its ledger row.
    static let requestIDHeader = HTTPFields.Element.Name("X-Request-Id")!

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let error: APIError
        do {
            var response = try await next(request, context)
            response.headers[Self.requestIDHeader] = context.requestID
            return response
        } catch let e as APIError {
            error = e
        } catch let e as HTTPResponseError {
            switch e.status {
            case .notFound: error = .notFound(request.uri.path)
            case .contentTooLarge: error = .bodyTooLarge(limit: maxBodyBytes)
            case .methodNotAllowed:
                error = APIError(status: 405, message: "\(request.method) is not allowed on \(request.uri.path).", type: "invalid_request_error")
            default:
                error = APIError(status: Int(e.status.code), message: "\(e.status.reasonPhrase)", type: e.status.code < 500 ? "invalid_request_error" : "server_error")
            }
        } catch let other {
            error = .server("\(other)")
        }
        var answer = error
        if error.status >= 500 {
            // The details go to the log only; the client gets the id to quote.
            context.logger.error("request \(context.requestID) \(request.method) \(request.uri.path): \(error.message)")
            answer = .internal(requestID: context.requestID)
        }
        switch request.uri.path {
        case "/v1/chat/completions": metrics.request(endpoint: "chat.completions", status: error.status)
        case "/v1/completions": metrics.request(endpoint: "completions", status: error.status)
        case "/v1/responses": metrics.request(endpoint: "responses", status: error.status)
        default: break
        }
        var headers: HTTPFields = [.contentType: "application/json", Self.requestIDHeader: context.requestID]
        if let wait = answer.retryAfter { headers[.retryAfter] = String(wait) }
        return Response(status: .init(code: answer.status), headers: headers,
                        body: .init(byteBuffer: ByteBuffer(bytes: answer.json)))
    }
}
