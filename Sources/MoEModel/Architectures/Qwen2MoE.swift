import MoEFormats

/// Qwen1.5-MoE / Qwen2-MoE (`qwen2_moe`): q/k/v biases (`qkv_bias`, on by default), a shared expert scaled by a
/// sigmoid gate, `norm_topk_prob` (default false), MoE layers chosen by `decoder_sparse_step` and
/// `mlp_only_layers`, dense layers of width `intermediate_size`.
enum Qwen2MoE: Architecture {
    static let modelType = "qwen2_moe"

    static func layers(_ c: ModelConfig, _ w: WeightReader) throws -> [DecoderLayer] {
        try (0..<c.numHiddenLayers).map { i in
            let p = "model.layers.\(i)"
            let attention = try Attention(c, w, prefix: "\(p).self_attn", qkvBias: c.qkvBias ?? true, outputBias: false)
            let ff: DecoderLayer.FeedForward
            if c.isSparseLayer(i) {
                let width = c.moeIntermediateSize ?? c.intermediateSize
                var shared: MLP?, sharedGate: [Float]?
                if let sharedWidth = c.sharedExpertIntermediateSize, sharedWidth > 0 {
                    shared = try MLP(w, prefix: "\(p).mlp.shared_expert", hidden: c.hiddenSize, width: sharedWidth)
                    sharedGate = try FloatEncoding.floats(w.checkpoint.tensor("\(p).mlp.shared_expert_gate.weight", shape: [1, c.hiddenSize]))
                }
                ff = .moe(MoEBlock(
                    router: try w.matrix("\(p).mlp.gate.weight", rows: c.numExperts, cols: c.hiddenSize),
                    experts: try MoEBlock.readExperts(w, prefix: "\(p).mlp.experts", count: c.numExperts, hidden: c.hiddenSize, width: width),
                    topK: c.numExpertsPerToken, normTopKProb: c.normTopKProb ?? false,
                    sharedExpert: shared, sharedExpertGate: sharedGate))
            } else {
                ff = .dense(try MLP(w, prefix: "\(p).mlp", hidden: c.hiddenSize, width: c.intermediateSize))
            }
            return try DecoderLayer(c, w, prefix: p, attention: attention, feedForward: ff)
        }
    }
}
