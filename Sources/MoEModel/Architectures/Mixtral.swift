import MoEFormats

/// Mixtral (`mixtral`): every layer is MoE, experts of width `intermediate_size` named w1 (gate), w3 (up),
/// w2 (down) under `block_sparse_moe` on the hub; top-k weights are always renormalised (the config has no
/// `norm_topk_prob`); no attention bias.
enum Mixtral: Architecture {
    static let modelType = "mixtral"

    static func layout(_ c: ModelConfig, has: (String) -> Bool) throws -> [LayerLayout] {
        let windows = try c.slidingWindows { _ in true }   // `sliding_window`, when set, bounds every layer
        return (0..<c.numHiddenLayers).map { i in
            let p = "model.layers.\(i)"
            // Hub checkpoints: block_sparse_moe.{gate, experts.E.w1/w2/w3}; some transformers 5 saves use mlp.*.
            let moe = has("\(p).mlp.gate.weight") ? "\(p).mlp" : "\(p).block_sparse_moe"
            return LayerLayout(prefix: p, qkvBias: false, outputBias: false, qkNorm: .none, clip: nil,
                               feedForward: .moe(MoELayout(prefix: moe, experts: c.numExperts, topK: c.numExpertsPerToken,
                                                           width: c.intermediateSize, normTopKProb: true,
                                                           expertNames: .w1w3w2)))
        }.withWindows(windows)
    }
}
