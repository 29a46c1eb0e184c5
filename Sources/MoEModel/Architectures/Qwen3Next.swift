import MoEFormats

/// Qwen3-Next (`qwen3_next`): three Gated DeltaNet layers to each gated full-attention layer, the DeltaNet's
/// projections fused per key head (`in_proj_qkvz`, `in_proj_ba`), MoE layers chosen as Qwen3-MoE's
/// (`decoder_sparse_step`, `mlp_only_layers`) with a gated shared expert, `norm_topk_prob` (default true).
enum Qwen3Next: Architecture {
    static let modelType = "qwen3_next"

    static func withDefaults(_ c: ModelConfig) throws -> ModelConfig { c.withHybridDefaults() }

    static func layout(_ c: ModelConfig, has: (String) -> Bool) throws -> [LayerLayout] {
        try c.hybridLayerLayouts(fused: true, normTopKProb: c.normTopKProb ?? true, sparse: c.isSparseLayer, has: has)
    }
}
