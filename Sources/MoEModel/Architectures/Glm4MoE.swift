import MoEFormats

/// GLM-4.5 / 4.5-Air / 4.6 (`glm4_moe`): grouped-query attention with q/k/v biases (`attention_bias`), no o
/// bias, optional per-head q/k RMSNorm (`use_qk_norm`), rotary embedding on the first half of each head
/// (`partial_rotary_factor`, default 0.5, split in halves); DeepSeek-V3's sigmoid routing with the selection bias
/// and groups, `norm_topk_prob` (default true), one ungated shared expert, the first `first_k_dense_replace`
/// (default 1) layers dense.
enum Glm4MoE: Architecture {
    static let modelType = "glm4_moe"

    static func withDefaults(_ c: ModelConfig) throws -> ModelConfig {
        var c = c
        if !c.ropeSettingGiven("partial_rotary_factor") { c.rope.partialRotaryFactor = 0.5 }
        return c
    }

    static func layout(_ c: ModelConfig, has: (String) -> Bool) throws -> [LayerLayout] {
        let bias = c.attentionBias ?? false
        let qkNorm: Attention.QKNorm = try c.extraBool("use_qk_norm") ?? false ? .perHead : .none
        let router = try c.sigmoidGroupRouter(groups: 1, groupsChosen: 1, scale: 1)
        return try c.deepSeekLayerLayouts(attention: { _ in (bias, false, qkNorm) }, latent: nil, router: router,
                                          normTopKProb: c.normTopKProb ?? true, denseFirst: 1, sharedExperts: 1)
    }
}
