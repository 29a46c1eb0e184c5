import MoEFormats

/// Qwen3 (`qwen3`): dense, RMSNorm of q and k per head, biases only with `attention_bias`; sliding windows as Qwen2.
enum Qwen3: Architecture {
    static let modelType = "qwen3"

    static func layout(_ c: ModelConfig, has: (String) -> Bool) throws -> [LayerLayout] {
        let bias = c.attentionBias ?? false
        return c.layerLayouts(qkvBias: bias, outputBias: bias, qkNorm: .perHead)
            .withWindows(try c.qwenSlidingWindows { i, maxWindowLayers in i >= maxWindowLayers })
    }
}
