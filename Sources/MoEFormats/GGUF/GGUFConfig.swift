import Foundation

/// A GGUF file's `{architecture}.*` hyper-parameters as the `config.json` its architecture would have, read by
/// `ModelConfig` like any other (so its checks apply). Settings llama.cpp fixes per architecture rather than
/// storing (whether top-k weights are renormalised) are fixed here the same way.
enum GGUFConfig {
    static func modelConfig(_ f: GGUFFile, architecture a: String, tensors: [String: GGUFTensorInfo]) throws -> ModelConfig {
        func key(_ k: String) -> String { "\(a).\(k)" }
        guard let embedding = tensors["token_embd.weight"], embedding.dims.count == 2 else {
            throw FormatError.missingTensor(tensor: "token_embd.weight", directory: f.path)
        }
        let hidden = try f.requireInt(key("embedding_length"))
        let heads = try f.requireInt(key("attention.head_count"))
        let experts = try f.int(key("expert_count")) ?? 0
        var c: [String: Any] = [
            "vocab_size": embedding.dims[1],
            "hidden_size": hidden,
            "num_hidden_layers": try f.requireInt(key("block_count")),
            "num_attention_heads": heads,
            "num_key_value_heads": try f.int(key("attention.head_count_kv")) ?? heads,
            "head_dim": try f.int(key("attention.key_length")) ?? hidden / max(heads, 1),
            "intermediate_size": try f.int(key("feed_forward_length")) ?? 0,
            "max_position_embeddings": try f.int(key("context_length")) ?? 4096,
            "rms_norm_eps": try f.double(key("attention.layer_norm_rms_epsilon")) ?? 1e-6,
            "rope_theta": try f.double(key("rope.freq_base")) ?? 10000,
            "tie_word_embeddings": tensors["output.weight"] == nil,
            "hidden_act": "silu",
        ]
        if a != "deepseek2", let v = try f.int(key("attention.value_length")), v != c["head_dim"] as? Int {
            throw FormatError.badConfig(path: f.path, reason: "attention.value_length \(v) differs from key_length; not supported")
        }
        if let scaling = try f.string(key("rope.scaling.type")), scaling != "none" {
            var rope: [String: Any] = ["rope_type": scaling, "rope_theta": c["rope_theta"]!]
            if let factor = try f.double(key("rope.scaling.factor")) { rope["factor"] = factor }
            if let original = try f.int(key("rope.scaling.original_context_length")) { rope["original_max_position_embeddings"] = original }
            if let v = try f.double(key("rope.scaling.yarn_beta_fast")) { rope["beta_fast"] = v }
            if let v = try f.double(key("rope.scaling.yarn_beta_slow")) { rope["beta_slow"] = v }
            if let v = try f.double(key("rope.scaling.yarn_attn_factor")) { rope["attention_factor"] = v }
            c["rope_scaling"] = rope
        }
        if let clamp = try f.double(key("attention.clamp_kqv")), clamp > 0 { c["clip_qkv"] = clamp }
        let bias = tensors["blk.0.attn_q.bias"] != nil
        c["attention_bias"] = bias
        c["qkv_bias"] = bias
        if let bos = try f.int("tokenizer.ggml.bos_token_id") { c["bos_token_id"] = bos }
        if let eos = try f.int("tokenizer.ggml.eos_token_id") { c["eos_token_id"] = eos }
        switch a {
        case "qwen2moe", "qwen3moe", "olmoe":
            c["model_type"] = ["qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "olmoe": "olmoe"][a]!
            c["num_experts"] = experts
            c["num_experts_per_tok"] = try f.int(key("expert_used_count")) ?? 0
            if let w = try f.int(key("expert_feed_forward_length")) { c["moe_intermediate_size"] = w }
            if let w = try f.int(key("expert_shared_feed_forward_length")) { c["shared_expert_intermediate_size"] = w }
            // llama.cpp renormalises the top-k weights for Qwen3-MoE and never for Qwen2-MoE and OLMoE.
            c["norm_topk_prob"] = try f.bool(key("expert_weights_norm")) ?? (a == "qwen3moe")
            // Layers without a router are dense (Qwen2-MoE's mlp_only_layers).
            let layers = c["num_hidden_layers"] as! Int
            c["mlp_only_layers"] = (0..<layers).filter { tensors["blk.\($0).ffn_gate_inp.weight"] == nil }
            if a == "olmoe" { c["intermediate_size"] = try f.int(key("expert_feed_forward_length")) ?? c["intermediate_size"]! }
        case "qwen3next", "qwen35moe":
            try hybrid(f, key, into: &c, tensors: tensors, architecture: a)
        case "llama":
            if experts > 0 {
                c["model_type"] = "mixtral"
                c["num_local_experts"] = experts
                c["num_experts_per_tok"] = try f.int(key("expert_used_count")) ?? 0
            } else {
                c["model_type"] = "llama"
            }
        case "deepseek2":
            try deepSeek(f, key, into: &c, tensors: tensors)
        case "glm4moe":
            c["model_type"] = "glm4_moe"
            try deepSeekRouting(f, key, into: &c, tensors: tensors)
            let headDim = c["head_dim"] as! Int
            if let rotary = try f.int(key("rope.dimension_count")) {
                c["partial_rotary_factor"] = Double(rotary) / Double(headDim)
            }
            c["use_qk_norm"] = tensors["blk.0.attn_q_norm.weight"] != nil
        case "gpt-oss":
            // llama.cpp: even layers slide (its swa pattern 2, transformers' default layer_types); the clamped
            // SwiGLU's alpha and limit are its fixed 1.702 and 7 (also gpt-oss's defaults).
            c["model_type"] = "gpt_oss"
            c["num_local_experts"] = experts
            c["num_experts_per_tok"] = try f.int(key("expert_used_count")) ?? 0
            c["intermediate_size"] = try f.int(key("expert_feed_forward_length")) ?? c["intermediate_size"]!
            c["sliding_window"] = try f.requireInt(key("attention.sliding_window"))
        default:
            c["model_type"] = a   // qwen2, qwen3
        }
        let json = try JSONSerialization.data(withJSONObject: c)
        return try ModelConfig(json: json, path: f.path)
    }

    /// Qwen3-Next / Qwen3.5-MoE: the Gated DeltaNet's shapes in llama.cpp's `ssm.*` keys (state_size: key head
    /// dim, group_count: key heads, time_step_rank: value heads, inner_size: all value dims), which layers are
    /// recurrent, partial rotary from rope.dimension_count; top-k weights renormalised (llama.cpp always does for
    /// these); qwen35moe files tile their value heads.
    private static func hybrid(_ f: GGUFFile, _ key: (String) -> String, into c: inout [String: Any],
                               tensors: [String: GGUFTensorInfo], architecture a: String) throws {
        c["model_type"] = a == "qwen3next" ? "qwen3_next" : "qwen3_5_moe"
        c["num_experts"] = try f.int(key("expert_count")) ?? 0
        c["num_experts_per_tok"] = try f.int(key("expert_used_count")) ?? 0
        if let w = try f.int(key("expert_feed_forward_length")) { c["moe_intermediate_size"] = w }
        if let w = try f.int(key("expert_shared_feed_forward_length")) { c["shared_expert_intermediate_size"] = w }
        c["norm_topk_prob"] = true
        let layers = c["num_hidden_layers"] as! Int
        c["mlp_only_layers"] = (0..<layers).filter { tensors["blk.\($0).ffn_gate_inp.weight"] == nil }
        let valueHeads = try f.requireInt(key("ssm.time_step_rank"))
        guard valueHeads > 0 else { throw FormatError.badConfig(path: f.path, reason: "\(key("ssm.time_step_rank")) must be positive") }
        c["linear_conv_kernel_dim"] = try f.requireInt(key("ssm.conv_kernel"))
        c["linear_key_head_dim"] = try f.requireInt(key("ssm.state_size"))
        c["linear_num_key_heads"] = try f.requireInt(key("ssm.group_count"))
        c["linear_num_value_heads"] = valueHeads
        c["linear_value_head_dim"] = try f.requireInt(key("ssm.inner_size")) / valueHeads
        c["linear_value_heads_tiled"] = a == "qwen35moe"
        if let recurrent = try f.array(key("attention.recurrent_layers"), { $0.bool }, expected: "booleans") {
            c["layer_types"] = recurrent.prefix(layers).map { $0 ? "linear_attention" : "full_attention" }
        } else {
            c["full_attention_interval"] = try f.int(key("full_attention_interval")) ?? 4
        }
        let headDim = c["head_dim"] as! Int
        if let rotary = try f.int(key("rope.dimension_count")) {
            c["partial_rotary_factor"] = Double(rotary) / Double(headDim)
        }
    }

    /// The MoE settings DeepSeek-V2/V3 and GLM-4.5 share: experts, shared experts, dense-first layers, the
    /// selection bias (a tensor), groups, scaling, renormalisation; layers past `block_count −
    /// nextn_predict_layers` are multi-token-prediction blocks (`num_nextn_predict_layers`), not part of the model.
    private static func deepSeekRouting(_ f: GGUFFile, _ key: (String) -> String, into c: inout [String: Any],
                                        tensors: [String: GGUFTensorInfo]) throws {
        c["n_routed_experts"] = try f.int(key("expert_count")) ?? 0
        c["num_experts_per_tok"] = try f.int(key("expert_used_count")) ?? 0
        if let w = try f.int(key("expert_feed_forward_length")) { c["moe_intermediate_size"] = w }
        c["n_shared_experts"] = try f.int(key("expert_shared_count")) ?? 0
        c["first_k_dense_replace"] = try f.int(key("leading_dense_block_count")) ?? 0
        c["routed_scaling_factor"] = try f.double(key("expert_weights_scale")) ?? 1
        c["norm_topk_prob"] = try f.bool(key("expert_weights_norm")) ?? false
        c["n_group"] = try f.int(key("expert_group_count")) ?? 1
        c["topk_group"] = try f.int(key("expert_group_used_count")) ?? 1
        let mtp = try f.int(key("nextn_predict_layers")) ?? 0
        if mtp > 0 {
            c["num_hidden_layers"] = (c["num_hidden_layers"] as! Int) - mtp
            c["num_nextn_predict_layers"] = mtp
        }
    }

    /// llama.cpp's `deepseek2`: MLA stored as MQA with one "head" of the latent (head_count_kv 1, key_length =
    /// kv_lora_rank + rope, value_length = kv_lora_rank) and the per-head dimensions in key_length_mla /
    /// value_length_mla (older files: key_length / value_length themselves); rotary pairs interleaved; softmax
    /// gating (1) is DeepSeek-V2, sigmoid (2) DeepSeek-V3.
    private static func deepSeek(_ f: GGUFFile, _ key: (String) -> String, into c: inout [String: Any],
                                 tensors: [String: GGUFTensorInfo]) throws {
        try deepSeekRouting(f, key, into: &c, tensors: tensors)
        let sigmoid = (try f.int(key("expert_gating_func")) ?? 1) == 2
        c["model_type"] = sigmoid ? "deepseek_v3" : "deepseek_v2"
        if !sigmoid, (c["n_group"] as! Int) > 1 { c["topk_method"] = "group_limited_greedy" }
        c["num_key_value_heads"] = c["num_attention_heads"]
        guard let rope = try f.int(key("rope.dimension_count")), let kvLora = try f.int(key("attention.kv_lora_rank")) else {
            throw FormatError.badConfig(path: f.path, reason: "deepseek2 metadata needs rope.dimension_count and attention.kv_lora_rank")
        }
        let keyLength: Int, valueLength: Int
        if let k = try f.int(key("attention.key_length_mla")), let v = try f.int(key("attention.value_length_mla")) {
            (keyLength, valueLength) = (k, v)
        } else {
            (keyLength, valueLength) = (try f.requireInt(key("attention.key_length")), try f.requireInt(key("attention.value_length")))
        }
        c["kv_lora_rank"] = kvLora
        c["q_lora_rank"] = try f.int(key("attention.q_lora_rank")) ?? NSNull()
        c["qk_rope_head_dim"] = rope
        c["qk_nope_head_dim"] = keyLength - rope
        c["v_head_dim"] = valueLength
        c["head_dim"] = rope
        c["rope_interleave"] = true
        c["attention_bias"] = tensors["blk.0.attn_kv_a_mqa.bias"] != nil
        if var scaling = c["rope_scaling"] as? [String: Any], let mul = try f.double(key("rope.scaling.yarn_log_multiplier")), mul > 0 {
            // llama.cpp stores 0.1 · mscale_all_dim; DeepSeek's configs give mscale = mscale_all_dim.
            scaling["mscale_all_dim"] = mul / 0.1
            scaling["mscale"] = mul / 0.1
            c["rope_scaling"] = scaling
        }
    }
}
