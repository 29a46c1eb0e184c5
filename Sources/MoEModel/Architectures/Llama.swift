import MoEFormats

/// Llama (`llama`): dense, biases on q/k/v/o only with `attention_bias`.
enum Llama: Architecture {
    static let modelType = "llama"

    static func layout(_ c: ModelConfig, has: (String) -> Bool) throws -> [LayerLayout] {
        let bias = c.attentionBias ?? false
        return c.layerLayouts(qkvBias: bias, outputBias: bias)
    }
}
