import Foundation
import MoEFormats
import MoEKernels

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

/// The multi-token-prediction module of depth 1 as inference runs it: a draft model for speculative decoding
/// (`Drafter.multiTokenPrediction`) that costs one decoder layer and an LM-head row per draft.
public struct MTPModule: Sendable {
    let enorm: [Float], hnorm: [Float], headNorm: [Float]
    /// [hidden, 2·hidden]: columns 0..<hidden take enorm(Emb(t_{i+1})), the rest hnorm(h_i).
    let ehProj: WeightMatrix
    let layer: DecoderLayer

    /// Reads the module from a checkpoint that stores it (`MultiTokenPrediction.storedDepth` 1). The embedding
    /// and LM head are the model's (DeepSeek-V3's copies under the module's names are the same tensors).
    init(_ c: ModelConfig, _ w: WeightReader) throws {
        let H = c.hiddenSize, p = MultiTokenPrediction.prefix(c)
        enorm = try w.vector("\(p).enorm.weight", count: H)
        hnorm = try w.vector("\(p).hnorm.weight", count: H)
        headNorm = try w.vector("\(p).shared_head.norm.weight", count: H)
        ehProj = try w.matrix("\(p).eh_proj.weight", rows: H, cols: 2 * H)
        layer = try DecoderLayer(c, w, layout: try MultiTokenPrediction.layouts(c, depth: 1, has: w.has)[0])
    }
}

extension Transformer {
    /// A KV cache for the multi-token-prediction module (one layer), `capacity` positions.
    public func makeMTPCache(capacity: Int) -> KVCache {
        KVCache(layers: 1, capacity: capacity, keyWidth: kvShape.keyWidth, valueWidth: kvShape.valueWidth)
    }

    /// The last pass's residual stream after the last layer (before the final norm), rows `rows`, appended to
    /// `out`: what the multi-token-prediction module reads as h_i.
    public func appendLastHidden(rows: Range<Int>, to out: inout [Float]) {
        let H = config.hiddenSize
        out.append(contentsOf: UnsafeBufferPointer(start: ws.hidden.pointer + rows.lowerBound * H, count: rows.count * H))
    }

    /// Runs the multi-token-prediction module on rows i = `cache.count`…: row r joins `nextTokens[r]` (t_{i+1})
    /// with `hidden` row r (h_i, `appendLastHidden`'s layout) and goes through the module's layer, whose keys
    /// and values `cache` (`makeMTPCache`) takes. Returns the logits for t_{i+2} after the last row ([vocab],
    /// valid until the next pass) and that row's output — the h of a further draft.
    public func mtpForward(nextTokens: [Int], hidden: [Float], cache: KVCache) throws
        -> (logits: UnsafeMutableBufferPointer<Float>, output: [Float]) {
        guard let mtp else { throw ModelError.unsupported("this checkpoint has no multi-token-prediction module") }
        let H = config.hiddenSize, T = nextTokens.count, eps = Float(config.rmsNormEps)
        guard hidden.count == T * H else {
            throw ModelError.badInput("multi-token prediction: \(hidden.count) hidden values for \(T) rows of \(H)")
        }
        let chunk = [SequenceChunk(tokens: nextTokens, cache: cache)]
        try validate(chunk, layers: 1)
        let joined = ws.joined.reserve(T * 2 * H), row = ws.normed.reserve(H)
        hidden.withUnsafeBufferPointer { hidden in
            for (r, id) in nextTokens.enumerated() {
                loadRow(embedding, row: id, into: row)
                mtp.enorm.withUnsafeBufferPointer { rmsNorm(row, weight: $0.baseAddress!, count: H, eps: eps, into: joined + r * 2 * H) }
                mtp.hnorm.withUnsafeBufferPointer {
                    rmsNorm(hidden.baseAddress! + r * H, weight: $0.baseAddress!, count: H, eps: eps, into: joined + r * 2 * H + H)
                }
            }
        }
        let h = run(chunk, layers: [mtp.layer]) { h in linear(joined, ldx: 2 * H, tokens: T, mtp.ehProj, into: h, ldo: H, pool: self.pool) }
        let output = Array(UnsafeBufferPointer(start: h + (T - 1) * H, count: H))
        return (logits(h, rows: [T - 1], norm: mtp.headNorm), output)
    }
}
