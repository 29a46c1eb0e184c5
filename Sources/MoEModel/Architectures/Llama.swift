import MoEFormats

/// Llama (`llama`): dense, biases on q/k/v/o only with `attention_bias`.
enum Llama: Architecture {
    static let modelType = "llama"

    static func layers(_ c: ModelConfig, _ w: WeightReader) throws -> [DecoderLayer] {
        let bias = c.attentionBias ?? false
        return try denseLayers(c, w) { p in try Attention(c, w, prefix: p, qkvBias: bias, outputBias: bias) }
    }
}
