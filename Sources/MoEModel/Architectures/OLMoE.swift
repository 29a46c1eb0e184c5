import MoEFormats

/// OLMoE (`olmoe`): RMSNorm over the whole q and k projections (not per head), optional `clip_qkv` clamping
/// of q, k and v after it, every layer MoE with experts of width `intermediate_size`, `norm_topk_prob`
/// (default false).
enum OLMoE: Architecture {
    static let modelType = "olmoe"

    static func layers(_ c: ModelConfig, _ w: WeightReader) throws -> [DecoderLayer] {
        try (0..<c.numHiddenLayers).map { i in
            let p = "model.layers.\(i)"
            let bias = c.attentionBias ?? false
            let attention = try Attention(c, w, prefix: "\(p).self_attn", qkvBias: bias, outputBias: bias,
                                          qkNorm: .wholeProjection, clip: c.clipQKV)
            let block = MoEBlock(
                router: try w.matrix("\(p).mlp.gate.weight", rows: c.numExperts, cols: c.hiddenSize),
                experts: try MoEBlock.readExperts(w, prefix: "\(p).mlp.experts", count: c.numExperts, hidden: c.hiddenSize,
                                                  width: c.intermediateSize),
                topK: c.numExpertsPerToken, normTopKProb: c.normTopKProb ?? false)
            return try DecoderLayer(c, w, prefix: p, attention: attention, feedForward: .moe(block))
        }
    }
}
