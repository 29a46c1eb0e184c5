import ArgumentParser
import Foundation
import MoETokenizer
import MoETraining

/// `moe grpo --model DIR --prompts FILE --reward exact-answer|regex:PATTERN|model:DIR --out DIR`.
struct GRPOCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grpo",
        abstract: "Group relative policy optimisation with verifiable rewards (TRL's GRPO loss: dapo, clipped ratio, k3 KL).",
        discussion: """
            --prompts: JSONL, one {"prompt": text or [messages], "answer": …} per line. Each step samples --group \
            completions (at --temperature) for each of --prompts-per-batch prompts from the current policy, scores \
            them (exact-answer: the completion's final number or GSM8K `#### N` equals the answer; regex:PATTERN: \
            the completion matches; model:DIR: a reward model's score), normalises the rewards within each group, \
            and takes --iterations optimisation steps on that batch (the ratio to the sampling policy is clipped \
            at 1 ± --epsilon). --beta > 0 adds the KL to a frozen copy of --model. Mean reward, KL and clip \
            fraction go to metrics.jsonl and metrics.svg; the MoE balance losses stay on.
            """)

    @Option(help: "The policy to train (a Hugging Face directory with tokenizer.json).") var model: String
    @Option(help: "Prompts with answers, JSONL.") var prompts: String
    @Option(help: "exact-answer, regex:PATTERN or model:DIR.") var reward: String = "exact-answer"
    @Option(help: "Output directory.") var out: String
    @Option(help: "Completions per prompt (G).") var group: Int = 8
    @Option(help: "Prompts per rollout batch.") var promptsPerBatch: Int = 2
    @Option(help: "Most tokens per completion.") var maxNewTokens: Int = 64
    @Option(help: "Optimisation steps per rollout batch (above 1, every MPI rank samples every rollout batch: a later use may fall to it).") var iterations: Int = 1
    @Option(help: "Weight of the KL to the starting model (0: no reference model).") var beta: Double = 0
    @Option(help: "Clipping range of the ratio.") var epsilon: Double = 0.2
    @Option(help: "Sampling temperature (the log-probs are taken at it too, as TRL does).") var temperature: Double = 1
    @Flag(help: "Send text prompts through the chat template as a user message.") var chat = false
    @OptionGroup var training: TrainingOptions
    @OptionGroup var runOptions: RunOptions

    func validate() throws {
        if group < 2 || promptsPerBatch < 1 || maxNewTokens < 1 || iterations < 1 || beta < 0 || !(epsilon > 0) || !(temperature > 0) {
            throw ValidationError("--group must be at least 2; --prompts-per-batch, --max-new-tokens, --iterations positive; --beta ≥ 0; --epsilon and --temperature > 0")
        }
    }

    func run() throws {
        try runOptions.refuseExpertParallel("moe grpo")
        let dataParallel = try runOptions.dataParallel()
        signal(SIGXFSZ, SIG_IGN)
        try TrainingSetup.prepareOutput(out)
        let tokenizer = try Tokenizer(directory: model)
        let threads = runOptions.threadCount
        let policy = try TrainableModel.load(directory: model, threads: threads)
        let rewardFunction = try CompletionReward.parse(reward, vocabularySize: policy.config.vocabSize)
        let tasks = try Evaluation.tasks(path: prompts)
        let encoded = zip(try encodePrompts(tasks, tokenizer: tokenizer, chat: chat, path: prompts), tasks).map { (ids: $0, answer: $1.answer) }
        let reference = beta > 0 ? try TrainableModel.load(directory: model, threads: threads) : nil
        let pad = try tokenizer.padTokenId ?? TrainingSetup.eosToken(tokenizer)
        let batches = try RolloutBatches(policy: policy, reference: reference, tokenizer: tokenizer, prompts: encoded, group: group,
                                         promptsPerBatch: promptsPerBatch, maxNewTokens: maxNewTokens, iterations: iterations,
                                         reward: rewardFunction, seed: training.seed, pad: pad,
                                         temperature: temperature)
        // A micro-batch is a rollout batch's use: by default every prompt once, `iterations` uses each.
        let uses = (encoded.count + promptsPerBatch - 1) / promptsPerBatch * iterations
        let settings = try training.settings(defaultSteps: max(1, uses / training.accumulation), defaultLearningRate: 1e-5)
        let trainer = try Trainer(model: policy, settings: settings, batches: batches,
                                  objective: GRPOObjective(settings: GRPO.Settings(beta: beta, epsilon: epsilon, temperature: temperature)), stage: "grpo",
                                  out: out, extraFiles: TrainingSetup.tokenizerFiles(model), dataParallel: dataParallel)
        let summary = try runTraining(trainer, resume: runOptions.resume, quiet: runOptions.quiet,
                              "grpo: \(encoded.count) prompts, \(group) completions each, \(settings.steps) steps")
        guard trainer.isWriter else { return }
        // The last step's mean over its rollouts (under MPI, every rank's).
        let reward = trainer.metrics.last?.metrics?["mean_reward"] ?? batches.lastMeanReward
        print(String(format: "trained %d steps: last rollout mean reward %.3f; wrote %@", summary.steps, reward, out))
    }
}

/// RL prompts as token ids: chat messages through the template, text as it is (or as a user message with `chat`).
func encodePrompts(_ tasks: [Evaluation.Task], tokenizer: Tokenizer, chat: Bool, path: String) throws -> [[Int]] {
    try tasks.map { t in
        let ids: [Int]
        if let m = t.messages { ids = try tokenizer.encodeChat(m) }
        else if chat { ids = try tokenizer.encodeChat([ChatMessage(role: "user", content: t.prompt ?? "")]) }
        else { ids = tokenizer.encode(t.prompt ?? "", addSpecialTokens: false) }
        guard !ids.isEmpty else { throw ValidationError("\(path): an empty prompt") }
        return ids
    }
}
