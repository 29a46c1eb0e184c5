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

    let embedding: Int, finalNorm: Int
    /// The LM head (`lm_head.weight`, or the embedding when tied); for a reward model, `score.weight` [1, hidden].
    let lmHead: Int
    public let head: Head

    /// What sits on the final hidden states: next-token logits, or one scalar score (HF's
    /// `…ForSequenceClassification` with one label, as reward models are saved).
    public enum Head: Sendable { case languageModel, score }
    let blocks: [Block]
    let rope: RotaryEmbedding
    private var ropeTable: RopeTable?
    let hidden: Int, vocab: Int, eps: Float

    /// One decoder layer's parts.
    final class Block {
        let inputNorm: Int, postNorm: Int
        let attention: any TrainableAttention
        let mlp: MLPLayer?
        let moe: MoELayer?
        // Saved: the residual stream entering the layer and after attention, norms' outputs and 1/rms.
        let x = Floats(), mid = Floats(), normed1 = Floats(), normed2 = Floats(), rstd1 = Floats(), rstd2 = Floats()

        init(inputNorm: Int, postNorm: Int, attention: any TrainableAttention, mlp: MLPLayer?, moe: MoELayer?) {
            self.inputNorm = inputNorm; self.postNorm = postNorm; self.attention = attention; self.mlp = mlp; self.moe = moe
        }
    }

    /// The model `config` describes, parameters registered under the checkpoint's names (hub naming).
    /// `selectionBias` adds DeepSeek-V3's `e_score_correction_bias` to every MoE layer.
    public init(config: ModelConfig, head: Head = .languageModel, selectionBias: Bool = false,
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
        var blocks: [Block] = []
        for l in layouts {
            let attention: any TrainableAttention
            if let latent = l.latent {
                attention = LatentAttentionLayer(store, prefix: l.attentionPrefix, hidden: hidden, heads: config.numAttentionHeads,
                                                 layout: latent)
            } else {
                attention = AttentionLayer(store, prefix: l.attentionPrefix, hidden: hidden, heads: config.numAttentionHeads,
                                           kvHeads: config.numKeyValueHeads, headDim: config.headDim, qkvBias: l.qkvBias,
                                           outputBias: l.outputBias, qkNorm: l.qkNorm, eps: eps)
            }
            var mlp: MLPLayer?, moe: MoELayer?
            switch l.feedForward {
            case let .dense(prefix, width): mlp = MLPLayer(store, prefix: prefix, hidden: hidden, width: width)
            case let .moe(m): moe = MoELayer(store, layout: m, hidden: hidden, selectionBias: selectionBias)
            }
            blocks.append(Block(inputNorm: store.add("\(l.prefix).input_layernorm.weight", shape: [hidden], decay: false),
                                postNorm: store.add("\(l.prefix).post_attention_layernorm.weight", shape: [hidden], decay: false),
                                attention: attention, mlp: mlp, moe: moe))
        }
        self.blocks = blocks
        finalNorm = store.add("model.norm.weight", shape: [hidden], decay: false)
        self.head = head
        switch head {
        case .languageModel:
            lmHead = config.tieWordEmbeddings ? embedding : store.add("lm_head.weight", shape: [vocab, hidden], decay: true)
        case .score:
            lmHead = store.add("score.weight", shape: [1, hidden], decay: true)
        }
        store.allocate()
    }

    public var moeLayerCount: Int { blocks.filter { $0.moe != nil }.count }
    public var expertCount: Int { config.numExperts }

    /// Tokens routed to each expert in the last forward, per MoE layer.
    public var lastExpertLoad: [[Int]] { blocks.compactMap { $0.moe?.load } }

    private func table(_ T: Int) -> RopeTable {
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
        for b in blocks {
            let x = b.x.reserve(n * hidden), a = b.normed1.reserve(n * hidden)
            x.update(from: h, count: n * hidden)
            rmsNormForward(x, rows: n, dim: hidden, weight: w + b.inputNorm, eps: eps, into: a, rstd: b.rstd1.reserve(n), pool: pool)
            b.attention.forward(a, batch: B, seqLen: T, rope: rope, store: store, into: h, accumulate: true, pool: pool)
            let mid = b.mid.reserve(n * hidden), c = b.normed2.reserve(n * hidden)
            mid.update(from: h, count: n * hidden)
            rmsNormForward(mid, rows: n, dim: hidden, weight: w + b.postNorm, eps: eps, into: c, rstd: b.rstd2.reserve(n), pool: pool)
            if let mlp = b.mlp {
                let y = dNormed.reserve(n * hidden)
                mlp.forward(c, rows: n, store: store, into: y, pool: pool)
                axpy(1, y, h, count: n * hidden)
            } else if let moe = b.moe {
                moe.forward(c, tokens: n, seqLen: T, store: store, into: h, stats: &stats, pool: pool)
            }
        }
        let fi = finalInput.reserve(n * hidden)
        fi.update(from: h, count: n * hidden)
        rmsNormForward(fi, rows: n, dim: hidden, weight: w + finalNorm, eps: eps, into: finalNormed.reserve(n * hidden),
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
        return 4 * (blocks.count * perLayer + 6 * n * hidden + 256 * vocab)
    }

    /// Targets are negative (ignored, like HF's -100) or a token of the vocabulary; the head must be the LM head.
    func checkTargets(_ targets: UnsafePointer<Int32>, count n: Int) throws {
        guard head == .languageModel else { throw TrainingError.badArgument("this model has a score head (a reward model), not an LM head") }
        for i in 0..<n where Int(targets[i]) >= vocab {
            throw TrainingError.badArgument("target token \(targets[i]) is outside the vocabulary (\(vocab))")
        }
    }

    /// Backward from d(loss)/d(final normalised hidden) in `dFinal`, through every layer to the embedding.
    func backwardHidden(batch B: Int, seqLen T: Int, balance: BalanceGradient) {
        // The layers' saved activations belong to the last forward; a backward of another shape would read
        // past them.
        precondition(savedShape.map { $0 == (B, T) } ?? false, "backward without the matching forward (\(B)×\(T))")
        let n = B * T, w = store.values!, g = store.grads!
        let rope = table(T)
        let dh = dResidual.reserve(n * hidden)
        rmsNormBackward(dFinal.pointer, x: finalInput.pointer, rows: n, dim: hidden, weight: w + finalNorm,
                        rstd: finalRstd.pointer, weightGrad: g + finalNorm, inputGrad: dh, accumulate: false, pool: pool)
        let dn = dNormed.reserve(n * hidden)
        for b in blocks.reversed() {
            // h_out = mid + ff(norm2(mid)): d mid = dh + norm2ᵀ(ffᵀ(dh)).
            if let mlp = b.mlp {
                mlp.backward(dh, rows: n, store: store, inputGrad: dn, accumulate: false, pool: pool)
            } else if let moe = b.moe {
                moe.backward(dh, tokens: n, seqLen: T, store: store, balance: balance, inputGrad: dn, accumulate: false, pool: pool)
            }
            rmsNormBackward(dn, x: b.mid.pointer, rows: n, dim: hidden, weight: w + b.postNorm, rstd: b.rstd2.pointer,
                            weightGrad: g + b.postNorm, inputGrad: dh, accumulate: true, pool: pool)
            // mid = x + attn(norm1(x)).
            b.attention.backward(dh, batch: B, seqLen: T, rope: rope, store: store, inputGrad: dn, accumulate: false, pool: pool)
            rmsNormBackward(dn, x: b.x.pointer, rows: n, dim: hidden, weight: w + b.inputNorm, rstd: b.rstd1.pointer,
                            weightGrad: g + b.inputNorm, inputGrad: dh, accumulate: true, pool: pool)
        }
        for t in 0..<n { axpy(1, dh + t * hidden, g + embedding + Int(lastInputs[t]) * hidden, count: hidden) }
    }
}
