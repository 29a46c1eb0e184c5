import ArgumentParser
import Foundation
import MoETokenizer
import MoETraining

/// Preference pairs of a JSONL file, split into training and held-out pairs (every k-th), too-long pairs left out.
func preferencePairs(_ path: String, tokenizer: Tokenizer, maxLength: Int, validationFraction: Double)
    throws -> (train: [PreferencePair], held: [PreferencePair]) {
    let all = try PreferenceData.pairs(path: path, tokenizer: tokenizer)
    let kept = all.filter { $0.prompt.count + max($0.chosen.count, $0.rejected.count) <= maxLength }
    if kept.count < all.count { printError("left out \(all.count - kept.count) pairs longer than --seq-len \(maxLength) tokens") }
    let (train, held) = splitForValidation(kept, fraction: validationFraction)
    return (train, held)
}

/// `moe dpo --model DIR --data prefs.jsonl --out DIR [--beta 0.1]`.
struct DPOCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dpo",
        abstract: "Direct preference optimisation (sigmoid loss, as TRL's DPOTrainer) against the frozen starting model.",
        discussion: """
            --data: one {"prompt", "chosen", "rejected"} per line, each text or a list of chat messages (TRL's \
            preference shape). The reference log-probs are computed once, before training, by a frozen copy of \
            --model. Logs the DPO loss, reward accuracy and margin (train and validation) in metrics.jsonl and \
            metrics.svg; the MoE balance losses stay on. OUT is written as `moe pretrain` writes it. With --lora-rank \
            only LoRA adapters are trained (the reference stays the base model) and OUT holds the adapter in PEFT's layout.
            """)

    @Option(help: "The model to align (a Hugging Face directory with tokenizer.json).") var model: String
    @Option(help: "Preference pairs, JSONL.") var data: String
    @Option(help: "Output directory.") var out: String
    @Option(help: "β: how far the policy may move from the reference.") var beta: Double = 0.1
    @OptionGroup var training: TrainingOptions
    @OptionGroup var lora: LoRAOptions
    @OptionGroup var runOptions: RunOptions

    func run() throws {
        signal(SIGXFSZ, SIG_IGN)
        try TrainingSetup.prepareOutput(out)
        let tokenizer = try Tokenizer(directory: model)
        let threads = runOptions.threadCount
        let policy = try TrainableModel.load(directory: model, threads: threads)
        let (train, held) = try preferencePairs(data, tokenizer: tokenizer, maxLength: min(training.seqLen, policy.config.maxPositionEmbeddings),
                                                validationFraction: training.valFraction)
        let pad = try tokenizer.padTokenId ?? TrainingSetup.eosToken(tokenizer)
        let reference = try TrainableModel.load(directory: model, threads: threads)
        let refTrain = try DPO.referenceLogProbs(reference, train, batchSize: training.batch, pad: pad)
        let refHeld = try DPO.referenceLogProbs(reference, held, batchSize: training.batch, pad: pad)
        let batches = try PairBatches(train: train, validation: held, reference: refTrain, validationReference: refHeld,
                                      batchSize: training.batch, pad: pad, seed: training.seed)
        let settings = try training.settings(defaultSteps: (train.count + training.batch - 1) / training.batch, defaultLearningRate: 1e-5)
        let trainer = try Trainer(model: policy, settings: settings, batches: batches, objective: DPOObjective(beta: beta), stage: "dpo",
                                  out: out, extraFiles: TrainingSetup.tokenizerFiles(model),
                                  lora: try lora.adapters(for: policy, base: model, seed: training.seed),
                                  dataParallel: try runOptions.dataParallel())
        let summary = try runTraining(trainer, resume: runOptions.resume, quiet: runOptions.quiet,
                              "dpo: \(train.count) training and \(held.count) validation pairs, β \(beta), \(settings.steps) steps of \(training.batch) pairs")
        guard trainer.isWriter else { return }
        print(String(format: "aligned %d steps: DPO loss %.4f, validation loss %@; wrote %@", summary.steps, summary.trainLoss,
                     summary.validationLoss.map { String(format: "%.4f", $0) } ?? "n/a", out))
    }
}

/// `moe reward train|score`.
struct RewardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reward",
        abstract: "Reward models: a scalar head on the MoE backbone, trained on preference pairs.",
        subcommands: [RewardTrain.self, RewardScore.self])
}

struct RewardTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a reward model (Bradley–Terry loss, as TRL's RewardTrainer) from a language model or reward model.",
        discussion: """
            --data: TRL's preference shape (see `moe dpo`). The score head reads the final hidden state of each \
            sequence's last token; starting from a language model it is initialised as HF does. OUT is a Hugging \
            Face directory that AutoModelForSequenceClassification loads (score.weight, one label). Logs the loss \
            and pairwise accuracy (train and held-out).
            """)

    @Option(help: "A language model or reward model directory (with tokenizer.json).") var model: String
    @Option(help: "Preference pairs, JSONL.") var data: String
    @Option(help: "Output directory.") var out: String
    @OptionGroup var training: TrainingOptions
    @OptionGroup var runOptions: RunOptions

    func run() throws {
        signal(SIGXFSZ, SIG_IGN)
        try TrainingSetup.prepareOutput(out)
        let tokenizer = try Tokenizer(directory: model)
        let scorer = try TrainableModel.load(directory: model, head: .score, threads: runOptions.threadCount)
        let (train, held) = try preferencePairs(data, tokenizer: tokenizer, maxLength: min(training.seqLen, scorer.config.maxPositionEmbeddings),
                                                validationFraction: training.valFraction)
        let pad = try tokenizer.padTokenId ?? TrainingSetup.eosToken(tokenizer)
        let batches = try PairBatches(train: train, validation: held, batchSize: training.batch, pad: pad, seed: training.seed,
                                      wholeSequences: true)
        let settings = try training.settings(defaultSteps: (train.count + training.batch - 1) / training.batch, defaultLearningRate: 1e-4)
        let trainer = try Trainer(model: scorer, settings: settings, batches: batches, objective: RewardObjective(), stage: "reward",
                                  out: out, extraFiles: TrainingSetup.tokenizerFiles(model), dataParallel: try runOptions.dataParallel())
        let summary = try runTraining(trainer, resume: runOptions.resume, quiet: runOptions.quiet,
                              "reward: \(train.count) training and \(held.count) validation pairs, \(settings.steps) steps of \(training.batch) pairs")
        guard trainer.isWriter else { return }
        print(String(format: "trained %d steps: loss %.4f, validation loss %@; wrote %@", summary.steps, summary.trainLoss,
                     summary.validationLoss.map { String(format: "%.4f", $0) } ?? "n/a", out))
    }
}

struct RewardScore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Score texts with a reward model, or measure its pairwise accuracy on preference pairs.",
        discussion: "The last line is JSON: {\"scores\": […]} for --text, {\"accuracy\", \"pairs\", \"mean_margin\"} for --data.")

    @Option(help: "A reward model directory (score.weight, tokenizer.json).") var model: String
    @Option(parsing: .upToNextOption, help: "Texts to score.") var text: [String] = []
    @Option(help: "Preference pairs, JSONL: report how often chosen scores above rejected.") var data: String?
    @Option(help: "Worker threads (default: the number of cores).") var threads: Int?

    func validate() throws {
        if text.isEmpty == (data == nil) { throw ValidationError("give --text or --data") }
    }

    func run() throws {
        let tokenizer = try Tokenizer(directory: model)
        let scorer = try TrainableModel.load(directory: model, threads: threads ?? ProcessInfo.processInfo.activeProcessorCount)
        guard scorer.head == .score else { throw ValidationError("\(model) has no score head (score.weight): train one with `moe reward train`") }
        let pad = try tokenizer.padTokenId ?? TrainingSetup.eosToken(tokenizer)
        if let data {
            let pairs = try PreferenceData.pairs(path: data, tokenizer: tokenizer)
            var right = 0, margin = 0.0
            for p in pairs {
                let batch = try RewardModeling.batch(chosen: [p.prompt + p.chosen], rejected: [p.prompt + p.rejected], pad: pad)
                let s = try RewardModeling.scores(scorer, batch)
                if s[0] > s[1] { right += 1 }
                margin += s[0] - s[1]
            }
            printError(String(format: "chosen above rejected in %d of %d pairs", right, pairs.count))
            print(String(format: "{\"accuracy\": %.6f, \"pairs\": %d, \"mean_margin\": %.6f}", Double(right) / Double(pairs.count),
                         pairs.count, margin / Double(pairs.count)))
        } else {
            var scores: [Double] = []
            for t in text {
                let ids = tokenizer.encode(t, addSpecialTokens: false)
                guard !ids.isEmpty else { throw ValidationError("an empty text has nothing to score") }
                let batch = try PaddedBatch(sequences: [ids], targets: [Int32](repeating: -100, count: ids.count), pad: pad)
                scores.append(try RewardModeling.scores(scorer, batch)[0])
            }
            print("{\"scores\": [\(scores.map { String(format: "%.6f", $0) }.joined(separator: ", "))]}")
        }
    }
}
