import MoEFormats

/// Qwen3-MoE (`qwen3_moe`): RMSNorm of q and k per head, no attention bias (unless `attention_bias`), no shared
/// expert, `norm_topk_prob` (default false), MoE layers chosen by `decoder_sparse_step` and `mlp_only_layers`.
enum Qwen3MoE: Architecture {
    static let modelType = "qwen3_moe"

    static func layout(_ c: ModelConfig, has: (String) -> Bool) throws -> [LayerLayout] {
        let bias = c.attentionBias ?? false
        return c.layerLayouts(qkvBias: bias, outputBias: bias, qkNorm: .perHead) { p in
            MoELayout(prefix: "\(p).mlp", experts: c.numExperts, topK: c.numExpertsPerToken,
                      width: c.moeIntermediateSize ?? c.intermediateSize, normTopKProb: c.normTopKProb ?? false,
                      expertNames: .swiGLU)
        }.withWindows(try c.qwenSlidingWindows { _, _ in true })   // (every layer: transformers has no layer_types here)
    }
}
