import Foundation
import MoEFormats
import MoEKernels

/// A decoder-only transformer loaded from a Hugging Face model directory, dense or mixture-of-experts.
///
/// ```swift
/// let model = try Transformer(directory: "Tests/Fixtures/models/qwen3_moe")
/// let cache = model.makeCache()
/// let logits = try model.forward([1, 2, 3], cache: cache, logitsFor: .all)   // [3, vocab]
/// ```
///
/// What runs per token, in order: embedding row → for each layer: RMSNorm → attention (KV cache) →
/// RMSNorm → dense MLP or MoE block → final RMSNorm → LM head. Not thread-safe: one forward at a time.
public final class Transformer: @unchecked Sendable {
    public let config: ModelConfig
    public let generation: GenerationConfig
    public let directory: String
    public let checkpoint: Checkpoint
    public let embedding: WeightMatrix
    public let layers: [DecoderLayer]
    public let finalNorm: [Float]
    public let lmHead: WeightMatrix
    public let rope: RotaryEmbedding
    public let pool: WorkerPool
    let ws = Workspace()

    /// Which positions' logits a forward pass returns.
    public enum LogitsRows: Sendable { case all, last, none }

    public init(directory: String, threads: Int = WorkerPool.defaultThreadCount) throws {
        self.directory = directory
        let config = try ModelConfig(directory: directory)
        self.config = config
        generation = try GenerationConfig(directory: directory)
        let architecture = try ArchitectureRegistry.architecture(for: config.modelType)
        try config.requireSupported()
        checkpoint = try Checkpoint(directory: directory)
        let w = WeightReader(checkpoint)
        embedding = try w.matrix("model.embed_tokens.weight", rows: config.vocabSize, cols: config.hiddenSize)
        layers = try architecture.layout(config, has: w.has).map { try DecoderLayer(config, w, layout: $0) }
        finalNorm = try w.vector("model.norm.weight", count: config.hiddenSize)
        if config.tieWordEmbeddings || !w.has("lm_head.weight") {
            guard config.tieWordEmbeddings else { throw FormatError.missingTensor(tensor: "lm_head.weight", directory: directory) }
            lmHead = embedding
        } else {
            lmHead = try w.matrix("lm_head.weight", rows: config.vocabSize, cols: config.hiddenSize)
        }
        rope = try RotaryEmbedding(config.rope, headDim: config.headDim, maxPositionEmbeddings: config.maxPositionEmbeddings)
        pool = WorkerPool(threads: max(1, threads))
    }

    /// The context length: positions the model was configured for.
    public var contextLength: Int { config.maxPositionEmbeddings }

    /// A KV cache for up to `capacity` positions (default: the whole context).
    public func makeCache(capacity: Int? = nil) -> KVCache {
        KVCache(layers: layers.count, capacity: capacity ?? contextLength,
                kvHeads: config.numKeyValueHeads, headDim: config.headDim)
    }

    /// Runs `tokens` at the positions after those already in `cache`, appends their keys and values, and
    /// returns logits for the requested rows ([rows, vocab], valid until the next call).
    @discardableResult
    public func forward(_ tokens: [Int], cache: KVCache, logitsFor rows: LogitsRows = .last) throws -> UnsafeMutableBufferPointer<Float> {
        let T = tokens.count
        guard T > 0 else { throw ModelError.badInput("no tokens to run") }
        guard cache.count + T <= cache.capacity else {
            throw ModelError.contextOverflow(tokens: cache.count + T, context: cache.capacity)
        }
        for t in tokens where !(0..<config.vocabSize).contains(t) {
            throw ModelError.badInput("token id \(t) is outside the vocabulary (0..<\(config.vocabSize))")
        }
        let H = config.hiddenSize
        let h = ws.hidden.reserve(T * H)
        let normed = ws.normed.reserve(T * H)
        for (t, id) in tokens.enumerated() { loadRow(embedding, row: id, into: h + t * H) }

        let half = rope.rotaryDim / 2
        let cosTable = ws.ropeCos.reserve(T * half), sinTable = ws.ropeSin.reserve(T * half)
        for t in 0..<T { rope.table(position: cache.count + t, cos: cosTable + t * half, sin: sinTable + t * half) }

        let eps = Float(config.rmsNormEps)
        for (i, layer) in layers.enumerated() {
            layer.inputNorm.withUnsafeBufferPointer { w in
                for t in 0..<T { rmsNorm(h + t * H, weight: w.baseAddress!, count: H, eps: eps, into: normed + t * H) }
            }
            layer.attention.forward(normed, tokens: T, layer: i, cache: cache, rope: rope, residual: h, hidden: H, ws: ws, pool: pool)
            layer.postAttentionNorm.withUnsafeBufferPointer { w in
                for t in 0..<T { rmsNorm(h + t * H, weight: w.baseAddress!, count: H, eps: eps, into: normed + t * H) }
            }
            switch layer.feedForward {
            case .dense(let mlp): mlp.forward(normed, tokens: T, into: h, accumulate: true, ws: ws, pool: pool)
            case .moe(let block): block.forward(normed, tokens: T, residual: h, ws: ws, pool: pool)
            }
        }
        cache.count += T

        let first: Int, count: Int
        switch rows {
        case .all: (first, count) = (0, T)
        case .last: (first, count) = (T - 1, 1)
        case .none: return UnsafeMutableBufferPointer(start: ws.logits.pointer, count: 0)
        }
        let V = config.vocabSize
        let finalNormed = ws.finalNormed.reserve(count * H)
        finalNorm.withUnsafeBufferPointer { w in
            for r in 0..<count { rmsNorm(h + (first + r) * H, weight: w.baseAddress!, count: H, eps: eps, into: finalNormed + r * H) }
        }
        let logits = ws.logits.reserve(count * V)
        linear(finalNormed, ldx: H, tokens: count, lmHead, into: logits, ldo: V, pool: pool)
        return UnsafeMutableBufferPointer(start: logits, count: count * V)
    }
}
