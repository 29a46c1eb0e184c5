import Foundation
import Testing
import MoEFormats
import MoEModel
@testable import MoETraining

/// The routing lab on constructed cases: a model whose experts 2 and 3 never receive a token (budgets that drop
/// only weightless experts change nothing; pruning them changes nothing), and the report's figures on a hand-made
/// trace.
@Suite struct RoutingLabTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/models").path

    /// The gpt-oss fixture (4 experts, top-2) with every router weight 0 and biases 0, −1000, −2000, −2000: every
    /// token chooses experts 0 and 1, and softmax over the chosen gives expert 1 a weight of exactly 0.
    static func modelWithIdleExperts() throws -> String {
        let dir = NSTemporaryDirectory() + "moe-idle-experts-" + UUID().uuidString
        try FileManager.default.copyItem(atPath: fixtures + "/gpt_oss", toPath: dir)
        let file = try SafeTensorsFile(path: dir + "/model.safetensors")
        var entries: [SafeTensorsWriter.Entry] = []
        for (name, t) in file.tensors.sorted(by: { $0.key < $1.key }) {
            if name.hasSuffix("mlp.router.weight") {
                entries.append(.floats(name, shape: t.shape, values: .init(repeating: 0, count: t.elementCount)))
            } else if name.hasSuffix("mlp.router.bias") {
                entries.append(.floats(name, shape: t.shape, values: [0, -1000, -2000, -2000]))
            } else {
                entries.append(SafeTensorsWriter.Entry(name: name, dtype: t.dtype, shape: t.shape) { $0.baseAddress!.copyMemory(from: t.pointer, byteCount: t.byteCount) })
            }
        }
        try SafeTensorsWriter.write(entries, to: dir + "/model.safetensors.new")
        try FileManager.default.removeItem(atPath: dir + "/model.safetensors")
        try FileManager.default.moveItem(atPath: dir + "/model.safetensors.new", toPath: dir + "/model.safetensors")
        return dir
    }

    static let tokens = [3, 17, 42, 99, 5, 64, 8, 21, 77, 12]

    static func logits(_ model: Transformer, budget: ExpertBudget = .full) throws -> [Float] {
        model.expertBudget = budget
        return Array(try model.forward(tokens, cache: model.makeCache(capacity: 32), logitsFor: .all))
    }

    /// K < k changes the logits only where the dropped experts had weight: here they had none.
    @Test func droppingWeightlessExpertsChangesNothing() throws {
        let dir = try Self.modelWithIdleExperts()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try Transformer(directory: dir, threads: 2)
        #expect(try Self.logits(model, budget: ExpertBudget(expertsPerToken: 1)) == Self.logits(model))
        // On the fixture as trained, expert 2 of the top-2 has weight, and dropping it shows.
        let trained = try Transformer(directory: Self.fixtures + "/gpt_oss", threads: 2)
        #expect(try Self.logits(trained, budget: ExpertBudget(expertsPerToken: 1)) != Self.logits(trained))
    }

    /// Pruning the experts no token reaches keeps every logit, bit for bit; the checkpoint has 2 experts a layer.
    @Test func pruningExpertsThatReceiveNoTokensKeepsTheLogits() throws {
        let dir = try Self.modelWithIdleExperts()
        let out = dir + "-pruned"
        defer { for d in [dir, out] { try? FileManager.default.removeItem(atPath: d) } }
        let model = try Transformer(directory: dir, threads: 2)
        let trace = try RoutingTrace.collect(model, tokenized: [("calibration", Self.tokens + Self.tokens.reversed())])
        let plan = try ExpertPruning.plan(trace, keep: 2)
        #expect(plan.kept == Array(repeating: [0, 1], count: 4))
        #expect(plan.massKept.allSatisfy { $0 == 1 })
        try ExpertPruning.write(directory: dir, plan: plan, to: out)
        let pruned = try Transformer(directory: out, threads: 2)
        #expect(pruned.config.numExperts == 2)
        #expect(try Self.logits(pruned) == Self.logits(model))
        let file = try SafeTensorsFile(path: out + "/model.safetensors")
        #expect(file.tensors["model.layers.0.mlp.experts.gate_up_proj"]?.shape == [2, 64, 128])
        #expect(file.tensors["model.layers.0.mlp.router.weight"]?.shape == [2, 64])
        #expect(throws: TrainingError.self) { try ExpertPruning.plan(trace, keep: 5) }
    }

    /// Shares, balance, mutual information, co-activation and stability of a trace small enough to count by hand:
    /// one layer pair, 4 experts, top-2; domain a always chooses {0, 1}, domain b {2, 3} then {0, 1} in layer 2.
    @Test func reportFiguresMatchAHandCount() {
        var trace = RoutingTrace(moeLayers: [0, 1], experts: 4, topK: 2, domains: ["a", "b"])
        for (d, choices) in [(0, [[0, 1], [0, 1]]), (0, [[0, 1], [0, 1]]), (1, [[2, 3], [0, 1]]), (1, [[2, 3], [0, 1]])] {
            trace.document.append(Int32(d)); trace.domain.append(Int32(d)); trace.position.append(0); trace.token.append(1)
            for c in choices { trace.chosen += c.map(Int32.init); trace.weights += [0.75, 0.25] }
        }
        let r = RoutingReport(trace, model: "hand")
        #expect(r.domains[0].share == [[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0]])
        #expect(r.domains[1].share == [[0, 0, 0.5, 0.5], [0.5, 0.5, 0, 0]])
        #expect(r.domains[0].weightShare[0] == [0.75, 0.25, 0, 0])
        // Layer 1: the expert names the domain (1 bit, all of H(domain)); layer 2: it says nothing.
        #expect(abs(r.mutualInformation[0] - 1) < 1e-12 && abs(r.mutualInformation[1]) < 1e-12)
        #expect(abs(r.domainEntropy - 1) < 1e-12)
        // Over both layers each domain's counts are [2,2,0,0] and [0,0,2,2] or all in two experts: CV 1, entropy 0.5.
        #expect(abs(r.domains[0].coefficientOfVariation[0] - 1) < 1e-12 && abs(r.domains[0].normalizedEntropy[0] - 0.5) < 1e-12)
        #expect(abs(r.all.normalizedEntropy[0] - 1) < 1e-12 && r.all.coefficientOfVariation[0] == 0)
        // Experts 0 and 1 always come together, as do 2 and 3.
        #expect(r.coactivation[0] == [0, 1, 0, 0] && r.coactivation[2] == [0, 0, 0, 1])
        // A token's first expert in layer 2 is always 0: nothing to predict, stability 0 by convention.
        #expect(r.layerStability == [0])
    }
}
