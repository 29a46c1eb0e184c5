import Foundation
import Hummingbird
import HummingbirdTesting
import MoEModel
import MoETokenizer
import Testing
@testable import MoEServing

/// A harmony model's chat answers (gpt-oss's format) read back as `reasoning_content`, `content` and `tool_calls`,
/// whole and streamed, on the echo model (which writes the script its prompt ends with).
@Suite(.serialized) struct HarmonyServingTests {
    static func server(port: Int? = nil) throws -> ModelServer {
        var options = ServerOptions()
        options.ledgerPath = TestModel.ledgerPath()
        options.parallel = 2
        options.watchesConnections = port != nil
        if let port { options.port = port }
        return try ModelServer(model: Transformer(directory: EchoModel.directory, threads: 1),
                               tokenizer: Tokenizer(directory: EchoModel.directory), options: options)
    }

    static let answer = "<|channel|>analysis<|message|>The user asks about Paris.<|end|><|start|>assistant<|channel|>final<|message|>Paris is sunny.<|return|>"
    static let call = "<|channel|>analysis<|message|>I need the weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"location\": \"Paris\"}<|call|>"
    nonisolated(unsafe) static let weather: [String: Any] = ["type": "function", "function": [
        "name": "get_weather", "description": "The weather in a city.",
        "parameters": ["type": "object", "properties": ["location": ["type": "string"]], "required": ["location"]]]]

    static func request(_ script: String, stream: Bool = false, extra: [String: Any] = [:]) -> ByteBuffer {
        ServingRouterTests.body(["model": "echo", "messages": [["role": "user", "content": EchoModel.padded(script)]],
                                 "max_tokens": 400, "temperature": 0, "stream": stream, "tools": [weather]].merging(extra) { $1 })
    }

    /// The message of a whole answer, or the message the deltas of a streamed one add up to.
    static func message(_ r: TestResponse, streamed: Bool) throws -> (message: [String: Any], finish: String?) {
        #expect(r.status == .ok)
        guard streamed else {
            let choice = try #require((try ServingRouterTests.object(r)["choices"] as? [[String: Any]])?.first)
            return (try #require(choice["message"] as? [String: Any]), choice["finish_reason"] as? String)
        }
        var content = "", reasoning = "", finish: String?
        var calls: [[String: Any]] = []
        for event in ServingRouterTests.events(r).dropLast() {
            let chunk = try #require(JSONSerialization.jsonObject(with: Data(event.utf8)) as? [String: Any])
            let choice = try #require((chunk["choices"] as? [[String: Any]])?.first)
            finish = choice["finish_reason"] as? String ?? finish
            let delta = try #require(choice["delta"] as? [String: Any])
            content += delta["content"] as? String ?? ""
            reasoning += delta["reasoning_content"] as? String ?? ""
            for call in delta["tool_calls"] as? [[String: Any]] ?? [] {
                let i = try #require(call["index"] as? Int)
                let function = call["function"] as? [String: Any] ?? [:]
                if i == calls.count {
                    #expect(call["id"] is String && call["type"] as? String == "function")
                    calls.append(["id": call["id"]!, "name": function["name"] as? String ?? "", "arguments": ""])
                }
                calls[i]["arguments"] = (calls[i]["arguments"] as! String) + (function["arguments"] as? String ?? "")
            }
        }
        var message: [String: Any] = ["content": content, "reasoning_content": reasoning]
        if !calls.isEmpty {
            message["tool_calls"] = calls.map { ["id": $0["id"]!, "function": ["name": $0["name"]!, "arguments": $0["arguments"]!]] }
        }
        return (message, finish)
    }

    @Test(arguments: [false, true])
    func reasoningAndContent(stream: Bool) async throws {
        let server = try Self.server()
        try await server.makeApplication().test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: ServingRouterTests.json,
                                     body: Self.request(Self.answer, stream: stream)) { r in
                let (m, finish) = try Self.message(r, streamed: stream)
                #expect(m["reasoning_content"] as? String == "The user asks about Paris.")
                #expect((m["content"] as? String)?.trimmingCharacters(in: .whitespaces) == "Paris is sunny.")
                #expect(m["tool_calls"] == nil)
                #expect(finish == "stop")
            }
        }
    }

    @Test(arguments: [false, true])
    func toolCalls(stream: Bool) async throws {
        let server = try Self.server()
        try await server.makeApplication().test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: ServingRouterTests.json,
                                     body: Self.request(Self.call, stream: stream, extra: ["reasoning_effort": "high"])) { r in
                let (m, finish) = try Self.message(r, streamed: stream)
                #expect(m["reasoning_content"] as? String == "I need the weather.")
                #expect(stream ? (m["content"] as? String) == "" : m["content"] is NSNull)
                let call = try #require((m["tool_calls"] as? [[String: Any]])?.first)
                let function = try #require(call["function"] as? [String: Any])
                #expect(function["name"] as? String == "get_weather")
                let arguments = try JSONSerialization.jsonObject(with: Data(try #require(function["arguments"] as? String).utf8))
                #expect((arguments as? [String: String]) == ["location": "Paris"])
                #expect((call["id"] as? String)?.hasPrefix("call_") == true)
                #expect(finish == "tool_calls")
            }
        }
    }

    /// The call and its result go back in the next request (arguments as OpenAI sends them: a JSON string), and the
    /// template renders them; output that is not harmony comes back as content.
    @Test func toolRoundTripAndPlainOutput() async throws {
        let server = try Self.server()
        try await server.makeApplication().test(.router) { client in
            let messages: [[String: Any]] = [
                ["role": "user", "content": "Weather in Paris?"],
                ["role": "assistant", "content": NSNull(), "tool_calls": [["id": "call_1", "type": "function",
                                                                          "function": ["name": "get_weather", "arguments": "{\"location\": \"Paris\"}"]]]],
                ["role": "tool", "tool_call_id": "call_1", "content": "{\"sky\": \"clear\"}"],
                ["role": "user", "content": EchoModel.padded("Plain words, no harmony here.<|return|>")],
            ]
            let body = ServingRouterTests.body(["model": "echo", "messages": messages, "max_tokens": 400, "temperature": 0, "tools": [Self.weather]])
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: ServingRouterTests.json, body: body) { r in
                let (m, finish) = try Self.message(r, streamed: false)
                #expect((m["content"] as? String)?.trimmingCharacters(in: .whitespaces) == "Plain words, no harmony here.")
                #expect(m["reasoning_content"] == nil && m["tool_calls"] == nil)
                #expect(finish == "stop")
            }
            // The rendered prompt holds the call's arguments as JSON (not a quoted string) and the reasoning effort.
            let tokenizer = try Tokenizer(directory: EchoModel.directory)
            let rendered = try ChatTemplate(EchoModel.template).render(
                messages: try JSONDecoder().decode([ChatCompletionRequest.Message].self, from: JSONSerialization.data(withJSONObject: messages))
                    .map(\.chatMessage).map(\.templateValue),
                addGenerationPrompt: true, extra: ["reasoning_effort": "low"])
            #expect(rendered.contains("<|message|>{\"location\": \"Paris\"}<|call|>") && rendered.contains("Reasoning: low"))
            _ = tokenizer
        }
    }

    @Test func refusals() async throws {
        let server = try Self.server()
        try await server.makeApplication().test(.router) { client in
            for (extra, param) in [(["reasoning_effort": "extreme"], "reasoning_effort"), (["tool_choice": "required"], "tool_choice"),
                                   (["tools": [["type": "function"]]], "tools")] as [([String: Any], String)] {
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: ServingRouterTests.json,
                                         body: Self.request(Self.answer, extra: extra)) { r in
                    try ServingRouterTests.expectError(r, .badRequest, param: param)
                }
            }
        }
    }

    /// The official `openai` client (MOE_TEST_PYTHON, as CI sets it) reads `reasoning_content`, `content` and
    /// `tool_calls`, streamed and not, from a live server on the echo model.
    @Test func officialClientReadsChannels() async throws {
        guard let python = ProcessInfo.processInfo.environment["MOE_TEST_PYTHON"], !python.isEmpty else { return }
        let server = try Self.server(port: 0)
        try await server.makeApplication().test(.live) { client in
            let port = try #require(client.port)
            let (status, log) = try await runScript(python, "openai_harmony_e2e.py", ["--base-url", "http://127.0.0.1:\(port)/v1", "--model", "echo",
                                                                                "--script-tokens", String(EchoModel.scriptTokens)])
            #expect(status == 0 && log.contains("all checks passed"), "\(log)")
        }
    }
}
