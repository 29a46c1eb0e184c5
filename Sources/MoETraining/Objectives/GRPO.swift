import Foundation

/// Group relative policy optimisation (DeepSeekMath), as TRL's `GRPOTrainer` computes its loss (defaults of
/// TRL 1.16: `loss_type="dapo"`, `scale_rewards="group"`, token-level ratios, bias-corrected k3 KL):
///
///     A_i   = (r_i − mean(r_group)) / (std(r_group) + 1e-4)          (sample std)
///     ρ_t   = exp(log π(t) − log π_old(t))
///     ℓ_t   = −min(ρ_t·A, clip(ρ_t, 1−ε, 1+ε)·A) + β·[e^(ref−logπ) − (ref−logπ) − 1]·ρ_t
///     loss  = Σ ℓ_t over completion tokens / completion tokens in the batch   (+ MoE balance losses)
public enum GRPO {
    public struct Settings: Sendable, Codable {
        public var beta = 0.0
        public var epsilon = 0.2
        /// The sampling temperature: every log-prob (policy, old, reference) is taken under softmax(logits / T).
        public var temperature = 1.0
        public init(beta: Double = 0, epsilon: Double = 0.2, temperature: Double = 1) {
            self.beta = beta; self.epsilon = epsilon; self.temperature = temperature
        }
    }

    public struct Result: Sendable {
        public var loss: Double
        public var policyLoss: Double
        public var aux: Double
        /// Mean over completion tokens of the (bias-corrected) KL estimate.
        public var kl: Double
        /// Share of completion tokens whose ratio was clipped (outside 1 ± ε on the side that matters).
        public var clipFraction: Double
        /// Mean entropy of the policy's next-token distribution over completion tokens.
        public var entropy: Double
    }

    /// Group-normalised advantages of consecutive groups of `groupSize` rewards.
    public static func advantages(rewards: [Double], groupSize: Int) -> [Double] {
        stride(from: 0, to: rewards.count, by: groupSize).flatMap { start -> [Double] in
            let g = Array(rewards[start..<min(start + groupSize, rewards.count)])
            let mean = g.reduce(0, +) / Double(g.count)
            let variance = g.count > 1 ? g.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(g.count - 1) : 0
            return g.map { ($0 - mean) / (variance.squareRoot() + 1e-4) }
        }
    }

    /// One forward and backward of the policy on a batch of prompt+completion rows (`batch.targets` mark the
    /// completion tokens). `oldLogProbs` and `referenceLogProbs` are per position in the batch's layout (as
    /// `tokenLogProbs` returns them); `advantages` one per row; `tokensInBatch` the normaliser (all completion
    /// tokens of the generation batch, when it is split into several optimisation batches).
    public static func step(policy: TrainableModel, batch: PaddedBatch, oldLogProbs: [Float], referenceLogProbs: [Float]?,
                            advantages: [Double], settings: Settings, tokensInBatch: Int,
                            balance: BalanceLosses, scale gradientScale: Float? = 1) throws -> Result {
        let positions = batch.rows * batch.seqLen
        guard advantages.count == batch.rows, oldLogProbs.count == positions, referenceLogProbs.map({ $0.count == positions }) ?? true else {
            throw TrainingError.badArgument("GRPO needs one advantage per row and old/reference log-probs per position of the batch")
        }
        let (logp, entropy) = try policy.tokenLogProbsAndEntropy(batch, temperature: Float(settings.temperature))
        let low = 1 - settings.epsilon, high = 1 + settings.epsilon
        var gradients = [Float](repeating: 0, count: logp.count)
        var loss = 0.0, klSum = 0.0, entropySum = 0.0, clipped = 0, tokens = 0
        let scale = 1 / Double(max(tokensInBatch, 1))
        for i in 0..<logp.count where batch.targets[i] >= 0 {
            let a = advantages[i / batch.seqLen], lp = Double(logp[i])
            let ratio = exp(lp - Double(oldLogProbs[i]))
            let clippedRatio = min(max(ratio, low), high)
            let unclippedTerm = ratio * a, clippedTerm = clippedRatio * a
            var term = -min(unclippedTerm, clippedTerm)
            // The unclipped branch carries the gradient unless the clipped one is smaller (then it is constant).
            var d = unclippedTerm <= clippedTerm || (ratio >= low && ratio <= high) ? -a * ratio : 0
            if (ratio < low && a < 0) || (ratio > high && a > 0) { clipped += 1 }
            if let referenceLogProbs, settings.beta != 0 {
                let x = Double(referenceLogProbs[i]) - lp
                let k3 = exp(x) - x - 1
                term += settings.beta * k3 * ratio
                d += settings.beta * ((1 - exp(x)) * ratio + k3 * ratio)   // d(k3·ρ)/d logπ
                klSum += k3 * ratio
            }
            loss += term * scale
            gradients[i] = Float(d * scale * Double(gradientScale ?? 0))
            entropySum += Double(entropy[i])
            tokens += 1
        }
        if let gradientScale { try policy.backward(batch: batch, logProbGradients: gradients, balance: balance, scale: gradientScale,
                                                             temperature: Float(settings.temperature)) }
        let (aux, z) = policy.routerLosses()
        return Result(loss: loss + balance.auxLossCoef * aux + balance.zLossCoef * z, policyLoss: loss, aux: aux,
                      kl: klSum / Double(max(tokens, 1)), clipFraction: Double(clipped) / Double(max(tokens, 1)),
                      entropy: entropySum / Double(max(tokens, 1)))
    }
}
