import MoEFormats

/// Qwen1.5-MoE / Qwen2-MoE (`qwen2_moe`): q/k/v biases (`qkv_bias`, on by default), a shared expert scaled by a
/// sigmoid gate, `norm_topk_prob` (default false), MoE layers chosen by `decoder_sparse_step` and
/// `mlp_only_layers`, dense layers of width `intermediate_size`; with `use_sliding_window`, even layers below
/// `max_window_layers` attend within `sliding_window` (transformers' default `layer_types`).
enum Qwen2MoE: Architecture {
    static let modelType = "qwen2_moe"

    static func layout(_ c: ModelConfig, has: (String) -> Bool) throws -> [LayerLayout] {
        let shared = c.sharedExpertIntermediateSize.flatMap { $0 > 0 ? $0 : nil }
        return c.layerLayouts(qkvBias: c.qkvBias ?? true, outputBias: false) { p in
            MoELayout(prefix: "\(p).mlp", experts: c.numExperts, topK: c.numExpertsPerToken,
                      width: c.moeIntermediateSize ?? c.intermediateSize, normTopKProb: c.normTopKProb ?? false,
                      expertNames: .swiGLU, sharedWidth: shared)
        }.withWindows(try c.qwenSlidingWindows { i, maxWindowLayers in i % 2 == 0 && i < maxWindowLayers })
    }
}
