import MoEFormats

/// Qwen2 (`qwen2`): dense, q/k/v biases always, no o bias.
enum Qwen2: Architecture {
    static let modelType = "qwen2"

    static func layers(_ c: ModelConfig, _ w: WeightReader) throws -> [DecoderLayer] {
        try denseLayers(c, w) { p in try Attention(c, w, prefix: p, qkvBias: true, outputBias: false) }
    }
}
