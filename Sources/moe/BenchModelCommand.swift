import ArgumentParser
import Foundation
import MoEFormats
import MoEKernels
import MoEModel

/// `moe bench make-model`: writes the random Qwen3-MoE that `moe bench infer` is measured on, as a Hugging Face
/// directory that transformers and llama.cpp's converter read. `--size bench` (735M parameters): hidden 1024,
/// 8 layers, 16 heads / 4 KV heads, head_dim 64, 64 experts top-8 of width 256, vocabulary 151,936, untied
/// embeddings. `--size 7b` (7.2B parameters, 1.6B active, 14.4 GB in bf16): a size users run, where decode is
/// bandwidth-bound — hidden 2048, 16 layers, 32 heads / 4 KV heads, 64 experts top-8 of width 1024.
/// `--arch deepseek_v2`: a DeepSeek-V2-Lite-shaped model of the bench size — multi-head latent attention (16
/// heads, latent 256, rope key 32, nope 64, value 64, q low-rank 512: llama.cpp reads deepseek2 without a q
/// low-rank only at V2-Lite's 27 layers), 64 experts top-6 of width 256 + 2 shared, the first layer dense (width
/// 3072), softmax greedy routing. `--arch qwen3_next`: a Qwen3-Next-shaped hybrid of the bench size — Gated
/// DeltaNet layers (8 key heads, 16 value heads, head dims 128, conv 4) with gated attention (8 heads / 2 KV heads of
/// 256, partial rotary 0.25) in every fourth layer, 128 experts top-8 of width 256 + a gated shared expert of 256.
/// `--arch gpt_oss`: a gpt-oss-shaped model of the bench size — 8 layers alternating sliding window 128 / full
/// attention, 64 heads of 64 / 8 KV heads with sinks and biases, 32 experts top-4 of width 1024 stored in MXFP4 as
/// the hub's checkpoints (`*_blocks` / `*_scales`), vocabulary 201,088.
struct BenchMakeModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-model",
        abstract: "Write a random bench model (Qwen3-MoE, DeepSeek-V2, Qwen3-Next or gpt-oss-shaped; f32 or bf16) as a Hugging Face directory.")

    @Option(help: "Output directory.") var out: String
    @Option(help: "Weight dtype: bf16, f16 or f32.") var dtype: String = "bf16"
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "bench (735M parameters) or 7b (7.2B, 1.6B active).") var size: String = "bench"
    @Option(help: "Number of layers (default 8 for bench, 16 for 7b; fewer for a quick check).") var layers: Int?
    @Option(help: "Architecture: qwen3_moe, deepseek_v2, qwen3_next or gpt_oss (the last three: bench size only).") var arch: String = "qwen3_moe"

    func run() throws {
        let storage: DType
        switch dtype.lowercased() {
        case "bf16", "bfloat16": storage = .bf16
        case "f16", "float16": storage = .f16
        case "f32", "float32": storage = .f32
        default: throw ValidationError("--dtype must be bf16, f16 or f32")
        }
        let hidden: Int, heads: Int, width: Int, layers: Int
        switch size.lowercased() {
        case "bench": (hidden, heads, width, layers) = (1024, 16, 256, self.layers ?? 8)
        case "7b": (hidden, heads, width, layers) = (2048, 32, 1024, self.layers ?? 16)
        default: throw ValidationError("--size must be bench or 7b")
        }
        let deepSeek: Bool
        switch arch {
        case "qwen3_moe": deepSeek = false
        case "deepseek_v2", "qwen3_next", "gpt_oss":
            guard size.lowercased() == "bench" else { throw ValidationError("--arch \(arch) comes in --size bench only") }
            if arch == "qwen3_next" {
                try writeHybrid(storage: storage, layers: layers)
                return
            }
            if arch == "gpt_oss" {
                try writeGptOss(storage: storage, layers: layers)
                return
            }
            deepSeek = true
        default: throw ValidationError("--arch must be qwen3_moe, deepseek_v2, qwen3_next or gpt_oss")
        }
        let kvHeads = 4, headDim = 64, experts = 64, topK = deepSeek ? 6 : 8, vocab = 151_936, denseWidth = 3072
        // DeepSeek-V2-Lite's attention at half its width.
        let kvLora = 256, qLora = 512, ropeDim = 32, nopeDim = 64, valueDim = 64, shared = 2
        var config: [String: Any] = [
            "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_experts_per_tok": topK, "moe_intermediate_size": width, "intermediate_size": denseWidth,
            "norm_topk_prob": !deepSeek,
            "vocab_size": vocab, "max_position_embeddings": deepSeek ? 8192 : 4096, "rms_norm_eps": 1e-6,
            "rope_parameters": ["rope_type": "default", "rope_theta": deepSeek ? 10_000.0 : 1_000_000.0] as [String: Any],
            "tie_word_embeddings": false, "hidden_act": "silu", "attention_bias": false,
            "bos_token_id": 151_643, "eos_token_id": 151_645,
            "dtype": storage == .bf16 ? "bfloat16" : storage == .f16 ? "float16" : "float32",
        ]
        if deepSeek {
            config.merge([
                "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
                "num_key_value_heads": heads, "n_routed_experts": experts, "n_shared_experts": shared,
                "first_k_dense_replace": 1, "topk_method": "greedy",
                "kv_lora_rank": kvLora, "q_lora_rank": qLora, "qk_nope_head_dim": nopeDim, "qk_rope_head_dim": ropeDim,
                "v_head_dim": valueDim, "head_dim": ropeDim,
            ] as [String: Any]) { $1 }
        } else {
            config.merge([
                "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
                "num_key_value_heads": kvHeads, "head_dim": headDim, "num_experts": experts,
                "decoder_sparse_step": 1, "mlp_only_layers": [Int](),
            ] as [String: Any]) { $1 }
        }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try AtomicFile.write(JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]),
                             to: (out as NSString).appendingPathComponent("config.json"))

        var w = RandomWeights(storage: storage, seed: seed)
        func random(_ name: String, _ shape: [Int]) { w.random(name, shape) }
        func ones(_ name: String, _ n: Int) { w.constant(name, n, 1) }
        random("model.embed_tokens.weight", [vocab, hidden])
        for l in 0..<layers {
            let p = "model.layers.\(l)"
            ones("\(p).input_layernorm.weight", hidden)
            ones("\(p).post_attention_layernorm.weight", hidden)
            if deepSeek {
                random("\(p).self_attn.q_a_proj.weight", [qLora, hidden])
                ones("\(p).self_attn.q_a_layernorm.weight", qLora)
                random("\(p).self_attn.q_b_proj.weight", [heads * (nopeDim + ropeDim), qLora])
                random("\(p).self_attn.kv_a_proj_with_mqa.weight", [kvLora + ropeDim, hidden])
                ones("\(p).self_attn.kv_a_layernorm.weight", kvLora)
                random("\(p).self_attn.kv_b_proj.weight", [heads * (nopeDim + valueDim), kvLora])
                random("\(p).self_attn.o_proj.weight", [hidden, heads * valueDim])
            } else {
                random("\(p).self_attn.q_proj.weight", [heads * headDim, hidden])
                random("\(p).self_attn.k_proj.weight", [kvHeads * headDim, hidden])
                random("\(p).self_attn.v_proj.weight", [kvHeads * headDim, hidden])
                random("\(p).self_attn.o_proj.weight", [hidden, heads * headDim])
                ones("\(p).self_attn.q_norm.weight", headDim)
                ones("\(p).self_attn.k_norm.weight", headDim)
            }
            if deepSeek && l == 0 {
                random("\(p).mlp.gate_proj.weight", [denseWidth, hidden])
                random("\(p).mlp.up_proj.weight", [denseWidth, hidden])
                random("\(p).mlp.down_proj.weight", [hidden, denseWidth])
                continue
            }
            random("\(p).mlp.gate.weight", [experts, hidden])
            for e in 0..<experts {
                random("\(p).mlp.experts.\(e).gate_proj.weight", [width, hidden])
                random("\(p).mlp.experts.\(e).up_proj.weight", [width, hidden])
                random("\(p).mlp.experts.\(e).down_proj.weight", [hidden, width])
            }
            if deepSeek {
                random("\(p).mlp.shared_experts.gate_proj.weight", [shared * width, hidden])
                random("\(p).mlp.shared_experts.up_proj.weight", [shared * width, hidden])
                random("\(p).mlp.shared_experts.down_proj.weight", [hidden, shared * width])
            }
        }
        ones("model.norm.weight", hidden)
        random("lm_head.weight", [vocab, hidden])
        try finish(w.entries, layers: layers)
    }

    func finish(_ entries: [SafeTensorsWriter.Entry], layers: Int) throws {
        try SafeTensorsWriter.write(entries, to: (out as NSString).appendingPathComponent("model.safetensors"))
        try AtomicFile.write(Data("{\"bos_token_id\": 151643, \"eos_token_id\": 151645}\n".utf8),
                             to: (out as NSString).appendingPathComponent("generation_config.json"))
        print("wrote \(out) (\(arch), \(size), \(dtype), \(layers) layers)")
    }

    /// The Qwen3-Next-shaped bench model (see the type's comment); zero-centred norms are stored as 0 (scale 1).
    func writeHybrid(storage: DType, layers: Int) throws {
        let hidden = 1024, heads = 8, kvHeads = 2, headDim = 256, experts = 128, topK = 8, width = 256, vocab = 151_936
        let keyHeads = 8, valueHeads = 16, keyDim = 128, valueDim = 128, kernel = 4
        let config: [String: Any] = [
            "architectures": ["Qwen3NextForCausalLM"], "model_type": "qwen3_next",
            "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kvHeads,
            "head_dim": headDim, "num_experts": experts, "num_experts_per_tok": topK, "moe_intermediate_size": width,
            "shared_expert_intermediate_size": width, "intermediate_size": 3072, "norm_topk_prob": true,
            "decoder_sparse_step": 1, "mlp_only_layers": [Int](), "full_attention_interval": 4,
            "linear_num_key_heads": keyHeads, "linear_num_value_heads": valueHeads, "linear_key_head_dim": keyDim,
            "linear_value_head_dim": valueDim, "linear_conv_kernel_dim": kernel,
            "vocab_size": vocab, "max_position_embeddings": 16384, "rms_norm_eps": 1e-6,
            "rope_parameters": ["rope_type": "default", "rope_theta": 10_000_000.0, "partial_rotary_factor": 0.25] as [String: Any],
            "tie_word_embeddings": false, "hidden_act": "silu", "attention_bias": false,
            "bos_token_id": 151_643, "eos_token_id": 151_645,
            "dtype": storage == .bf16 ? "bfloat16" : storage == .f16 ? "float16" : "float32",
        ]
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try AtomicFile.write(JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]),
                             to: (out as NSString).appendingPathComponent("config.json"))
        var w = RandomWeights(storage: storage, seed: seed)
        w.random("model.embed_tokens.weight", [vocab, hidden])
        let keyWidth = keyHeads * keyDim, valueWidth = valueHeads * valueDim, channels = 2 * keyWidth + valueWidth
        for l in 0..<layers {
            let p = "model.layers.\(l)"
            w.constant("\(p).input_layernorm.weight", hidden, 0)
            w.constant("\(p).post_attention_layernorm.weight", hidden, 0)
            if (l + 1) % 4 == 0 {
                w.random("\(p).self_attn.q_proj.weight", [2 * heads * headDim, hidden])
                w.random("\(p).self_attn.k_proj.weight", [kvHeads * headDim, hidden])
                w.random("\(p).self_attn.v_proj.weight", [kvHeads * headDim, hidden])
                w.random("\(p).self_attn.o_proj.weight", [hidden, heads * headDim])
                w.constant("\(p).self_attn.q_norm.weight", headDim, 0)
                w.constant("\(p).self_attn.k_norm.weight", headDim, 0)
            } else {
                let a = "\(p).linear_attn"
                w.random("\(a).in_proj_qkvz.weight", [channels + valueWidth, hidden])
                w.random("\(a).in_proj_ba.weight", [2 * valueHeads, hidden])
                w.random("\(a).conv1d.weight", [channels, 1, kernel], std: 0.3)
                w.constant("\(a).A_log", valueHeads, Foundation.log(4))
                w.constant("\(a).dt_bias", valueHeads, 1)
                w.constant("\(a).norm.weight", valueDim, 1)
                w.random("\(a).out_proj.weight", [hidden, valueWidth])
            }
            w.random("\(p).mlp.gate.weight", [experts, hidden])
            for e in 0..<experts {
                w.random("\(p).mlp.experts.\(e).gate_proj.weight", [width, hidden])
                w.random("\(p).mlp.experts.\(e).up_proj.weight", [width, hidden])
                w.random("\(p).mlp.experts.\(e).down_proj.weight", [hidden, width])
            }
            w.random("\(p).mlp.shared_expert.gate_proj.weight", [width, hidden])
            w.random("\(p).mlp.shared_expert.up_proj.weight", [width, hidden])
            w.random("\(p).mlp.shared_expert.down_proj.weight", [hidden, width])
            w.random("\(p).mlp.shared_expert_gate.weight", [1, hidden])
        }
        w.constant("model.norm.weight", hidden, 0)
        w.random("lm_head.weight", [vocab, hidden])
        try finish(w.entries, layers: layers)
    }
}

extension BenchMakeModel {
    /// The gpt-oss-shaped bench model (see the type's comment); its experts in MXFP4 blocks and scales.
    func writeGptOss(storage: DType, layers: Int) throws {
        let hidden = 1024, heads = 64, kvHeads = 8, headDim = 64, experts = 32, topK = 4, width = 1024, vocab = 201_088
        let config: [String: Any] = [
            "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss",
            "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kvHeads,
            "head_dim": headDim, "num_local_experts": experts, "num_experts_per_tok": topK, "intermediate_size": width,
            "sliding_window": 128, "layer_types": (0..<layers).map { $0 % 2 == 0 ? "sliding_attention" : "full_attention" },
            "vocab_size": vocab, "max_position_embeddings": 131_072, "rms_norm_eps": 1e-5, "attention_bias": true,
            "rope_parameters": ["rope_type": "yarn", "rope_theta": 150_000.0, "factor": 32.0, "beta_fast": 32.0,
                                                     "beta_slow": 1.0, "truncate": false, "original_max_position_embeddings": 4096] as [String: Any],
            "tie_word_embeddings": false, "hidden_act": "silu", "bos_token_id": 151_643, "eos_token_id": 151_645,
            "quantization_config": ["quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                                                       "model.embed_tokens", "lm_head"]] as [String: Any],
            "dtype": storage == .bf16 ? "bfloat16" : storage == .f16 ? "float16" : "float32",
        ]
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try AtomicFile.write(JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]),
                             to: (out as NSString).appendingPathComponent("config.json"))
        var w = RandomWeights(storage: storage, seed: seed)
        w.random("model.embed_tokens.weight", [vocab, hidden])
        for l in 0..<layers {
            let p = "model.layers.\(l)"
            w.constant("\(p).input_layernorm.weight", hidden, 1)
            w.constant("\(p).post_attention_layernorm.weight", hidden, 1)
            w.random("\(p).self_attn.q_proj.weight", [heads * headDim, hidden])
            w.random("\(p).self_attn.k_proj.weight", [kvHeads * headDim, hidden])
            w.random("\(p).self_attn.v_proj.weight", [kvHeads * headDim, hidden])
            w.random("\(p).self_attn.o_proj.weight", [hidden, heads * headDim])
            for (name, n) in [("q_proj", heads * headDim), ("k_proj", kvHeads * headDim), ("v_proj", kvHeads * headDim), ("o_proj", hidden)] {
                w.constant("\(p).self_attn.\(name).bias", n, 0)
            }
            w.constant("\(p).self_attn.sinks", heads, 0)
            w.random("\(p).mlp.router.weight", [experts, hidden])
            w.constant("\(p).mlp.router.bias", experts, 0)
            w.mxfp4("\(p).mlp.experts.gate_up_proj", [experts, 2 * width, hidden])
            w.constant("\(p).mlp.experts.gate_up_proj_bias", experts * 2 * width, 0, shape: [experts, 2 * width])
            w.mxfp4("\(p).mlp.experts.down_proj", [experts, hidden, width])
            w.constant("\(p).mlp.experts.down_proj_bias", experts * hidden, 0, shape: [experts, hidden])
        }
        w.constant("model.norm.weight", hidden, 1)
        w.random("lm_head.weight", [vocab, hidden])
        try finish(w.entries, layers: layers)
    }
}

/// Random bench weights as safetensors entries, each written from its own seeded stream when the file is.
struct RandomWeights {
    let storage: DType
    var stream: UInt64
    var entries: [SafeTensorsWriter.Entry] = []

    init(storage: DType, seed: UInt64) { self.storage = storage; stream = seed }

    mutating func random(_ name: String, _ shape: [Int], std: Float = 0.02) {
        stream &+= 1
        let s = stream, storage = storage
        entries.append(.init(name: name, dtype: storage, shape: shape) { buffer in
            var rng = Xoshiro256StarStar(seed: s)
            let n = shape.reduce(1, *)
            let values = [Float](unsafeUninitializedCapacity: n) { v, count in
                // Uniform with the standard deviation of N(0, std): fast and enough for a speed benchmark.
                let a = std * Float(3).squareRoot()
                for i in 0..<n { v[i] = a * (2 * Float(rng.nextUnit()) - 1) }
                count = n
            }
            try values.withUnsafeBufferPointer { try FloatEncoding.encode($0, as: storage, into: buffer) }
        })
    }

    mutating func constant(_ name: String, _ n: Int, _ value: Float, shape: [Int]? = nil) {
        entries.append(.floats(name, shape: shape ?? [n], values: [Float](repeating: value, count: n), as: storage))
    }

    /// `{name}_blocks` and `{name}_scales`: random [count, rows, cols] values quantised to MXFP4 as the hub stores it.
    mutating func mxfp4(_ name: String, _ shape: [Int], std: Float = 0.02) {
        stream &+= 1
        let s = stream, rows = shape[0] * shape[1], cols = shape[2], groups = cols / 32
        // Both entries quantise the same seeded values; each fills its own part.
        func fill(_ blocks: Bool, _ buffer: UnsafeMutableRawBufferPointer) {
            var rng = Xoshiro256StarStar(seed: s)
            let a = std * Float(3).squareRoot()
            var row = [Float](repeating: 0, count: cols), b = [UInt8](repeating: 0, count: groups * 16), sc = [UInt8](repeating: 0, count: groups)
            for r in 0..<rows {
                for i in 0..<cols { row[i] = a * (2 * Float(rng.nextUnit()) - 1) }
                row.withUnsafeBufferPointer { x in
                    b.withUnsafeMutableBufferPointer { bp in
                        sc.withUnsafeMutableBufferPointer { sp in quantizeMXFP4Row(x.baseAddress!, count: cols, blocks: bp.baseAddress!, scales: sp.baseAddress!) }
                    }
                }
                if blocks { buffer.baseAddress!.advanced(by: r * groups * 16).copyMemory(from: b, byteCount: groups * 16) }
                else { buffer.baseAddress!.advanced(by: r * groups).copyMemory(from: sc, byteCount: groups) }
            }
        }
        entries.append(.init(name: name + "_blocks", dtype: .u8, shape: [shape[0], shape[1], groups, 16]) { fill(true, $0) })
        entries.append(.init(name: name + "_scales", dtype: .u8, shape: [shape[0], shape[1], groups]) { fill(false, $0) })
    }
}
