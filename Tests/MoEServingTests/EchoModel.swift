import Foundation
import MoEFormats
@testable import MoETokenizer

/// A model whose greedy output is known: it repeats the prompt's token from `distance` positions back. So a prompt
/// whose last user message is a script of `scriptTokens` tokens makes the model write that script as its answer
/// (the chat template puts `<|end|><|start|>assistant`, 11 tokens, after it), which lets the server's harmony
/// reading be tested end to end on whatever output a test needs.
///
/// How: a one-layer Qwen2 whose query and key are constant (biases only), so its attention score depends on the
/// positions alone; the key's bias is the query's rotated back by `distance` positions in every RoPE frequency, so
/// the score peaks, sharply, `distance` positions back. The value copies that token's embedding (dimensions 0..<64)
/// into the other half of the residual (64..<128), which alone the LM head reads. The tokenizer is byte-level with
/// no merges (one token a byte) plus harmony's special tokens, and the chat template a small harmony one.
enum EchoModel {
    static let specials = ["<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|return|>", "<|call|>",
                           "<|endoftext|>"]
    static let scriptTokens = 160
    /// The script, then `<|end|>`, `<|start|>` and the 9 bytes of "assistant" (11 tokens) come before the first
    /// generated token, which the last of them predicts.
    static let distance = scriptTokens + 10
    static let vocab = 272
    static let template = """
        <|start|>system<|message|>Reasoning: {% if reasoning_effort is defined %}{{ reasoning_effort }}{% else %}medium{% endif %}<|end|>
        {%- if tools %}<|start|>developer<|message|># Tools{% for t in tools %} {{ t.function.name }}{% endfor %}<|end|>{% endif %}
        {%- for m in messages %}
        {%- if m.role == 'assistant' and m.tool_calls %}<|start|>assistant to=functions.{{ m.tool_calls[0].function.name }}<|channel|>commentary json<|message|>{{ m.tool_calls[0].function.arguments | tojson }}<|call|>
        {%- elif m.role == 'assistant' %}<|start|>assistant<|channel|>final<|message|>{{ m.content }}<|end|>
        {%- elif m.role == 'tool' %}<|start|>functions.tool to=assistant<|channel|>commentary<|message|>{{ m.content | tojson }}<|end|>
        {%- else %}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>{% endif %}
        {%- endfor %}{% if add_generation_prompt %}<|start|>assistant{% endif %}
        """

    /// The model directory (made once per test process).
    static let directory: String = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-echo-model-\(getpid())/echo").path
        do { try write(to: dir) } catch { fatalError("could not make the echo model: \(error)") }
        return dir
    }()

    /// `script` padded with spaces before its last special token to exactly `scriptTokens` tokens (bytes, special
    /// tokens one each).
    static func padded(_ script: String) -> String {
        var tokens = 0, rest = script
        while !rest.isEmpty {
            if let s = specials.first(where: { rest.hasPrefix($0) }) { tokens += 1; rest.removeFirst(s.count) }
            else { tokens += rest.first!.utf8.count; rest.removeFirst() }
        }
        precondition(tokens <= scriptTokens, "script too long")
        let end = specials.compactMap { script.range(of: $0, options: .backwards) }.max { $0.lowerBound < $1.lowerBound }!
        return script[..<end.lowerBound] + String(repeating: " ", count: scriptTokens - tokens) + script[end.lowerBound...]
    }

    static func write(to dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let hidden = 128, half = 64, headDim = 64, width = 8
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func gaussian() -> Float {   // Box–Muller on a fixed xorshift stream: the same model every run
            func uniform() -> Float {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                return (Float(state >> 40) + 0.5) / Float(1 << 24)
            }
            return (-2 * logf(uniform())).squareRoot() * cosf(2 * .pi * uniform())
        }
        var embedding = [Float](repeating: 0, count: vocab * hidden), head = [Float](repeating: 0, count: vocab * hidden)
        for t in 0..<vocab {
            for i in 0..<half {
                let g = gaussian()
                embedding[t * hidden + i] = g
                head[t * hidden + half + i] = g
            }
        }
        // Query (a, 0) and key a·(cos dθ, sin dθ) in each rotary pair: after RoPE their product is a²·cos((p − j − d)θ).
        let a: Float = 16
        var qBias = [Float](repeating: 0, count: headDim), kBias = [Float](repeating: 0, count: headDim)
        for i in 0..<(headDim / 2) {
            let theta = 1 / powf(10000, Float(2 * i) / Float(headDim))
            qBias[i] = a
            kBias[i] = a * cosf(Float(distance) * theta)
            kBias[i + headDim / 2] = a * sinf(Float(distance) * theta)
        }
        var v = [Float](repeating: 0, count: headDim * hidden), o = [Float](repeating: 0, count: hidden * headDim)
        for i in 0..<headDim { v[i * hidden + i] = 1; o[(half + i) * headDim + i] = 1 }
        let ones = [Float](repeating: 1, count: hidden)
        let p = "model.layers.0"
        typealias Entry = SafeTensorsWriter.Entry
        try SafeTensorsWriter.write([
            Entry.floats("model.embed_tokens.weight", shape: [vocab, hidden], values: embedding),
            Entry.floats("\(p).input_layernorm.weight", shape: [hidden], values: ones),
            Entry.floats("\(p).self_attn.q_proj.weight", shape: [headDim, hidden], values: .init(repeating: 0, count: headDim * hidden)),
            Entry.floats("\(p).self_attn.q_proj.bias", shape: [headDim], values: qBias),
            Entry.floats("\(p).self_attn.k_proj.weight", shape: [headDim, hidden], values: .init(repeating: 0, count: headDim * hidden)),
            Entry.floats("\(p).self_attn.k_proj.bias", shape: [headDim], values: kBias),
            Entry.floats("\(p).self_attn.v_proj.weight", shape: [headDim, hidden], values: v),
            Entry.floats("\(p).self_attn.v_proj.bias", shape: [headDim], values: .init(repeating: 0, count: headDim)),
            Entry.floats("\(p).self_attn.o_proj.weight", shape: [hidden, headDim], values: o),
            Entry.floats("\(p).post_attention_layernorm.weight", shape: [hidden], values: ones),
            Entry.floats("\(p).mlp.gate_proj.weight", shape: [width, hidden], values: .init(repeating: 0, count: width * hidden)),
            Entry.floats("\(p).mlp.up_proj.weight", shape: [width, hidden], values: .init(repeating: 0, count: width * hidden)),
            Entry.floats("\(p).mlp.down_proj.weight", shape: [hidden, width], values: .init(repeating: 0, count: width * hidden)),
            Entry.floats("model.norm.weight", shape: [hidden], values: ones),
            Entry.floats("lm_head.weight", shape: [vocab, hidden], values: head),
        ], to: dir + "/model.safetensors")

        let special = { (name: String) in 256 + specials.firstIndex(of: name)! }
        let config: [String: Any] = [
            "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": vocab, "hidden_size": hidden,
            "intermediate_size": width, "num_hidden_layers": 1, "num_attention_heads": 1, "num_key_value_heads": 1,
            "head_dim": headDim, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "tie_word_embeddings": false, "hidden_act": "silu",
            "eos_token_id": [special("<|return|>"), special("<|call|>")],
        ]
        try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]).write(to: URL(fileURLWithPath: dir + "/config.json"))
        try JSONSerialization.data(withJSONObject: ["eos_token_id": [special("<|return|>"), special("<|call|>")]])
            .write(to: URL(fileURLWithPath: dir + "/generation_config.json"))

        var vocabulary: [String: Int] = [:]
        for b in 0..<256 { vocabulary[String(Character(ByteLevel.scalar(for: UInt8(b))))] = b }
        let added = specials.enumerated().map { i, s -> [String: Any] in
            ["id": 256 + i, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true]
        }
        let tokenizer: [String: Any] = [
            "version": "1.0", "added_tokens": added, "normalizer": NSNull(),
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
            "post_processor": NSNull(), "decoder": ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "vocab": vocabulary, "merges": [String](), "dropout": NSNull(), "unk_token": NSNull(),
                      "continuing_subword_prefix": NSNull(), "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false],
        ]
        try JSONSerialization.data(withJSONObject: tokenizer, options: [.sortedKeys]).write(to: URL(fileURLWithPath: dir + "/tokenizer.json"))
        let tokenizerConfig: [String: Any] = ["eos_token": "<|return|>", "chat_template": template, "model_max_length": 2048]
        try JSONSerialization.data(withJSONObject: tokenizerConfig, options: [.sortedKeys])
            .write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"))
    }
}
