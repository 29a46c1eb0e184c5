import MoEFormats

/// Qwen3-MoE (`qwen3_moe`): RMSNorm of q and k per head, no attention bias (unless `attention_bias`), no shared
/// expert, `norm_topk_prob` (default false), MoE layers chosen by `decoder_sparse_step` and `mlp_only_layers`.
enum Qwen3MoE: Architecture {
    static let modelType = "qwen3_moe"

    static func layers(_ c: ModelConfig, _ w: WeightReader) throws -> [DecoderLayer] {
        try (0..<c.numHiddenLayers).map { i in
            let p = "model.layers.\(i)"
            let bias = c.attentionBias ?? false
            let attention = try Attention(c, w, prefix: "\(p).self_attn", qkvBias: bias, outputBias: bias, qkNorm: .perHead)
            let ff: DecoderLayer.FeedForward
            if c.isSparseLayer(i) {
                ff = .moe(MoEBlock(
                    router: try w.matrix("\(p).mlp.gate.weight", rows: c.numExperts, cols: c.hiddenSize),
                    experts: try MoEBlock.readExperts(w, prefix: "\(p).mlp.experts", count: c.numExperts, hidden: c.hiddenSize,
                                                      width: c.moeIntermediateSize ?? c.intermediateSize),
                    topK: c.numExpertsPerToken, normTopKProb: c.normTopKProb ?? false))
            } else {
                ff = .dense(try MLP(w, prefix: "\(p).mlp", hidden: c.hiddenSize, width: c.intermediateSize))
            }
            return try DecoderLayer(c, w, prefix: p, attention: attention, feedForward: ff)
        }
    }
}
