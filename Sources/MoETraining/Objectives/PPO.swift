import Foundation
import MoEKernels
import MoEModel

/// Proximal policy optimisation for RLHF, as TRL's `PPOTrainer` (1.12, `trl.experimental.ppo`, the
/// "N implementation details of RLHF" version) computes it. Per response token t of a rollout (len tokens,
/// the stop token included; R the longest response):
///
///     kl_t      = log π_old(t) − log π_ref(t)                  (k1; k3: e^x − 1 − x with x = ref − old)
///     r_t       = −β·kl_t,  plus the reward model's score at t = len (one past the stop token; len − 1 when len = R)
///     δ_t       = r_t + γ·V_{t+1} − V_t,   A_t = δ_t + γλ·A_{t+1}   (over all R positions; V = 0 past t = len)
///     returns   = A + V;  A whitened over the batch's response tokens
///     pg loss   = mean over response tokens of max(−A·ρ, −A·clip(ρ, 1 ± ε)),   ρ = π/π_old
///     vf loss   = ½·mean over t ≤ len of max((V − R)², (clip(V, V_old ± ε_v) − R)²)
///     loss      = pg loss + c_v·vf loss                         (+ MoE balance losses, which TRL leaves out)
///
/// Log-probs are taken under softmax(logits / (T + 1e-7)) at the sampling temperature T, for the policy,
/// the sampling policy and the reference alike. The value model is a score-head model read at every
/// position (V_t at the state before response token t).
public enum PPO {
    public struct Settings: Codable, Sendable {
        /// β of the per-token KL penalty.
        public var klCoef = 0.05
        /// `k1` (log-ratio) or `k3` (e^x − 1 − x) per-token KL estimate.
        public var klEstimator = "k1"
        public var gamma = 1.0
        public var lambda = 0.95
        public var clipRange = 0.2
        public var clipRangeValue = 0.2
        public var valueCoef = 0.1
        public var temperature = 0.7
        public var whitenRewards = false
        /// Subtracted from the score of a response that never produced an end-of-sequence token.
        public var missingEOSPenalty: Double?
        public init() {}

        /// The divisor of the logits (TRL adds 1e-7).
        var logitDivisor: Float { Float(temperature + 1e-7) }
    }

    /// Rewards, advantages and returns of a rollout, each [rows × R] over the response positions.
    public struct Advantages: Sendable {
        public var kl: [Double], rewards: [Double], advantages: [Double], returns: [Double]
    }

    /// Steps 3–6 of TRL's rollout: the KL-penalised rewards with the score placed one past the last token,
    /// GAE, returns, whitened advantages. `logProbs`, `referenceLogProbs`, `values`: [rows × R]; `lengths[r]`:
    /// the response tokens of row r (1...R); values past t = len are ignored (taken as 0).
    public static func advantages(logProbs: [Double], referenceLogProbs: [Double], values rawValues: [Double], scores: [Double],
                                  lengths: [Int], responseLength R: Int, settings: Settings) -> Advantages {
        let rows = lengths.count
        var kl = [Double](repeating: 0, count: rows * R), rewards = kl, values = kl, advantages = kl
        for r in 0..<rows {
            let len = lengths[r]
            for t in 0..<R {
                let i = r * R + t
                if t <= len { values[i] = rawValues[i] }
                guard t < len else { continue }
                let x = referenceLogProbs[i] - logProbs[i]
                kl[i] = settings.klEstimator == "k3" ? (exp(x) - 1) - x : -x
                rewards[i] = -settings.klCoef * kl[i]
            }
            rewards[r * R + (len < R ? len : len - 1)] += scores[r]
        }
        if settings.whitenRewards {
            rewards = whiten(rewards, mask: valueMask(lengths, R), shiftMean: false)
        }
        for r in 0..<rows {
            var last = 0.0
            for t in stride(from: R - 1, through: 0, by: -1) {
                let i = r * R + t
                let next = t < R - 1 ? values[i + 1] : 0
                last = rewards[i] + settings.gamma * next - values[i] + settings.gamma * settings.lambda * last
                advantages[i] = last
            }
        }
        let returns = zip(advantages, values).map { $0 + $1 }
        return Advantages(kl: kl, rewards: rewards, advantages: whiten(advantages, mask: policyMask(lengths, R), shiftMean: true),
                          returns: returns)
    }

    /// Response tokens (t < len): where the policy loss is taken.
    static func policyMask(_ lengths: [Int], _ R: Int) -> [Bool] {
        lengths.flatMap { len in (0..<R).map { $0 < len } }
    }

    /// t ≤ len: the value loss also scores the state after the last token.
    static func valueMask(_ lengths: [Int], _ R: Int) -> [Bool] {
        lengths.flatMap { len in (0..<R).map { $0 <= len } }
    }

    /// TRL's `masked_whiten`: (x − mean)/√(var + 1e-8) over the masked entries (unbiased variance), 0 elsewhere;
    /// `shiftMean: false` adds the mean back.
    static func whiten(_ x: [Double], mask: [Bool], shiftMean: Bool) -> [Double] {
        let n = Double(mask.filter { $0 }.count)
        guard n > 1 else { return x.indices.map { mask[$0] ? x[$0] : 0 } }
        let mean = x.indices.reduce(0) { mask[$1] ? $0 + x[$1] : $0 } / n
        let variance = x.indices.reduce(0) { mask[$1] ? $0 + (x[$1] - mean) * (x[$1] - mean) : $0 } / n * n / (n - 1)
        let scale = 1 / (variance + 1e-8).squareRoot()
        return x.indices.map { mask[$0] ? (x[$0] - mean) * scale + (shiftMean ? 0 : mean) : 0 }
    }

    /// What one optimisation step reports.
    public struct Result: Sendable {
        public var loss: Double, policyLoss: Double, valueLoss: Double, aux: Double
        public var policyClipFraction: Double, valueClipFraction: Double
        /// Mean over response tokens of ½(log ρ)² and of the policy's entropy.
        public var approxKL: Double, entropy: Double
    }

    /// One forward and (with `scale`) backward of the policy and the value model on a rollout batch, in the
    /// batch's layout ([rows × seqLen]; `batch.targets` mark the response tokens): `old` log-probs,
    /// whitened `advantages` at response positions; `oldValues`, `returns` and `valueMask` at the value
    /// positions (the response positions and the one after the last token). Gradients × scale are added to
    /// both models' stores; the balance losses apply to both.
    public static func step(policy: TrainableModel, value: TrainableModel, batch: PaddedBatch, old: [Float], advantages: [Float],
                            oldValues: [Float], returns: [Float], valueMask: [Bool], settings: Settings,
                            balance: BalanceLosses, scale gradientScale: Float? = 1) throws -> Result {
        let n = batch.rows * batch.seqLen
        guard old.count == n, advantages.count == n, oldValues.count == n, returns.count == n, valueMask.count == n else {
            throw TrainingError.badArgument("PPO needs old log-probs, advantages, values, returns and the value mask per position of the batch")
        }
        // Policy: clipped surrogate over the response tokens.
        let (logp, entropy) = try policy.tokenLogProbsAndEntropy(batch, temperature: settings.logitDivisor)
        let tokens = max(1, batch.targets.filter { $0 >= 0 }.count)
        var dLogp = [Float](repeating: 0, count: n)
        var pgLoss = 0.0, pgClipped = 0, approxKL = 0.0, entropySum = 0.0
        let low = 1 - settings.clipRange, high = 1 + settings.clipRange
        for i in 0..<n where batch.targets[i] >= 0 {
            let a = Double(advantages[i]), diff = Double(logp[i]) - Double(old[i]), ratio = exp(diff)
            let unclipped = -a * ratio, clipped = -a * min(max(ratio, low), high)
            pgLoss += max(unclipped, clipped)
            if clipped > unclipped { pgClipped += 1 }
            // The gradient flows through the unclipped branch when it is the larger (or equal, inside the range).
            if unclipped >= clipped { dLogp[i] = Float(-a * ratio / Double(tokens)) * (gradientScale ?? 0) }
            approxKL += 0.5 * diff * diff
            entropySum += Double(entropy[i])
        }
        pgLoss /= Double(tokens)
        if let gradientScale {
            try policy.backward(batch: batch, logProbGradients: dLogp, balance: balance, scale: gradientScale,
                                temperature: settings.logitDivisor)
        }
        let policyAux = policy.routerLosses()

        // Value model: clipped squared error at the value positions.
        let vpred = try value.positionScores(batch)
        let valueTokens = max(1, valueMask.filter { $0 }.count)
        var dValue = [Float](repeating: 0, count: n)
        var vfLoss = 0.0, vfClipped = 0
        for i in 0..<n where valueMask[i] {
            let v = Double(vpred[i]), v0 = Double(oldValues[i]), ret = Double(returns[i])
            let vc = min(max(v, v0 - settings.clipRangeValue), v0 + settings.clipRangeValue)
            let l1 = (v - ret) * (v - ret), l2 = (vc - ret) * (vc - ret)
            vfLoss += max(l1, l2)
            if l2 > l1 { vfClipped += 1 }
            if l1 >= l2 {
                dValue[i] = Float(settings.valueCoef * 0.5 * 2 * (v - ret) / Double(valueTokens)) * (gradientScale ?? 0)
            }
        }
        vfLoss *= 0.5 / Double(valueTokens)
        if let gradientScale { try value.backwardPositionScores(batch, gradients: dValue, balance: balance, scale: gradientScale) }
        let valueAux = value.routerLosses()

        let aux = policyAux.aux + valueAux.aux
        let loss = pgLoss + settings.valueCoef * vfLoss
        return Result(loss: loss + balance.auxLossCoef * aux + balance.zLossCoef * (policyAux.z + valueAux.z), policyLoss: pgLoss,
                      valueLoss: vfLoss, aux: aux, policyClipFraction: Double(pgClipped) / Double(tokens),
                      valueClipFraction: Double(vfClipped) / Double(valueTokens), approxKL: approxKL / Double(tokens),
                      entropy: entropySum / Double(tokens))
    }
}

extension TrainableModel {
    /// A score-head model read at every position of `batch` (a value model): score · final hidden state.
    public func positionScores(_ batch: PaddedBatch) throws -> [Float] {
        guard head == .score else { throw TrainingError.badArgument("a value model needs a score head (score.weight)") }
        try forwardHidden(batch: batch.rows, seqLen: batch.seqLen, inputs: batch.inputs, balanceMask: batch.attention)
        let w = store.values! + lmHead, h = hidden
        return (0..<batch.rows * batch.seqLen).map { dot(finalNormed.pointer + $0 * h, w, count: h) }
    }

    /// Back-propagates d(objective)/d(score) at each position (after `positionScores` on the same batch),
    /// plus the balance losses × `scale`.
    func backwardPositionScores(_ batch: PaddedBatch, gradients: [Float], balance: BalanceLosses, scale: Float) throws {
        guard savedShape.map({ $0 == (batch.rows, batch.seqLen) }) ?? false, gradients.count == batch.rows * batch.seqLen else {
            throw TrainingError.badArgument("backwardPositionScores must follow positionScores on the same batch")
        }
        let w = store.values!, g = store.grads!, h = hidden
        let df = dFinal.zeroed(batch.rows * batch.seqLen * h)
        for i in gradients.indices where gradients[i] != 0 {
            axpy(gradients[i], w + lmHead, df + i * h, count: h)
            axpy(gradients[i], finalNormed.pointer + i * h, g + lmHead, count: h)
        }
        backwardHidden(batch: batch.rows, seqLen: batch.seqLen, balance: balanceGradient(balance, scale: scale))
    }
}

/// PPO's batches, made online: `promptsPerBatch` prompts (a seeded order, epoch after epoch), one response
/// each sampled at the settings' temperature from the current policy (all of the batch together, through the
/// inference engine over the policy's weights in memory), scored by the reward model, valued by the value
/// model, and turned into KL-penalised rewards, advantages and returns (`PPO.advantages`). Each rollout batch
/// serves `iterations` optimisation steps (TRL's `num_ppo_epochs`, one minibatch).
public final class PPORollouts: BatchSource {
    let policy: TrainableModel, reference: TrainableModel, reward: TrainableModel, value: TrainableModel
    let prompts: [[Int]]
    let promptsPerBatch: Int, responseLength: Int, iterations: Int
    let settings: PPO.Settings
    let seed: UInt64, pad: Int
    public let batchSize: Int, seqLen: Int
    /// The rollout being optimised (kept in checkpoints, so a resumed run goes on with the same samples).
    struct Rollout: Codable { var sequences: [[Int]], starts: [Int], scores: [Double], values: [String: [Float]], uses: Int }
    var position: RolloutPosition
    var current: (batch: TrainingBatch, rollout: Rollout)?
    /// Mean reward-model score of the last rollout batch.
    public private(set) var lastMeanScore = 0.0

    public init(policy: TrainableModel, reference: TrainableModel, reward: TrainableModel, value: TrainableModel, prompts: [[Int]],
                promptsPerBatch: Int, responseLength: Int, iterations: Int, settings: PPO.Settings,
                seed: UInt64, pad: Int) throws {
        guard !prompts.isEmpty else { throw TrainingError.badArgument("no prompts") }
        guard reward.head == .score, value.head == .score else {
            throw TrainingError.badArgument("the reward and value models need a score head (train one with `moe reward train`)")
        }
        guard policy.head == .languageModel, reference.head == .languageModel else {
            throw TrainingError.badArgument("the policy and the reference need a language-model head (lm_head), not a score head")
        }
        for (name, m) in [("reward", reward), ("value", value), ("reference", reference)] where m.config.vocabSize != policy.config.vocabSize {
            throw TrainingError.badArgument("the \(name) model's vocabulary (\(m.config.vocabSize)) differs from the policy's (\(policy.config.vocabSize))")
        }
        for (i, p) in prompts.enumerated() {
            guard !p.isEmpty else { throw TrainingError.badArgument("prompt \(i + 1) is empty") }
            if let id = p.first(where: { $0 < 0 || $0 >= policy.config.vocabSize }) {
                throw TrainingError.badArgument("prompt \(i + 1) holds token id \(id), outside the policy's vocabulary (\(policy.config.vocabSize))")
            }
        }
        guard promptsPerBatch > 0, responseLength > 0, settings.temperature > 0 else {
            throw TrainingError.badArgument("prompts per batch, response length and temperature must be positive")
        }
        self.policy = policy; self.reference = reference; self.reward = reward; self.value = value; self.prompts = prompts
        self.promptsPerBatch = promptsPerBatch; self.responseLength = responseLength; self.iterations = max(1, iterations)
        self.settings = settings; self.seed = seed; self.pad = pad
        batchSize = promptsPerBatch
        seqLen = prompts.map(\.count).max()! + responseLength
        position = RolloutPosition(count: prompts.count)
        for m in [policy, reference, reward, value] where seqLen > m.config.maxPositionEmbeddings {
            throw TrainingError.badArgument("prompt + response length (\(seqLen)) exceeds a model's context (\(m.config.maxPositionEmbeddings))")
        }
    }

    public func next() throws -> TrainingBatch {
        if var c = current, c.rollout.uses < iterations {
            c.rollout.uses += 1; current = c
            c.batch.metrics = [:]
            return c.batch
        }
        let (r, metrics) = try rollout()
        var batch = try Self.batch(r, pad: pad)
        batch.metrics = metrics
        current = (batch, r)
        return batch
    }

    /// Another rank's micro-batch: as `RolloutBatches.skip`.
    public func skip() throws {
        if var c = current, c.rollout.uses < iterations {
            c.rollout.uses += 1; current = c
        } else if iterations == 1 {
            position.passOver(promptsPerBatch, seed: seed)
            current = nil
        } else {
            _ = try next()
        }
    }

    func rollout() throws -> (Rollout, metrics: [String: Double]) {
        let eos = Set(policy.config.eosTokenIds)
        let questions = position.take(promptsPerBatch, seed: seed).map { prompts[$0] }
        let (generations, metrics) = try policy.sampleRollouts(prompts: questions, maxTokens: responseLength, sampling:
            questions.indices.map { position.sampling(settings.temperature, seed: seed, sample: $0) })
        var sequences: [[Int]] = [], starts: [Int] = [], lengths: [Int] = [], endedWithEOS: [Bool] = []
        for (p, gen) in zip(questions, generations) {
            sequences.append(p + gen.tokens); starts.append(p.count); lengths.append(gen.tokens.count)
            endedWithEOS.append(gen.tokens.last.map { eos.contains($0) } ?? false)
        }
        position.rollouts += 1
        let batch = try PaddedBatch(sequences: sequences, scoredFrom: starts, pad: pad)
        let T = batch.seqLen, R = lengths.max()!
        let old = try policy.tokenLogProbs(batch, temperature: settings.logitDivisor)
        let ref = try reference.tokenLogProbs(batch, temperature: settings.logitDivisor)
        let values = try value.positionScores(batch)
        var scores = try RewardModeling.scores(reward, batch)
        if let penalty = settings.missingEOSPenalty { for r in scores.indices where !endedWithEOS[r] { scores[r] -= penalty } }
        lastMeanScore = scores.reduce(0, +) / Double(scores.count)

        // Response position t of row r sits at batch position r·T + start − 1 + t (the state before token t).
        func perToken(_ x: [Float], upTo limit: (Int) -> Int) -> [Double] {
            var out = [Double](repeating: 0, count: starts.count * R)
            for r in starts.indices { for t in 0..<min(R, limit(r)) { out[r * R + t] = Double(x[r * T + starts[r] - 1 + t]) } }
            return out
        }
        let a = PPO.advantages(logProbs: perToken(old) { lengths[$0] }, referenceLogProbs: perToken(ref) { lengths[$0] },
                               values: perToken(values) { lengths[$0] + 1 }, scores: scores, lengths: lengths,
                               responseLength: R, settings: settings)
        func perPosition(_ x: [Double], upTo limit: (Int) -> Int) -> [Float] {
            var out = [Float](repeating: 0, count: starts.count * T)
            for r in starts.indices { for t in 0..<min(R, limit(r)) { out[r * T + starts[r] - 1 + t] = Float(x[r * R + t]) } }
            return out
        }
        let valueMask = perPosition([Double](repeating: 1, count: starts.count * R)) { lengths[$0] + 1 }
        let oldValues = zip(values, valueMask).map { $0 * $1 }
        return (Rollout(sequences: sequences, starts: starts, scores: scores,
                       values: ["old": old, "advantages": perPosition(a.advantages) { lengths[$0] },
                                "kl": perPosition(a.kl) { lengths[$0] }, "values": oldValues,
                                "returns": perPosition(a.returns) { lengths[$0] + 1 }, "value_mask": valueMask],
                       uses: 1), metrics)
    }

    static func batch(_ r: Rollout, pad: Int) throws -> TrainingBatch {
        TrainingBatch(try PaddedBatch(sequences: r.sequences, scoredFrom: r.starts, pad: pad), rowValues: r.scores, positionValues: r.values)
    }

    public func validation(maxBatches: Int) -> [TrainingBatch] { [] }

    struct Saved: Codable { var position: RolloutPosition; var rollout: Rollout? }

    public func savedState() throws -> Data {
        try JSONEncoder().encode(Saved(position: position, rollout: current.flatMap { $0.rollout.uses < iterations ? $0.rollout : nil }))
    }

    public func restore(_ state: Data) throws {
        let saved = try JSONDecoder().decode(Saved.self, from: state)
        try saved.position.requireCount(prompts.count)
        position = saved.position
        current = try saved.rollout.map { (try Self.batch($0, pad: pad), $0) }
    }
}

/// PPO in the training loop, on `PPORollouts`; the value model is trained alongside the policy (pass it to
/// the `Trainer` as a jointly trained model).
public struct PPOObjective: TrainingObjective {
    public let value: TrainableModel
    public var settings: PPO.Settings
    public init(value: TrainableModel, settings: PPO.Settings) { self.value = value; self.settings = settings }

    public func step(_ model: TrainableModel, _ batch: TrainingBatch, balance: BalanceLosses, scale: Float) throws -> ObjectiveResult {
        let v = batch.positionValues
        func values(_ key: String) -> [Float] { v[key] ?? [] }
        let r = try PPO.step(policy: model, value: value, batch: batch.tokens, old: values("old"), advantages: values("advantages"),
                             oldValues: values("values"), returns: values("returns"), valueMask: values("value_mask").map { $0 != 0 },
                             settings: settings, balance: balance, scale: scale)
        let rows = Double(max(batch.tokens.rows, 1))
        let responseTokens = batch.tokens.targets.filter { $0 >= 0 }.count
        return ObjectiveResult(loss: LossBreakdown(crossEntropy: r.policyLoss + settings.valueCoef * r.valueLoss, aux: r.aux, z: 0,
                                                   total: r.loss, tokens: responseTokens),
                               weight: rows,
                               metrics: ["mean_score": batch.rowValues.reduce(0, +) / rows,
                                         // TRL's objective/kl: the per-sequence sum of the KL estimate, averaged.
                                         "kl": Double(values("kl").reduce(0, +)) / rows,
                                         "entropy": r.entropy, "policy_loss": r.policyLoss, "value_loss": r.valueLoss,
                                         "clip_fraction": r.policyClipFraction, "value_clip_fraction": r.valueClipFraction,
                                         "approx_kl": r.approxKL, "response_tokens": Double(responseTokens) / rows])
    }

    public func evaluate(_ model: TrainableModel, _ batch: TrainingBatch, balance: BalanceLosses) throws -> ObjectiveResult {
        throw TrainingError.badArgument("PPO has no validation batches")
    }
}
