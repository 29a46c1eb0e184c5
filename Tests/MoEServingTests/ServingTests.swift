import Foundation
import Hummingbird
import HummingbirdTesting
import MoEModel
import Testing
@testable import MoEServing

/// Router-level tests: every endpoint and every error status, through HummingbirdTesting (no sockets).
@Suite(.serialized) struct ServingRouterTests {
    /// A server over the test model with a fresh ledger; `keys` are written to a key file when given.
    static func server(keys: [String]? = nil, configure: (inout ServerOptions) -> Void = { _ in }) throws -> ModelServer {
        var options = ServerOptions()
        options.ledgerPath = TestModel.ledgerPath()
        options.parallel = 4
        options.watchesConnections = false   // router tests: no socket (the live tests turn it back on)
        options.priceInput = 2
        options.priceOutput = 6
        if let keys {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("moe-keys-\(UUID().uuidString)").path
            try (keys.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            options.apiKeysFile = path
        }
        configure(&options)
        return try ModelServer(model: TestModel.transformer(), tokenizer: TestModel.tokenizer(), options: options)
    }

    static func body(_ object: Any) -> ByteBuffer { ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: object)) }

    static func object(_ response: TestResponse) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])
    }

    /// `{"error": {...}}` with the expected status; returns the error object.
    @discardableResult
    static func expectError(_ response: TestResponse, _ status: HTTPResponse.Status, param: String? = nil,
                            sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        #expect(response.status == status, sourceLocation: sourceLocation)
        let error = try #require(try object(response)["error"] as? [String: Any], sourceLocation: sourceLocation)
        #expect(error["message"] is String, sourceLocation: sourceLocation)
        #expect(error["type"] is String, sourceLocation: sourceLocation)
        #expect(error.keys.contains("param") && error.keys.contains("code"), sourceLocation: sourceLocation)
        if let param { #expect(error["param"] as? String == param, sourceLocation: sourceLocation) }
        return error
    }

    static let json: HTTPFields = [.contentType: "application/json"]

    static func chat(_ content: String = "Hello, world!", extra: [String: Any] = [:]) -> ByteBuffer {
        body(["model": "tiny-chat", "messages": [["role": "user", "content": content]], "max_tokens": 8].merging(extra) { $1 })
    }

    /// The `data:` payloads of a server-sent-event body.
    static func events(_ response: TestResponse) -> [String] {
        String(buffer: response.body).components(separatedBy: "\n\n").filter { !$0.isEmpty }.map {
            $0.hasPrefix("data: ") ? String($0.dropFirst(6)) : "NOT DATA: \($0)"
        }
    }

    @Test func healthModelsMetricsAndPage() async throws {
        let server = try Self.server()
        try await server.makeApplication().test(.router) { client in
            try await client.execute(uri: "/health", method: .get) { r in
                #expect(r.status == .ok)
                let o = try Self.object(r)
                #expect(o["status"] as? String == "ok")
            }
            try await client.execute(uri: "/v1/models", method: .get) { r in
                let data = try #require(try Self.object(r)["data"] as? [[String: Any]])
                #expect(data.map { $0["id"] as? String } == ["tiny-chat"])
                #expect(data[0]["object"] as? String == "model")
            }
            try await client.execute(uri: "/v1/models/tiny-chat", method: .get) { r in #expect(r.status == .ok) }
            try await client.execute(uri: "/v1/models/nope", method: .get) { r in try Self.expectError(r, .badRequest, param: "model") }
            try await client.execute(uri: "/", method: .get) { r in
                #expect(r.status == .ok)
                #expect(String(buffer: r.body).contains("/v1/chat/completions"))
            }
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: Self.json, body: Self.chat()) { r in
                #expect(r.status == .ok)
            }
            try await client.execute(uri: "/metrics", method: .get) { r in
                let text = String(buffer: r.body)
                for name in ["moe_requests_total", "moe_prompt_tokens_total", "moe_completion_tokens_total",
                             "moe_time_to_first_token_seconds_bucket", "moe_decode_tokens_per_second", "moe_queue_depth", "moe_batch_size"] {
                    #expect(text.contains(name), "missing \(name)")
                }
                #expect(text.contains("moe_requests_total{endpoint=\"chat.completions\",status=\"200\"} 1"))
            }
            try await client.execute(uri: "/nowhere", method: .get) { r in try Self.expectError(r, .notFound) }
        }
    }

    /// The `speculative` extension: a greedy answer with prompt-lookup drafts is the answer without them, and
    /// /metrics counts the drafts.
    @Test func speculativeLookupKeepsTheGreedyAnswer() async throws {
        let server = try Self.server()
        try await server.makeApplication().test(.router) { client in
            var answers: [String] = []
            let prompt = String(repeating: "Hello, world! The quick brown fox. ", count: 3)
            for extra: [String: Any] in [["temperature": 0, "max_tokens": 24],
                                         ["temperature": 0, "max_tokens": 24, "speculative": "lookup", "draft_tokens": 4]] {
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: Self.json,
                                         body: Self.chat(prompt, extra: extra)) { r in
                    #expect(r.status == .ok)
                    let choices = try #require(try Self.object(r)["choices"] as? [[String: Any]])
                    answers.append(try #require((choices[0]["message"] as? [String: Any])?["content"] as? String))
                }
            }
            #expect(answers.count == 2 && answers[0] == answers[1])
            try await client.execute(uri: "/metrics", method: .get) { r in
                #expect(String(buffer: r.body).contains("moe_draft_tokens"))
            }
        }
    }

    @Test func chatCompletionAndLedger() async throws {
        let server = try Self.server()
        try await server.makeApplication().test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: Self.json,
                                     body: Self.chat(extra: ["temperature": 0, "max_tokens": 6])) { r in
                #expect(r.status == .ok)
                let o = try Self.object(r)
                #expect(o["object"] as? String == "chat.completion")
                #expect((o["id"] as? String)?.hasPrefix("chatcmpl-") == true)
                #expect(o["model"] as? String == "tiny-chat")
                let choice = try #require((o["choices"] as? [[String: Any]])?.first)
                #expect(choice["finish_reason"] as? String == "length")
                let message = try #require(choice["message"] as? [String: Any])
                #expect(message["role"] as? String == "assistant")
                #expect(message["content"] is String)
                let usage = try #require(o["usage"] as? [String: Any])
                #expect(usage["completion_tokens"] as? Int == 6)
                let prompt = try #require(usage["prompt_tokens"] as? Int)
                let expected = try TestModel.tokenizer().encodeChat([.init(role: "user", content: "Hello, world!")]).count
                #expect(prompt == expected)
                #expect(usage["total_tokens"] as? Int == prompt + 6)
                #expect((usage["prompt_tokens_details"] as? [String: Any])?["cached_tokens"] as? Int == 0)
            }
        }
        let rows = try server.sqliteLedger.summary(keyHash: nil, since: nil)
        #expect(rows.count == 1)
        let row = try #require(rows.first)
        #expect(row.requests == 1 && row.completionTokens == 6)
        #expect(abs(row.costUSD - (Double(row.promptTokens) * 2 + 6 * 6) / 1e6) < 1e-12)
    }

    @Test func streamingEndsWithUsageAndDone() async throws {
        let server = try Self.server()
        try await server.makeApplication().test(.router) { client in
            let body = Self.chat(extra: ["stream": true, "stream_options": ["include_usage": true], "max_tokens": 5, "temperature": 0])
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: Self.json, body: body) { r in
                #expect(r.status == .ok)
                #expect(r.headers[.contentType] == "text/event-stream")
                let events = Self.events(r)
                #expect(events.last == "[DONE]")
                let chunks = try events.dropLast().map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
                #expect(chunks.allSatisfy { $0["object"] as? String == "chat.completion.chunk" })
                let first = try #require((chunks.first?["choices"] as? [[String: Any]])?.first)
                #expect((first["delta"] as? [String: Any])?["role"] as? String == "assistant")
                let usageChunk = try #require(chunks.last)
                #expect((usageChunk["choices"] as? [Any])?.isEmpty == true)
                #expect((usageChunk["usage"] as? [String: Any])?["completion_tokens"] as? Int == 5)
                let finishes = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String }
                #expect(finishes == ["length"])
                // The same text as without streaming (greedy).
                let streamed = chunks.compactMap { (($0["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])?["content"] as? String }.joined()
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: Self.json,
                                         body: Self.chat(extra: ["max_tokens": 5, "temperature": 0])) { r in
                    let whole = ((try Self.object(r)["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String
                    #expect(whole == streamed)
                }
            }
        }
        #expect(try server.sqliteLedger.summary(keyHash: nil, since: nil).first?.requests == 2)
    }

    @Test func completionsLogprobsChoicesSeedAndCache() async throws {
        let server = try Self.server()
        try await server.makeApplication().test(.router) { client in
            let base: [String: Any] = ["model": "tiny-chat", "prompt": "The quick brown fox", "max_tokens": 4]
            try await client.execute(uri: "/v1/completions", method: .post, headers: Self.json,
                                     body: Self.body(base.merging(["logprobs": 3, "temperature": 0]) { $1 })) { r in
                #expect(r.status == .ok)
                let o = try Self.object(r)
                #expect(o["object"] as? String == "text_completion")
                let choice = try #require((o["choices"] as? [[String: Any]])?.first)
                #expect(choice["text"] is String)
                let lp = try #require(choice["logprobs"] as? [String: Any])
                let values = try #require(lp["token_logprobs"] as? [Double])
                #expect(values.count == 4 && values.allSatisfy { $0 <= 0 })
                // Keyed by token text, as OpenAI's shape is: tokens that decode alike (byte pieces) share a key.
                #expect((lp["top_logprobs"] as? [[String: Double]])?.allSatisfy { (1...3).contains($0.count) } == true)
                // Greedy: the chosen token is the most likely one.
                let tops = try #require(lp["top_logprobs"] as? [[String: Double]])
                for (v, top) in zip(values, tops) { #expect(abs(v - top.values.max()!) < 1e-5) }
            }
            // The same prompt again reuses all but its last token from the cache.
            let promptTokens = try TestModel.tokenizer().encode("The quick brown fox").count
            try await client.execute(uri: "/v1/completions", method: .post, headers: Self.json, body: Self.body(base)) { r in
                let usage = try #require(try Self.object(r)["usage"] as? [String: Any])
                #expect((usage["prompt_tokens_details"] as? [String: Any])?["cached_tokens"] as? Int == promptTokens - 1)
            }
            // n choices, and a seed makes sampling reproducible.
            let sampled = Self.body(base.merging(["n": 3, "seed": 11, "temperature": 1.0, "max_tokens": 6]) { $1 })
            var texts: [[String]] = []
            for _ in 0..<2 {
                try await client.execute(uri: "/v1/completions", method: .post, headers: Self.json, body: sampled) { r in
                    let choices = try #require(try Self.object(r)["choices"] as? [[String: Any]])
                    #expect(choices.map { $0["index"] as? Int } == [0, 1, 2])
                    texts.append(choices.compactMap { $0["text"] as? String })
                    #expect((try Self.object(r)["usage"] as? [String: Any])?["completion_tokens"] as? Int == 18)
                }
            }
            #expect(texts[0] == texts[1])
            #expect(Set(texts[0]).count > 1)
            // Token-id prompts.
            try await client.execute(uri: "/v1/completions", method: .post, headers: Self.json,
                                     body: Self.body(["model": "tiny-chat", "prompt": [1, 2, 3], "max_tokens": 2])) { r in
                let usage = try Self.object(r)["usage"] as? [String: Any]
                #expect(usage?["prompt_tokens"] as? Int == 3)
            }
        }
    }

    @Test func stopStringsCutTheText() async throws {
        let server = try Self.server()
        try await server.makeApplication().test(.router) { client in
            // Seeded sampling is reproducible; the random model's text is bytes and letters, so the stop string is
            // two ASCII characters from the second half of what it wrote.
            let sampled: [String: Any] = ["model": "tiny-chat", "prompt": "Hello", "max_tokens": 48, "temperature": 1, "seed": 4]
            var full = ""
            try await client.execute(uri: "/v1/completions", method: .post, headers: Self.json, body: Self.body(sampled)) { r in
                full = try #require(((try Self.object(r)["choices"] as? [[String: Any]])?.first?["text"]) as? String)
            }
            let characters = Array(full)
            let start = try #require((characters.count / 2..<max(characters.count / 2, characters.count - 1)).first {
                characters[$0].isASCII && characters[$0 + 1].isASCII && characters[$0] != characters[$0 + 1]
            }, "no ASCII pair in \(full.debugDescription)")
            let stop = String(characters[start...start + 1])
            let expected = String(full[..<full.range(of: stop)!.lowerBound])
            for stream in [false, true] {
                let body = Self.body(sampled.merging(["stop": stop, "stream": stream]) { $1 })
                try await client.execute(uri: "/v1/completions", method: .post, headers: Self.json, body: body) { r in
                    if stream {
                        let chunks = Self.events(r).dropLast().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                        let choices = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first }
                        #expect(choices.compactMap { $0["text"] as? String }.joined() == expected)
                        #expect(choices.compactMap { $0["finish_reason"] as? String } == ["stop"])
                    } else {
                        let choice = try #require((try Self.object(r)["choices"] as? [[String: Any]])?.first)
                        #expect(choice["text"] as? String == expected)
                        #expect(choice["finish_reason"] as? String == "stop")
                    }
                }
            }
        }
    }

    @Test func tokenizeAndDetokenize() async throws {
        let server = try Self.server()
        try await server.makeApplication().test(.router) { client in
            var tokens: [Int] = []
            try await client.execute(uri: "/tokenize", method: .post, headers: Self.json,
                                     body: Self.body(["model": "tiny-chat", "prompt": "Hello, world!"])) { r in
                let o = try Self.object(r)
                tokens = try #require(o["tokens"] as? [Int])
                #expect(tokens == (try TestModel.tokenizer().encode("Hello, world!")))
                #expect(o["count"] as? Int == tokens.count)
            }
            try await client.execute(uri: "/detokenize", method: .post, headers: Self.json,
                                     body: Self.body(["tokens": tokens])) { r in
                let o = try Self.object(r)
                #expect(o["prompt"] as? String == "Hello, world!")
            }
            try await client.execute(uri: "/detokenize", method: .post, headers: Self.json, body: Self.body(["tokens": [-1]])) { r in
                try Self.expectError(r, .badRequest, param: "tokens")
            }
            try await client.execute(uri: "/tokenize", method: .post, headers: Self.json, body: Self.body(["prompt": 5])) { r in
                try Self.expectError(r, .badRequest, param: "prompt")
            }
        }
    }

    @Test func badRequestsAre400AndTheServerKeepsServing() async throws {
        let server = try Self.server()
        try await server.makeApplication().test(.router) { client in
            let cases: [(ByteBuffer, String?)] = [
                (ByteBuffer(string: "{not json"), nil),
                (ByteBuffer(string: ""), nil),
                (ByteBuffer(bytes: [0x7B, 0x22, 0xFF, 0xFE, 0x22, 0x3A, 0x31, 0x7D]), nil),   // invalid UTF-8
                (ByteBuffer(string: "[1, 2, 3]"), nil),
                (Self.body(["messages": [["role": "user", "content": "hi"]]]), "model"),
                (Self.body(["model": "gpt-4", "messages": [["role": "user", "content": "hi"]]]), "model"),
                (Self.body(["model": "tiny-chat"]), "messages"),
                (Self.body(["model": "tiny-chat", "messages": []]), "messages"),
                (Self.body(["model": "tiny-chat", "messages": "hi"]), "messages"),
                (Self.body(["model": "tiny-chat", "messages": [["content": "hi"]]]), "messages[0].role"),
                (Self.chat(extra: ["temperature": "hot"]), "temperature"),
                (Self.chat(extra: ["temperature": 5]), "temperature"),
                (Self.chat(extra: ["temperature": -1]), "temperature"),
                (Self.chat(extra: ["max_tokens": -3]), "max_tokens"),
                (Self.chat(extra: ["max_tokens": 0]), "max_tokens"),
                (Self.chat(extra: ["max_tokens": 1e300]), "max_tokens"),
                (Self.chat(extra: ["top_p": 0]), "top_p"),
                (Self.chat(extra: ["top_p": 1.5]), "top_p"),
                (Self.chat(extra: ["n": 0]), "n"),
                (Self.chat(extra: ["n": 1000]), "n"),
                (Self.chat(extra: ["presence_penalty": 3]), "presence_penalty"),
                (Self.chat(extra: ["frequency_penalty": -9]), "frequency_penalty"),
                (Self.chat(extra: ["top_k": -5]), "top_k"),
                (Self.chat(extra: ["min_p": 2]), "min_p"),
                (Self.chat(extra: ["repetition_penalty": 0]), "repetition_penalty"),
                (Self.chat(extra: ["logprobs": true, "top_logprobs": 50]), "top_logprobs"),
                (Self.chat(extra: ["top_logprobs": 2]), "top_logprobs"),
                (Self.chat(extra: ["speculative": "mtp"]), "speculative"),
                (Self.chat(extra: ["speculative": "lookup", "draft_tokens": 99]), "draft_tokens"),
                (Self.chat(extra: ["draft_tokens": 4]), "draft_tokens"),
                (Self.chat(extra: ["stop": ["a", "b", "c", "d", "e"]]), "stop"),
                (Self.chat(extra: ["stream_options": ["include_usage": true]]), "stream_options"),
                (Self.chat(extra: ["seed": "x"]), "seed"),
                (Self.chat(String(repeating: "Hello, world! ", count: 400)), "messages"),
                (Self.body(["model": "tiny-chat", "prompt": [1, 99999]]), "prompt"),
                (Self.body(["model": "tiny-chat", "prompt": ["a", "b"]]), "prompt"),
            ]
            for (i, (body, param)) in cases.enumerated() {
                let uri = param == "prompt" ? "/v1/completions" : "/v1/chat/completions"
                try await client.execute(uri: uri, method: .post, headers: Self.json, body: body) { r in
                    #expect(r.status == .badRequest, "case \(i): \(String(buffer: body).prefix(80))")
                    let error = try Self.expectError(r, .badRequest)
                    if let param { #expect(error["param"] as? String == param, "case \(i)") }
                }
            }
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: Self.json, body: Self.chat()) { r in
                #expect(r.status == .ok)
            }
        }
        // Refused requests are rows with their status, no tokens and no cost; only the answered one is billed.
        let records = try server.sqliteLedger.records()
        #expect(records.count > 10)
        #expect(records.filter { $0.status == 200 }.count == 1)
        #expect(records.filter { $0.status != 200 }.allSatisfy {
            $0.status == 400 && $0.costUSD == 0 && $0.promptTokens == 0 && $0.completionTokens == 0 && $0.finishReason == .error
        })
        let summary = try #require(try server.sqliteLedger.summary(keyHash: nil, since: nil).first)
        #expect(summary.costUSD == records.first { $0.status == 200 }?.costUSD)
    }

    @Test func keysBodyLimitQueueAndQuota() async throws {
        let server = try Self.server(keys: ["sk-alpha", "sk-beta"]) { o in
            o.maxBodyBytes = 4096
            o.dailyTokenQuota = 60
        }
        try await server.makeApplication().test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: Self.json, body: Self.chat()) { r in
                try Self.expectError(r, .unauthorized)
            }
            var wrong = Self.json
            wrong[.authorization] = "Bearer sk-gamma"
            try await client.execute(uri: "/v1/models", method: .get, headers: wrong) { r in try Self.expectError(r, .unauthorized) }
            var alpha = Self.json
            alpha[.authorization] = "Bearer sk-alpha"
            try await client.execute(uri: "/v1/models", method: .get, headers: alpha) { r in #expect(r.status == .ok) }
            // Open endpoints need no key.
            try await client.execute(uri: "/health", method: .get) { r in #expect(r.status == .ok) }
            // 413 before anything is parsed.
            let huge = ByteBuffer(string: "{\"model\": \"tiny-chat\", \"messages\": [{\"role\": \"user\", \"content\": \"" + String(repeating: "x", count: 10_000) + "\"}]}")
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: alpha, body: huge) { r in
                try Self.expectError(r, .contentTooLarge)
            }
            // The quota: 60 tokens a day per key; the first request fits, then 429; the other key is untouched.
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: alpha, body: Self.chat(extra: ["max_tokens": 40])) { r in
                #expect(r.status == .ok)
                let usage = try #require(try Self.object(r)["usage"] as? [String: Any])
                #expect(try #require(usage["total_tokens"] as? Int) <= 60)
            }
            var spent = false
            for _ in 0..<4 where !spent {
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: alpha, body: Self.chat()) { r in
                    if r.status == .tooManyRequests {
                        spent = true
                        let error = try Self.expectError(r, .tooManyRequests)
                        #expect(error["code"] as? String == "insufficient_quota")
                    }
                }
            }
            #expect(spent)
            var beta = Self.json
            beta[.authorization] = "Bearer sk-beta"
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: beta, body: Self.chat()) { r in
                #expect(r.status == .ok)
            }
        }
        // Keys are stored hashed; the request without a key is a row of its own (401, cost 0), and so are the 413
        // and the 429s of sk-alpha.
        let rows = try server.sqliteLedger.summary(keyHash: nil, since: nil)
        let keyed = rows.filter { $0.keyHash != UsageLedger.unauthenticatedKeyHash }
        #expect(keyed.count == 2)
        #expect(keyed.allSatisfy { !$0.keyHash.contains("sk-") && $0.keyHash.count == 64 })
        let anonymous = try #require(rows.first { $0.keyHash == UsageLedger.unauthenticatedKeyHash })
        #expect(anonymous.requests == 1 && anonymous.costUSD == 0)
        let statuses = try server.sqliteLedger.records().map(\.status)
        #expect(statuses.contains(401) && statuses.contains(413) && statuses.contains(429))
    }

    /// `/openapi.json` is OpenAPI 3.1; every operation it lists is served (no 404/405), it lists every route
    /// `makeRouter` registers, and valid requests answer with the fields its schemas require.
    @Test func openAPIDescribesTheRoutes() async throws {
        let server = try Self.server()
        let served: Set<String> = ["GET /", "GET /health", "GET /metrics", "GET /openapi.json", "GET /v1/models",
                                   "GET /v1/models/{id}", "POST /v1/chat/completions", "POST /v1/completions",
                                   "POST /v1/responses", "GET /v1/responses/{id}",
                                   "POST /tokenize", "POST /detokenize"]
        try await server.makeApplication().test(.router) { client in
            var document: [String: Any] = [:]
            try await client.execute(uri: "/openapi.json", method: .get) { r in
                #expect(r.status == .ok)
                document = try Self.object(r)
            }
            #expect(document["openapi"] as? String == "3.1.0")
            let paths = try #require(document["paths"] as? [String: [String: Any]])
            var listed: Set<String> = []
            for (path, operations) in paths {
                for method in operations.keys {
                    listed.insert("\(method.uppercased()) \(path)")
                    let uri = path.replacingOccurrences(of: "{id}", with: "tiny-chat")
                    try await client.execute(uri: uri, method: method == "post" ? .post : .get, headers: Self.json) { r in
                        // (A response id that was never made is a 404 of its own, naming the id.)
                        #expect((r.status != .notFound || path == "/v1/responses/{id}") && r.status != .methodNotAllowed, "\(method) \(path): \(r.status)")
                    }
                }
            }
            #expect(listed == served)
            // Answers carry what the schemas require.
            let schemas = try #require((document["components"] as? [String: Any])?["schemas"] as? [String: [String: Any]])
            func required(_ name: String) -> [String] { schemas[name]?["required"] as? [String] ?? [] }
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: Self.json, body: Self.chat()) { r in
                let o = try Self.object(r)
                #expect(required("Completion").allSatisfy { o[$0] != nil })
                let usage = try #require(o["usage"] as? [String: Any])
                #expect(required("Usage").allSatisfy { usage[$0] != nil })
            }
            try await client.execute(uri: "/v1/models/tiny-chat", method: .get) { r in
                let o = try Self.object(r)
                #expect(required("Model").allSatisfy { o[$0] != nil })
            }
            try await client.execute(uri: "/v1/models/nope", method: .get) { r in
                let o = try Self.object(r)
                #expect(required("Error").allSatisfy { o[$0] != nil })
            }
        }
    }

    @Test func fullQueueIs429() async throws {
        let server = try Self.server { $0.queueLimit = 0 }
        try await server.makeApplication().test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: Self.json, body: Self.chat()) { r in
                let error = try Self.expectError(r, .tooManyRequests)
                #expect(error["code"] as? String == "rate_limit_exceeded")
            }
            try await client.execute(uri: "/health", method: .get) { r in #expect(r.status == .ok) }
        }
    }
}

/// What a server must hold to under faults: its ledger failing, a client hanging up, sizes it cannot hold.
@Suite(.serialized) struct ServingFaultTests {
    /// A usage row that cannot be written: the client gets a 500 that names only a request id (no SQLite text,
    /// no path), `/health` says degraded and `/metrics` counts it.
    @Test func ledgerFailureIsAGeneric500AndDegradedHealth() async throws {
        let server = try ServingRouterTests.server()
        try await server.sqliteLedger.database.write { try $0.execute(sql: "DROP TABLE requests") }
        try await server.makeApplication().test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: ServingRouterTests.json,
                                     body: ServingRouterTests.chat()) { r in
                let error = try ServingRouterTests.expectError(r, .internalServerError)
                let message = try #require(error["message"] as? String)
                let id = try #require(r.headers[.init("X-Request-Id")!])
                #expect(message.contains(id))
                #expect(!message.lowercased().contains("sqlite") && !message.contains("requests") && !message.contains("/"))
            }
            try await client.execute(uri: "/health", method: .get) { r in
                let o = try ServingRouterTests.object(r)
                #expect(o["status"] as? String == "degraded")
                #expect(o["ledger_write_failures"] as? Int == 1)
            }
            try await client.execute(uri: "/metrics", method: .get) { r in
                #expect(String(buffer: r.body).contains("moe_ledger_write_failures_total 1"))
            }
        }
    }

    /// `--ctx-size`: the served context is what the caches hold, what `/v1/models` reports and what prompts are
    /// checked against.
    @Test func contextSizeIsServedAndChecked() async throws {
        let server = try ServingRouterTests.server { $0.contextSize = 24 }
        #expect(server.engine.contextSize == 24)
        try await server.makeApplication().test(.router) { client in
            try await client.execute(uri: "/v1/models/tiny-chat", method: .get) { r in
                let o = try ServingRouterTests.object(r)
                #expect(o["max_model_len"] as? Int == 24)
            }
            let long = ServingRouterTests.body(["model": "tiny-chat", "prompt": Array(repeating: 5, count: 24), "max_tokens": 1])
            try await client.execute(uri: "/v1/completions", method: .post, headers: ServingRouterTests.json, body: long) { r in
                let error = try ServingRouterTests.expectError(r, .badRequest)
                #expect(error["code"] as? String == "context_length_exceeded")
            }
            let fits = ServingRouterTests.body(["model": "tiny-chat", "prompt": Array(repeating: 5, count: 20), "max_tokens": 50,
                                                "ignore_eos": true])
            try await client.execute(uri: "/v1/completions", method: .post, headers: ServingRouterTests.json, body: fits) { r in
                let usage = try #require(try ServingRouterTests.object(r)["usage"] as? [String: Any])
                #expect(usage["completion_tokens"] as? Int == 4)
            }
        }
    }

    /// The KV page pool is planned at start: all slots' contexts when they fit the limit, fewer pages (shared as
    /// sequences grow) when not, refused with what to change when not even one context fits; sizes whose product
    /// overflows too.
    @Test func kvMemoryIsPlannedAtStart() throws {
        #expect {
            try ServingRouterTests.server { $0.memoryLimit = 1 << 10 }
        } throws: { error in
            "\(error)".contains("lower --ctx-size or raise --memory-limit")
        }
        let model = try TestModel.transformer()
        let pageBytes = 2 * 4 * model.layers.count * model.config.numKeyValueHeads * model.config.headDim * 16
        // 4 slots × 64 positions = 16 pages of 16 positions when the limit allows…
        #expect(try planKVPages(model, parallel: 4, contextSize: 64, pageSize: 16, limit: 100 * pageBytes, limitSource: "") == 16)
        // …else what fits, as long as one context does.
        #expect(try planKVPages(model, parallel: 4, contextSize: 64, pageSize: 16, limit: 6 * pageBytes + 1, limitSource: "") == 6)
        #expect(throws: ServerStartError.self) {
            try planKVPages(model, parallel: 4, contextSize: 64, pageSize: 16, limit: 3 * pageBytes, limitSource: "")
        }
        #expect(throws: ServerStartError.self) {
            try planKVPages(model, parallel: 2, contextSize: 1 << 20, pageSize: Int.max / 2, limit: Int.max, limitSource: "")
        }
        #expect(throws: ServerStartError.self) { try ServingRouterTests.server { $0.contextSize = 1 << 40 } }
    }

    @Test func unencodableJSONIsAnError() {
        #expect(throws: APIError.self) { try jsonData(["logprob": Double.nan]) }
    }

    /// A client that hangs up on a non-streaming request: generation stops at the next step (not at
    /// `max_tokens`), and its row says `cancelled` (499) with the tokens it used.
    @Test func nonStreamingHangUpStopsGenerationAndIsRecorded() async throws {
        let server = try ServingRouterTests.server {
            $0.port = 0
            $0.watchesConnections = true
        }
        // Slow steps, so that the whole answer takes seconds and the hang-up comes first; the first hang-up waits for
        // a few steps (on a loaded machine the request may take longer than any fixed delay to start).
        let steps = StepCounter()
        server.engine.observeSteps { steps.increment(); usleep(20_000) }
        try await server.makeApplication().test(.live) { client in
            let port = try #require(client.port)
            let body = #"{"model": "tiny-chat", "prompt": "Hello", "max_tokens": 200, "ignore_eos": true}"#
            let request = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
            try sendAndHangUp(port: port, request: request, after: 0.3, atLeast: 3, of: steps)
            var row: UsageRecord?
            for _ in 0..<100 where row == nil {
                try await Task.sleep(for: .milliseconds(50))
                row = try server.sqliteLedger.records().first
            }
            let recorded = try #require(row)
            #expect(recorded.status == 499 && recorded.finishReason == .cancelled)
            #expect(recorded.completionTokens > 0 && recorded.completionTokens < 100, "\(recorded.completionTokens) tokens")
            #expect(server.engine.statistics.active == 0)
            // Hanging up at once, before the handler may even have run: never generated to the end and billed as
            // answered (a row, when the request got that far, is a 499).
            try sendAndHangUp(port: port, request: request, after: 0)
            try await Task.sleep(for: .seconds(2))
            let rows = try server.sqliteLedger.records()
            #expect(rows.allSatisfy { $0.status == 499 && $0.completionTokens < 100 }, "\(rows.map { ($0.status, $0.completionTokens) })")
        }
        server.engine.observeSteps(nil)
    }
}

/// Abuse limits: requests per key per minute, `max_tokens` capped, connections capped, heads that never come.
@Suite(.serialized) struct ServingLimitTests {
    @Test func rateLimitAnswers429WithRetryAfterPerKey() async throws {
        let server = try ServingRouterTests.server(keys: ["sk-a", "sk-b"]) { $0.rateLimitPerMinute = 2 }
        var keyA = ServingRouterTests.json, keyB = ServingRouterTests.json
        keyA[.authorization] = "Bearer sk-a"
        keyB[.authorization] = "Bearer sk-b"
        let a = keyA, b = keyB
        try await server.makeApplication().test(.router) { client in
            for _ in 0..<2 {
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: a, body: ServingRouterTests.chat()) { r in
                    #expect(r.status == .ok)
                }
            }
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: a, body: ServingRouterTests.chat()) { r in
                let error = try ServingRouterTests.expectError(r, .tooManyRequests)
                #expect(error["code"] as? String == "rate_limit_exceeded")
                #expect(Int(r.headers[.retryAfter] ?? "") ?? 0 >= 1)
            }
            // Another key has its own bucket.
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: b, body: ServingRouterTests.chat()) { r in
                #expect(r.status == .ok)
            }
        }
        let limiter = RateLimiter(perMinute: 60)
        let t0 = ContinuousClock.now
        for _ in 0..<60 { #expect(limiter.take(keyHash: "k", now: t0) == nil) }
        #expect(limiter.take(keyHash: "k", now: t0) == 1)
        #expect(limiter.take(keyHash: "k", now: t0 + .seconds(1)) == nil)   // one more per second
    }

    @Test func maxTokensAreCappedByTheServer() async throws {
        let server = try ServingRouterTests.server { $0.maxTokensLimit = 3 }
        try await server.makeApplication().test(.router) { client in
            let body = ServingRouterTests.body(["model": "tiny-chat", "prompt": "Hello", "max_tokens": 50, "ignore_eos": true])
            try await client.execute(uri: "/v1/completions", method: .post, headers: ServingRouterTests.json, body: body) { r in
                let o = try ServingRouterTests.object(r)
                #expect((o["usage"] as? [String: Any])?["completion_tokens"] as? Int == 3)
                #expect(((o["choices"] as? [[String: Any]])?.first)?["finish_reason"] as? String == "length")
            }
        }
    }

    /// Beyond `maxConnections` a connection is closed at once; a connection that sends no request head is closed
    /// after `headerTimeoutSeconds`; the counts come back down when connections close.
    @Test func connectionCapAndHeadDeadline() async throws {
        let server = try ServingRouterTests.server {
            $0.port = 0
            $0.maxConnections = 2
            $0.headerTimeoutSeconds = 1
        }
        try await server.makeApplication().test(.live) { client in
            let port = try #require(client.port)
            // The test client's own connection may hold one of the two places: open up to the cap, then one more.
            var open: [Int32] = []
            defer { for fd in open { close(fd) } }
            for _ in 0..<3 { open.append(try connectTo(port: port)) }
            try await Task.sleep(for: .milliseconds(300))
            let closedAtOnce = open.filter { isClosedByPeer($0) }
            #expect(!closedAtOnce.isEmpty, "a connection beyond the cap is closed")
            // The others sent nothing: closed once the head deadline passes.
            try await Task.sleep(for: .milliseconds(1500))
            #expect(open.allSatisfy { isClosedByPeer($0) })
            try await Task.sleep(for: .milliseconds(100))
            #expect(server.connectionLimits.openConnections <= 1)
        }
    }
}

/// A connected TCP socket to 127.0.0.1:`port`.
private func connectTo(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
    return fd
}

/// Whether the peer closed `fd`: a non-blocking read sees end of file (or a reset).
private func isClosedByPeer(_ fd: Int32) -> Bool {
    var byte: UInt8 = 0
    let n = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
}

/// Connects to 127.0.0.1:`port`, writes `request`, waits `after` seconds and closes the socket unread.
private func sendAndHangUp(port: Int, request: String, after seconds: Double, atLeast steps: Int = 0,
                           of counter: StepCounter? = nil) throws {
    let fd = try connectTo(port: port)
    defer { close(fd) }
    let bytes = Array(request.utf8)
    guard write(fd, bytes, bytes.count) == bytes.count else { throw POSIXError(.EIO) }
    usleep(UInt32(seconds * 1_000_000))
    // Then until the engine has taken `steps` steps (at most 20 s more).
    if let counter {
        for _ in 0..<2000 where counter.value < steps { usleep(10_000) }
    }
}

/// Engine steps seen by an `observeSteps` hook (called on the engine's thread, read by the test's).
private final class StepCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}

extension ModelServer {
    /// The SQLite ledger these tests' servers open.
    var sqliteLedger: UsageLedger { ledger as! UsageLedger }
}
