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
        if let v = try f.int(key("attention.value_length")), v != c["head_dim"] as? Int {
            throw FormatError.badConfig(path: f.path, reason: "attention.value_length \(v) differs from key_length; not supported")
        }
        if let scaling = try f.string(key("rope.scaling.type")), scaling != "none" {
            var rope: [String: Any] = ["rope_type": scaling, "rope_theta": c["rope_theta"]!]
            if let factor = try f.double(key("rope.scaling.factor")) { rope["factor"] = factor }
            if let original = try f.int(key("rope.scaling.original_context_length")) { rope["original_max_position_embeddings"] = original }
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
        case "llama":
            if experts > 0 {
                c["model_type"] = "mixtral"
                c["num_local_experts"] = experts
                c["num_experts_per_tok"] = try f.int(key("expert_used_count")) ?? 0
            } else {
                c["model_type"] = "llama"
            }
        default:
            c["model_type"] = a   // qwen2, qwen3
        }
        let json = try JSONSerialization.data(withJSONObject: c)
        return try ModelConfig(json: json, path: f.path)
    }
}
