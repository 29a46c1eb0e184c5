import ArgumentParser
import Foundation
import MoEFormats
import MoETokenizer
import MoETraining

/// Training settings shared by `moe pretrain` and `moe demo`.
/// The run controls every training command shares.
struct RunOptions: ParsableArguments {
    @Option(help: "Worker threads (default: the number of cores).") var threads: Int?
    @Flag(help: "Continue from the newest checkpoint in OUT (weights, optimizer, data order, step).") var resume = false
    @Flag(help: "No progress bar.") var quiet = false
    @Flag(help: "Data parallel over MPI (implied when started by mpirun; needs Open MPI's libmpi.so.40): each rank runs its share of every step's --accumulation micro-batches, the global batch; rank 0 writes OUT.")
    var distributed = false
    @Option(help: "Expert parallel over N MPI ranks (N = the ranks of mpirun -np): the experts of every MoE layer are split across the ranks and tokens travel to their experts' owners and back; the rest of the model is data parallel.")
    var expertParallel: Int?
    @Flag(help: "ZeRO-1 under MPI: each rank keeps AdamW's moments for its share of the parameters only (1/N of their memory) and steps that share; the updated weights are gathered after every step.")
    var shardOptimizer = false

    var threadCount: Int { threads ?? ProcessInfo.processInfo.activeProcessorCount }

    /// Data parallelism (with the experts split across the ranks when asked) when asked for or started by mpirun.
    func dataParallel() throws -> DataParallel? {
        guard let dp = try DataParallel.world(required: distributed || expertParallel != nil || shardOptimizer) else { return nil }
        if let n = expertParallel, n != dp.ranks {
            throw ValidationError("--expert-parallel \(n) must equal the number of MPI ranks (\(dp.ranks)): start it with mpirun -np \(n)")
        }
        return DataParallel(dp.communicator, expertParallel: expertParallel != nil, shardsOptimizer: shardOptimizer)
    }

    /// For the stages that sample from the whole model on every rank (GRPO, PPO): data parallel only.
    func refuseExpertParallel(_ command: String) throws {
        if expertParallel != nil {
            throw ValidationError("\(command) samples rollouts from every expert on every rank: it runs data parallel, not --expert-parallel (moe pretrain, sft and dpo do)")
        }
    }
}

struct TrainingOptions: ParsableArguments {
    @Option(help: "Optimizer steps (default: 1000 for pre-training, one epoch for fine-tuning).") var steps: Int?
    @Option(help: "Sequences per micro-batch.") var batch: Int = 8
    @Option(help: "Tokens per sequence.") var seqLen: Int = 128
    @Option(help: "Micro-batches per optimizer step (gradient accumulation).") var accumulation: Int = 1
    @Option(help: "Peak learning rate (default: 3e-3 for pre-training, 1e-4 for fine-tuning).") var lr: Double?
    @Option(help: "Learning-rate schedule after warm-up: cosine, wsd (warmup-stable-decay) or constant.") var schedule: String = "cosine"
    @Option(help: "Warm-up steps.") var warmup: Int = 50
    @Option(help: "Final learning rate as a fraction of the peak (cosine).") var minLrRatio: Double = 0.1
    @Option(help: "AdamW weight decay (matrices only; none on norms and biases).") var weightDecay: Double = 0.1
    @Option(help: "Clip the global gradient norm to this (0: off).") var gradClip: Double = 1.0
    @Option(help: "Weight of the Switch-style auxiliary load-balancing loss.") var auxLossCoef: Double = 0.01
    @Option(help: "Weight of the router z-loss.") var zLossCoef: Double = 0
    @Option(help: "Weight of DeepSeek-V3's sequence-wise balance loss (per sequence and MoE layer: Σ f_i·P_i).")
    var seqAuxLossCoef: Double = 0
    @Option(help: "γ of DeepSeek-V3's auxiliary-loss-free balancing: a per-expert selection bias nudged after each step (0: off).")
    var biasUpdateRate: Double = 0
    @Option(help: "Random seed (initialisation and data order).") var seed: UInt64 = 1234
    @Option(help: "Validation every N steps (0: only at the end).") var evalEvery: Int = 100
    @Option(help: "Validation batches.") var evalBatches: Int = 8
    @Option(help: "Checkpoint every N steps (0: only at the end).") var checkpointEvery: Int = 200
    @Option(help: "Expert load logged every N steps.") var logEvery: Int = 10
    @Option(help: "Fraction of the documents held out for validation.") var valFraction: Double = 0.05
    @Option(help: "dtype of the model files at the top of OUT: f32, bf16 or f16 (checkpoints stay f32, for an exact resume).")
    var saveDtype: String = "f32"
    @Flag(help: "gpt-oss: the experts of the model files at the top of OUT as MXFP4 blocks and scales, as its hub checkpoints keep them.")
    var saveMxfp4 = false

    /// The settings, with the command's defaults for the options left out.
    func settings(defaultSteps: Int, defaultLearningRate: Double) throws -> TrainingSettings {
        let steps = self.steps ?? defaultSteps, lr = self.lr ?? defaultLearningRate
        guard LearningRateSchedule.named(schedule, warmup: warmup) != nil else {
            throw ValidationError("--schedule must be cosine, wsd or constant")
        }
        guard lr > 0, lr.isFinite else { throw ValidationError("--lr must be positive") }
        guard steps > 0, batch > 0, seqLen > 1, accumulation > 0, warmup >= 0, logEvery > 0, evalBatches > 0 else {
            throw ValidationError("--steps, --batch, --accumulation, --log-every and --eval-batches must be positive, --seq-len at least 2, --warmup not negative")
        }
        guard (0...1).contains(minLrRatio) else { throw ValidationError("--min-lr-ratio must be between 0 and 1") }
        guard (0..<1).contains(valFraction) else { throw ValidationError("--val-fraction must be in [0, 1)") }
        guard evalEvery >= 0, checkpointEvery >= 0 else { throw ValidationError("--eval-every and --checkpoint-every must not be negative") }
        var s = TrainingSettings()
        s.steps = steps; s.batchSize = batch; s.seqLen = seqLen; s.accumulation = accumulation
        s.learningRate = lr; s.schedule = schedule; s.warmup = warmup; s.minLearningRateRatio = minLrRatio
        s.adam.weightDecay = Float(weightDecay); s.gradClip = gradClip > 0 ? gradClip : nil
        guard seqAuxLossCoef >= 0 else { throw ValidationError("--seq-aux-loss-coef must be ≥ 0") }
        s.balance = BalanceLosses(auxLossCoef: auxLossCoef, zLossCoef: zLossCoef, sequenceAuxLossCoef: seqAuxLossCoef)
        s.biasUpdateRate = biasUpdateRate > 0 ? biasUpdateRate : nil
        s.seed = seed; s.evalEvery = evalEvery == 0 ? Int.max : evalEvery; s.evalBatches = evalBatches
        s.checkpointEvery = checkpointEvery == 0 ? Int.max : checkpointEvery; s.logEvery = logEvery
        guard ["f32", "bf16", "f16"].contains(saveDtype) else { throw ValidationError("--save-dtype must be f32, bf16 or f16") }
        if saveDtype != "f32" { s.saveDType = saveDtype }
        if saveMxfp4 { s.saveMXFP4Experts = true }
        return s
    }
}

/// DeepSeek-V3's multi-token prediction, for `moe pretrain` and `moe sft`.
struct MTPOptions: ParsableArguments {
    @Option(help: "Train DeepSeek-V3's multi-token-prediction module beside the model (1; 0: none): one more decoder layer that predicts the token after next, saved as layer num_hidden_layers the way DeepSeek-V3 and GLM-4.5 checkpoints hold it, used by `moe generate --speculative mtp`. Default: none for pre-training, the checkpoint's for fine-tuning.")
    var mtpDepth: Int?
    @Option(help: "λ of the multi-token-prediction loss: the loss is CE + λ·CE(token after next).") var mtpLossWeight: Double = 0.3

    func validate() throws {
        if let d = mtpDepth, !(0...1).contains(d) { throw ValidationError("--mtp-depth must be 0 or 1 (deeper modules are not supported)") }
        guard mtpLossWeight >= 0, mtpLossWeight.isFinite else { throw ValidationError("--mtp-loss-weight must be ≥ 0") }
    }
}

/// `moe pretrain --config PRESET|config.json --data FILE… --tokenizer DIR --out DIR`.
struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pre-train a (mixture-of-experts) model from scratch on text files.",
        discussion: """
            Text files are one document each; .jsonl files hold one {"text": …} per line. Documents are tokenized \
            once into OUT/data, separated by EOS and packed into sequences. OUT receives the model as a Hugging \
            Face directory (config.json, model.safetensors, tokenizer files), checkpoint-N/ directories with \
            optimizer and trainer state (the two newest kept), metrics.jsonl, loss.svg and expert_load.svg. \
            Presets (vocabulary sized to the tokenizer; -next: the hybrid qwen3_next layout, else qwen3_moe): \(ModelPreset.names.joined(separator: ", ")).
            """)

    @Option(help: "A preset (tiny, small, bench-small, tiny-next, small-next) or a config.json of any supported architecture.") var config: String
    @Option(parsing: .upToNextOption, help: "Training text: .txt (one document each) or .jsonl ({\"text\": …} per line).")
    var data: [String] = []
    @Option(help: "Directory with tokenizer.json (e.g. from `moe tokenizer train`).") var tokenizer: String
    @Option(help: "Output directory.") var out: String
    @OptionGroup var training: TrainingOptions
    @OptionGroup var mtp: MTPOptions
    @OptionGroup var runOptions: RunOptions

    func validate() throws {
        if data.isEmpty { throw ValidationError("give at least one --data FILE") }
    }

    func run() throws {
        signal(SIGXFSZ, SIG_IGN)   // a file-size limit (full disk) becomes a write error, not a kill
        try TrainingSetup.prepareOutput(out)
        let tok = try Tokenizer(directory: tokenizer)
        let eos = try TrainingSetup.eosToken(tok)
        var settings = try training.settings(defaultSteps: 1000, defaultLearningRate: 3e-3)
        settings.mtpLossWeight = mtp.mtpLossWeight
        let modelConfig = try TrainingSetup.modelConfig(config, tokenizer: tok, eosToken: eos)
        let dataParallel = try runOptions.dataParallel()
        // Under MPI rank 0 tokenizes into OUT/data first; the others then find the shards there.
        let shards = { try TrainingSetup.shards(dataFiles: data, tokenizer: tok, eosToken: eos, validationFraction: training.valFraction, out: out) }
        let (train, validation) = try dataParallel.map { try $0.rankZeroFirst(shards) } ?? shards()
        let model = try TrainableModel(config: modelConfig, selectionBias: settings.biasUpdateRate != nil,
                                       mtpDepth: mtp.mtpDepth ?? 0, threads: runOptions.threadCount)
        model.initialize(seed: settings.seed)
        let trainer = try Trainer(model: model, settings: settings, train: train, validation: validation, out: out,
                                  extraFiles: TrainingSetup.tokenizerFiles(tokenizer), dataParallel: dataParallel)
        let summary = try runTraining(trainer, resume: runOptions.resume, quiet: runOptions.quiet,
                              "model: \(modelConfig.modelType), \(model.store.parameterCount) parameters\(model.mtpDepth > 0 ? " (with the multi-token-prediction module)" : ""); data: \(train.count) training tokens, \(validation.count) validation tokens")
        guard trainer.isWriter else { return }
        print(String(format: "trained %d steps: loss %.4f, validation loss %@, %.0f tokens/s; wrote %@",
                     summary.steps, summary.trainLoss, summary.validationLoss.map { String(format: "%.4f", $0) } ?? "n/a",
                     summary.tokensPerSecond, out))
    }
}

/// The end of every training command: resume when asked, say what is trained, run with the progress bar.
func runTraining(_ trainer: Trainer, resume: Bool, quiet: Bool, _ description: String) throws -> TrainingSummary {
    if resume {
        if try trainer.resume() { printError("resumed from \(trainer.out)/checkpoint-\(trainer.step)") }
        else { printError("no checkpoint in \(trainer.out): starting from step 0") }
    }
    // Under MPI rank 0 speaks for the run.
    if let dp = trainer.dataParallel, !dp.isWriter { return try trainer.run() }
    if let dp = trainer.dataParallel {
        printError("data parallel: \(dp.ranks) MPI ranks, \(trainer.settings.accumulation / dp.ranks) micro-batch(es) each per step"
                   + (dp.expertParallel ? "; expert parallel: each rank runs \(trainer.model.expertCount / dp.ranks) of the \(trainer.model.expertCount) experts of every MoE layer" : ""))
    }
    printError(description)
    let bar = ProgressBar(quiet: quiet)
    let summary = try trainer.run { bar.show($0) }
    bar.finish()
    return summary
}

extension ProgressBar {
    /// One training step's line (a validation result is printed in a log file whatever the tenth).
    func show(_ p: TrainingProgressLine) {
        show(p.text, fraction: Double(p.step) / Double(max(p.steps, 1)), force: p.validationLoss != nil)
    }
}
