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
    /// The model directory, or the GGUF file, it was loaded from.
    public let directory: String
    /// Its weights: a safetensors `Checkpoint` or a `GGUFCheckpoint`.
    public let checkpoint: any TensorStore
    public let embedding: WeightMatrix
    public let layers: [DecoderLayer]
    public let finalNorm: [Float]
    public let lmHead: WeightMatrix
    public let rope: RotaryEmbedding
    /// DeepSeek-V3's multi-token-prediction module, where the checkpoint stores one (a built-in draft model).
    public let mtp: MTPModule?
    /// Floats a KV cache holds per position and layer: keys and values (latent attention: one row, no values).
    public let kvShape: (keyWidth: Int, valueWidth: Int)
    /// Layers whose keys and values a cache holds: the attention layers (all but a hybrid model's DeltaNets).
    public let kvLayers: Int
    /// The Gated DeltaNet layers' state each sequence carries (hybrid models), nil for the others.
    public let recurrentShape: RecurrentShape?
    /// Layer i's index among the cache's KV layers, or among the recurrent-state layers for a DeltaNet.
    let cacheIndex: [Int]
    public let pool: WorkerPool
    let ws = Workspace()
    /// The experts each token may spend, for every pass whose chunk names none (`validateBudget` first).
    public var expertBudget = ExpertBudget.full
    /// Told each MoE layer's choices in every pass (`moe route`); nil: nobody listens.
    public var routingObserver: (any RoutingObserver)?

    /// Which positions' logits a forward pass returns.
    public enum LogitsRows: Sendable { case all, last, none }

    /// Loads a Hugging Face model directory (config.json + safetensors) or a GGUF file (`*.gguf`; the first part
    /// of a split file). `activations`: how quantised weights round the activations they multiply (`.int8`, the
    /// fast path as llama.cpp; `.int16` agrees with f32 math to about 1e-5).
    public convenience init(directory: String, threads: Int = WorkerPool.defaultThreadCount,
                            activations: ActivationRounding = .int8) throws {
        if GGUFCheckpoint.isGGUF(directory) {
            let gguf = try GGUFCheckpoint(path: directory)
            try self.init(config: gguf.config, generation: GenerationConfig(from: gguf.config), store: gguf, threads: threads,
                          activations: activations)
        } else {
            try self.init(config: try ModelConfig(directory: directory), generation: try GenerationConfig(directory: directory),
                          store: LanguageModelView.unwrapping(try Checkpoint(directory: directory)), threads: threads,
                          activations: activations)
        }
    }

    /// A model over weights already at hand under their Hugging Face names (a trained model's parameters, say):
    /// its matrices read `store`'s memory where it is (f32, bf16 or a quantised type), its norms and biases are
    /// copied. `store.source` stands for the directory in messages.
    public init(config: ModelConfig, generation: GenerationConfig, store: any TensorStore,
                threads: Int = WorkerPool.defaultThreadCount, activations: ActivationRounding = .int8) throws {
        let directory = store.source
        self.directory = directory
        self.generation = generation
        var config = config
        let architecture = try ArchitectureRegistry.architecture(for: config.modelType)
        config = try architecture.withDefaults(config)
        self.config = config
        try config.requireSupported()
        checkpoint = try architecture.weights(store, config)
        let w = WeightReader(checkpoint, activations: activations)
        embedding = try w.matrix("model.embed_tokens.weight", rows: config.vocabSize, cols: config.hiddenSize)
        let layouts = try architecture.layout(config, has: w.has)
        layers = try layouts.map { try DecoderLayer(config, w, layout: $0) }
        finalNorm = try w.norm("model.norm.weight", count: config.hiddenSize, offset: layouts.first?.normOffset ?? 0)
        mtp = MultiTokenPrediction.storedDepth(config, has: w.has) > 0 ? try MTPModule(config, w) : nil
        if config.tieWordEmbeddings || !w.has("lm_head.weight") {
            guard config.tieWordEmbeddings else { throw FormatError.missingTensor(tensor: "lm_head.weight", directory: directory) }
            lmHead = embedding
        } else {
            lmHead = try w.matrix("lm_head.weight", rows: config.vocabSize, cols: config.hiddenSize)
        }
        // (Latent attention's architectures set head_dim to their rope dimension, as transformers does.)
        rope = try RotaryEmbedding(config.rope, headDim: config.headDim, maxPositionEmbeddings: config.maxPositionEmbeddings)
        let kvWidth = config.numKeyValueHeads * config.headDim
        kvShape = layouts.first?.latent.map { (keyWidth: $0.cachedWidth, valueWidth: 0) } ?? (keyWidth: kvWidth, valueWidth: kvWidth)
        // Each layer's place in a sequence's cache: a KV layer of its pages, or a DeltaNet state or a sliding window's
        // ring in its fixed-size `RecurrentState`.
        var kvLayers = 0, linearLayers = 0, windowLayers = 0, cacheIndex: [Int] = []
        for l in layouts {
            if l.linear != nil {
                cacheIndex.append(linearLayers); linearLayers += 1
            } else if l.window != nil {
                cacheIndex.append(windowLayers); windowLayers += 1
            } else {
                cacheIndex.append(kvLayers); kvLayers += 1
            }
        }
        self.cacheIndex = cacheIndex
        // (A cache keeps at least one KV layer: a model without full attention leaves it unused.)
        self.kvLayers = max(kvLayers, 1)
        let windows = Set(layouts.compactMap(\.window))
        guard windows.count <= 1 else { throw ModelError.unsupported("sliding windows of several sizes (\(windows.sorted())) in one model") }
        let shape = RecurrentShape(layers: linearLayers, layout: layouts.lazy.compactMap(\.linear).first,
                                   windowLayers: windowLayers, window: windows.first ?? 0, windowWidth: kvWidth)
        recurrentShape = shape.floats > 0 ? shape : nil
        pool = WorkerPool(threads: max(1, threads))
    }

    /// The decoder layers that are mixture-of-experts layers, in order, with their blocks.
    public var moeBlocks: [(layer: Int, block: MoEBlock)] {
        layers.enumerated().compactMap { i, l in if case .moe(let block) = l.feedForward { (i, block) } else { nil } }
    }

    /// The number of experts each token chooses (`num_experts_per_tok`; the largest over the layers), 0 for a dense model.
    public var expertsPerToken: Int { moeBlocks.map(\.block.topK).max() ?? 0 }

    /// Refuses a budget this model cannot spend: none for a dense model, K between 1 and its top-k.
    public func validateBudget(_ budget: ExpertBudget) throws {
        guard !budget.isFull else { return }
        guard expertsPerToken > 0 else { throw ModelError.badInput("an expert budget needs a mixture-of-experts model; this one is dense") }
        try budget.validate(topK: expertsPerToken)
    }

    /// The context length: positions the model was configured for.
    public var contextLength: Int { config.maxPositionEmbeddings }

    /// A KV cache for up to `capacity` positions (default: the whole context).
    public func makeCache(capacity: Int? = nil) -> KVCache {
        KVCache(layers: kvLayers, capacity: capacity ?? contextLength, keyWidth: kvShape.keyWidth, valueWidth: kvShape.valueWidth,
                recurrent: recurrentShape)
    }

    /// Bytes of f32 KV cache per position and layer.
    public var kvBytesPerTokenAndLayer: Int { (kvShape.keyWidth + kvShape.valueWidth) * MemoryLayout<Float>.size }

    /// Bytes of f32 KV cache per position (all the layers that keep keys and values).
    public var kvBytesPerToken: Int { kvBytesPerTokenAndLayer * kvLayers }

    /// Bytes of recurrent state per sequence (0 without linear-attention layers), whatever its length.
    public var recurrentStateBytes: Int { recurrentShape?.bytes ?? 0 }

    /// A pool of `pages` KV pages of `pageSize` positions each, for caches that grow page by page and share
    /// prefixes (`KVCache(pool:capacity:)`).
    public func makePagePool(pages: Int, pageSize: Int) throws -> KVPagePool {
        try KVPagePool(layers: kvLayers, rowWidth: kvShape.keyWidth, valueWidth: kvShape.valueWidth, pageSize: pageSize, pages: pages,
                       recurrent: recurrentShape)
    }

    /// Runs `tokens` at the positions after those already in `cache`, appends their keys and values, and
    /// returns logits for the requested rows ([rows, vocab], valid until the next call).
    @discardableResult
    public func forward(_ tokens: [Int], cache: KVCache, logitsFor rows: LogitsRows = .last) throws -> UnsafeMutableBufferPointer<Float> {
        let T = tokens.count
        let chunk = [SequenceChunk(tokens: tokens, cache: cache)]
        try validate(chunk)
        let h = run(chunk)

        switch rows {
        case .all: return logits(h, rows: Array(0..<T))
        case .last: return logits(h, rows: [T - 1])
        case .none: return UnsafeMutableBufferPointer(start: ws.logits.pointer, count: 0)
        }
    }

    // The parts of a pass that every `forward` shares.

    /// Refuses a cache made for another shape of model (its layout would be read out of bounds); `layers`: the
    /// layers the pass runs (the model's, or the multi-token-prediction module's one).
    func requireFits(_ cache: KVCache, layers: Int? = nil) throws {
        let layers = layers ?? kvLayers
        guard cache.layers == layers, cache.rowWidth == kvShape.keyWidth, cache.valueWidth == kvShape.valueWidth,
              cache.pool.recurrent == (layers == kvLayers ? recurrentShape : nil) else {
            throw ModelError.badInput("the KV cache (\(cache.layers) layers × \(cache.rowWidth)+\(cache.valueWidth)) is not shaped for this model "
                                      + "(\(layers) layers × \(kvShape.keyWidth)+\(kvShape.valueWidth))")
        }
    }

    func requireInVocabulary(_ tokens: [Int]) throws {
        for t in tokens where !(0..<config.vocabSize).contains(t) {
            throw ModelError.badInput("token id \(t) is outside the vocabulary (0..<\(config.vocabSize))")
        }
    }

    /// Runs the (validated) chunks' tokens through every layer and advances their caches: the residual stream
    /// [rows, hidden] in the workspace, the chunks' rows one after another. `layers` and `input` (which writes
    /// the first residual rows) replace the model's layers and embedding (the multi-token-prediction module).
    func run(_ chunks: [SequenceChunk], layers: [DecoderLayer]? = nil,
             input: ((UnsafeMutablePointer<Float>) -> Void)? = nil) -> UnsafeMutablePointer<Float> {
        let layout = PassLayout(chunks)
        let H = config.hiddenSize
        let h = ws.hidden.reserve(layout.rows * H)
        // Embedding rows, and a RoPE table row per row at its sequence's own position.
        let half = rope.rotaryDim / 2
        let cosTable = ws.ropeCos.reserve(layout.rows * half), sinTable = ws.ropeSin.reserve(layout.rows * half)
        var row = 0
        for chunk in chunks {
            for (t, id) in chunk.tokens.enumerated() {
                if input == nil { loadRow(embedding, row: id, into: h + row * H) }
                rope.table(position: chunk.cache.count + t, cos: cosTable + row * half, sin: sinTable + row * half)
                row += 1
            }
        }
        input?(h)
        // Each row's expert budget; none at all in the common case of every row spending its k.
        ws.routing.budgets.removeAll(keepingCapacity: true)
        if !expertBudget.isFull || chunks.contains(where: { !($0.expertBudget?.isFull ?? true) }) {
            for chunk in chunks {
                let budget = chunk.expertBudget ?? expertBudget
                for _ in chunk.tokens { ws.routing.budgets.append(budget) }
            }
        }
        let cacheIndex = layers == nil ? self.cacheIndex : Array(0..<(layers?.count ?? 0))
        runLayers(h, tokens: layout.rows, layers: layers ?? self.layers, observer: layers == nil ? routingObserver : nil) { i, attention, normed in
            attention.forward(normed, layout, layer: cacheIndex[i], rope: rope, residual: h, hidden: H, ws: ws, pool: pool)
        }
        for chunk in chunks { chunk.cache.count += chunk.tokens.count }
        return h
    }

    /// Every decoder layer over the T rows of the residual stream `h`; `attend(i, attention, normed)` adds
    /// layer i's attention of the normalised rows into `h` (the caller picks the cache(s) and positions).
    func runLayers(_ h: UnsafeMutablePointer<Float>, tokens T: Int, layers: [DecoderLayer], observer: (any RoutingObserver)?,
                   attend: (Int, SelfAttention, UnsafeMutablePointer<Float>) -> Void) {
        let H = config.hiddenSize
        let normed = ws.normed.reserve(T * H)
        let eps = Float(config.rmsNormEps)
        for (i, layer) in layers.enumerated() {
            layer.inputNorm.withUnsafeBufferPointer { w in
                for t in 0..<T { rmsNorm(h + t * H, weight: w.baseAddress!, count: H, eps: eps, into: normed + t * H) }
            }
            attend(i, layer.attention, normed)
            layer.postAttentionNorm.withUnsafeBufferPointer { w in
                for t in 0..<T { rmsNorm(h + t * H, weight: w.baseAddress!, count: H, eps: eps, into: normed + t * H) }
            }
            switch layer.feedForward {
            case .dense(let mlp): mlp.forward(normed, tokens: T, into: h, accumulate: true, ws: ws, pool: pool)
            case .moe(let block):
                block.forward(normed, tokens: T, residual: h, ws: ws, pool: pool)
                if let observer {
                    let r = ws.routing
                    r.chosen.withUnsafeBufferPointer { c in r.weights.withUnsafeBufferPointer { w in
                        observer.observe(layer: i, tokens: T, k: block.topK,
                                        chosen: UnsafeBufferPointer(rebasing: c[..<(T * block.topK)]),
                                        weights: UnsafeBufferPointer(rebasing: w[..<(T * block.topK)]))
                    } }
                }
            }
        }
    }

    /// Final norm (or `norm`) and LM head for the given rows of `h`: logits [rows.count, vocab].
    func logits(_ h: UnsafePointer<Float>, rows: [Int], norm: [Float]? = nil) -> UnsafeMutableBufferPointer<Float> {
        let H = config.hiddenSize, V = config.vocabSize
        let eps = Float(config.rmsNormEps)
        let finalNormed = ws.finalNormed.reserve(rows.count * H)
        (norm ?? finalNorm).withUnsafeBufferPointer { w in
            for (r, row) in rows.enumerated() { rmsNorm(h + row * H, weight: w.baseAddress!, count: H, eps: eps, into: finalNormed + r * H) }
        }
        let logits = ws.logits.reserve(rows.count * V)
        linear(finalNormed, ldx: H, tokens: rows.count, lmHead, into: logits, ldo: V, pool: pool)
        return UnsafeMutableBufferPointer(start: logits, count: rows.count * V)
    }
}
