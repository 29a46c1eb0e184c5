import Foundation
import GRDB
import Hummingbird
import HummingbirdTesting
import MoEModel
import MoETraining
import Testing
@testable import MoEServing

/// `echo` with prompt log-probs, `logit_bias`, `suffix` and `user` on the completion endpoints.
@Suite(.serialized) struct CompletionOptionsTests {
    typealias R = ServingRouterTests

    /// log-softmax of the model's own logits after each prompt token (what `moe logits` prints, normalised).
    static func referenceLogprobs(_ prompt: [Int]) throws -> [[Float]] {
        let model = try TestModel.transformer()
        let vocab = model.config.vocabSize
        let logits = try model.forward(prompt, cache: model.makeCache(), logitsFor: .all)
        return (0..<prompt.count).map { p in
            let row = Array(logits[(p * vocab)..<((p + 1) * vocab)])
            let m = row.max()!
            let logZ = m + log(row.reduce(0) { $0 + exp($1 - m) })
            return row.map { $0 - logZ }
        }
    }

    /// lm-evaluation-harness's request: the prompt echoed with its tokens' log-probs and no generation.
    @Test func echoReturnsThePromptsLogprobs() async throws {
        let server = try R.server()
        let text = "The quick brown fox jumps over"
        let prompt = try TestModel.tokenizer().encode(text)
        let reference = try Self.referenceLogprobs(prompt)
        try await server.makeApplication().test(.router) { client in
            for stream in [false, true] {
                let body: [String: Any] = ["model": "tiny-chat", "prompt": text, "max_tokens": 0, "echo": true, "logprobs": 2,
                                           "stream": stream]
                try await client.execute(uri: "/v1/completions", method: .post, headers: R.json, body: R.body(body)) { r in
                    #expect(r.status == .ok)
                    var texts = "", tokens: [String] = [], values: [Any] = [], tops: [Any] = [], finish: String?
                    let choices: [[String: Any]]
                    if stream {
                        choices = try R.events(r).dropLast().compactMap {
                            (try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["choices"] as? [[String: Any]]
                        }.flatMap { $0 }
                    } else {
                        choices = try #require(try R.object(r)["choices"] as? [[String: Any]])
                    }
                    for c in choices {
                        texts += c["text"] as? String ?? ""
                        if let f = c["finish_reason"] as? String { finish = f }
                        guard let lp = c["logprobs"] as? [String: Any] else { continue }
                        tokens += lp["tokens"] as? [String] ?? []
                        values += lp["token_logprobs"] as? [Any] ?? []
                        tops += lp["top_logprobs"] as? [Any] ?? []
                    }
                    #expect(texts == text)
                    #expect(finish == "length")
                    #expect(tokens.count == prompt.count && values.count == prompt.count)
                    #expect(values.first is NSNull && tops.first is NSNull, "the first token has no log-prob")
                    for p in 1..<prompt.count {
                        let got = try #require(values[p] as? Double)
                        #expect(abs(got - Double(reference[p - 1][prompt[p]])) < 1e-4, "token \(p)")
                        let top = try #require(tops[p] as? [String: Double])
                        #expect(abs(top.values.max()! - Double(reference[p - 1].max()!)) < 1e-4)
                    }
                }
            }
            // Echo and generation: the prompt, then the completion (whose log-probs follow the prompt's).
            let body: [String: Any] = ["model": "tiny-chat", "prompt": text, "max_tokens": 3, "echo": true, "logprobs": 0, "temperature": 0]
            try await client.execute(uri: "/v1/completions", method: .post, headers: R.json, body: R.body(body)) { r in
                let choice = try #require((try R.object(r)["choices"] as? [[String: Any]])?.first)
                #expect((choice["text"] as? String)?.hasPrefix(text) == true)
                let lp = try #require(choice["logprobs"] as? [String: Any])
                #expect((lp["token_logprobs"] as? [Any])?.count == prompt.count + 3)
                #expect((try R.object(r)["usage"] as? [String: Any])?["completion_tokens"] as? Int == 3)
            }
            // Echo without log-probs: the text only. max_tokens 0 needs echo.
            try await client.execute(uri: "/v1/completions", method: .post, headers: R.json,
                                     body: R.body(["model": "tiny-chat", "prompt": [5, 6, 7], "max_tokens": 0, "echo": true])) { r in
                let choice = try #require((try R.object(r)["choices"] as? [[String: Any]])?.first)
                #expect(choice["text"] as? String == (try TestModel.tokenizer().decode([5, 6, 7])))
                #expect(choice["logprobs"] is NSNull)
            }
            try await client.execute(uri: "/v1/completions", method: .post, headers: R.json,
                                     body: R.body(["model": "tiny-chat", "prompt": "x", "max_tokens": 0])) { r in
                try R.expectError(r, .badRequest, param: "max_tokens")
            }
        }
    }

    /// A bias of +100 makes a token the first one whatever the model prefers; −100 keeps the greedy choice out.
    @Test func logitBiasSteersAndIsChecked() async throws {
        let server = try R.server()
        try await server.makeApplication().test(.router) { client in
            let base: [String: Any] = ["model": "tiny-chat", "prompt": "The quick brown fox", "max_tokens": 1, "temperature": 0, "logprobs": 1]
            func first(_ extra: [String: Any]) async throws -> (token: String, logprob: Double) {
                var result = ("", 0.0)
                try await client.execute(uri: "/v1/completions", method: .post, headers: R.json,
                                         body: R.body(base.merging(extra) { $1 })) { r in
                    #expect(r.status == .ok)
                    let lp = try #require((try R.object(r)["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any])
                    result = (try #require((lp["tokens"] as? [String])?.first), try #require((lp["token_logprobs"] as? [Double])?.first))
                }
                return result
            }
            let greedy = try await first([:])
            let tokenizer = try TestModel.tokenizer()
            let target = tokenizer.encode(" lazy", addSpecialTokens: false)[0]
            let forced = try await first(["logit_bias": [String(target): 100]])
            #expect(forced.token == tokenizer.decode([target]))
            #expect(forced.logprob < greedy.logprob, "log-probs stay the model's own")
            let greedyID = tokenizer.encode(greedy.token, addSpecialTokens: false)[0]
            let avoided = try await first(["logit_bias": [String(greedyID): -100]])
            #expect(avoided.token != greedy.token)
            for bad: [String: Any] in [["x": 1], ["-1": 1], ["999999": 1], ["5": 101]] {
                try await client.execute(uri: "/v1/completions", method: .post, headers: R.json,
                                         body: R.body(base.merging(["logit_bias": bad]) { $1 })) { r in
                    try R.expectError(r, .badRequest, param: "logit_bias")
                }
            }
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: R.json,
                                     body: R.chat(extra: ["logit_bias": [String(target): 100], "max_tokens": 2, "temperature": 0])) { r in
                let message = try #require((try R.object(r)["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])
                #expect((message["content"] as? String)?.hasPrefix(tokenizer.decode([target])) == true)
            }
        }
    }

    @Test func suffixIsRefusedAndUserIsRecorded() async throws {
        let server = try R.server()
        try await server.makeApplication().test(.router) { client in
            try await client.execute(uri: "/v1/completions", method: .post, headers: R.json,
                                     body: R.body(["model": "tiny-chat", "prompt": "a", "suffix": "b"])) { r in
                try R.expectError(r, .badRequest, param: "suffix")
            }
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: R.json,
                                     body: R.chat(extra: ["user": "user-42", "max_tokens": 1])) { r in #expect(r.status == .ok) }
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: R.json,
                                     body: R.chat(extra: ["user": String(repeating: "u", count: 300)])) { r in
                try R.expectError(r, .badRequest, param: "user")
            }
        }
        let users = try await DatabaseQueue(path: server.options.ledgerPath).read { db in
            try String?.fetchAll(db, sql: "SELECT user FROM requests ORDER BY id")
        }
        #expect(users == [nil, "user-42", nil])
    }
}

/// `moe eval --choices` (the model's own forward pass) and the server's echoed prompt log-probs (the engine's
/// prefill) give each choice the same log-likelihood: what lm-evaluation-harness reads through the API.
@Suite struct ChoiceScoringTests {
    @Test func choiceLoglikelihoodsEqualEchoedLogprobs() async throws {
        let tokenizer = try TestModel.tokenizer()
        // A trailing space on the context moves to the continuation, as lm-eval splits them.
        let item = Evaluation.ChoiceItem(context: "The quick brown ", choices: ["fox jumps", "dog", "Ünïcödé"], answer: 0)
        let direct = try Evaluation.choices(try TestModel.transformer(), tokenizer: tokenizer, items: [item])
        let server = try ServingRouterTests.server()
        try await server.makeApplication().test(.router) { client in
            for (choice, expected) in zip(item.choices, direct.loglikelihoods[0]) {
                let context = tokenizer.encode("The quick brown", addSpecialTokens: false)
                // lm-eval's request: (context, " " + choice), the context's trailing space moved after it.
                let whole = tokenizer.encode("The quick brown" + "  " + choice, addSpecialTokens: false)
                let body: [String: Any] = ["model": "tiny-chat", "prompt": [whole], "max_tokens": 1, "echo": true, "logprobs": 1, "temperature": 0]
                try await client.execute(uri: "/v1/completions", method: .post, headers: ServingRouterTests.json,
                                         body: ServingRouterTests.body(body)) { r in
                    let lp = try #require((try ServingRouterTests.object(r)["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any])
                    let values = try #require(lp["token_logprobs"] as? [Any])
                    // lm-eval: token_logprobs[ctxlen:-1] (the last one is the generated token's).
                    let served = values[context.count..<(values.count - 1)].compactMap { $0 as? Double }.reduce(0, +)
                    #expect(abs(served - expected) < 1e-3, "\(choice): \(served) vs \(expected)")
                }
            }
        }
        #expect(direct.total == 1 && direct.loglikelihoods[0].count == 3)
    }
}

/// `experts_per_token` / `expert_threshold`: what a request spends comes back in `usage`, an explicit full budget
/// answers as no budget, a prefix is not reused across budgets, bad values are 400s.
@Suite(.serialized) struct ExpertBudgetServingTests {
    typealias R = ServingRouterTests

    @Test func budgetFieldsAreSpentAndReportedInUsage() async throws {
        let server = try R.server()
        try await server.makeApplication().test(.router) { client in
            func complete(_ extra: [String: Any]) async throws -> (text: String, usage: [String: Any], status: Int) {
                var body: [String: Any] = ["model": "tiny-chat", "prompt": "The quick brown fox jumps", "max_tokens": 6, "temperature": 0]
                body.merge(extra) { $1 }
                return try await client.execute(uri: "/v1/completions", method: .post, headers: R.json, body: R.body(body)) { r in
                    let o = try R.object(r)
                    return (((o["choices"] as? [[String: Any]])?.first?["text"] as? String) ?? "", o["usage"] as? [String: Any] ?? [:],
                            Int(r.status.code))
                }
            }
            let plain = try await complete([:])
            #expect(plain.usage["experts_per_token"] as? Int == 2 && plain.usage["active_experts_per_token"] as? Double == 2)
            let explicit = try await complete(["experts_per_token": 2])
            #expect(explicit.text == plain.text)
            let one = try await complete(["experts_per_token": 1])
            #expect(one.usage["experts_per_token"] as? Int == 1 && one.usage["active_experts_per_token"] as? Double == 1)
            // The first request's prompt is cached, but not for another budget.
            #expect((one.usage["prompt_tokens_details"] as? [String: Any])?["cached_tokens"] as? Int == 0)
            let threshold = try await complete(["expert_threshold": 0.5, "min_experts": 1])
            let active = try #require(threshold.usage["active_experts_per_token"] as? Double)
            #expect(threshold.usage["expert_threshold"] as? Double == 0.5 && (1...2).contains(active))
            for bad: [String: Any] in [["experts_per_token": 3], ["experts_per_token": 0], ["expert_threshold": 1.5], ["min_experts": 1]] {
                let r = try await complete(bad)
                #expect(r.status == 400, "\(bad)")
            }
            // The Responses API takes and reports the same fields.
            let body = R.body(["model": "tiny-chat", "input": "The quick brown fox", "max_output_tokens": 4, "temperature": 0, "experts_per_token": 1])
            try await client.execute(uri: "/v1/responses", method: .post, headers: R.json, body: body) { r in
                let usage = try #require(try R.object(r)["usage"] as? [String: Any])
                #expect(usage["experts_per_token"] as? Int == 1 && usage["active_experts_per_token"] as? Double == 1, "\(usage)")
                #expect(usage["input_tokens"] as? Int ?? 0 > 0)
            }
            let refused = R.body(["model": "tiny-chat", "input": "x", "experts_per_token": 3])
            try await client.execute(uri: "/v1/responses", method: .post, headers: R.json, body: refused) { r in #expect(r.status == .badRequest) }
        }
    }
}
