import Foundation
import MoEModel
import MoETokenizer

/// A verifiable (or learned) reward for a completion of a task's prompt.
public enum CompletionReward {
    /// 1 when the completion's answer (GSM8K `####`, or its final number) equals the task's answer.
    case exactAnswer
    /// 1 when the completion matches the pattern (a format reward).
    case regex(NSRegularExpression)
    /// A reward model's score of prompt + completion.
    case model(TrainableModel)

    /// `exact-answer`, `regex:PATTERN` or `model:DIR`; a reward model must share the policy's vocabulary.
    public static func parse(_ spec: String, vocabularySize: Int) throws -> CompletionReward {
        if spec == "exact-answer" { return .exactAnswer }
        if spec.hasPrefix("regex:") {
            do { return .regex(try NSRegularExpression(pattern: String(spec.dropFirst(6)))) } catch {
                throw TrainingError.badArgument("--reward \(spec): not a valid regular expression")
            }
        }
        if spec.hasPrefix("model:") {
            let dir = String(spec.dropFirst(6))
            let m = try TrainableModel.load(directory: dir)
            guard m.head == .score else { throw TrainingError.badArgument("--reward \(spec): \(dir) has no score head (train one with `moe reward train`)") }
            guard m.config.vocabSize == vocabularySize else {
                throw TrainingError.badArgument("--reward \(spec): the reward model's vocabulary (\(m.config.vocabSize)) differs from the policy's (\(vocabularySize))")
            }
            return .model(m)
        }
        throw TrainingError.badArgument("--reward must be exact-answer, regex:PATTERN or model:DIR")
    }

    func score(completion: String, ids: [Int], prompt: [Int], answer: String, pad: Int) throws -> Double {
        switch self {
        case .exactAnswer:
            return Evaluation.extractAnswer(completion, regex: nil).map { Evaluation.sameAnswer($0, Evaluation.expectedAnswer(answer)) ? 1 : 0 } ?? 0
        case let .regex(re):
            return re.firstMatch(in: completion, range: NSRange(completion.startIndex..., in: completion)) != nil ? 1 : 0
        case let .model(m):
            let all = prompt + ids
            let batch = try PaddedBatch(sequences: [all], targets: [Int32](repeating: -100, count: all.count), pad: pad)
            return try RewardModeling.scores(m, batch)[0]
        }
    }
}

/// Where GRPO's and PPO's rollouts stand: the prompts' seeded order and the rollouts made so far (which seed
/// the samples).
struct RolloutPosition: Codable, EpochPosition {
    var epoch = 0, index = 0, rollouts = 0
    var count: Int

    /// Sampling at `temperature` with the seed of sample `sample` of the current rollout.
    func sampling(_ temperature: Double, seed: UInt64, sample: Int) -> SamplingParameters {
        SamplingParameters(temperature: Float(temperature), seed: seed &+ UInt64(rollouts) &* 1_000_003 &+ UInt64(sample))
    }

    /// Moves past a rollout batch of `prompts` prompts as making it would, without sampling it (another MPI rank's).
    mutating func passOver(_ prompts: Int, seed: UInt64) {
        _ = take(prompts, seed: seed)
        rollouts += 1
    }

    func requireCount(_ prompts: Int) throws {
        guard count == prompts else { throw TrainingError.resume("the prompts changed (\(prompts) now, \(count) in the checkpoint)") }
    }
}

extension TrainableModel {
    /// A rollout batch: every sequence sampled together through the model as the inference engine runs it
    /// (`inferenceModel`: the weights in memory, one decode pass a step for every sequence), `prompts[i]` with
    /// `sampling[i]`. Returns the completions and the figures for the step's metrics.
    func sampleRollouts(prompts: [[Int]], maxTokens: Int, sampling: [SamplingParameters])
        throws -> (generations: [Generation], metrics: [String: Double]) {
        let started = Date()
        let generations = try inferenceModel().generate(prompts: prompts, maxTokens: maxTokens, sampling: sampling)
        let seconds = max(Date().timeIntervalSince(started), 1e-9)
        let tokens = generations.reduce(0) { $0 + $1.tokens.count }
        return (generations, ["rollout_tokens_per_s": Double(tokens) / seconds, "rollout_seconds": seconds])
    }
}

/// GRPO's batches, made online: `promptsPerBatch` prompts (in a seeded order, epoch after epoch), `group`
/// completions each sampled from the current policy (all of the batch together, through the inference engine
/// over the policy's weights in memory), scored, and turned into group-normalised advantages; the
/// sampling policy's and the reference's log-probs are kept per position. Each rollout batch is used for
/// `iterations` optimisation steps (so the clipped ratio matters from the second on).
public final class RolloutBatches: BatchSource {
    let policy: TrainableModel, reference: TrainableModel?
    let tokenizer: Tokenizer
    let prompts: [(ids: [Int], answer: String)]
    let group: Int, promptsPerBatch: Int, maxNewTokens: Int, iterations: Int
    let reward: CompletionReward
    let seed: UInt64, pad: Int
    /// Sampling temperature; the old and reference log-probs are taken at it too.
    let temperature: Double
    public let batchSize: Int, seqLen: Int
    var position: RolloutPosition
    var current: TrainingBatch?
    var uses = 0
    /// The rollout batch being optimised, kept in checkpoints so that a run resumed between two of its
    /// `iterations` goes on with the same samples.
    struct Rollout: Codable {
        var sequences: [[Int]], starts: [Int], advantages: [Double], values: [String: [Float]], uses: Int
    }
    var currentRollout: Rollout?
    /// Mean reward of the last rollout batch.
    public private(set) var lastMeanReward = 0.0

    public init(policy: TrainableModel, reference: TrainableModel?, tokenizer: Tokenizer, prompts: [(ids: [Int], answer: String)],
                group: Int, promptsPerBatch: Int, maxNewTokens: Int, iterations: Int, reward: CompletionReward,
                seed: UInt64, pad: Int, temperature: Double = 1) throws {
        guard temperature > 0, temperature.isFinite else { throw TrainingError.badArgument("the sampling temperature must be positive") }
        guard !prompts.isEmpty else { throw TrainingError.badArgument("no prompts") }
        guard group >= 2 else { throw TrainingError.badArgument("GRPO needs at least 2 completions per prompt") }
        self.policy = policy; self.reference = reference; self.tokenizer = tokenizer; self.prompts = prompts
        self.group = group; self.promptsPerBatch = promptsPerBatch; self.maxNewTokens = maxNewTokens
        self.iterations = max(1, iterations); self.reward = reward; self.seed = seed; self.pad = pad
        self.temperature = temperature
        batchSize = group * promptsPerBatch
        seqLen = prompts.map(\.ids.count).max()! + maxNewTokens
        position = RolloutPosition(count: prompts.count)
        guard seqLen <= policy.config.maxPositionEmbeddings else {
            throw TrainingError.badArgument("prompt + --max-new-tokens (\(seqLen)) exceeds the model's context (\(policy.config.maxPositionEmbeddings))")
        }
    }

    public func next() throws -> TrainingBatch {
        if var current, uses < iterations {
            uses += 1; currentRollout?.uses = uses
            current.metrics = [:]
            return current
        }
        let b = try rollout()
        current = b; uses = 1
        return b
    }

    /// Another rank's micro-batch: a further use of the current rollout costs nothing; a new rollout is only
    /// drawn (its prompts and seed passed over) when each is used once, else made, since this rank may train on
    /// one of its later uses (with the weights of the moment it is first used, as in one process).
    public func skip() throws {
        if current != nil, uses < iterations {
            uses += 1; currentRollout?.uses = uses
        } else if iterations == 1 {
            position.passOver(promptsPerBatch, seed: seed)
            current = nil; currentRollout = nil
        } else {
            _ = try next()
        }
    }

    func rollout() throws -> TrainingBatch {
        var questions: [[Int]] = [], answers: [String] = [], sampling: [SamplingParameters] = []
        for index in position.take(promptsPerBatch, seed: seed) {
            for g in 0..<group {
                sampling.append(position.sampling(temperature, seed: seed, sample: questions.count * 7 + g))
                questions.append(prompts[index].ids); answers.append(prompts[index].answer)
            }
        }
        let (generations, rolloutMetrics) = try policy.sampleRollouts(prompts: questions, maxTokens: maxNewTokens, sampling: sampling)
        var sequences: [[Int]] = [], starts: [Int] = [], rewards: [Double] = []
        for (i, gen) in generations.enumerated() {
            let text = tokenizer.decode(gen.tokens, skipSpecialTokens: true)
            rewards.append(try reward.score(completion: text, ids: gen.tokens, prompt: questions[i], answer: answers[i], pad: pad))
            sequences.append(questions[i] + gen.tokens); starts.append(questions[i].count)
        }
        position.rollouts += 1
        lastMeanReward = rewards.reduce(0, +) / Double(rewards.count)
        let tokens = try PaddedBatch(sequences: sequences, scoredFrom: starts, pad: pad)
        let old = try policy.tokenLogProbs(tokens, temperature: Float(temperature))
        var values = ["old": old, "reward": rewards.map(Float.init)]
        if let reference { values["reference"] = try reference.tokenLogProbs(tokens, temperature: Float(temperature)) }
        let advantages = GRPO.advantages(rewards: rewards, groupSize: group)
        currentRollout = Rollout(sequences: sequences, starts: starts, advantages: advantages, values: values, uses: 1)
        var batch = TrainingBatch(tokens, rowValues: advantages, positionValues: values)
        batch.metrics = rolloutMetrics
        return batch
    }

    public func validation(maxBatches: Int) -> [TrainingBatch] { [] }

    struct Saved: Codable { var position: RolloutPosition; var rollout: Rollout? }

    public func savedState() throws -> Data {
        try JSONEncoder().encode(Saved(position: position, rollout: uses < iterations ? currentRollout : nil))
    }

    public func restore(_ state: Data) throws {
        let saved = try JSONDecoder().decode(Saved.self, from: state)
        try saved.position.requireCount(prompts.count)
        position = saved.position; current = nil; uses = 0; currentRollout = saved.rollout
        if let r = saved.rollout {
            current = TrainingBatch(try PaddedBatch(sequences: r.sequences, scoredFrom: r.starts, pad: pad), rowValues: r.advantages,
                                    positionValues: r.values)
            uses = r.uses
        }
    }
}

/// GRPO in the training loop, on `RolloutBatches`.
public struct GRPOObjective: TrainingObjective {
    public var settings: GRPO.Settings
    public init(settings: GRPO.Settings) { self.settings = settings }

    public func step(_ model: TrainableModel, _ batch: TrainingBatch, balance: BalanceLosses, scale: Float) throws -> ObjectiveResult {
        let b = batch.tokens
        let completionTokens = b.targets.filter { $0 >= 0 }.count
        let r = try GRPO.step(policy: model, batch: b, oldLogProbs: batch.positionValues["old"] ?? [],
                              referenceLogProbs: batch.positionValues["reference"], advantages: batch.rowValues, settings: settings,
                              tokensInBatch: completionTokens, balance: balance, scale: scale)
        let rewards = batch.positionValues["reward"] ?? []
        return ObjectiveResult(loss: LossBreakdown(crossEntropy: r.policyLoss, aux: r.aux, z: 0, total: r.loss, tokens: completionTokens),
                               weight: Double(b.rows),
                               metrics: ["mean_reward": Double(rewards.reduce(0, +)) / Double(max(rewards.count, 1)), "kl": r.kl,
                                         "clip_fraction": r.clipFraction, "entropy": r.entropy,
                                         "completion_tokens": Double(completionTokens) / Double(max(b.rows, 1))])
    }

    public func evaluate(_ model: TrainableModel, _ batch: TrainingBatch, balance: BalanceLosses) throws -> ObjectiveResult {
        throw TrainingError.badArgument("GRPO has no validation batches")
    }
}
