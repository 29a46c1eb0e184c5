import MoEFormats

/// Qwen2 (`qwen2`): dense, q/k/v biases always, no o bias.
enum Qwen2: Architecture {
    static let modelType = "qwen2"

    static func layout(_ c: ModelConfig, has: (String) -> Bool) throws -> [LayerLayout] {
        c.layerLayouts(qkvBias: true, outputBias: false)
    }
}
