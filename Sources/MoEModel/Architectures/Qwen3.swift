import MoEFormats

/// Qwen3 (`qwen3`): dense, RMSNorm of q and k per head, biases only with `attention_bias`.
enum Qwen3: Architecture {
    static let modelType = "qwen3"

    static func layers(_ c: ModelConfig, _ w: WeightReader) throws -> [DecoderLayer] {
        let bias = c.attentionBias ?? false
        return try denseLayers(c, w) { p in try Attention(c, w, prefix: p, qkvBias: bias, outputBias: bias, qkNorm: .perHead) }
    }
}
