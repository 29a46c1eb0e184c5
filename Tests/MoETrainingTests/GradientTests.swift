import Foundation
import Testing
import MoEFormats
import MoEModel
@testable import MoETraining

/// Fixtures made by scripts/make_grad_fixtures.py: tiny HF models, one batch, torch autograd's loss (aux loss
/// included) and the gradient of every parameter.
enum TrainingFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/training").path
    static let cases = ["qwen2_moe", "qwen2_moe_topk_norm", "qwen3_moe", "qwen3_moe_no_norm", "mixtral", "olmoe",
                        "glm4_moe", "deepseek_v3", "deepseek_v2", "deepseek_v3_seq_aux", "deepseek_v3_mtp", "glm4_moe_mtp",
                        "qwen3_next", "qwen3_5_moe", "gpt_oss"]

    struct Expected: Decodable {
        let input_ids: [[Int32]]
        let labels: [[Int32]]
        let loss: Double
        let ce_loss: Double
        let aux_loss: Double
        let router_aux_loss_coef: Double
        /// DeepSeek-V3's sequence-wise balance loss (make_mla_grad_fixtures.py), where the case weighs it.
        let seq_aux_loss_coef: Double?
        let seq_aux_loss: Double?
        /// The multi-token-prediction module's weight λ and loss (the `_mtp` cases of make_mla_grad_fixtures.py).
        let mtp_loss_weight: Double?
        let mtp_loss: Double?
    }

    static func directory(_ name: String) -> String { root + "/" + name }

    static func expected(_ name: String) throws -> Expected {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: directory(name) + "/expected.json")))
    }

    /// HF's causal-LM convention as (inputs, targets): logits at position t predict labels[t + 1]; the last
    /// position has no target.
    static func batch(_ e: Expected) -> (inputs: [Int32], targets: [Int32], B: Int, T: Int) {
        let B = e.input_ids.count, T = e.input_ids[0].count
        var targets = [Int32](repeating: -100, count: B * T)
        for b in 0..<B { for t in 0..<(T - 1) { targets[b * T + t] = e.labels[b][t + 1] } }
        return (e.input_ids.flatMap { $0 }, targets, B, T)
    }
}

@Suite struct GradientTests {
    @Test(arguments: TrainingFixtures.cases)
    func lossAndEveryGradientMatchTorch(_ name: String) throws {
        let e = try TrainingFixtures.expected(name)
        let model = try TrainableModel.load(directory: TrainingFixtures.directory(name), threads: 2)
        #expect(model.mtpDepth == (e.mtp_loss != nil ? 1 : 0), "\(name): the checkpoint's multi-token-prediction module")
        if let weight = e.mtp_loss_weight { model.mtpLossWeight = weight }
        let (inputs, targets, B, T) = TrainingFixtures.batch(e)
        let loss = try model.trainStep(batch: B, seqLen: T, inputs: inputs, targets: targets,
                                       balance: BalanceLosses(auxLossCoef: e.router_aux_loss_coef,
                                                              sequenceAuxLossCoef: e.seq_aux_loss_coef ?? 0))
        if let sequenceAux = e.seq_aux_loss {
            #expect(abs(loss.sequenceAux - sequenceAux) < 1e-5, "\(name): sequence aux \(loss.sequenceAux) vs \(sequenceAux)")
        }
        if let mtp = e.mtp_loss {
            #expect(abs(loss.mtp - mtp) < 1e-5, "\(name): MTP loss \(loss.mtp) vs \(mtp)")
        }
        #expect(abs(loss.crossEntropy - e.ce_loss) < 1e-5, "\(name): CE \(loss.crossEntropy) vs \(e.ce_loss)")
        #expect(abs(loss.aux - e.aux_loss) < 1e-5, "\(name): aux \(loss.aux) vs \(e.aux_loss)")
        #expect(abs(loss.total - e.loss) < 1e-5, "\(name): loss \(loss.total) vs \(e.loss)")

        let reference = try SafeTensorsFile(path: TrainingFixtures.directory(name) + "/grads.safetensors")
        #expect(Set(reference.tensors.keys) == Set(model.store.tensors.map(\.name)), "\(name): parameter names differ")
        for t in model.store.tensors {
            guard let r = reference.tensors[t.name] else { continue }
            let ref = try FloatEncoding.floats(r)
            var refMax: Float = 0, diff: Float = 0
            for i in 0..<t.count {
                refMax = max(refMax, abs(ref[i]))
                diff = max(diff, abs(model.store.grads[t.offset + i] - ref[i]))
            }
            #expect(diff <= 1e-4 * refMax + 1e-6, "\(name): \(t.name) max |g − g_ref| \(diff), max |g_ref| \(refMax)")
        }
    }
}
