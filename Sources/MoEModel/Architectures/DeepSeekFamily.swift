import Foundation
import MoEFormats

/// What DeepSeek-V2, DeepSeek-V3 and GLM-4.5 share: dense layers first (`first_k_dense_replace`), then MoE
/// layers every `moe_layer_freq` (DeepSeek's rule; transformers assumes 1) with `n_shared_experts` ungated shared
/// experts fused into one MLP of width `n_shared_experts · moe_intermediate_size`; and, for the two DeepSeeks,
/// multi-head latent attention.
extension ModelConfig {
    /// `first_k_dense_replace` dense layers of width `intermediate_size`, then the MoE layers `router` routes.
    func deepSeekLayerLayouts(attention: (String) -> (qkvBias: Bool, outputBias: Bool, qkNorm: Attention.QKNorm),
                              latent: LatentAttentionLayout?, router: RouterLayout, normTopKProb: Bool,
                              denseFirst defaultDense: Int, sharedExperts defaultShared: Int) throws -> [LayerLayout] {
        let denseFirst = try extraInt("first_k_dense_replace") ?? defaultDense
        let frequency = try extraInt("moe_layer_freq") ?? 1
        guard frequency >= 1 else { throw ModelError.badInput("moe_layer_freq must be at least 1, found \(frequency)") }
        let shared = try extraInt("n_shared_experts") ?? defaultShared
        let width = moeIntermediateSize ?? intermediateSize
        return (0..<numHiddenLayers).map { i in
            let p = "model.layers.\(i)"
            let ff: FeedForwardLayout
            if numExperts > 0 && i >= denseFirst && i % frequency == 0 {
                var m = MoELayout(prefix: "\(p).mlp", experts: numExperts, topK: numExpertsPerToken, width: width,
                                  normTopKProb: normTopKProb, expertNames: .swiGLU,
                                  sharedWidth: shared > 0 ? shared * width : nil)
                m.sharedGated = false
                m.router = router
                ff = .moe(m)
            } else {
                ff = .dense(prefix: "\(p).mlp", width: intermediateSize)
            }
            let a = attention(p)
            var layout = LayerLayout(prefix: p, qkvBias: a.qkvBias, outputBias: a.outputBias, qkNorm: a.qkNorm, clip: nil,
                                     feedForward: ff)
            layout.latent = latent
            return layout
        }
    }

    /// DeepSeek-V3's router (GLM-4.5's too): sigmoid scores, the selection bias, groups ranked by their two best
    /// experts, `routed_scaling_factor`.
    func sigmoidGroupRouter(groups defaultGroups: Int, groupsChosen defaultChosen: Int, scale defaultScale: Double) throws -> RouterLayout {
        var r = RouterLayout()
        r.scoring = .sigmoid
        r.selectionBias = true
        r.groups = try extraInt("n_group") ?? defaultGroups
        r.groupsChosen = try extraInt("topk_group") ?? defaultChosen
        r.groupScore = .topTwoSum
        r.scale = try extraDouble("routed_scaling_factor") ?? defaultScale
        return r
    }

    /// transformers sets head_dim to qk_rope_head_dim for MLA models: what RoPE rotates.
    func withLatentHeadDim() throws -> ModelConfig {
        var c = self
        c.headDim = try extraInt("qk_rope_head_dim") ?? 64
        return c
    }

    /// MLA's shapes from `q_lora_rank`, `kv_lora_rank`, `qk_nope_head_dim`, `qk_rope_head_dim`, `v_head_dim`
    /// (transformers' defaults where absent), refused when inconsistent.
    func latentAttentionLayout(interleavedRope: Bool) throws -> LatentAttentionLayout {
        let qLora = try extraInt("q_lora_rank")
        let kvLora = try extraInt("kv_lora_rank") ?? 512
        let nope = try extraInt("qk_nope_head_dim") ?? 128
        let ropeDim = try extraInt("qk_rope_head_dim") ?? 64
        let value = try extraInt("v_head_dim") ?? 128
        for (key, v) in [("kv_lora_rank", kvLora), ("qk_rope_head_dim", ropeDim), ("v_head_dim", value), ("q_lora_rank", qLora ?? 1)]
        where v <= 0 {
            throw ModelError.badInput("MLA: \(key) must be positive, found \(v)")
        }
        guard nope >= 0 else { throw ModelError.badInput("MLA: qk_nope_head_dim must not be negative, found \(nope)") }
        guard ropeDim % 2 == 0 else { throw ModelError.badInput("MLA: qk_rope_head_dim (\(ropeDim)) must be even to rotate in pairs") }
        guard numKeyValueHeads == numAttentionHeads else {
            throw ModelError.badInput("MLA: num_key_value_heads (\(numKeyValueHeads)) must equal num_attention_heads (\(numAttentionHeads))")
        }
        // transformers: 1/√(qk head dim), times mscale(factor, mscale_all_dim)² for a scaled (non-default) rope.
        var scale = 1 / Double(nope + ropeDim).squareRoot()
        if rope.type != "default", let all = rope.mscaleAllDim, all != 0, let factor = rope.factor, factor > 1 {
            let m = 0.1 * all * Foundation.log(factor) + 1
            scale *= m * m
        }
        return LatentAttentionLayout(qLoraRank: qLora, kvLoraRank: kvLora, nopeDim: nope, ropeDim: ropeDim, valueDim: value,
                                     interleavedRope: interleavedRope, bias: attentionBias ?? false, softmaxScale: scale)
    }
}
