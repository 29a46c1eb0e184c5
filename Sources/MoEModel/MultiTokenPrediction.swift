import Foundation
import MoEFormats

/// DeepSeek-V3's multi-token prediction (paper §2.2), as DeepSeek-V3's and GLM-4.5's checkpoints store it: the
/// module of depth k is "layer" `num_hidden_layers + k − 1`, a decoder layer of the model's own kind plus
///
///     model.layers.L.enorm.weight, hnorm.weight          RMSNorms of the next token's embedding and of h
///     model.layers.L.eh_proj.weight [hidden, 2·hidden]   projects [enorm(Emb(t_{i+1})); hnorm(h_i)]
///     model.layers.L.shared_head.norm.weight             the norm before the (shared) LM head
///     model.layers.L.embed_tokens.weight, shared_head.head.weight   copies of the model's embedding and head
///
/// where h_i is the main model's last-layer output at position i (before its final norm). The module then
/// predicts token i+2.
public enum MultiTokenPrediction {
    /// The checkpoint name prefix of the module of depth 1.
    public static func prefix(_ config: ModelConfig) -> String { "model.layers.\(config.numHiddenLayers)" }

    /// The decoder layers of the modules of depth 1…`depth`: the layout the architecture gives layers
    /// `num_hidden_layers …` (DeepSeek-V3's MTP layer is an MoE layer like the last ones).
    public static func layouts(_ config: ModelConfig, depth: Int, has: (String) -> Bool) throws -> [LayerLayout] {
        let arch = try ArchitectureRegistry.architecture(for: config.modelType)
        var extended = config
        extended.numHiddenLayers += depth
        return Array(try arch.layout(extended, has: has).suffix(depth))
    }

    /// The depth a checkpoint's weights provide: 1 when `num_nextn_predict_layers` ≥ 1 and the module's
    /// projection is present (transformers writes the key with its default, 1, for models without the module).
    public static func storedDepth(_ config: ModelConfig, has: (String) -> Bool) -> Int {
        let declared = (try? config.extraInt("num_nextn_predict_layers")) ?? nil
        return (declared ?? 0) >= 1 && has("\(prefix(config)).eh_proj.weight") ? 1 : 0
    }
}
