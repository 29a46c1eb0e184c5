import Foundation
import MoEFormats
import MoEKernels
import MoEModel

/// A decoder-only transformer of any supported architecture with its parameters in f32 and explicit
/// forward and backward passes (llm.c style: each layer saves what its backward needs in its own buffers).
///
///     let model = try TrainableModel(config: config)          // HF-style random init
///     let loss = model.forwardBackward(batch: 2, seqLen: 8, inputs: ids, targets: next, balance: .auxLoss(0.01))
///     // model.store.grads now holds d(loss)/d(parameters)
public final class TrainableModel: @unchecked Sendable {
    public let config: ModelConfig
    public let layouts: [LayerLayout]
    public let store = ParameterStore()
    public let pool: WorkerPool

    let embedding: Int, finalNorm: NormWeight
    /// The LM head (`lm_head.weight`, or the embedding when tied); for a reward model, `score.weight` [1, hidden].
    let lmHead: Int
    public let head: Head

    /// What sits on the final hidden states: next-token logits, or one scalar score (HF's
    /// `…ForSequenceClassification` with one label, as reward models are saved).
    public enum Head: Sendable { case languageModel, score }
    let blocks: [Block]
    /// Where each block's parameters lie in the store (registered one block after another).
    let blockParameters: [Range<Int>]
    /// Called in the backward pass as soon as a block's parameter gradients are final for it (data parallel:
    /// their all-reduce starts while the blocks below are differentiated).
    public var blockGradientsDone: ((Range<Int>) -> Void)?
    let rope: RotaryEmbedding
    private var ropeTable: RopeTable?
    let hidden: Int, vocab: Int, eps: Float

    /// One decoder layer's parts.
    final class Block {
        let inputNorm: NormWeight, postNorm: NormWeight
        let attention: any TrainableAttention
        let mlp: MLPLayer?
        let moe: MoELayer?
        // Saved: the residual stream entering the layer and after attention, norms' outputs and 1/rms.
        let x = Floats(), mid = Floats(), normed1 = Floats(), normed2 = Floats(), rstd1 = Floats(), rstd2 = Floats()

        init(inputNorm: NormWeight, postNorm: NormWeight, attention: any TrainableAttention, mlp: MLPLayer?, moe: MoELayer?) {
            self.inputNorm = inputNorm; self.postNorm = postNorm; self.attention = attention; self.mlp = mlp; self.moe = moe
        }

        /// The layer `l` describes, its parameters registered in `store`.
        static func make(_ l: LayerLayout, store: ParameterStore, config: ModelConfig, selectionBias: Bool) -> Block {
            let hidden = config.hiddenSize
            let attention: any TrainableAttention
            if let linear = l.linear {
                attention = GatedDeltaNetLayer(store, prefix: l.attentionPrefix, hidden: hidden, layout: linear, eps: Float(config.rmsNormEps))
            } else if let latent = l.latent {
                attention = LatentAttentionLayer(store, prefix: l.attentionPrefix, hidden: hidden, heads: config.numAttentionHeads,
                                                 layout: latent)
            } else {
                attention = AttentionLayer(store, prefix: l.attentionPrefix, hidden: hidden, heads: config.numAttentionHeads,
                                           kvHeads: config.numKeyValueHeads, headDim: config.headDim, qkvBias: l.qkvBias,
                                           outputBias: l.outputBias, qkNorm: l.qkNorm, eps: Float(config.rmsNormEps),
                                           outputGate: l.outputGate, normOffset: l.normOffset, sinks: l.sinks, window: l.window)
            }
            var mlp: MLPLayer?, moe: MoELayer?
            switch l.feedForward {
            case let .dense(prefix, width): mlp = MLPLayer(store, prefix: prefix, hidden: hidden, width: width)
            case let .moe(m): moe = MoELayer(store, layout: m, hidden: hidden, selectionBias: selectionBias)
            }
            return Block(inputNorm: NormWeight(store.add("\(l.prefix).input_layernorm.weight", shape: [hidden], decay: false),
                                               count: hidden, shift: l.normOffset),
                         postNorm: NormWeight(store.add("\(l.prefix).post_attention_layernorm.weight", shape: [hidden], decay: false),
                                              count: hidden, shift: l.normOffset),
                         attention: attention, mlp: mlp, moe: moe)
        }

        /// h ← h + attention(norm1(h)), then h ← h + ffn(norm2(h)) over B×T rows, saving what `backward` needs.
        /// `scratch` holds B·T·hidden floats.
        func forward(_ h: UnsafeMutablePointer<Float>, batch B: Int, seqLen T: Int, rope: RopeTable, model m: TrainableModel,
                     scratch: UnsafeMutablePointer<Float>, stats: inout RouterStatistics) {
            let n = B * T, hidden = m.hidden
            let x = self.x.reserve(n * hidden), a = normed1.reserve(n * hidden)
            x.update(from: h, count: n * hidden)
            rmsNormForward(x, rows: n, dim: hidden, weight: inputNorm.values(m.store), eps: m.eps, into: a, rstd: rstd1.reserve(n), pool: m.pool)
            attention.forward(a, batch: B, seqLen: T, rope: rope, store: m.store, into: h, accumulate: true, pool: m.pool)
            let mid = self.mid.reserve(n * hidden), c = normed2.reserve(n * hidden)
            mid.update(from: h, count: n * hidden)
            rmsNormForward(mid, rows: n, dim: hidden, weight: postNorm.values(m.store), eps: m.eps, into: c, rstd: rstd2.reserve(n), pool: m.pool)
            if let mlp {
                mlp.forward(c, rows: n, store: m.store, into: scratch, pool: m.pool)
                axpy(1, scratch, h, count: n * hidden)
            } else if let moe {
                moe.forward(c, tokens: n, seqLen: T, store: m.store, into: h, stats: &stats, pool: m.pool)
            }
        }

        /// Backward of `forward`: `dh` holds d(loss)/d(output) and becomes d(loss)/d(input); parameter gradients
        /// are added. `scratch` holds B·T·hidden floats.
        func backward(_ dh: UnsafeMutablePointer<Float>, batch B: Int, seqLen T: Int, rope: RopeTable, model m: TrainableModel,
                      scratch dn: UnsafeMutablePointer<Float>, balance: BalanceGradient) {
            let n = B * T, hidden = m.hidden, g = m.store.grads!
            // h_out = mid + ff(norm2(mid)): d mid = dh + norm2ᵀ(ffᵀ(dh)).
            if let mlp {
                mlp.backward(dh, rows: n, store: m.store, inputGrad: dn, accumulate: false, pool: m.pool)
            } else if let moe {
                moe.backward(dh, tokens: n, seqLen: T, store: m.store, balance: balance, inputGrad: dn, accumulate: false, pool: m.pool)
            }
            rmsNormBackward(dn, x: mid.pointer, rows: n, dim: hidden, weight: postNorm.values(m.store), rstd: rstd2.pointer,
                            weightGrad: g + postNorm.offset, inputGrad: dh, accumulate: true, pool: m.pool)
            // mid = x + attn(norm1(x)).
            attention.backward(dh, batch: B, seqLen: T, rope: rope, store: m.store, inputGrad: dn, accumulate: false, pool: m.pool)
            rmsNormBackward(dn, x: x.pointer, rows: n, dim: hidden, weight: inputNorm.values(m.store), rstd: rstd1.pointer,
                            weightGrad: g + inputNorm.offset, inputGrad: dh, accumulate: true, pool: m.pool)
        }
    }

    /// The model `config` describes, parameters registered under the checkpoint's names (hub naming).
    /// `selectionBias` adds DeepSeek-V3's `e_score_correction_bias` to every MoE layer.
    /// `mtpDepth` 1 adds DeepSeek-V3's multi-token-prediction module (layer index `num_hidden_layers`).
    public init(config: ModelConfig, head: Head = .languageModel, selectionBias: Bool = false, mtpDepth: Int = 0,
                threads: Int = WorkerPool.defaultThreadCount, has: (String) -> Bool = { _ in false }) throws {
        let arch = try ArchitectureRegistry.architecture(for: config.modelType)
        let config = try arch.withDefaults(config)
        try config.requireSupported()
        layouts = try arch.layout(config, has: has)
        if let clip = layouts.first?.clip {
            throw ModelError.unsupported("clip_qkv (\(clip)) is not supported for training")
        }

        self.config = config
        hidden = config.hiddenSize; vocab = config.vocabSize; eps = Float(config.rmsNormEps)
        rope = try RotaryEmbedding(config.rope, headDim: config.headDim, maxPositionEmbeddings: config.maxPositionEmbeddings)
        pool = WorkerPool(threads: threads)

        embedding = store.add("model.embed_tokens.weight", shape: [vocab, hidden], decay: true)
        let store = store
        var blockParameters: [Range<Int>] = []
        blocks = layouts.map { layout in
            let first = store.count
            defer { blockParameters.append(first ..< store.count) }
            return Block.make(layout, store: store, config: config, selectionBias: selectionBias)
        }
        self.blockParameters = blockParameters
        finalNorm = NormWeight(store.add("model.norm.weight", shape: [hidden], decay: false), count: hidden,
                               shift: layouts.first?.normOffset ?? 0)
        self.head = head
        switch head {
        case .languageModel:
            lmHead = config.tieWordEmbeddings ? embedding : store.add("lm_head.weight", shape: [vocab, hidden], decay: true)
        case .score:
            lmHead = store.add("score.weight", shape: [1, hidden], decay: true)
        }
        guard mtpDepth <= 1 else { throw TrainingError.badArgument("multi-token prediction of depth \(mtpDepth): only depth 1 is supported") }
        // The module predicts through the LM head: a score head (a reward model) has none for it.
        mtp = mtpDepth == 1 && head == .languageModel
            ? try MultiTokenPredictionModule(store: store, config: config, selectionBias: selectionBias, has: has) : nil
        store.allocate()
    }

    /// Every MoE layer, the multi-token-prediction module's last.
    var moeLayers: [MoELayer] { (blocks + (mtp.map { [$0.block] } ?? [])).compactMap(\.moe) }
    public var moeLayerCount: Int { moeLayers.count }
    public var expertCount: Int { config.numExperts }

    /// Tokens routed to each expert in the last forward, per MoE layer.
    public var lastExpertLoad: [[Int]] { moeLayers.map(\.load) }

    func table(_ T: Int) -> RopeTable {
        if let t = ropeTable, t.positions >= T { return t }
        let t = RopeTable(rope, positions: T)
        ropeTable = t
        return t
    }

    // Saved by the forward for the backward.
    let residual = Floats(), finalInput = Floats(), finalNormed = Floats(), finalRstd = Floats()
    let dResidual = Floats(), dNormed = Floats(), logitsChunk = Floats(), dFinal = Floats()
    var stats = RouterStatistics(experts: 0)
    var lastInputs: [Int32] = []
    /// DeepSeek-V3's multi-token-prediction module, trained beside the model by language modelling (nil: none).
    let mtp: MultiTokenPredictionModule?
    /// λ of the multi-token-prediction loss: the loss is CE + λ·CE_MTP (+ balance losses).
    public var mtpLossWeight = 0.3
    public var mtpDepth: Int { mtp == nil ? 0 : 1 }

    /// The (batch, seqLen) of the forward whose activations are saved: a backward must be for the same one.
    var savedShape: (batch: Int, seqLen: Int)?

    /// Runs the layers on `inputs` [B×T] and leaves the final normalised hidden states in `finalNormed`.
    /// `balanceMask` (B×T) marks the rows the balance losses count (false: padding); nil counts all.
    func forwardHidden(batch B: Int, seqLen T: Int, inputs: UnsafePointer<Int32>, balanceMask: [Bool]? = nil) throws {
        guard T <= config.maxPositionEmbeddings else {
            throw ModelError.unsupported("sequence length \(T) exceeds the model's max_position_embeddings \(config.maxPositionEmbeddings)")
        }
        let n = B * T, w = store.values!
        let rope = table(T)
        let h = residual.reserve(n * hidden)
        lastInputs = Array(UnsafeBufferPointer(start: inputs, count: n))
        savedShape = nil
        for t in 0..<n {
            let id = Int(inputs[t])
            guard id >= 0 && id < vocab else { throw ModelError.unsupported("token id \(id) outside the vocabulary (\(vocab))") }
            (h + t * hidden).update(from: w + embedding + id * hidden, count: hidden)
        }
        stats = RouterStatistics(experts: config.numExperts)
        for b in blocks { b.moe?.balanceMask = balanceMask }
        if let moe = mtp?.block.moe { moe.load = .init(repeating: 0, count: moe.experts) }   // until it runs on this batch
        let scratch = dNormed.reserve(n * hidden)
        for b in blocks { b.forward(h, batch: B, seqLen: T, rope: rope, model: self, scratch: scratch, stats: &stats) }
        let fi = finalInput.reserve(n * hidden)
        fi.update(from: h, count: n * hidden)
        rmsNormForward(fi, rows: n, dim: hidden, weight: finalNorm.values(store), eps: eps, into: finalNormed.reserve(n * hidden),
                       rstd: finalRstd.reserve(n), pool: pool)
        savedShape = (B, T)
    }

    /// f32 bytes the saved activations and scratch of one forward/backward take (an estimate for refusing
    /// runs that cannot fit): per layer the residual copies, q/k/v, attention probabilities, expert rows.
    public func activationBytes(batch B: Int, seqLen T: Int) -> Int {
        let n = B * T, c = config
        let qkv = n * (c.numAttentionHeads + 2 * c.numKeyValueHeads) * c.headDim * 3
        let probabilities = B * c.numAttentionHeads * T * T + B * c.numKeyValueHeads * T * T
        let width = c.moeIntermediateSize ?? c.intermediateSize
        let ffn = c.numExperts > 0 ? n * c.numExpertsPerToken * (3 * hidden + 5 * width) + n * c.numExperts * 3
                                   : n * (3 * hidden + 5 * c.intermediateSize)
        let perLayer = 10 * n * hidden + qkv + probabilities + ffn
        return 4 * ((blocks.count + mtpDepth) * perLayer + 6 * n * hidden + 256 * vocab)
    }

    /// Targets are negative (ignored, like HF's -100) or a token of the vocabulary; the head must be the LM head.
    func checkTargets(_ targets: UnsafePointer<Int32>, count n: Int) throws {
        guard head == .languageModel else { throw TrainingError.badArgument("this model has a score head (a reward model), not an LM head") }
        for i in 0..<n where Int(targets[i]) >= vocab {
            throw TrainingError.badArgument("target token \(targets[i]) is outside the vocabulary (\(vocab))")
        }
    }

    /// Backward from d(loss)/d(final normalised hidden) in `dFinal`, through every layer to the embedding.
    /// `residualGradient` (B·T·hidden) adds a gradient of the last layer's output, before the final norm (the
    /// multi-token-prediction module reads it there).
    func backwardHidden(batch B: Int, seqLen T: Int, balance: BalanceGradient, residualGradient: UnsafePointer<Float>? = nil) {
        // The layers' saved activations belong to the last forward; a backward of another shape would read
        // past them.
        precondition(savedShape.map { $0 == (B, T) } ?? false, "backward without the matching forward (\(B)×\(T))")
        let n = B * T, g = store.grads!
        let rope = table(T)
        let dh = dResidual.reserve(n * hidden)
        rmsNormBackward(dFinal.pointer, x: finalInput.pointer, rows: n, dim: hidden, weight: finalNorm.values(store),
                        rstd: finalRstd.pointer, weightGrad: g + finalNorm.offset, inputGrad: dh, accumulate: false, pool: pool)
        if let residualGradient { axpy(1, residualGradient, dh, count: n * hidden) }
        let dn = dNormed.reserve(n * hidden)
        for (i, b) in blocks.enumerated().reversed() {
            b.backward(dh, batch: B, seqLen: T, rope: rope, model: self, scratch: dn, balance: balance)
            blockGradientsDone?(blockParameters[i])
        }
        for t in 0..<n { axpy(1, dh + t * hidden, g + embedding + Int(lastInputs[t]) * hidden, count: hidden) }
    }
}
