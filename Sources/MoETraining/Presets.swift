import Foundation
import MoEFormats

/// Built-in model configurations (config.json keys as transformers writes them): `qwen3_moe` ones, and the
/// hybrid `qwen3_next` ones (`-next`: Gated DeltaNet layers with gated attention every fourth layer).
///
///     let config = try ModelPreset.config("bench-small", vocabSize: 8192)
public enum ModelPreset {
    public static let names = ["tiny", "small", "bench-small", "tiny-next", "small-next"]

    /// The config.json object of a preset; `vocabSize` replaces the preset's (a trained tokenizer's size).
    public static func json(_ name: String, vocabSize: Int? = nil) throws -> [String: Any] {
        var c: [String: Any] = [
            "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
            "hidden_act": "silu", "rms_norm_eps": 1e-6, "initializer_range": 0.02,
            "rope_theta": 10000.0, "attention_bias": false, "attention_dropout": 0.0,
            "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": [Int](),
            "output_router_logits": true, "router_aux_loss_coef": 0.01, "tie_word_embeddings": false,
            "use_cache": true, "dtype": "float32", "bos_token_id": NSNull(), "eos_token_id": 0,
        ]
        switch name {
        case "tiny":
            c.merge(["vocab_size": 512, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "head_dim": 16, "num_experts": 8, "num_experts_per_tok": 2,
                     "moe_intermediate_size": 64, "intermediate_size": 128, "max_position_embeddings": 256]) { $1 }
        case "small":
            c.merge(["vocab_size": 4096, "hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 6,
                     "num_key_value_heads": 2, "head_dim": 32, "num_experts": 16, "num_experts_per_tok": 2,
                     "moe_intermediate_size": 128, "intermediate_size": 512, "max_position_embeddings": 512]) { $1 }
        case "bench-small":
            c.merge(["vocab_size": 8192, "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "head_dim": 64, "num_experts": 32, "num_experts_per_tok": 4,
                     "moe_intermediate_size": 128, "intermediate_size": 512, "max_position_embeddings": 512]) { $1 }
        case "tiny-next", "small-next":
            // The same sizes as tiny / small, as Qwen3-Next: DeltaNet layers (value heads twice the key heads) and a
            // gated attention layer last in every four, a gated shared expert beside the routed ones.
            c = try json(name == "tiny-next" ? "tiny" : "small", vocabSize: vocabSize)
            let hidden = c["hidden_size"] as! Int, layers = name == "tiny-next" ? 4 : 8
            c.merge(["architectures": ["Qwen3NextForCausalLM"], "model_type": "qwen3_next", "num_hidden_layers": layers,
                     "full_attention_interval": 4, "linear_conv_kernel_dim": 4, "linear_num_key_heads": 2,
                     "linear_num_value_heads": 4, "linear_key_head_dim": hidden / 4, "linear_value_head_dim": hidden / 4,
                     "shared_expert_intermediate_size": c["moe_intermediate_size"]!,
                     "rope_parameters": ["rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25]]) { $1 }
            c["rope_theta"] = nil
        default:
            throw TrainingError.badArgument("unknown preset '\(name)' (presets: \(names.joined(separator: ", ")))")
        }
        if let vocabSize { c["vocab_size"] = vocabSize }
        return c
    }

    public static func config(_ name: String, vocabSize: Int? = nil, overrides: [String: Any] = [:]) throws -> ModelConfig {
        let object = try json(name, vocabSize: vocabSize).merging(overrides) { $1 }
        return try ModelConfig(json: JSONSerialization.data(withJSONObject: object), path: "preset \(name)")
    }
}

/// Errors of the training commands, each naming what to fix.
public enum TrainingError: Error, CustomStringConvertible {
    case badArgument(String)
    case nonFiniteLoss(step: Int, lastCheckpoint: String?)
    case checkpointWrite(path: String, reason: String)
    case resume(String)

    public var description: String {
        switch self {
        case let .badArgument(s): return s
        case let .nonFiniteLoss(step, last):
            return "the loss became NaN or infinite at step \(step); stopped. " +
                (last.map { "The last good checkpoint is \($0)." } ?? "No checkpoint was written yet.") +
                " Try a lower --lr or stronger --grad-clip."
        case let .checkpointWrite(path, reason):
            return "cannot write the checkpoint \(path): \(reason). The previous checkpoint is intact."
        case let .resume(s): return "cannot resume: \(s)"
        }
    }
}
