import MoEFormats

/// DeepSeek-V2 / V2-Lite (`deepseek_v2`): multi-head latent attention (rotary pairs interleaved, as V2's complex
/// form), softmax routing, greedy or group-limited (`topk_method` `group_limited_greedy`: groups ranked by their
/// best expert), weights scaled by `routed_scaling_factor` and never renormalised (transformers ignores V2's
/// `norm_topk_prob`), ungated shared experts, dense layers first.
enum DeepseekV2: Architecture {
    static let modelType = "deepseek_v2"

    static func withDefaults(_ c: ModelConfig) throws -> ModelConfig { try c.withLatentHeadDim() }

    static func layout(_ c: ModelConfig, has: (String) -> Bool) throws -> [LayerLayout] {
        var router = RouterLayout()
        router.scale = try c.extraDouble("routed_scaling_factor") ?? 1
        switch try c.extraString("topk_method") ?? "greedy" {
        case "greedy": break
        case "group_limited_greedy":
            router.groups = try c.extraInt("n_group") ?? 1
            router.groupsChosen = try c.extraInt("topk_group") ?? 1
            router.groupScore = .max
        case let other:
            throw ModelError.unsupported("deepseek_v2: topk_method '\(other)' is not supported (greedy, group_limited_greedy)")
        }
        if let scoring = try c.extraString("scoring_func"), scoring != "softmax" {
            throw ModelError.unsupported("deepseek_v2: scoring_func '\(scoring)' is not supported (softmax)")
        }
        let latent = try c.latentAttentionLayout(interleavedRope: true)
        return try c.deepSeekLayerLayouts(attention: { _ in (false, false, .none) }, latent: latent, router: router,
                                          normTopKProb: false, denseFirst: 0, sharedExperts: 2)
    }
}
