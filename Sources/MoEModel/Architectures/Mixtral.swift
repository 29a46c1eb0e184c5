import MoEFormats

/// Mixtral (`mixtral`): every layer is MoE, experts of width `intermediate_size` named w1 (gate), w3 (up),
/// w2 (down) under `block_sparse_moe` on the hub; top-k weights are always renormalised (the config has no
/// `norm_topk_prob`); no attention bias.
enum Mixtral: Architecture {
    static let modelType = "mixtral"

    static func layers(_ c: ModelConfig, _ w: WeightReader) throws -> [DecoderLayer] {
        try (0..<c.numHiddenLayers).map { i in
            let p = "model.layers.\(i)"
            let attention = try Attention(c, w, prefix: "\(p).self_attn", qkvBias: false, outputBias: false)
            // Hub checkpoints: block_sparse_moe.{gate, experts.E.w1/w2/w3}; transformers 5 saves mlp.{gate, experts.*}.
            let moe = w.has("\(p).block_sparse_moe.gate.weight") ? "\(p).block_sparse_moe" : "\(p).mlp"
            let block = MoEBlock(
                router: try w.matrix("\(moe).gate.weight", rows: c.numExperts, cols: c.hiddenSize),
                experts: try MoEBlock.readExperts(w, prefix: "\(moe).experts", count: c.numExperts, hidden: c.hiddenSize,
                                                  width: c.intermediateSize, names: ("w1", "w3", "w2")),
                topK: c.numExpertsPerToken, normTopKProb: true)
            return try DecoderLayer(c, w, prefix: p, attention: attention, feedForward: .moe(block))
        }
    }
}
