import Foundation
import Testing
@testable import MoEModel

@Suite struct SpeculativeTests {
    /// Prompt lookup proposes what followed the latest earlier occurrence of the longest matching tail.
    @Test func promptLookupDraftsFromTheLatestMatch() {
        let lookup = Drafter.promptLookup(ngram: 3, tokens: 3)
        #expect(lookup.draft(after: [5, 6, 7, 1, 2, 9, 5, 6, 7], limit: 8) == [1, 2, 9])
        // The 3-gram [1, 2, 3] is not repeated; the 2-gram [2, 3] is, twice: the latest one wins.
        #expect(lookup.draft(after: [2, 3, 4, 8, 2, 3, 5, 1, 2, 3], limit: 8) == [5, 1, 2])
        #expect(lookup.draft(after: [1, 2, 3, 4], limit: 8) == [])
        #expect(lookup.draft(after: [4, 4], limit: 8) == [4])
        #expect(lookup.draft(after: [5, 6, 7, 1, 2, 9, 5, 6, 7], limit: 2) == [1, 2])
        #expect(lookup.draft(after: [7], limit: 8) == [])
    }

    /// Greedy output is the same token for token with drafts as without, on every reference model, for prompts
    /// that repeat themselves (drafts are proposed, some kept, some rejected) and up to the cache's end.
    @Test(arguments: Fixtures.cases)
    func greedyOutputIsUnchanged(_ name: String) throws {
        let e = try Fixtures.expected(name)
        let model = try Transformer(directory: Fixtures.directory(name), threads: 2)
        let tokens = e.tokens.prefix(24)
        let prompt = Array(tokens + tokens + tokens.prefix(3))
        // (Long enough for the tiny hybrid models' greedy text to repeat itself, so that drafts are kept.)
        let n = model.recurrentShape == nil ? 24 : 64
        let plain = try model.generate(prompt: prompt, maxTokens: n, sampling: .greedy, stopTokens: [])
        let fast = try model.generate(prompt: prompt, maxTokens: n, sampling: .greedy, stopTokens: [],
                                      drafter: .promptLookup(ngram: 3, tokens: 4))
        #expect(fast.tokens == plain.tokens, "\(name)")
        // (qwen3_next's text never repeats: only rejections there; qwen3_5_moe keeps drafts through the same path.)
        #expect(fast.draftTokens > 0 && (fast.acceptedDraftTokens > 0 || name == "qwen3_next"),
                "\(name): \(fast.acceptedDraftTokens)/\(fast.draftTokens)")
        // A cache that ends mid-draft: the same tokens, the same finish.
        let cache = model.makeCache(capacity: prompt.count + 10)
        let short = try model.generate(prompt: prompt, maxTokens: 24, sampling: .greedy, stopTokens: [], cache: cache,
                                       drafter: .promptLookup(ngram: 3, tokens: 4))
        let shortPlain = try model.generate(prompt: prompt, maxTokens: 24, sampling: .greedy, stopTokens: [],
                                            cache: model.makeCache(capacity: prompt.count + 10))
        #expect(short.tokens == shortPlain.tokens && short.finishReason == shortPlain.finishReason, "\(name)")
    }

    /// The rejection rule keeps sampling's distribution: whatever the draft, the token `verify` returns is drawn
    /// from the processed softmax (40,000 draws per draft, each probability within 0.01).
    @Test func verifiedTokensFollowTheSamplingDistribution() {
        let logits: [Float] = [2.0, 1.5, 0.2, -0.5, 1.0, -3, 0.7, 0.0]
        var params = SamplingParameters(temperature: 0.8, topK: 6)
        params.seed = 7
        var reference = logits.map { $0 / 0.8 }
        let kept = Set(reference.indices.sorted { reference[$0] > reference[$1] }.prefix(6))
        for i in reference.indices where !kept.contains(i) { reference[i] = -.infinity }
        let m = reference.max()!
        let exps = reference.map { Foundation.exp(Double($0 - m)) }
        let p = exps.map { $0 / exps.reduce(0, +) }
        for draft in [0, 3, 5] {   // likely, unlikely, filtered out by top-k
            var sampler = Sampler(params)
            var counts = [Int](repeating: 0, count: logits.count)
            let n = 40_000
            for _ in 0..<n {
                var row = logits
                let (token, accepted) = row.withUnsafeMutableBufferPointer {
                    sampler.verify($0.baseAddress!, count: $0.count, draft: draft, history: [Int](), generated: [Int]())
                }
                #expect(accepted == (token == draft))
                counts[token] += 1
            }
            for i in logits.indices {
                #expect(abs(Double(counts[i]) / Double(n) - p[i]) < 0.01, "draft \(draft), token \(i): \(Double(counts[i]) / Double(n)) vs \(p[i])")
            }
        }
    }
}
