import MoEFormats

/// What Qwen3-Next and Qwen3.5/3.6-MoE share: `layer_types` interleaving Gated DeltaNet layers
/// ("linear_attention") with gated full attention ("full_attention"; by default every `full_attention_interval`-th,
/// 4), zero-centred RMSNorms (stored as w − 1), per-head q/k norms, partial rotary embedding (default 0.25), and
/// MoE layers with a sigmoid-gated shared expert.
extension ModelConfig {
    /// Each layer's kind, from `layer_types` or `full_attention_interval`.
    func hybridLayerKinds() throws -> [Bool] {
        if let types = try layerTypes(["linear_attention", "full_attention"]) { return types.map { $0 == "linear_attention" } }
        let interval = try extraInt("full_attention_interval") ?? 4
        guard interval >= 1 else { throw FormatError.badConfig(path: "config.json", reason: "full_attention_interval must be at least 1") }
        return (0..<numHiddenLayers).map { ($0 + 1) % interval != 0 }
    }

    /// The Gated DeltaNet shapes (`linear_*` keys; transformers' defaults where absent); `linear_value_heads_tiled`
    /// marks llama.cpp's qwen35moe head order (set when reading its GGUF files).
    func linearAttentionLayout(fusedQKVZ: Bool, fusedBA: Bool) throws -> LinearAttentionLayout {
        var l = LinearAttentionLayout(keyHeads: try extraInt("linear_num_key_heads") ?? 16,
                                      valueHeads: try extraInt("linear_num_value_heads") ?? 32,
                                      keyDim: try extraInt("linear_key_head_dim") ?? 128,
                                      valueDim: try extraInt("linear_value_head_dim") ?? 128,
                                      convKernel: try extraInt("linear_conv_kernel_dim") ?? 4,
                                      fusedQKVZ: fusedQKVZ, fusedBA: fusedBA)
        l.tiledValueHeads = try extraBool("linear_value_heads_tiled") ?? false
        try l.validate()
        return l
    }

    /// The layers of a hybrid model: `fused` for Qwen3-Next's projections fused per key head (in_proj_qkvz,
    /// in_proj_ba), each where the checkpoint holds it (llama.cpp's newer qwen3next files split qkvz); `sparse(i)`
    /// whether layer i's feed-forward part is MoE.
    func hybridLayerLayouts(fused: Bool, normTopKProb: Bool, sparse: (Int) -> Bool, has: (String) -> Bool) throws -> [LayerLayout] {
        let kinds = try hybridLayerKinds()
        let first = kinds.firstIndex(of: true) ?? 0
        let names = "model.layers.\(first).linear_attn"
        let linear = try linearAttentionLayout(fusedQKVZ: fused && !has("\(names).in_proj_qkv.weight"),
                                               fusedBA: fused && !has("\(names).in_proj_b.weight"))
        let bias = attentionBias ?? false
        return (0..<numHiddenLayers).map { i in
            let p = "model.layers.\(i)"
            let ff: FeedForwardLayout
            if numExperts > 0 && sparse(i) {
                ff = .moe(MoELayout(prefix: "\(p).mlp", experts: numExperts, topK: numExpertsPerToken,
                                    width: moeIntermediateSize ?? intermediateSize, normTopKProb: normTopKProb,
                                    expertNames: .swiGLU, sharedWidth: sharedExpertIntermediateSize))
            } else {
                ff = .dense(prefix: "\(p).mlp", width: intermediateSize)
            }
            var layout = LayerLayout(prefix: p, qkvBias: bias, outputBias: bias, qkNorm: .perHead, clip: nil, feedForward: ff)
            layout.linear = kinds[i] ? linear : nil
            layout.outputGate = true
            layout.normOffset = 1
            return layout
        }
    }

    /// transformers' default partial rotary factor for these models.
    func withHybridDefaults() -> ModelConfig {
        var c = self
        if !c.ropeSettingGiven("partial_rotary_factor") { c.rope.partialRotaryFactor = 0.25 }
        return c
    }
}
