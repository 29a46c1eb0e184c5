import MoEFormats

/// Qwen2 (`qwen2`): dense, q/k/v biases always, no o bias; with `use_sliding_window`, layers from
/// `max_window_layers` on attend within `sliding_window`.
enum Qwen2: Architecture {
    static let modelType = "qwen2"

    static func layout(_ c: ModelConfig, has: (String) -> Bool) throws -> [LayerLayout] {
        c.layerLayouts(qkvBias: true, outputBias: false).withWindows(try c.qwenSlidingWindows { i, maxWindowLayers in i >= maxWindowLayers })
    }
}
