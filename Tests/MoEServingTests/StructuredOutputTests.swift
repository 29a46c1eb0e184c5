import Foundation
import Hummingbird
import HummingbirdTesting
import MoEGrammar
import MoEModel
import Testing
@testable import MoEServing

/// `response_format` and `grammar`: every answer of a random model matches, by construction.
@Suite(.serialized) struct StructuredOutputTests {
    typealias R = ServingRouterTests

    /// Written out, so that the request carries the properties in this order.
    static let schema = #"""
        {"type": "object", "properties": {"name": {"type": "string", "maxLength": 6},
         "age": {"type": "integer", "minimum": 0, "maximum": 120}, "color": {"enum": ["red", "green", "blue"]},
         "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]{1,3}$"}, "maxItems": 3},
         "ok": {"type": "boolean"}}, "required": ["name", "age", "color", "tags"], "additionalProperties": false}
        """#

    static func content(_ choice: [String: Any]) -> String? {
        (choice["message"] as? [String: Any])?["content"] as? String ?? choice["text"] as? String
    }

    @Test func jsonSchemaAnswersAlwaysValidate() async throws {
        let server = try R.server()
        try await server.makeApplication().test(.router) { client in
            for seed in 0..<6 {
                let body = #"{"model": "tiny-chat", "messages": [{"role": "user", "content": "Hello"}], "temperature": 1.0, "seed": "#
                    + "\(seed), \"n\": 3, \"max_tokens\": 200, " + (seed % 2 == 1 ? #""speculative": "lookup", "# : "")
                    + #""response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": true, "schema": "# + Self.schema + "}}}"
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: R.json, body: ByteBuffer(string: body)) { r in
                    #expect(r.status == .ok)
                    for choice in try #require(try R.object(r)["choices"] as? [[String: Any]]) {
                        #expect(choice["finish_reason"] as? String == "stop")
                        let text = try #require(Self.content(choice))
                        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
                        #expect((object["name"] as? String).map { $0.count <= 6 } == true, "\(text)")
                        #expect((object["age"] as? Int).map { (0...120).contains($0) } == true, "\(text)")
                        #expect(["red", "green", "blue"].contains(object["color"] as? String ?? ""), "\(text)")
                        let tags = try #require(object["tags"] as? [String])
                        #expect(tags.count <= 3 && tags.allSatisfy { (1...3).contains($0.count) && $0.allSatisfy(\.isLowercase) }, "\(text)")
                        #expect(Set(object.keys).isSubset(of: ["name", "age", "color", "tags", "ok"]))
                        // In the schema's order (as OpenAI answers): required ones as listed.
                        let order = ["name", "age", "color", "tags"].compactMap { text.range(of: "\"\($0)\"")?.lowerBound }
                        #expect(order.count == 4 && order == order.sorted(), "\(text)")
                    }
                }
            }
            // json_object on completions, streamed: the pieces join into one JSON object.
            try await client.execute(uri: "/v1/completions", method: .post, headers: R.json,
                                     body: R.body(["model": "tiny-chat", "prompt": "Hello", "temperature": 0.7, "seed": 3, "stream": true,
                                                   "max_tokens": 120, "response_format": ["type": "json_object"]])) { r in
                let chunks = try R.events(r).dropLast().map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                let choices = chunks.compactMap { $0?["choices"] as? [[String: Any]] }.flatMap { $0 }
                let text = choices.compactMap { $0["text"] as? String }.joined()
                let finish = choices.compactMap { $0["finish_reason"] as? String }.last
                let matcher = GrammarMatcher(try GBNF.parse(JSONSchemaGrammar.anyObjectGBNF))
                let state = matcher.step(matcher.start, Array(text.utf8))
                #expect(state >= 0, "a prefix of an object: \(text)")
                if finish == "stop" { #expect(matcher.accepts(state) && (try? JSONSerialization.jsonObject(with: Data(text.utf8))) is [String: Any]) }
                #expect(text.hasPrefix("{"))
            }
        }
    }

    /// A grammar of two words: the answer is one of them, and the end-of-sequence token comes right after.
    @Test func gbnfGrammarAndItsErrors() async throws {
        let server = try R.server()
        try await server.makeApplication().test(.router) { client in
            for seed in 0..<5 {
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: R.json,
                                         body: R.chat(extra: ["grammar": #"root ::= ("yes" | "no") "."?"#, "temperature": 1.0, "seed": seed, "max_tokens": 20])) { r in
                    let choice = try #require((try R.object(r)["choices"] as? [[String: Any]])?.first)
                    #expect(["yes", "no", "yes.", "no."].contains(Self.content(choice) ?? ""), "\(choice)")
                    #expect(choice["finish_reason"] as? String == "stop")
                }
            }
            let bad: [([String: Any], String, String)] = [
                (["grammar": "root ::= foo"], "grammar", "never defined"),
                (["grammar": "root ::= root \"x\""], "grammar", "left-recursive"),
                (["grammar": "root ::= \"a\"", "response_format": ["type": "json_object"]], "grammar", "not both"),
                (["response_format": ["type": "xml"]], "response_format", "xml"),
                (["response_format": ["type": "json_schema"]], "response_format", "json_schema"),
                (["response_format": ["type": "json_schema", "json_schema": ["name": "x", "schema": ["type": "string", "not": ["const": "a"]]]]],
                 "response_format", "'not'"),
                (["response_format": ["type": "json_schema", "json_schema": ["name": "x", "schema": ["enum": Array(0..<5000)]]]],
                 "response_format", "enum"),
                (["response_format": ["type": "json_schema", "json_schema": ["name": "x", "schema": [
                    "$defs": ["a": ["$ref": "#/$defs/b"], "b": ["$ref": "#/$defs/a"]], "$ref": "#/$defs/a"]]]], "response_format", "left-recursive"),
            ]
            for (extra, param, words) in bad {
                try await client.execute(uri: "/v1/chat/completions", method: .post, headers: R.json, body: R.chat(extra: extra)) { r in
                    try R.expectError(r, .badRequest, param: param)
                    let message = ((try R.object(r)["error"] as? [String: Any])?["message"] as? String) ?? ""
                    #expect(message.contains(words), "\(message)")
                }
            }
        }
    }

    /// The official `openai` client (MOE_TEST_PYTHON, as CI sets it): `chat.completions.parse` with a Pydantic model
    /// for 50 prompts at temperature 1, json_schema answers validated by `jsonschema`, and a tool round trip, against
    /// a live server.
    @Test func officialClientParsesEveryAnswer() async throws {
        guard let python = ProcessInfo.processInfo.environment["MOE_TEST_PYTHON"], !python.isEmpty else { return }
        let server = try ToolCallServingTests.server()
        try await server.makeApplication().test(.live) { client in
            let port = try #require(client.port)
            let (status, log) = try await runScript(python, "openai_structured_e2e.py",
                                              ["--base-url", "http://127.0.0.1:\(port)/v1", "--model", "tiny-tools", "--tools"])
            #expect(status == 0 && log.contains("all checks passed"), "\(log)")
        }
    }
}
