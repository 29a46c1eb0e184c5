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
    public static func step(_ model: TrainableModel, batch: PaddedBatch, balance: BalanceLosses = BalanceLosses()) throws -> Result {
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
        // d score / d hidden = score weight; d score / d weight = hidden.
        let w = model.store.values!, g = model.store.grads!
        let df = model.dFinal.zeroed(batch.rows * T * h)
        for row in 0..<batch.rows {
            let at = (row * T + batch.lengths[row] - 1) * h
            axpy(dScore[row], w + model.lmHead, df + at, count: h)
            axpy(dScore[row], model.finalNormed.pointer + at, g + model.lmHead, count: h)
        }
        model.backwardHidden(batch: batch.rows, seqLen: T, balance: model.balanceGradient(balance, scale: 1))
        return Result(loss: loss + balance.auxLossCoef * model.routerLosses().aux, chosen: Array(r[0..<pairs]),
                      rejected: Array(r[pairs...]))
    }
}
