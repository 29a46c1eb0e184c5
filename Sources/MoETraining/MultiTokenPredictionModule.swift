import Foundation
import MoEFormats
import MoEKernels
import MoEModel

/// DeepSeek-V3's multi-token-prediction module of depth 1 (paper §2.2, eqs. 21–25), trained beside the model.
/// For each sequence of T tokens it runs on positions i = 0…T−2:
///
///     h'_i  = eh_proj · [enorm(Emb(t_{i+1})); hnorm(h_i)]     h_i: the main model's last-layer output (pre-norm)
///     o     = Block(h'_0 … h'_{T−2})                          one decoder layer, causal over the sequence
///     P_i   = softmax(head(shared_head.norm(o_i)))            embedding and head shared with the model
///     L_MTP = −mean_i log P_i[t_{i+2}]                        (targets < 0 ignored)
///
/// and the model's loss adds λ·L_MTP. Gradients reach the embedding (of t_{i+1}), the head, and the main model
/// through h_i. Names and layout: `MultiTokenPrediction` (MoEModel).
final class MultiTokenPredictionModule {
    let prefix: String
    let enorm: Int, hnorm: Int, ehProj: Int, headNorm: Int
    let block: TrainableModel.Block

    init(store: ParameterStore, config: ModelConfig, selectionBias: Bool, has: (String) -> Bool) throws {
        let layout = try MultiTokenPrediction.layouts(config, depth: 1, has: has)[0]
        let H = config.hiddenSize
        prefix = layout.prefix
        enorm = store.add("\(prefix).enorm.weight", shape: [H], decay: false)
        hnorm = store.add("\(prefix).hnorm.weight", shape: [H], decay: false)
        ehProj = store.add("\(prefix).eh_proj.weight", shape: [H, 2 * H], decay: true)
        block = .make(layout, store: store, config: config, selectionBias: selectionBias)
        headNorm = store.add("\(prefix).shared_head.norm.weight", shape: [H], decay: false)
    }

    // Saved by `forward` for the loss and the backward (rows = B·(T−1)).
    private var batch = 0, seqLen = 0
    private var nextTokens: [Int32] = []
    private(set) var targets: [Int32] = []
    private let embedded = Floats(), lastHidden = Floats(), embeddedNormed = Floats(), hiddenNormed = Floats()
    private let rstdE = Floats(), rstdH = Floats(), joined = Floats(), stream = Floats(), normed = Floats(), rstdOut = Floats()
    private let scratch = Floats(), dNormed = Floats(), dStream = Floats(), dJoined = Floats(), dPart = Floats()
    /// d(loss)/d(the main model's last-layer output), B·T·hidden, after `backward`.
    let residualGradient = Floats()

    var rows: Int { batch * seqLen }

    /// Runs the module on the main model's saved activations of its last forward (`inputs`, `targets` as given
    /// to it) and leaves the normalised outputs for `head`.
    func forward(_ m: TrainableModel, batch B: Int, seqLen T: Int, inputs: UnsafePointer<Int32>, targets t: UnsafePointer<Int32>,
                 balanceMask: [Bool]?) {
        batch = B; seqLen = max(T - 1, 0)
        let T1 = seqLen, n = rows, H = m.hidden, w = m.store.values!
        nextTokens = .init(repeating: 0, count: n); targets = .init(repeating: -100, count: n)
        // A row counts for balance where the token it embeds does (padding is at the end).
        block.moe?.balanceMask = balanceMask.map { mask in (0..<B).flatMap { b in (0..<T1).map { mask[b * T + $0 + 1] } } }
        guard n > 0 else { return }
        let e = embedded.reserve(n * H), h = lastHidden.reserve(n * H)
        for b in 0..<B {
            for i in 0..<T1 {
                let r = b * T1 + i, src = b * T + i
                nextTokens[r] = inputs[src + 1]
                targets[r] = t[src + 1]
                (e + r * H).update(from: w + m.embedding + Int(inputs[src + 1]) * H, count: H)
                (h + r * H).update(from: m.finalInput.pointer + src * H, count: H)
            }
        }
        let en = embeddedNormed.reserve(n * H), hn = hiddenNormed.reserve(n * H)
        rmsNormForward(e, rows: n, dim: H, weight: w + enorm, eps: m.eps, into: en, rstd: rstdE.reserve(n), pool: m.pool)
        rmsNormForward(h, rows: n, dim: H, weight: w + hnorm, eps: m.eps, into: hn, rstd: rstdH.reserve(n), pool: m.pool)
        let x = joined.reserve(n * 2 * H)
        for r in 0..<n {
            (x + r * 2 * H).update(from: en + r * H, count: H)
            (x + r * 2 * H + H).update(from: hn + r * H, count: H)
        }
        let s = stream.reserve(n * H)
        linearForward(x, rows: n, inputs: 2 * H, outputs: H, weight: w + ehProj, bias: nil, into: s, pool: m.pool)
        block.forward(s, batch: B, seqLen: T1, rope: m.table(T1), model: m, scratch: scratch.reserve(n * H), stats: &m.stats)
        rmsNormForward(s, rows: n, dim: H, weight: w + headNorm, eps: m.eps, into: normed.reserve(n * H), rstd: rstdOut.reserve(n),
                       pool: m.pool)
    }

    /// The mean cross-entropy of the module's predictions (0 with no target), and with `weight` (d loss / d that
    /// mean) its backward: parameter gradients are added and `residualGradient` is written.
    func loss(_ m: TrainableModel, weight: Float?, balance: BalanceGradient?) -> (crossEntropy: Double, tokens: Int) {
        let n = rows, H = m.hidden
        let valid = targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
        guard n > 0, valid > 0 else {
            if weight != nil { _ = residualGradient.zeroed(batch * (seqLen + 1) * H) }
            return (0, 0)
        }
        let c = weight.map { -$0 / Float(valid) }
        let logp = targets.withUnsafeBufferPointer { tp in
            m.head(rows: n, targets: tp.baseAddress!, coefficients: c.map { c in targets.map { $0 >= 0 ? c : 0 } },
                   input: normed.pointer, inputGrad: weight != nil ? dNormed.reserve(n * H) : nil)
        }
        let ce = -zip(logp, targets).reduce(0.0) { $0 + ($1.1 >= 0 ? Double($1.0) : 0) } / Double(valid)
        if let balance, weight != nil { backward(m, balance: balance) }
        return (ce, valid)
    }

    private func backward(_ m: TrainableModel, balance: BalanceGradient) {
        let B = batch, T1 = seqLen, T = T1 + 1, n = rows, H = m.hidden, w = m.store.values!, g = m.store.grads!
        let ds = dStream.reserve(n * H)
        rmsNormBackward(dNormed.pointer, x: stream.pointer, rows: n, dim: H, weight: w + headNorm, rstd: rstdOut.pointer,
                        weightGrad: g + headNorm, inputGrad: ds, accumulate: false, pool: m.pool)
        block.backward(ds, batch: B, seqLen: T1, rope: m.table(T1), model: m, scratch: scratch.reserve(n * H), balance: balance)
        let dx = dJoined.reserve(n * 2 * H)
        linearBackward(ds, x: joined.pointer, rows: n, inputs: 2 * H, outputs: H, weight: w + ehProj, weightGrad: g + ehProj,
                       biasGrad: nil, inputGrad: dx, accumulateInput: false, pool: m.pool)
        // The two halves of the joined input, each back through its norm (into ds, free again).
        let part = dPart.reserve(n * H)
        for r in 0..<n { (part + r * H).update(from: dx + r * 2 * H, count: H) }
        rmsNormBackward(part, x: embedded.pointer, rows: n, dim: H, weight: w + enorm, rstd: rstdE.pointer,
                        weightGrad: g + enorm, inputGrad: ds, accumulate: false, pool: m.pool)
        for r in 0..<n { axpy(1, ds + r * H, g + m.embedding + Int(nextTokens[r]) * H, count: H) }
        for r in 0..<n { (part + r * H).update(from: dx + r * 2 * H + H, count: H) }
        rmsNormBackward(part, x: lastHidden.pointer, rows: n, dim: H, weight: w + hnorm, rstd: rstdH.pointer,
                        weightGrad: g + hnorm, inputGrad: ds, accumulate: false, pool: m.pool)
        let dh = residualGradient.zeroed(B * T * H)
        for b in 0..<B { (dh + b * T * H).update(from: ds + b * T1 * H, count: T1 * H) }
    }
}
