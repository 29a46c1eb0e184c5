import Foundation
import MoEFormats
import MoEKernels
import MoETokenizer

/// Settings of a pre-training run (saved in every checkpoint; a resumed run keeps them).
public struct TrainingSettings: Codable, Sendable, Equatable {
    public var steps = 1000
    public var batchSize = 8
    public var seqLen = 128
    /// Micro-batches per optimizer step (gradient accumulation).
    public var accumulation = 1
    public var learningRate = 3e-3
    public var schedule = "cosine"
    public var warmup = 50
    public var minLearningRateRatio = 0.1
    public var adam = AdamW.Settings()
    public var gradClip: Double? = 1.0
    public var balance = BalanceLosses(auxLossCoef: 0.01)
    /// γ of DeepSeek-V3's auxiliary-loss-free balancing (nil: off).
    public var biasUpdateRate: Double?
    public var seed: UInt64 = 1234
    public var evalEvery = 100
    public var evalBatches = 8
    public var checkpointEvery = 200
    public var logEvery = 10
    /// Stop (and checkpoint) after this many seconds of training, whatever `steps` says.
    public var timeLimit: Double?
    /// λ of the multi-token-prediction loss, where the model has the module (nil: the model's default, 0.3).
    public var mtpLossWeight: Double?
    /// The model files at the top of OUT: their dtype (nil: f32) and gpt-oss's experts as MXFP4. Checkpoints stay
    /// f32, so that a resumed run continues exactly.
    public var saveDType: String?
    public var saveMXFP4Experts: Bool?

    public init() {}
}

/// What a finished run reports.
public struct TrainingSummary: Codable, Sendable {
    public var steps: Int
    public var tokens: Int
    public var seconds: Double
    public var tokensPerSecond: Double
    public var trainLoss: Double
    public var validationLoss: Double?
    /// Fraction of top-k choices per expert, per MoE layer, over this run (since the start or the resume).
    public var expertLoad: [[Double]]
}

/// The pre-training loop: batches from the token shards → forward/backward (cross-entropy + balance losses)
/// → gradient clipping → AdamW with the schedule's learning rate → expert-bias update → metrics, validation,
/// checkpoints. Checkpoints are complete Hugging Face directories plus optimizer and trainer state
/// (`OUT/checkpoint-N/`, written under a temporary name and renamed), so a kill never leaves a half one.
public final class Trainer {
    public let model: TrainableModel
    /// The run's settings; a resumed run takes the checkpoint's, except the run controls (steps, evaluation,
    /// checkpoint and logging intervals, time limit), which come from the caller.
    public internal(set) var settings: TrainingSettings
    public let out: String
    let optimizer: AdamW
    /// Models trained beside `model` on the same objective (PPO's value model): optimised with the same
    /// schedule, clipped together with it, saved in `checkpoint-N/NAME/` and `OUT/NAME/`.
    let jointlyTrained: [(name: String, model: TrainableModel, optimizer: AdamW)]
    var batches: any BatchSource
    let objective: any TrainingObjective
    /// What is trained ("pretrain", "sft", …): the plots' titles.
    public let stage: String
    /// Files copied into every checkpoint (the tokenizer's).
    let extraFiles: [String]
    public internal(set) var step = 0
    var tokensSeen = 0
    var tokensThisRun = 0
    var elapsedBefore = 0.0
    var lastCheckpoint: String?
    public internal(set) var metrics: [MetricsRecord] = []
    /// LoRA: the adapters are trained (and checkpointed) instead of the model's weights, which stay as loaded.
    public let lora: LoRAAdapters?
    /// What the optimizer steps: the adapters' store with LoRA, the model's otherwise.
    var trainedStore: ParameterStore { lora?.store ?? model.store }
    /// Data parallelism over MPI (nil: this process alone).
    public let dataParallel: DataParallel?
    /// Whether this process writes the run's files (rank 0, or the only process).
    public var isWriter: Bool { dataParallel?.isWriter ?? true }
    /// Expert parallelism: which experts this rank runs and steps (nil: all).
    let experts: ExpertSharding?
    /// Data parallel without LoRA: the gradient all-reduce, started block by block in the backward pass.
    let buckets: GradientBuckets?
    /// ZeRO-1: which share of the parameters this rank's optimizer keeps and steps (nil: all).
    let optimizerSharding: OptimizerSharding?

    /// Pre-training on token shards.
    public convenience init(model: TrainableModel, settings: TrainingSettings, train: TokenShard, validation: TokenShard,
                            out: String, extraFiles: [String] = [], dataParallel: DataParallel? = nil) throws {
        try self.init(model: model, settings: settings,
                      batches: try ShardBatches(train: train, validation: validation, batchSize: settings.batchSize,
                                                seqLen: settings.seqLen, seed: settings.seed),
                      stage: "pretrain", out: out, extraFiles: extraFiles, dataParallel: dataParallel)
    }

    public init(model: TrainableModel, settings: TrainingSettings, batches: any BatchSource,
                objective: any TrainingObjective = LanguageModeling(), stage: String, out: String, extraFiles: [String] = [],
                lora: LoRAAdapters? = nil, jointlyTrained: [(name: String, model: TrainableModel)] = [],
                dataParallel: DataParallel? = nil) throws {
        guard batches.seqLen <= model.config.maxPositionEmbeddings else {
            throw TrainingError.badArgument("sequence length \(batches.seqLen) exceeds the model's max_position_embeddings (\(model.config.maxPositionEmbeddings))")
        }
        guard settings.steps > 0, batches.batchSize > 0, batches.seqLen > 0, settings.accumulation > 0 else {
            throw TrainingError.badArgument("steps, batch size, sequence length and accumulation must be positive")
        }
        if settings.saveMXFP4Experts == true && model.config.modelType != "gpt_oss" {
            throw TrainingError.badArgument("MXFP4 experts are saved for gpt-oss only (this model is \(model.config.modelType))")
        }
        self.model = model; self.settings = settings; self.out = out
        self.batches = batches; self.objective = objective; self.stage = stage; self.extraFiles = extraFiles
        self.lora = lora
        self.dataParallel = dataParallel
        try dataParallel?.check(accumulation: settings.accumulation)
        if lora != nil && settings.biasUpdateRate != nil {
            throw TrainingError.badArgument("--bias-update-rate changes the base model, which LoRA keeps frozen: leave one out")
        }
        lora?.apply(to: model)
        if let w = settings.mtpLossWeight { model.mtpLossWeight = w }
        // Only language modelling trains the multi-token-prediction module: other objectives carry it unchanged
        // (weight decay would otherwise shrink it step by step).
        if !(objective is LanguageModeling), let mtp = model.mtp { model.store.freeze { $0.hasPrefix(mtp.prefix + ".") } }
        if let dp = dataParallel, dp.shardsOptimizer {
            guard !dp.expertParallel, lora == nil, jointlyTrained.isEmpty else {
                throw TrainingError.badArgument("--shard-optimizer shards a whole model's optimizer, with data parallelism only (not with --expert-parallel, LoRA or PPO's value model)")
            }
            optimizerSharding = try OptimizerSharding(dp.communicator, store: model.store)
        } else {
            optimizerSharding = nil
        }
        optimizer = AdamW(lora?.store ?? model.store, settings: settings.adam, span: optimizerSharding?.own)
        if let dp = dataParallel, dp.expertParallel {
            guard lora == nil, jointlyTrained.isEmpty else {
                throw TrainingError.badArgument("--expert-parallel trains a whole model (not LoRA adapters, not PPO's value model)")
            }
            // A micro-batch holds at most twice `batchSize` rows (preference pairs: chosen and rejected).
            experts = try ExpertSharding(model: model, communicator: dp.communicator, batchTokens: 2 * batches.batchSize * batches.seqLen)
            optimizer.othersTensors = experts!.othersTensors
        } else {
            experts = nil
        }
        // LoRA's gradients are gathered from the model's after the micro-batches: they are summed in one go.
        if let dp = dataParallel, lora == nil {
            buckets = GradientBuckets(dp.communicator, reduced: experts?.sharedRanges ?? [0 ..< max(model.store.count, 1)])
        } else {
            buckets = nil
        }
        self.jointlyTrained = jointlyTrained.map { ($0.name, $0.model, AdamW($0.model.store, settings: settings.adam)) }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        guard FileManager.default.isWritableFile(atPath: out) else {
            throw TrainingError.badArgument("the output directory \(out) is not writable")
        }
        // Refuse up front what would not fit, rather than dying mid-run.
        let stateBytes = lora.map { model.store.count * 8 + $0.memoryBytes }   // LoRA: no moments of the base
            ?? model.store.count * 8 + optimizer.span.count * 8
        let need = Double(model.activationBytes(batch: batches.batchSize, seqLen: batches.seqLen) + stateBytes
                          + jointlyTrained.reduce(0) { $0 + $1.model.activationBytes(batch: batches.batchSize, seqLen: batches.seqLen) + $1.model.store.count * 16 })
        let have = Double(ProcessInfo.processInfo.physicalMemory)
        guard need < 0.9 * have else {
            throw TrainingError.badArgument(String(format: "batch %d × %d needs about %.1f GiB (activations, weights, gradients, optimizer) of %.1f GiB: lower --batch or --seq-len",
                                                   batches.batchSize, batches.seqLen, need / 1073741824, have / 1073741824))
        }
        // Half-written checkpoints of a killed run.
        for name in isWriter ? (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? [] : [] where name.hasPrefix(".checkpoint-") {
            try? FileManager.default.removeItem(atPath: "\(out)/\(name)")
        }
    }

    // MARK: The loop

    /// Runs from the current step to `settings.steps` (or the time limit). `progress` is called after every step.
    public func run(progress: ((TrainingProgressLine) -> Void)? = nil) throws -> TrainingSummary {
        let schedule = LearningRateSchedule.named(settings.schedule, warmup: settings.warmup, minRatio: settings.minLearningRateRatio)
            ?? .cosine(warmup: settings.warmup, minRatio: settings.minLearningRateRatio)
        if step == 0, let old = Trainer.checkpoints(in: out).last {
            throw TrainingError.badArgument("\(out) holds checkpoints of an earlier run (up to checkpoint-\(old)): resume it (--resume) or choose another output directory")
        }
        let start = Date()
        let firstStep = step
        experts?.install()
        defer { experts?.uninstall() }   // the model runs alone again (weights synchronised at the last step)
        var lastLoss = Double.nan
        var loadSum = [[Double]](repeating: [Double](repeating: 0, count: model.expertCount), count: model.moeLayerCount)
        var intervalLoad = loadSum
        let metricsLog = isWriter ? try MetricsLog(path: "\(out)/metrics.jsonl", keepingStepsUpTo: step) : nil
        if settings.biasUpdateRate != nil && model.config.modelType != "deepseek_v3" {
            FileHandle.standardError.write(Data("note: the expert selection bias is saved as e_score_correction_bias; only DeepSeek-V3's transformers class reads it, so transformers ignores it for \(model.config.modelType) (swift-moe uses it)\n".utf8))
        }

        while step < settings.steps {
            let lr = schedule.rate(step: step, totalSteps: settings.steps, peak: settings.learningRate)
            let stepStarted = Date()
            model.store.zeroGrads()
            lora?.store.zeroGrads()
            for j in jointlyTrained { j.model.store.zeroGrads() }
            var loss = LossBreakdown(crossEntropy: 0, aux: 0, z: 0, total: 0, tokens: 0)
            var stepLoad = [[Int]](repeating: [Int](repeating: 0, count: model.expertCount), count: model.moeLayerCount)
            var stepTokens = 0
            var stepMetrics: [String: Double] = [:]
            for micro in 0..<settings.accumulation {
                if let dp = dataParallel, !dp.runs(microBatch: micro) { try batches.skip(); continue }   // another rank's share
                let b = try batches.next()
                // This rank's last micro-batch of the step: each block's sum starts as soon as its backward is done.
                if let buckets, let dp = dataParallel, dp.isLast(microBatch: micro, of: settings.accumulation) {
                    let grads = model.store.grads!
                    model.blockGradientsDone = { buckets.start($0, grads: grads) }
                }
                defer { model.blockGradientsDone = nil }
                stepTokens += b.tokens.rows * b.tokens.seqLen
                let r = try objective.step(model, b, balance: settings.balance, scale: 1 / Float(settings.accumulation))
                let l = r.loss, a = Double(settings.accumulation)
                loss.crossEntropy += l.crossEntropy / a; loss.aux += l.aux / a; loss.z += l.z / a; loss.total += l.total / a
                loss.sequenceAux += l.sequenceAux / a
                loss.tokens += l.tokens
                for (k, v) in r.metrics.merging(b.metrics, uniquingKeysWith: { $1 }) { stepMetrics[k, default: 0] += v / a }
                for (layer, load) in model.lastExpertLoad.enumerated() {
                    for e in load.indices { stepLoad[layer][e] += load[e] }
                }
            }
            lora?.accumulateGradients(from: model)
            if let dp = dataParallel {
                try sumAcrossRanks(dp, stepStarted: stepStarted, loss: &loss, tokens: &stepTokens, metrics: &stepMetrics, load: &stepLoad)
            }
            for (layer, load) in stepLoad.enumerated() {
                for e in load.indices { loadSum[layer][e] += Double(load[e]); intervalLoad[layer][e] += Double(load[e]) }
            }
            guard loss.total.isFinite else { throw TrainingError.nonFiniteLoss(step: step + 1, lastCheckpoint: lastCheckpoint) }
            let norm = clipGradients([trainedStore] + jointlyTrained.map(\.model.store), maxNorm: settings.gradClip.map(Float.init),
                                     squaredNorm: try experts?.squaredGradientNorm(trainedStore))
            guard norm.isFinite else { throw TrainingError.nonFiniteLoss(step: step + 1, lastCheckpoint: lastCheckpoint) }
            optimizer.update(trainedStore, lr: Float(lr), pool: model.pool)
            try optimizerSharding?.gatherWeights(trainedStore.values)
            for j in jointlyTrained { j.optimizer.update(j.model.store, lr: Float(lr), pool: j.model.pool) }
            lora?.apply(to: model)
            if let rate = settings.biasUpdateRate { model.updateSelectionBias(rate: Float(rate), load: stepLoad) }
            step += 1
            tokensSeen += stepTokens
            tokensThisRun += stepTokens
            lastLoss = loss.total

            let elapsed = Date().timeIntervalSince(start)
            let rate = Double(tokensThisRun) / max(elapsed, 1e-9)
            var record = MetricsRecord(step: step, loss: loss.total, crossEntropy: loss.crossEntropy, aux: loss.aux, z: loss.z,
                                       learningRate: lr, gradNorm: Double(norm), tokensPerSecond: rate,
                                       elapsed: elapsedBefore + elapsed)
            if !stepMetrics.isEmpty { record.metrics = stepMetrics }
            if step % settings.logEvery == 0 || step == settings.steps {
                record.expertLoad = fractions(intervalLoad)
                intervalLoad = intervalLoad.map { $0.map { _ in 0 } }
            }
            var timeUp = settings.timeLimit.map { elapsed >= $0 } ?? false
            if let dp = dataParallel, settings.timeLimit != nil {   // every rank stops at the same step
                var up = [timeUp ? 1.0 : 0]
                try dp.communicator.sumInPlace(&up)
                timeUp = up[0] > 0
            }
            let last = step == settings.steps || timeUp
            let evaluates = step % settings.evalEvery == 0 || last, checkpoints = step % settings.checkpointEvery == 0 || last
            if let experts, evaluates || checkpoints {   // every rank's copy of the experts from their owners
                try experts.synchronise(model.store.values, store: model.store)
                if checkpoints { for moment in [optimizer.m, optimizer.v] { try experts.synchronise(moment, store: model.store) } }
            }
            if isWriter && evaluates {
                let v = try experts.map { try $0.locally(validation) } ?? validation()
                record.validationLoss = v?.loss
                if let m = v?.metrics, !m.isEmpty { record.metrics = (record.metrics ?? [:]).merging(m) { $1 } }
            }
            metrics.append(record)
            try metricsLog?.append(record)
            progress?(TrainingProgressLine(step: step, steps: settings.steps, loss: loss.total,
                                           validationLoss: record.validationLoss, tokensPerSecond: rate,
                                           elapsed: elapsed, stepsThisRun: step - firstStep, timeLimit: settings.timeLimit))
            let moments = checkpoints ? try optimizerSharding?.gatherMoments(optimizer) : nil   // every rank's share, on rank 0
            if isWriter && checkpoints {
                try saveCheckpoint(elapsed: elapsedBefore + Date().timeIntervalSince(start), moments: moments)
            }
            if timeUp { break }
        }
        if isWriter { try writePlots() }
        let seconds = Date().timeIntervalSince(start)
        return TrainingSummary(steps: step, tokens: tokensSeen, seconds: seconds,
                               tokensPerSecond: Double(tokensThisRun) / max(seconds, 1e-9),
                               trainLoss: recentTrainLoss(fallback: lastLoss),
                               validationLoss: metrics.last(where: { $0.validationLoss != nil })?.validationLoss,
                               expertLoad: fractions(loadSum))
    }

    /// Mean training loss over the last logging interval (smoother than the last step's).
    private func recentTrainLoss(fallback: Double) -> Double {
        let tail = metrics.suffix(settings.logEvery)
        return tail.isEmpty ? fallback : tail.reduce(0) { $0 + $1.loss } / Double(tail.count)
    }

    private func fractions(_ load: [[Double]]) -> [[Double]] {
        load.map { l in let s = l.reduce(0, +); return l.map { s > 0 ? $0 / s : 0 } }
    }

    /// The objective's mean loss over the first `evalBatches` validation batches (cross-entropy alone for
    /// language modelling, as nanoGPT reports it), nil without validation data.
    public func validationLoss() throws -> Double? { try validation()?.loss }

    /// Validation loss and the objective's metrics (prefixed `val_`), averaged by the batches' weights.
    func validation() throws -> (loss: Double, metrics: [String: Double])? {
        let held = batches.validation(maxBatches: settings.evalBatches)
        if held.isEmpty { return nil }
        var sum = 0.0, weight = 0.0
        var metrics: [String: Double] = [:]
        for b in held {
            let r = try objective.evaluate(model, b, balance: settings.balance)
            sum += r.reported * r.weight; weight += r.weight
            for (k, v) in r.metrics { metrics["val_" + k, default: 0] += v * r.weight }
        }
        let w = max(weight, 1e-12)
        return (sum / w, metrics.mapValues { $0 / w })
    }

    // MARK: Plots

    /// loss.svg (training and validation loss by step) and expert_load.svg (layer × expert share of the
    /// routed tokens over the whole run).
    func writePlots() throws {
        let train = PlotSeries(name: "train", points: metrics.map { (Double($0.step), $0.loss) })
        let val = PlotSeries(name: "validation", points: metrics.compactMap { m in m.validationLoss.map { (Double(m.step), $0) } })
        let title = stage == "pretrain" ? "Pre-training loss" : "\(stage.uppercased()) loss"
        try SVGPlot.write(SVGPlot.lineChart(title: title, xLabel: "step", yLabel: "loss", series: [train, val], logY: true),
                          to: "\(out)/loss.svg")
        // The objective's own metrics (DPO reward accuracy and margin, reward-model accuracy, …), train and validation.
        let keys = Set(metrics.flatMap { $0.metrics?.keys.map { $0 } ?? [] }).sorted()
        if !keys.isEmpty {
            let series = keys.map { k in PlotSeries(name: k, points: metrics.compactMap { m in m.metrics?[k].map { (Double(m.step), $0) } }) }
            try SVGPlot.write(SVGPlot.lineChart(title: "\(stage.uppercased()) metrics", xLabel: "step", yLabel: "value", series: series),
                              to: "\(out)/metrics.svg")
        }
        if model.moeLayerCount > 0 {
            var load = [[Double]](repeating: [Double](repeating: 0, count: model.expertCount), count: model.moeLayerCount)
            for m in metrics { if let l = m.expertLoad { for i in l.indices { for e in l[i].indices { load[i][e] += l[i][e] } } } }
            load = fractions(load)
            try SVGPlot.write(SVGPlot.heatMap(title: "Expert load (share of routed tokens)", rowLabel: "layer", columnLabel: "expert",
                                              values: load), to: "\(out)/expert_load.svg")
        }
    }
}

extension TrainableModel {
    /// DeepSeek-V3's auxiliary-loss-free balancing: after a step, each layer's overloaded experts get their
    /// selection bias lowered by `rate`, underloaded ones raised (sign of mean load − load). `load`: tokens
    /// per expert per MoE layer over the step's micro-batches (default: the last forward's).
    public func updateSelectionBias(rate: Float, load: [[Int]]? = nil) {
        let w = store.values!
        let loads = load ?? lastExpertLoad
        for (i, moe) in moeLayers.enumerated() {
            guard let bias = moe.selectionBias else { continue }
            let mean = Float(loads[i].reduce(0, +)) / Float(max(moe.experts, 1))
            for e in 0..<moe.experts {
                let l = Float(loads[i][e])
                w[bias + e] += l > mean ? -rate : (l < mean ? rate : 0)
            }
        }
    }
}

/// One line of metrics.jsonl.
public struct MetricsRecord: Codable, Sendable {
    public var step: Int
    public var loss: Double
    public var crossEntropy: Double
    public var aux: Double
    public var z: Double
    public var learningRate: Double
    public var gradNorm: Double
    public var tokensPerSecond: Double
    public var elapsed: Double
    public var validationLoss: Double?
    public var expertLoad: [[Double]]?
    /// The objective's own metrics (DPO reward accuracy and margin, …; `val_…` from validation).
    public var metrics: [String: Double]?

    enum CodingKeys: String, CodingKey {
        case step, loss, aux, z, elapsed
        case crossEntropy = "ce", learningRate = "lr", gradNorm = "grad_norm", tokensPerSecond = "tokens_per_s"
        case validationLoss = "val_loss", expertLoad = "expert_load", metrics
    }
}

/// metrics.jsonl, appended line by line; on resume the lines after the checkpoint's step are dropped so
/// the file reads as one uninterrupted run.
struct MetricsLog {
    let handle: FileHandle
    let encoder: JSONEncoder

    init(path: String, keepingStepsUpTo step: Int) throws {
        let kept = MetricsLog.read(path: path).filter { $0.step <= step }
        encoder = JSONEncoder(); encoder.outputFormatting = [.sortedKeys]
        var data = Data()
        for r in kept { data.append(try encoder.encode(r)); data.append(0x0A) }
        try AtomicFile.write(data, to: path)
        handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
    }

    func append(_ r: MetricsRecord) throws {
        var line = try encoder.encode(r)
        line.append(0x0A)
        try handle.write(contentsOf: line)
    }

    static func read(path: String) -> [MetricsRecord] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(MetricsRecord.self, from: Data($0.utf8)) }
    }
}

/// What the progress bar shows after a step.
public struct TrainingProgressLine: Sendable {
    public var step: Int, steps: Int
    public var loss: Double
    public var validationLoss: Double?
    public var tokensPerSecond: Double
    public var elapsed: Double
    public var stepsThisRun: Int
    public var timeLimit: Double?

    /// `step 120/1000 [#####...............]  loss 3.2140  val 3.3012  4,512 tok/s  ETA 3m12s`
    public var text: String {
        let width = 20, filled = min(width, step * width / max(steps, 1))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        var remaining = elapsed / Double(max(stepsThisRun, 1)) * Double(steps - step)
        if let limit = timeLimit { remaining = min(remaining, max(0, limit - elapsed)) }
        let val = validationLoss.map { String(format: "  val %.4f", $0) } ?? ""
        return String(format: "step %d/%d [%@]  loss %.4f%@  %.0f tok/s  ETA %@", step, steps, bar, loss, val,
                      tokensPerSecond, ProgressBar.duration(remaining))
    }
}

