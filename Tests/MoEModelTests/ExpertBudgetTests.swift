import Foundation
import Testing
import MoEKernels
@testable import MoEModel

/// The runtime expert budget: the threshold rule, the weights of the kept experts, bit-for-bit equality at full
/// budget, per-sequence budgets in one batched pass, and experts that are skipped not being run.
@Suite struct ExpertBudgetTests {
    /// ik_llama.cpp's rule worked by hand on weights 0.5, 0.3, 0.15, 0.05 (best first).
    @Test func thresholdRuleKeepsTheExpertsAHandCountKeeps() {
        let w: [Float] = [0.5, 0.3, 0.15, 0.05]
        func kept(_ b: ExpertBudget) -> Int { w.withUnsafeBufferPointer { b.kept($0.baseAddress!, k: 4) } }
        #expect(kept(.full) == 4)
        #expect(kept(ExpertBudget(expertsPerToken: 2)) == 2)
        #expect(kept(ExpertBudget(threshold: 0.3)) == 3)                    // floor 0.15: 0.15 stays, 0.05 goes
        #expect(kept(ExpertBudget(threshold: 0.7)) == 1)                    // floor 0.35: 0.3 goes, and what follows
        #expect(kept(ExpertBudget(threshold: 0.7, minExperts: 2)) == 2)     // the first two always stay
        #expect(kept(ExpertBudget(expertsPerToken: 2, threshold: 0.1)) == 2)
        #expect(kept(ExpertBudget(threshold: 0)) == 4)
        #expect(kept(ExpertBudget(threshold: 1)) == 1)
        // Stops at the first expert below the floor, even if a later one would pass (a choice-score order).
        let unordered: [Float] = [0.5, 0.1, 0.3]
        #expect(unordered.withUnsafeBufferPointer { ExpertBudget(threshold: 0.5).kept($0.baseAddress!, k: 3) } == 1)
    }

    /// The kept weights: renormalised to 1 where the router normalises its top-k, scaled to the full top-k's sum
    /// where it does not; dropped entries are −1 with weight 0 and join no expert's group.
    @Test func keptWeightsCarryTheMassOfTheFullTopK() {
        // One token, 4 experts whose softmax is 0.5, 0.3, 0.15, 0.05; top-3, threshold 0.5 (floor 0.25) keeps two.
        let probabilities: [Float] = [0.15, 0.5, 0.05, 0.3]
        let zeros = [Float](repeating: 0, count: 4)
        for normalise in [true, false] {
            zeros.withUnsafeBufferPointer { z in
                let router = ExpertRouter(weight: WeightMatrix(base: UnsafeRawPointer(z.baseAddress!), rows: 4, cols: 1, type: .f32),
                                          topK: 3, normTopKProb: normalise)
                var routing = Routing()
                routing.budgets = [ExpertBudget(threshold: 0.5)]
                var logits = probabilities.map { log($0) }
                logits.withUnsafeMutableBufferPointer { router.route($0.baseAddress!, tokens: 1, routing: &routing) }
                #expect(Array(routing.chosen.prefix(3)) == [1, 3, -1])
                #expect(routing.entries == 2)
                // Normalised: 0.5 and 0.3 over 0.8. Not: times 0.95 / 0.8, the full top-3's mass over the kept.
                let expected: [Float] = normalise ? [0.625, 0.375, 0] : [0.5 * 0.95 / 0.8, 0.3 * 0.95 / 0.8, 0]
                for j in 0..<3 { #expect(abs(routing.weights[j] - expected[j]) < 1e-6, "normalise \(normalise), slot \(j)") }
                #expect(Array(routing.offsets) == [0, 0, 1, 1, 2])
                #expect(routing.hit == [1, 3])
            }
        }
    }

    func logits(_ model: Transformer, _ tokens: [Int], _ budget: ExpertBudget) throws -> [Float] {
        model.expertBudget = budget
        defer { model.expertBudget = .full }
        return Array(try model.forward(tokens, cache: model.makeCache(capacity: 64), logitsFor: .all))
    }

    /// K = the model's k (or a threshold of 0) is the unmodified model bit for bit; K = 1 is not.
    @Test(arguments: ["qwen3_moe", "gpt_oss", "deepseek_v3", "qwen2_moe"])
    func fullBudgetIsTheModelBitForBit(_ name: String) throws {
        let model = try Transformer(directory: Fixtures.directory(name), threads: 2)
        let tokens = [3, 17, 42, 99, 5, 64, 8]
        let full = try logits(model, tokens, .full)
        #expect(try logits(model, tokens, ExpertBudget(expertsPerToken: model.expertsPerToken)) == full)
        #expect(try logits(model, tokens, ExpertBudget(threshold: 0)) == full)
        #expect(try logits(model, tokens, ExpertBudget(expertsPerToken: 1)) != full)
        #expect(throws: ModelError.self) { try model.validateBudget(ExpertBudget(expertsPerToken: model.expertsPerToken + 1)) }
    }

    /// In one batched pass each sequence spends its own budget: each chunk's logits are those of the sequence run
    /// alone with that budget; a decoded token at K = 1 runs one expert a layer.
    @Test func batchedSequencesKeepTheirOwnBudgets() throws {
        let model = try Transformer(directory: Fixtures.directory("qwen3_moe"), threads: 2)
        let a = [3, 17, 42], b = [99, 5, 64, 8]
        let aloneA = try logits(model, a, ExpertBudget(expertsPerToken: 1)).suffix(model.config.vocabSize)
        let aloneB = try logits(model, b, .full).suffix(model.config.vocabSize)
        let ca = model.makeCache(capacity: 16), cb = model.makeCache(capacity: 16)
        let both = Array(try model.forward([SequenceChunk(tokens: a, cache: ca, expertBudget: ExpertBudget(expertsPerToken: 1)),
                                            SequenceChunk(tokens: b, cache: cb)]))
        let V = model.config.vocabSize
        #expect(zip(both[0..<V], aloneA).allSatisfy { abs($0 - $1) < 1e-4 })
        #expect(zip(both[V..<(2 * V)], aloneB).allSatisfy { abs($0 - $1) < 1e-4 })

        let counter = ExpertUsageCounter()
        model.routingObserver = counter
        defer { model.routingObserver = nil }
        _ = try model.forward([SequenceChunk(tokens: [7], cache: ca, expertBudget: ExpertBudget(expertsPerToken: 1))])
        #expect(counter.expertsRun == model.moeBlocks.count && counter.meanExpertsPerToken == 1)
    }
}
