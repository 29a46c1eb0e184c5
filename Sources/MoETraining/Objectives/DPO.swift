import Foundation

/// Direct preference optimisation (Rafailov et al.), as TRL's `DPOTrainer` computes its sigmoid loss:
///
///     Δ = (log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))     (sums over completion tokens)
///     loss = mean over pairs of −log σ(β·Δ)  (+ the MoE balance losses of the policy's forward)
///
/// The reference log-probs are computed once per batch by the frozen reference model.
public enum DPO {
    public struct Result: Sendable {
        public var loss: Double
        public var preferenceLoss: Double
        public var aux: Double
        /// β(log π − log π_ref) of the chosen and rejected completions, per pair.
        public var chosenRewards: [Double], rejectedRewards: [Double]
        /// Share of pairs whose chosen reward is above the rejected one.
        public var accuracy: Double { zip(chosenRewards, rejectedRewards).filter { $0 > $1 }.count.d / chosenRewards.count.d }
        public var margin: Double { zip(chosenRewards, rejectedRewards).reduce(0) { $0 + $1.0 - $1.1 } / chosenRewards.count.d }
    }

    /// The batch of `pairs` pairs: rows 0..<pairs are prompt+chosen, rows pairs..<2·pairs prompt+rejected
    /// (TRL's order).
    public static func batch(prompts: [[Int]], chosen: [[Int]], rejected: [[Int]], pad: Int) throws -> PaddedBatch {
        try PaddedBatch(sequences: zip(prompts, chosen).map { $0 + $1 } + zip(prompts, rejected).map { $0 + $1 },
                        scoredFrom: prompts.map(\.count) + prompts.map(\.count), pad: pad)
    }

    /// One forward and backward of the policy; gradients are added to `policy.store.grads`.
    public static func step(policy: TrainableModel, batch: PaddedBatch, referenceLogProbs: [Double], beta: Double,
                            balance: BalanceLosses) throws -> Result {
        let pairs = batch.rows / 2
        guard batch.rows % 2 == 0, referenceLogProbs.count == batch.rows else {
            throw TrainingError.badArgument("DPO needs chosen and rejected rows in pairs and one reference log-prob per row")
        }
        let logp = try policy.tokenLogProbs(batch)
        let sums = TrainableModel.sequenceSums(logp, batch)
        var chosen: [Double] = [], rejected: [Double] = [], loss = 0.0
        var rowGradient = [Double](repeating: 0, count: batch.rows)   // d loss / d (sequence log-prob)
        for i in 0..<pairs {
            let c = beta * (sums[i] - referenceLogProbs[i]), r = beta * (sums[pairs + i] - referenceLogProbs[pairs + i])
            chosen.append(c); rejected.append(r)
            let z = c - r
            loss += softplus(-z) / Double(pairs)                       // −log σ(z)
            let g = -sigmoid(-z) * beta / Double(pairs)                // d/dz of −log σ(z) = −σ(−z)
            rowGradient[i] = g; rowGradient[pairs + i] = -g
        }
        var tokenGradients = [Float](repeating: 0, count: logp.count)
        for i in 0..<logp.count where batch.targets[i] >= 0 { tokenGradients[i] = Float(rowGradient[i / batch.seqLen]) }
        try policy.backward(batch: batch, logProbGradients: tokenGradients, balance: balance)
        let aux = policy.routerLosses().aux
        return Result(loss: loss + balance.auxLossCoef * aux + balance.zLossCoef * policy.routerLosses().z,
                      preferenceLoss: loss, aux: aux, chosenRewards: chosen, rejectedRewards: rejected)
    }
}

func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }
/// log(1 + eˣ), without overflow.
func softplus(_ x: Double) -> Double { x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)) }

extension Int { var d: Double { Double(self) } }
