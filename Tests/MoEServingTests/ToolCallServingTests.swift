import Foundation
import Hummingbird
import HummingbirdTesting
import MoEModel
import MoETokenizer
import Testing
@testable import MoEServing

/// Tool calls on a model whose template teaches Qwen's `<tool_call>` syntax: read back into `tool_calls`,
/// and made by constrained decoding when `tool_choice` requires one.
@Suite(.serialized) struct ToolCallServingTests {
    typealias R = ServingRouterTests

    static func server() throws -> ModelServer {
        var options = ServerOptions()
        options.ledgerPath = TestModel.ledgerPath()
        options.parallel = 4
        options.watchesConnections = false
        return try ModelServer(model: Transformer(directory: TestModel.toolDirectory, threads: 1),
                               tokenizer: Tokenizer(directory: TestModel.toolDirectory), options: options)
    }

    static let tools = #"""
        [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.", "parameters":
           {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"], "additionalProperties": false}}},
         {"type": "function", "function": {"name": "add", "parameters":
           {"type": "object", "properties": {"a": {"type": "integer", "minimum": -99, "maximum": 99}, "b": {"type": "integer", "minimum": 0, "maximum": 9}},
            "required": ["a", "b"]}}}]
        """#

    static func request(_ extra: String, stream: Bool = false) -> ByteBuffer {
        ByteBuffer(string: #"{"model": "tiny-tools", "messages": [{"role": "user", "content": "Weather in Paris, and 2 + 3?"}], "tools": "#
                   + tools + ", \"max_tokens\": 800, \"stream\": \(stream)" + (extra.isEmpty ? "" : ", " + extra) + "}")
    }

    /// Checks one call against its tool's schema; returns its name.
    static func checkCall(_ call: [String: Any]) throws -> String {
        #expect((call["id"] as? String)?.hasPrefix("call_") == true && call["type"] as? String == "function")
        let function = try #require(call["function"] as? [String: Any])
        let name = try #require(function["name"] as? String)
        let arguments = try #require(function["arguments"] as? String)
        let args = try #require(try JSONSerialization.jsonObject(with: Data(arguments.utf8)) as? [String: Any], "\(arguments)")
        switch name {
        case "get_weather":
            #expect((args["city"] as? String).map { $0.count <= 8 } == true && ["celsius", "fahrenheit"].contains(args["unit"] as? String ?? ""), "\(arguments)")
            #expect(Set(args.keys) == ["city", "unit"])
        case "add":
            #expect((args["a"] as? Int).map { (-99...99).contains($0) } == true && (args["b"] as? Int).map { (0...9).contains($0) } == true, "\(arguments)")
        default: Issue.record("unknown tool \(name)")
        }
        return name
    }

    @Test func requiredAndNamedCallsAreMadeByConstrainedDecoding() async throws {
        let server = try Self.server()
        try await server.makeApplication().test(.router) { client in
            var names: Set<String> = [], counts: Set<Int> = []
            for seed in 0..<6 {
                let extra = #""tool_choice": "required", "temperature": 1.0, "n": 2, "seed": "# + "\(seed)"
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: R.json, body: Self.request(extra)) { r in
                    #expect(r.status == .ok)
                    for choice in try #require(try R.object(r)["choices"] as? [[String: Any]]) {
                        #expect(choice["finish_reason"] as? String == "tool_calls")
                        let message = try #require(choice["message"] as? [String: Any])
                        #expect(message["content"] is NSNull || (message["content"] as? String)?.isEmpty == true)
                        let calls = try #require(message["tool_calls"] as? [[String: Any]], "\(message)")
                        counts.insert(calls.count)
                        for call in calls { names.insert(try Self.checkCall(call)) }
                    }
                }
            }
            #expect(names == ["get_weather", "add"], "both tools were chosen by some sample")
            // Named: that function, once; parallel_tool_calls false: one call.
            for extra in [#""tool_choice": {"type": "function", "function": {"name": "add"}}, "temperature": 1.0, "seed": 4"#,
                          #""tool_choice": "required", "parallel_tool_calls": false, "temperature": 1.0, "seed": 9"#] {
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: R.json, body: Self.request(extra)) { r in
                    let message = try #require((try R.object(r)["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])
                    let calls = try #require(message["tool_calls"] as? [[String: Any]])
                    #expect(calls.count == 1)
                    let name = try Self.checkCall(calls[0])
                    if extra.contains("\"add\"") { #expect(name == "add") }
                }
            }
            // Streamed: the deltas of each call assemble into the same shape.
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: R.json,
                                     body: Self.request(#""tool_choice": "required", "temperature": 1.0, "seed": 2"#, stream: true)) { r in
                var calls: [Int: (id: String, name: String, arguments: String)] = [:], finish: String?
                for event in R.events(r).dropLast() {
                    let chunk = try #require(try JSONSerialization.jsonObject(with: Data(event.utf8)) as? [String: Any])
                    for c in chunk["choices"] as? [[String: Any]] ?? [] {
                        if let f = c["finish_reason"] as? String { finish = f }
                        for d in (c["delta"] as? [String: Any])?["tool_calls"] as? [[String: Any]] ?? [] {
                            let i = try #require(d["index"] as? Int)
                            let f = d["function"] as? [String: Any]
                            var call = calls[i] ?? ("", "", "")
                            if let id = d["id"] as? String { call.id = id }
                            if let n = f?["name"] as? String { call.name = n }
                            call.arguments += f?["arguments"] as? String ?? ""
                            calls[i] = call
                        }
                    }
                }
                #expect(finish == "tool_calls" && !calls.isEmpty)
                for (_, c) in calls { _ = try Self.checkCall(["id": c.id, "type": "function", "function": ["name": c.name, "arguments": c.arguments]]) }
            }
        }
    }

    /// `tool_choice` auto: what the model writes in the template's syntax comes back as calls (a grammar makes
    /// this random model write one), text before it as content; a tool's result goes back through the template.
    @Test func autoReadsCallsAndToolResultsRender() async throws {
        let server = try Self.server()
        try await server.makeApplication().test(.router) { client in
            let script = #"root ::= "Let me see.<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 3}}\n</tool_call>""#
            let grammar = String(decoding: try JSONSerialization.data(withJSONObject: [script], options: .fragmentsAllowed), as: UTF8.self).dropFirst().dropLast()
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: R.json,
                                     body: Self.request(#""grammar": "# + grammar)) { r in
                let choice = try #require((try R.object(r)["choices"] as? [[String: Any]])?.first)
                let message = try #require(choice["message"] as? [String: Any])
                #expect(message["content"] as? String == "Let me see.")
                let calls = try #require(message["tool_calls"] as? [[String: Any]])
                #expect(calls.count == 1 && (calls[0]["function"] as? [String: Any])?["arguments"] as? String == #"{"a":2,"b":3}"#)
                #expect(choice["finish_reason"] as? String == "tool_calls")
            }
            // The call and its result, then the answer: the template renders both (arguments as OpenAI sends them, a string).
            let followUp = #"{"model": "tiny-tools", "max_tokens": 3, "tools": "# + Self.tools + #", "messages": [{"role": "user", "content": "2 + 3?"}, "#
                + #"{"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 2, \"b\": 3}"}}]}, "#
                + #"{"role": "tool", "tool_call_id": "call_1", "content": "5"}]}"#
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: R.json, body: ByteBuffer(string: followUp)) { r in
                #expect(r.status == .ok)
            }
        }
    }

    @Test func badToolRequestsAre400() async throws {
        let server = try Self.server()
        try await server.makeApplication().test(.router) { client in
            let cases: [(ByteBuffer, String, String)] = [
                (Self.request(#""tool_choice": {"type": "function", "function": {"name": "nope"}}"#), "tool_choice", "'nope'"),
                (Self.request(#""tool_choice": "sometimes""#), "tool_choice", "tool_choice"),
                (Self.request(#""tool_choice": "required", "response_format": {"type": "json_object"}"#), "tool_choice", "cannot go with"),
                (ByteBuffer(string: #"{"model": "tiny-tools", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}"#), "tool_choice", "needs 'tools'"),
                (ByteBuffer(string: #"{"model": "tiny-tools", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"description": "no name"}}]}"#), "tools", "tools[0]"),
                (ByteBuffer(string: #"{"model": "tiny-tools", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required", "#
                    + #""tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "not": {}}}}]}"#), "tools", "'not'"),
            ]
            for (body, param, words) in cases {
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: R.json, body: body) { r in
                    try R.expectError(r, .badRequest, param: param)
                    let message = ((try R.object(r)["error"] as? [String: Any])?["message"] as? String) ?? ""
                    #expect(message.contains(words), "\(message)")
                }
            }
        }
        // A template without a known call syntax cannot be required to call.
        let plain = try R.server()
        try await plain.makeApplication().test(.router) { client in
            let body = #"{"model": "tiny-chat", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required", "tools": "# + Self.tools + "}"
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: R.json, body: ByteBuffer(string: body)) { r in
                try R.expectError(r, .badRequest, param: "tool_choice")
            }
        }
    }
}
