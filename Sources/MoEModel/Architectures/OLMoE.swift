import MoEFormats

/// OLMoE (`olmoe`): RMSNorm over the whole q and k projections (not per head), optional `clip_qkv` clamping
/// of q, k and v after it, every layer MoE with experts of width `intermediate_size`, `norm_topk_prob`
/// (default false).
enum OLMoE: Architecture {
    static let modelType = "olmoe"

    static func layout(_ c: ModelConfig, has: (String) -> Bool) throws -> [LayerLayout] {
        let bias = c.attentionBias ?? false
        return (0..<c.numHiddenLayers).map { i in
            let p = "model.layers.\(i)"
            return LayerLayout(prefix: p, qkvBias: bias, outputBias: bias, qkNorm: .wholeProjection, clip: c.clipQKV,
                               feedForward: .moe(MoELayout(prefix: "\(p).mlp", experts: c.numExperts, topK: c.numExpertsPerToken,
                                                           width: c.intermediateSize, normTopKProb: c.normTopKProb ?? false,
                                                           expertNames: .swiGLU)))
        }
    }
}
