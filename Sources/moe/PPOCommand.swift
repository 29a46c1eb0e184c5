import ArgumentParser
import Foundation
import MoETokenizer
import MoETraining

/// `moe ppo --policy DIR --reward DIR --prompts FILE --out DIR`.
struct PPOCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ppo",
        abstract: "RLHF with PPO: policy, frozen reference, reward model and value model (TRL's PPOTrainer algorithm).",
        discussion: """
            --prompts: JSONL, one {"prompt": text or [messages]} per line. Each step samples one response \
            (at --temperature, up to --response-length tokens, ending at an end-of-sequence token) for each of \
            --prompts-per-batch prompts from the current policy, scores it with the reward model (its last \
            token), values every response position with the value model (default: a copy of the reward model), \
            penalises each token by --kl-coef times its KL to the frozen reference (a copy of --policy), computes \
            GAE advantages (--gamma, --lam) and returns, whitens the advantages, and takes --ppo-epochs \
            optimisation steps on that batch: the clipped policy loss plus --vf-coef times the clipped value \
            loss; log-probs are taken at the sampling temperature. The policy goes to OUT, the value model to \
            OUT/value. Mean score, KL, entropy, clip fractions and losses go to metrics.jsonl and metrics.svg.
            """)

    @Option(help: "The policy to train (a Hugging Face directory with tokenizer.json).") var policy: String
    @Option(help: "The reward model (a score head: `moe reward train`).") var reward: String
    @Option(help: "The value model to start from (default: the reward model).") var value: String?
    @Option(help: "Prompts, JSONL.") var prompts: String
    @Option(help: "Output directory.") var out: String
    @Option(help: "Prompts (one response each) per rollout batch.") var promptsPerBatch: Int = 8
    @Option(help: "Most tokens per response.") var responseLength: Int = 53
    @Option(help: "Optimisation steps per rollout batch (above 1, every MPI rank samples every rollout batch: a later use may fall to it).") var ppoEpochs: Int = 4
    @Option(help: "Sampling temperature (the log-probs are taken at it too).") var temperature: Double = 0.7
    @Option(help: "Weight of the per-token KL penalty.") var klCoef: Double = 0.05
    @Option(help: "Per-token KL estimate: k1 or k3.") var klEstimator: String = "k1"
    @Option(help: "Discount.") var gamma: Double = 1
    @Option(help: "GAE λ.") var lam: Double = 0.95
    @Option(help: "Clipping range of the policy ratio.") var cliprange: Double = 0.2
    @Option(help: "Clipping range of the value prediction.") var cliprangeValue: Double = 0.2
    @Option(help: "Weight of the value loss.") var vfCoef: Double = 0.1
    @Option(help: "Subtracted from the score of a response without an end-of-sequence token.") var missingEosPenalty: Double?
    @Flag(help: "Whiten the rewards before GAE.") var whitenRewards = false
    @Flag(help: "Send text prompts through the chat template as a user message.") var chat = false
    @OptionGroup var training: TrainingOptions
    @OptionGroup var runOptions: RunOptions

    func validate() throws {
        if promptsPerBatch < 1 || responseLength < 1 || ppoEpochs < 1 || !(temperature > 0) || klCoef < 0 || !(cliprange > 0)
            || !(cliprangeValue > 0) || vfCoef < 0 || !(0...1).contains(gamma) || !(0...1).contains(lam) {
            throw ValidationError("--prompts-per-batch, --response-length, --ppo-epochs, --temperature, --cliprange and --cliprange-value must be positive; --kl-coef and --vf-coef not negative; --gamma and --lam in [0, 1]")
        }
        guard ["k1", "k3"].contains(klEstimator) else { throw ValidationError("--kl-estimator must be k1 or k3") }
    }

    func run() throws {
        try runOptions.refuseExpertParallel("moe ppo")
        let dataParallel = try runOptions.dataParallel()
        signal(SIGXFSZ, SIG_IGN)
        try TrainingSetup.prepareOutput(out)
        let tokenizer = try Tokenizer(directory: policy)
        let threads = runOptions.threadCount
        let policyModel = try TrainableModel.load(directory: policy, threads: threads)
        let reference = try TrainableModel.load(directory: policy, threads: threads)
        let rewardModel = try TrainableModel.load(directory: reward, threads: threads)
        let valueModel = try TrainableModel.load(directory: value ?? reward, head: .score, threads: threads)
        let encoded = try encodePrompts(try Evaluation.tasks(path: prompts, requireAnswer: false), tokenizer: tokenizer, chat: chat, path: prompts)
        var ppo = PPO.Settings()
        ppo.klCoef = klCoef; ppo.klEstimator = klEstimator; ppo.gamma = gamma; ppo.lambda = lam; ppo.clipRange = cliprange
        ppo.clipRangeValue = cliprangeValue; ppo.valueCoef = vfCoef; ppo.temperature = temperature
        ppo.whitenRewards = whitenRewards; ppo.missingEOSPenalty = missingEosPenalty
        let pad = try tokenizer.padTokenId ?? TrainingSetup.eosToken(tokenizer)
        let batches = try PPORollouts(policy: policyModel, reference: reference, reward: rewardModel, value: valueModel, prompts: encoded,
                                      promptsPerBatch: promptsPerBatch, responseLength: responseLength, iterations: ppoEpochs,
                                      settings: ppo, seed: training.seed, pad: pad)
        // A micro-batch is a rollout batch's use: by default every prompt once, --ppo-epochs uses each.
        let uses = (encoded.count + promptsPerBatch - 1) / promptsPerBatch * ppoEpochs
        let settings = try training.settings(defaultSteps: max(1, uses / training.accumulation), defaultLearningRate: 3e-6)
        let trainer = try Trainer(model: policyModel, settings: settings, batches: batches,
                                  objective: PPOObjective(value: valueModel, settings: ppo), stage: "ppo", out: out,
                                  extraFiles: TrainingSetup.tokenizerFiles(policy), jointlyTrained: [("value", valueModel)],
                                  dataParallel: dataParallel)
        let summary = try runTraining(trainer, resume: runOptions.resume, quiet: runOptions.quiet,
                                      "ppo: \(encoded.count) prompts, \(promptsPerBatch) per rollout, \(settings.steps) steps")
        guard trainer.isWriter else { return }
        let score = trainer.metrics.last?.metrics?["mean_score"] ?? batches.lastMeanScore   // the last step's (every rank's)
        print(String(format: "trained %d steps: last rollout mean score %.3f; wrote %@ (value model in %@/value)", summary.steps,
                     score, out, out))
    }
}
