import Foundation
import Hummingbird
import HummingbirdTesting
import MoEModel
import Testing
@testable import MoEServing

/// `POST /v1/responses`: response objects, typed stream events, previous_response_id, text.format, function calls.
@Suite(.serialized) struct ResponsesAPITests {
    typealias R = ServingRouterTests

    static func post(_ client: some TestClientProtocol, _ body: String, key: String? = nil,
                     _ check: @escaping (TestResponse) throws -> Void) async throws {
        var headers = R.json
        if let key { headers[.authorization] = "Bearer \(key)" }
        try await client.execute(uri: "/v1/responses", method: .post, headers: headers, body: ByteBuffer(string: body), testCallback: check)
    }

    static func outputText(_ o: [String: Any]) -> String {
        (o["output"] as? [[String: Any]] ?? []).filter { $0["type"] as? String == "message" }
            .flatMap { $0["content"] as? [[String: Any]] ?? [] }.compactMap { $0["text"] as? String }.joined()
    }

    @Test func responseObjectsConversationsAndStore() async throws {
        let server = try R.server(keys: ["sk-a", "sk-b"])
        try await server.makeApplication().test(.router) { client in
            var first: [String: Any] = [:]
            try await Self.post(client, #"{"model": "tiny-chat", "input": "Hello", "instructions": "Be brief.", "max_output_tokens": 5, "temperature": 0}"#, key: "sk-a") { r in
                #expect(r.status == .ok)
                first = try R.object(r)
            }
            #expect((first["id"] as? String)?.hasPrefix("resp_") == true && first["object"] as? String == "response")
            #expect(first["status"] as? String == "incomplete" && (first["incomplete_details"] as? [String: Any])?["reason"] as? String == "max_output_tokens")
            let items = try #require(first["output"] as? [[String: Any]])
            #expect(items.count == 1 && items[0]["type"] as? String == "message" && items[0]["role"] as? String == "assistant")
            let usage = try #require(first["usage"] as? [String: Any])
            #expect(usage["output_tokens"] as? Int == 5)
            let firstInput = try #require(usage["input_tokens"] as? Int)
            // The same as a chat completion with the instructions as the system message.
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: [.contentType: "application/json", .authorization: "Bearer sk-a"],
                                     body: ByteBuffer(string: #"{"model": "tiny-chat", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}], "max_tokens": 5, "temperature": 0}"#)) { r in
                let o = try R.object(r)
                let message = (o["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any]
                #expect(message?["content"] as? String == Self.outputText(first))
                #expect((o["usage"] as? [String: Any])?["prompt_tokens"] as? Int == firstInput)
            }
            // The next turn continues the conversation (the instructions are not carried over).
            let id = try #require(first["id"] as? String)
            try await Self.post(client, #"{"model": "tiny-chat", "input": [{"role": "user", "content": [{"type": "input_text", "text": "And then?"}]}], "previous_response_id": ""# + id + #"", "max_output_tokens": 3}"#, key: "sk-a") { r in
                #expect(r.status == .ok)
                let input = (try R.object(r)["usage"] as? [String: Any])?["input_tokens"] as? Int ?? 0
                #expect(input > firstInput, "\(input) > \(firstInput)")
                #expect(try R.object(r)["previous_response_id"] as? String == id)
            }
            // Stored for its key only.
            try await client.execute(uri: "/v1/responses/" + id, method: .get, headers: [.authorization: "Bearer sk-a"]) { r in
                let stored = try R.object(r)["id"] as? String
                #expect(r.status == .ok && stored == id)
            }
            try await client.execute(uri: "/v1/responses/" + id, method: .get, headers: [.authorization: "Bearer sk-b"]) { r in
                #expect(r.status == .notFound)
            }
            try await Self.post(client, #"{"model": "tiny-chat", "input": "x", "previous_response_id": ""# + id + #""}"#, key: "sk-b") { r in
                try R.expectError(r, .badRequest, param: "previous_response_id")
            }
            // store: false keeps nothing.
            var unstored = ""
            try await Self.post(client, #"{"model": "tiny-chat", "input": "Hi", "store": false, "max_output_tokens": 2}"#, key: "sk-a") { r in
                unstored = try R.object(r)["id"] as? String ?? ""
            }
            try await client.execute(uri: "/v1/responses/" + unstored, method: .get, headers: [.authorization: "Bearer sk-a"]) { r in
                #expect(r.status == .notFound)
            }
            for (body, param) in [(#"{"model": "tiny-chat"}"#, "input"), (#"{"model": "tiny-chat", "input": [{"type": "image", "url": "x"}]}"#, "input"),
                                  (#"{"model": "tiny-chat", "input": "x", "tools": [{"type": "web_search"}]}"#, "tools"),
                                  (#"{"model": "tiny-chat", "input": "x", "text": {"format": {"type": "json_schema", "schema": {"type": "object", "not": {}}}}}"#, "response_format")] {
                try await Self.post(client, body, key: "sk-a") { r in try R.expectError(r, .badRequest, param: param) }
            }
        }
        let rows = try server.sqliteLedger.summary(keyHash: nil, since: nil)
        #expect(rows.reduce(0) { $0 + $1.requests } >= 8)
    }

    /// Streamed: created first, completed last; the text deltas join into the final output; numbered events.
    @Test func streamedEventsAndStructuredText() async throws {
        let server = try R.server()
        try await server.makeApplication().test(.router) { client in
            let schema = #"{"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}, "c": {"enum": ["x", "y"]}}, "required": ["n", "c"]}"#
            for stream in [false, true] {
                let body = #"{"model": "tiny-chat", "input": "JSON", "temperature": 1.0, "seed": 3, "stream": "# + "\(stream)"
                    + #", "text": {"format": {"type": "json_schema", "name": "t", "strict": true, "schema": "# + schema + "}}}"
                try await Self.post(client, body) { r in
                    #expect(r.status == .ok)
                    var final: [String: Any] = [:], deltas = ""
                    if stream {
                        let raw = String(buffer: r.body).components(separatedBy: "\n\n").filter { !$0.isEmpty }
                        var types: [String] = [], numbers: [Int] = []
                        for event in raw {
                            let lines = event.split(separator: "\n")
                            #expect(lines.count == 2 && lines[0].hasPrefix("event: ") && lines[1].hasPrefix("data: "))
                            let o = try #require(try JSONSerialization.jsonObject(with: Data(lines[1].dropFirst(6).utf8)) as? [String: Any])
                            let type = try #require(o["type"] as? String)
                            #expect(lines[0] == "event: " + type)
                            types.append(type)
                            numbers.append(o["sequence_number"] as? Int ?? -1)
                            if type == "response.output_text.delta" { deltas += o["delta"] as? String ?? "" }
                            if type == "response.completed" { final = o["response"] as? [String: Any] ?? [:] }
                        }
                        #expect(types.first == "response.created" && types.last == "response.completed", "\(types)")
                        #expect(types.contains("response.output_item.added") && types.contains("response.output_text.done") && types.contains("response.output_item.done"))
                        #expect(numbers == Array(0..<numbers.count))
                        #expect(deltas == Self.outputText(final))
                    } else {
                        final = try R.object(r)
                    }
                    let text = Self.outputText(final)
                    let o = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
                    #expect((o["n"] as? Int).map { (0...9).contains($0) } == true && ["x", "y"].contains(o["c"] as? String ?? ""))
                    #expect(final["status"] as? String == "completed")
                }
            }
        }
    }

    /// A required call comes back as a function_call item; its output goes back as an input item and is answered.
    @Test func functionCallsAndTheirOutputs() async throws {
        let server = try ToolCallServingTests.server()
        try await server.makeApplication().test(.router) { client in
            let tools = #"[{"type": "function", "name": "add", "description": "Adds.", "parameters": {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}, "b": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["a", "b"]}}]"#
            for stream in [false, true] {
                var final: [String: Any] = [:]
                try await Self.post(client, #"{"model": "tiny-tools", "input": "2 + 3?", "tool_choice": "required", "parallel_tool_calls": false, "temperature": 1.0, "seed": 5, "stream": "# + "\(stream), \"tools\": " + tools + "}") { r in
                    #expect(r.status == .ok)
                    if stream {
                        for event in String(buffer: r.body).components(separatedBy: "\n\n") where event.contains("response.completed") {
                            let data = event.split(separator: "\n")[1].dropFirst(6)
                            final = (try JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any])?["response"] as? [String: Any] ?? [:]
                        }
                    } else {
                        final = try R.object(r)
                    }
                }
                let calls = (final["output"] as? [[String: Any]] ?? []).filter { $0["type"] as? String == "function_call" }
                #expect(calls.count == 1, "\(final)")
                let call = try #require(calls.first)
                #expect(call["name"] as? String == "add" && (call["call_id"] as? String)?.hasPrefix("call_") == true)
                let arguments = call["arguments"] as? String ?? ""
                let args = try JSONSerialization.jsonObject(with: Data(arguments.utf8)) as? [String: Any]
                #expect(args?["a"] is Int && args?["b"] is Int)
                let callID = call["call_id"] as? String ?? ""
                try await Self.post(client, #"{"model": "tiny-tools", "previous_response_id": ""# + (final["id"] as? String ?? "") + #"", "tools": "# + tools
                                    + #", "max_output_tokens": 4, "input": [{"type": "function_call_output", "call_id": ""# + callID + #"", "output": "5"}]}"#) { r in
                    #expect(r.status == .ok)
                    let output = try R.object(r)["output"] as? [[String: Any]]
                    #expect(output?.first?["type"] as? String == "message")
                }
            }
        }
    }
}
