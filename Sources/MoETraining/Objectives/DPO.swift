import Foundation

/// Direct preference optimisation (Rafailov et al.), as TRL's `DPOTrainer` computes its sigmoid loss:
///
///     Δ = (log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))     (sums over completion tokens)
///     loss = mean over pairs of −log σ(β·Δ)  (+ the MoE balance losses of the policy's forward)
///
/// The reference log-probs are computed once, before training, by the frozen reference model.
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

    /// The frozen reference's summed completion log-probs of each pair, computed once before training.
    public static func referenceLogProbs(_ reference: TrainableModel, _ pairs: [PreferencePair], batchSize: Int,
                                         pad: Int) throws -> [(chosen: Double, rejected: Double)] {
        var out: [(chosen: Double, rejected: Double)] = []
        let size = max(1, batchSize)
        for start in stride(from: 0, to: pairs.count, by: size) {
            let group = Array(pairs[start..<min(start + size, pairs.count)])
            let b = try batch(prompts: group.map(\.prompt), chosen: group.map(\.chosen), rejected: group.map(\.rejected), pad: pad)
            let sums = TrainableModel.sequenceSums(try reference.tokenLogProbs(b), b)
            for i in group.indices { out.append((sums[i], sums[group.count + i])) }
        }
        return out
    }

    /// Forward (and, with `scale`, backward: gradients × scale added to `policy.store.grads`) of the policy.
    public static func step(policy: TrainableModel, batch: PaddedBatch, referenceLogProbs: [Double], beta: Double,
                            balance: BalanceLosses, scale: Float? = 1) throws -> Result {
        guard batch.rows % 2 == 0, referenceLogProbs.count == batch.rows else {
            throw TrainingError.badArgument("DPO needs chosen and rejected rows in pairs and one reference log-prob per row")
        }
        let pairs = batch.rows / 2
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
        if let scale {
            var tokenGradients = [Float](repeating: 0, count: logp.count)
            for i in 0..<logp.count where batch.targets[i] >= 0 { tokenGradients[i] = Float(rowGradient[i / batch.seqLen]) * scale }
            try policy.backward(batch: batch, logProbGradients: tokenGradients, balance: balance, scale: scale)
        }
        let (aux, z) = policy.routerLosses()
        return Result(loss: loss + balance.auxLossCoef * aux + balance.zLossCoef * z,
                      preferenceLoss: loss, aux: aux, chosenRewards: chosen, rejectedRewards: rejected)
    }
}

/// DPO in the training loop: batches of preference pairs whose `rowValues` are the reference log-probs.
public struct DPOObjective: TrainingObjective {
    public var beta: Double
    public init(beta: Double = 0.1) { self.beta = beta }

    public func step(_ model: TrainableModel, _ batch: TrainingBatch, balance: BalanceLosses, scale: Float) throws -> ObjectiveResult {
        result(try DPO.step(policy: model, batch: batch.tokens, referenceLogProbs: batch.rowValues, beta: beta, balance: balance, scale: scale))
    }

    public func evaluate(_ model: TrainableModel, _ batch: TrainingBatch, balance: BalanceLosses) throws -> ObjectiveResult {
        result(try DPO.step(policy: model, batch: batch.tokens, referenceLogProbs: batch.rowValues, beta: beta, balance: balance, scale: nil))
    }

    private func result(_ r: DPO.Result) -> ObjectiveResult {
        ObjectiveResult(loss: LossBreakdown(crossEntropy: r.preferenceLoss, aux: r.aux, z: 0, total: r.loss, tokens: 0),
                        weight: Double(r.chosenRewards.count),
                        metrics: ["reward_accuracy": r.accuracy, "reward_margin": r.margin,
                                  "chosen_reward": r.chosenRewards.reduce(0, +) / r.chosenRewards.count.d,
                                  "rejected_reward": r.rejectedRewards.reduce(0, +) / r.rejectedRewards.count.d])
    }
}

func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }
/// log(1 + eˣ), without overflow.
func softplus(_ x: Double) -> Double { x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)) }

extension Int { var d: Double { Double(self) } }
