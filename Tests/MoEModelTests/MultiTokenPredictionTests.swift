import Foundation
import Testing
@testable import MoEModel

/// The multi-token-prediction module at inference, on the training fixtures that carry one
/// (scripts/make_mla_grad_fixtures.py: a torch reference of DeepSeek-V3 §2.2 over transformers' decoder layer).
@Suite struct MultiTokenPredictionTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/training").path
    static let cases = ["deepseek_v3_mtp", "glm4_moe_mtp"]

    struct Expected: Decodable {
        let input_ids: [[Int]]
        let labels: [[Int]]
        let mtp_loss: Double
    }

    /// Fed one position at a time through its own KV cache, the module's predictions of token i+2 give the
    /// reference's cross-entropy; all positions in one pass give the same last logits as one at a time.
    @Test(arguments: cases)
    func moduleMatchesTheTorchReference(_ name: String) throws {
        let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: "\(Self.root)/\(name)/expected.json")))
        let model = try Transformer(directory: "\(Self.root)/\(name)", threads: 2)
        #expect(model.mtp != nil)
        let H = model.config.hiddenSize, V = model.config.vocabSize
        var sum = 0.0, count = 0
        for (ids, labels) in zip(e.input_ids, e.labels) {
            let T = ids.count
            try model.forward(ids, cache: model.makeCache(capacity: T), logitsFor: .none)
            var hidden: [Float] = []
            model.appendLastHidden(rows: 0..<(T - 1), to: &hidden)
            let cache = model.makeMTPCache(capacity: T)
            var last: [Float] = []
            for i in 0..<(T - 1) {
                let (logits, _) = try model.mtpForward(nextTokens: [ids[i + 1]], hidden: Array(hidden[(i * H)..<((i + 1) * H)]), cache: cache)
                last = Array(logits)
                guard i + 2 < T, labels[i + 2] >= 0 else { continue }
                let m = logits.max()!
                let logSum = Double(m) + log(logits.reduce(0.0) { $0 + Double(Foundation.exp($1 - m)) })
                sum += logSum - Double(logits[labels[i + 2]])
                count += 1
            }
            let (all, _) = try model.mtpForward(nextTokens: Array(ids[1...]), hidden: hidden, cache: model.makeMTPCache(capacity: T))
            let diff = zip(all, last).map { abs($0 - $1) }.max()!
            #expect(all.count == V && diff < 1e-4, "\(name): one pass vs one position at a time, max |Δ| \(diff)")
        }
        #expect(abs(sum / Double(count) - e.mtp_loss) < 1e-4, "\(name): MTP loss \(sum / Double(count)) vs \(e.mtp_loss)")
    }

    /// Self-speculation with the module changes no greedy token, with one draft per step or several, and up
    /// to a cache that ends mid-draft.
    @Test(arguments: cases)
    func greedyOutputIsUnchanged(_ name: String) throws {
        let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: "\(Self.root)/\(name)/expected.json")))
        let model = try Transformer(directory: "\(Self.root)/\(name)", threads: 2)
        let prompt = e.input_ids[0]
        let plain = try model.generate(prompt: prompt, maxTokens: 30, sampling: .greedy, stopTokens: [])
        for tokens in [1, 3] {
            let fast = try model.generate(prompt: prompt, maxTokens: 30, sampling: .greedy, stopTokens: [],
                                          drafter: .multiTokenPrediction(tokens: tokens))
            #expect(fast.tokens == plain.tokens, "\(name), \(tokens) drafts")
            #expect(fast.draftTokens > 0, "\(name)")
        }
        let capacity = prompt.count + 11
        let short = try model.generate(prompt: prompt, maxTokens: 30, sampling: .greedy, stopTokens: [],
                                       cache: model.makeCache(capacity: capacity), drafter: .multiTokenPrediction(tokens: 3))
        let shortPlain = try model.generate(prompt: prompt, maxTokens: 30, sampling: .greedy, stopTokens: [],
                                            cache: model.makeCache(capacity: capacity))
        #expect(short.tokens == shortPlain.tokens && short.finishReason == shortPlain.finishReason, "\(name)")
    }

    /// A checkpoint without the module refuses MTP drafting by name; transformers' default
    /// `num_nextn_predict_layers: 1` without the weights is not a module.
    @Test func aModelWithoutTheModuleSaysSo() throws {
        let model = try Transformer(directory: Fixtures.directory("deepseek_v3"), threads: 1)
        #expect(model.mtp == nil)
        #expect(throws: ModelError.self) {
            try model.generate(prompt: [1, 2, 3], maxTokens: 4, sampling: .greedy, drafter: .multiTokenPrediction())
        }
    }
}
