import MoEFormats

/// One supported architecture: how a `config.json` of its `model_type` and the tensors of its checkpoint
/// become decoder layers. The embedding (`model.embed_tokens`), final norm (`model.norm`) and LM head
/// (`lm_head`, or the embedding when tied) are common to all of them and read by `Transformer`.
///
/// Adding an architecture is one new file with a type conforming to this, plus its line in `registry`.
public protocol Architecture {
    static var modelType: String { get }
    static func layers(_ config: ModelConfig, _ weights: WeightReader) throws -> [DecoderLayer]
}

/// `model_type` → architecture.
public enum ArchitectureRegistry {
    public static let all: [any Architecture.Type] = [
        Qwen2MoE.self, Qwen3MoE.self, Mixtral.self, OLMoE.self, Qwen2.self, Qwen3.self, Llama.self,
    ]

    public static func architecture(for modelType: String) throws -> any Architecture.Type {
        guard let a = all.first(where: { $0.modelType == modelType }) else {
            throw ModelError.unknownArchitecture(modelType, known: all.map { $0.modelType })
        }
        return a
    }
}

/// A pre-norm transformer block: `h += attention(norm(h)); h += feedForward(norm(h))`.
public struct DecoderLayer: Sendable {
    public enum FeedForward: Sendable {
        case dense(MLP)
        case moe(MoEBlock)
    }

    public let inputNorm: [Float]
    public let attention: Attention
    public let postAttentionNorm: [Float]
    public let feedForward: FeedForward

    public init(inputNorm: [Float], attention: Attention, postAttentionNorm: [Float], feedForward: FeedForward) {
        self.inputNorm = inputNorm; self.attention = attention
        self.postAttentionNorm = postAttentionNorm; self.feedForward = feedForward
    }

    /// The usual layout: `{prefix}.input_layernorm`, `{prefix}.self_attn`, `{prefix}.post_attention_layernorm`.
    public init(_ c: ModelConfig, _ w: WeightReader, prefix: String, attention: Attention, feedForward: FeedForward) throws {
        self.init(inputNorm: try w.vector("\(prefix).input_layernorm.weight", count: c.hiddenSize),
                  attention: attention,
                  postAttentionNorm: try w.vector("\(prefix).post_attention_layernorm.weight", count: c.hiddenSize),
                  feedForward: feedForward)
    }
}

extension ModelConfig {
    /// Whether layer `i` is a mixture-of-experts layer (Qwen2-MoE / Qwen3-MoE rule):
    /// not in `mlp_only_layers`, experts exist, and `(i + 1) % decoder_sparse_step == 0`.
    public func isSparseLayer(_ i: Int) -> Bool {
        !mlpOnlyLayers.contains(i) && numExperts > 0 && (i + 1) % decoderSparseStep == 0
    }

    /// Refuses settings the engine does not implement, rather than running them wrongly.
    func requireSupported() throws {
        if hiddenAct != "silu" { throw ModelError.unsupported("hidden_act '\(hiddenAct)' is not supported (only silu)") }
        if case .bool(true)? = raw["use_sliding_window"] {
            throw ModelError.unsupported("sliding-window attention (use_sliding_window: true) is not supported")
        }
        if case .bool(true)? = raw["mlp_bias"] { throw ModelError.unsupported("mlp_bias: true is not supported") }
    }
}

/// Layers of a dense model: the given attention and a SwiGLU MLP of width `intermediate_size`.
func denseLayers(_ c: ModelConfig, _ w: WeightReader, attention: (String) throws -> Attention) throws -> [DecoderLayer] {
    try (0..<c.numHiddenLayers).map { i in
        let p = "model.layers.\(i)"
        return try DecoderLayer(c, w, prefix: p, attention: attention("\(p).self_attn"),
                                feedForward: .dense(MLP(w, prefix: "\(p).mlp", hidden: c.hiddenSize, width: c.intermediateSize)))
    }
}
