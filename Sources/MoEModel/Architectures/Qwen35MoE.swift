import MoEFormats

/// Qwen3.5 / 3.6-MoE (`qwen3_5_moe`, its text model `qwen3_5_moe_text`): Qwen3-Next's hybrid layers with the
/// DeltaNet's projections stored apart (`in_proj_qkv`, `in_proj_z`, `in_proj_b`, `in_proj_a`), every layer MoE
/// with a gated shared expert, top-k weights always renormalised. A multimodal checkpoint's language model
/// (`model.language_model.*`) is what runs; its vision tower is not read. Text positions make its multimodal
/// rotary embedding (mrope) the plain one.
enum Qwen35MoE: Architecture {
    static let modelType = "qwen3_5_moe"
    static let aliases = ["qwen3_5_moe_text"]

    static func withDefaults(_ c: ModelConfig) throws -> ModelConfig { c.withHybridDefaults() }

    static func layout(_ c: ModelConfig, has: (String) -> Bool) throws -> [LayerLayout] {
        try c.hybridLayerLayouts(fused: false, normTopKProb: true, sparse: { _ in true }, has: has)
    }
}
