import MoEFormats

/// DeepSeek-V3 / R1 / V3.1 and Kimi K2 (`deepseek_v3`): multi-head latent attention (`rope_interleave`, on by
/// default), sigmoid routing with the selection bias and groups ranked by their two best experts,
/// `norm_topk_prob` (default true), `routed_scaling_factor` (default 2.5), one ungated shared expert, the first
/// `first_k_dense_replace` (default 3) layers dense.
enum DeepseekV3: Architecture {
    static let modelType = "deepseek_v3"

    static func withDefaults(_ c: ModelConfig) throws -> ModelConfig { try c.withLatentHeadDim() }

    static func layout(_ c: ModelConfig, has: (String) -> Bool) throws -> [LayerLayout] {
        if let scoring = try c.extraString("scoring_func"), scoring != "sigmoid" {
            throw ModelError.unsupported("deepseek_v3: scoring_func '\(scoring)' is not supported (sigmoid)")
        }
        let latent = try c.latentAttentionLayout(interleavedRope: try c.extraBool("rope_interleave") ?? true)
        let router = try c.sigmoidGroupRouter(groups: 8, groupsChosen: 4, scale: 2.5)
        return try c.deepSeekLayerLayouts(attention: { _ in (false, false, .none) }, latent: latent, router: router,
                                          normTopKProb: c.normTopKProb ?? true, denseFirst: 3, sharedExperts: 1)
    }
}
