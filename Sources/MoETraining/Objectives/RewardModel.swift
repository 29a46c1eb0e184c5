import Foundation
import MoEKernels

/// A reward model: the MoE backbone with a scalar head (`score.weight`) read at each sequence's last token,
/// trained with the Bradley–Terry loss as TRL's `RewardTrainer` computes it:
///
///     loss = mean over pairs of −log σ(r(chosen) − r(rejected))
///
/// TRL adds no MoE balance loss here; `balance` lets a caller keep one anyway.
public enum RewardModeling {
    public struct Result: Sendable {
        public var loss: Double
        public var chosen: [Double], rejected: [Double]
        public var accuracy: Double { zip(chosen, rejected).filter { $0 > $1 }.count.d / chosen.count.d }
    }

    /// Rows 0..<pairs chosen, pairs..<2·pairs rejected (TRL's order), right-padded.
    public static func batch(chosen: [[Int]], rejected: [[Int]], pad: Int) throws -> PaddedBatch {
        let sequences = chosen + rejected
        return try PaddedBatch(sequences: sequences, scoredFrom: sequences.map { max(1, $0.count - 1) }, pad: pad)
    }

    /// The score of each row: score · (final hidden state at its last real token).
    public static func scores(_ model: TrainableModel, _ batch: PaddedBatch) throws -> [Double] {
        guard model.head == .score else { throw TrainingError.badArgument("a reward model needs a score head (score.weight)") }
        try model.forwardHidden(batch: batch.rows, seqLen: batch.seqLen, inputs: batch.inputs, balanceMask: batch.attention)
        let w = model.store.values!, h = model.hidden
        return (0..<batch.rows).map { r in
            Double(dot(model.finalNormed.pointer + (r * batch.seqLen + batch.lengths[r] - 1) * h, w + model.lmHead, count: h))
        }
    }

    /// One forward and backward; gradients are added to `model.store.grads`.
    /// One forward and (with `scale`) backward; gradients × scale are added to `model.store.grads`.
    public static func step(_ model: TrainableModel, batch: PaddedBatch, balance: BalanceLosses = BalanceLosses(),
                            scale: Float? = 1) throws -> Result {
        let r = try scores(model, batch)
        guard batch.rows % 2 == 0 else { throw TrainingError.badArgument("reward pairs need as many rejected rows as chosen") }
        let pairs = batch.rows / 2, h = model.hidden, T = batch.seqLen
        var loss = 0.0
        var dScore = [Float](repeating: 0, count: batch.rows)
        for i in 0..<pairs {
            let z = r[i] - r[pairs + i]
            loss += softplus(-z) / Double(pairs)
            let g = Float(-sigmoid(-z) / Double(pairs))
            dScore[i] = g; dScore[pairs + i] = -g
        }
        if let scale {
        // d score / d hidden = score weight; d score / d weight = hidden.
        for i in dScore.indices { dScore[i] *= scale }
        let w = model.store.values!, g = model.store.grads!
        let df = model.dFinal.zeroed(batch.rows * T * h)
        for row in 0..<batch.rows {
            let at = (row * T + batch.lengths[row] - 1) * h
            axpy(dScore[row], w + model.lmHead, df + at, count: h)
            axpy(dScore[row], model.finalNormed.pointer + at, g + model.lmHead, count: h)
        }
        model.backwardHidden(batch: batch.rows, seqLen: T, balance: model.balanceGradient(balance, scale: scale))
        }
        return Result(loss: loss + balance.auxLossCoef * model.routerLosses().aux, chosen: Array(r[0..<pairs]),
                      rejected: Array(r[pairs...]))
    }
}

/// The reward model in the training loop: batches of pairs as whole sequences (chosen rows, then rejected).
public struct RewardObjective: TrainingObjective {
    public init() {}

    public func step(_ model: TrainableModel, _ batch: TrainingBatch, balance: BalanceLosses, scale: Float) throws -> ObjectiveResult {
        result(try RewardModeling.step(model, batch: batch.tokens, balance: balance, scale: scale), model)
    }

    public func evaluate(_ model: TrainableModel, _ batch: TrainingBatch, balance: BalanceLosses) throws -> ObjectiveResult {
        result(try RewardModeling.step(model, batch: batch.tokens, balance: balance, scale: nil), model)
    }

    private func result(_ r: RewardModeling.Result, _ model: TrainableModel) -> ObjectiveResult {
        let aux = model.routerLosses().aux
        return ObjectiveResult(loss: LossBreakdown(crossEntropy: r.loss, aux: aux, z: 0, total: r.loss, tokens: 0),
                               weight: Double(r.chosen.count),
                               metrics: ["accuracy": r.accuracy,
                                         "margin": zip(r.chosen, r.rejected).reduce(0) { $0 + $1.0 - $1.1 } / r.chosen.count.d])
    }
}
