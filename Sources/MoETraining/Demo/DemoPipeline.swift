import Foundation
import MoEFormats
import MoEKernels
import MoEModel
import MoETokenizer

/// `moe demo`: the whole system on a built-in corpus, no downloads. Generates the multi-domain corpus,
/// trains a byte-level BPE tokenizer on it, pre-trains a small MoE for a time budget, prints samples per
/// domain and a routing report (which experts each domain uses, how balanced they are), and writes
/// OUT/report.json (a contract: `{"stages": [{"name": "pretrain", "val_loss": …}], "routing": …}`) and plots.
public struct DemoPipeline {
    public struct Options: Sendable {
        public var out: String
        /// Steps of pre-training: a report card that does not depend on the machine's speed (nil: size them by `trainSeconds`).
        public var pretrainSteps: Int? = DemoPipeline.defaultPretrainSteps
        /// Seconds of pre-training when `pretrainSteps` is nil (the step count sized from a timed step): the study's
        /// equal-time runs.
        public var trainSeconds: Double = 300
        /// A tiny corpus and model and a few steps: the whole path in seconds (tests).
        public var quick = false
        /// Keep OUT/pretrain (and its tokenizer) from an earlier run and redo only what follows pre-training.
        public var reusePretrained = false
        public var threads = WorkerPool.defaultThreadCount
        public var seed: UInt64 = 42
        /// The model family the demo trains and post-trains.
        public var architecture = DemoArchitecture.moe
        /// Also pre-train the other family on the same corpus for the same time, and report both.
        public var compare = false
        /// Also run the MoE-against-dense study (`MoEDenseStudy`) on the same corpus, each model for `studySeconds`.
        public var study = false
        public var studySeconds: Double = 120
        public init(out: String) { self.out = out }
    }

    /// About 5 minutes on two cores of an AMD EPYC (0.16 s a step).
    public static let defaultPretrainSteps = 1800

    public let options: Options
    let log: (String) -> Void
    let progress: ((TrainingProgressLine) -> Void)?

    public init(options: Options, log: @escaping (String) -> Void, progress: ((TrainingProgressLine) -> Void)? = nil) {
        self.options = options; self.log = log; self.progress = progress
    }

    /// The model the demo trains: `qwen3_moe` with 8 experts top-2 in every layer, or the same sizes as the
    /// hybrid `qwen3_next` (Gated DeltaNet layers, gated attention in the last of every four, a shared expert).
    func modelConfig(vocabSize: Int, eos: [Int], architecture: DemoArchitecture) throws -> ModelConfig {
        var size: [String: Any] = options.quick
            ? ["hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
               "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64]
            : ["hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 32,
               "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 192]
        if architecture == .next {
            let hidden = size["hidden_size"] as! Int
            size.merge(["num_hidden_layers": 4, "linear_key_head_dim": hidden / 4, "linear_value_head_dim": hidden / 4,
                        "shared_expert_intermediate_size": size["moe_intermediate_size"]!]) { $1 }
        }
        return try ModelPreset.config(architecture == .next ? "tiny-next" : "tiny", vocabSize: vocabSize,
                                      overrides: size.merging(["eos_token_id": eos, "max_position_embeddings": 256]) { $1 })
    }

    @discardableResult
    public func run() throws -> DemoReport {
        let out = options.out
        try TrainingSetup.prepareOutput(out)
        let started = Date()

        let tokenizerDirectory = "\(out)/tokenizer", pretrainDirectory = "\(out)/pretrain"
        let model: TrainableModel, tokenizer: Tokenizer, summary: TrainingSummary
        if options.reusePretrained, FileManager.default.fileExists(atPath: "\(pretrainDirectory)/model.safetensors") {
            try writeChatTemplate(tokenizerDirectory)
            tokenizer = try Tokenizer(directory: tokenizerDirectory)
            model = try TrainableModel.load(directory: pretrainDirectory, threads: options.threads)
            let last = MetricsLog.read(path: "\(pretrainDirectory)/metrics.jsonl")
            summary = TrainingSummary(steps: last.last?.step ?? 0, tokens: 0, seconds: 0, tokensPerSecond: 0,
                                      trainLoss: last.last?.loss ?? .nan,
                                      validationLoss: last.last(where: { $0.validationLoss != nil })?.validationLoss, expertLoad: [])
            log("reusing the pre-trained model in \(pretrainDirectory)")
        } else {
            (model, tokenizer, summary) = try pretrain(tokenizerDirectory: tokenizerDirectory, pretrainDirectory: pretrainDirectory)
        }
        let eos = try TrainingSetup.eosToken(tokenizer)

        // Samples per domain from the saved checkpoint, through the inference engine.
        let inference = try Transformer(directory: pretrainDirectory, threads: options.threads)
        var samples: [String: [DemoReport.Sample]] = [:]
        for domain in DemoDomain.allCases {
            for (i, prompt) in DemoCorpus.samplePrompts(domain).prefix(options.quick ? 1 : 3).enumerated() {
                let ids = tokenizer.encode(prompt, addSpecialTokens: false)
                let g = try inference.generate(prompt: ids, maxTokens: options.quick ? 8 : 40,
                                               sampling: SamplingParameters(temperature: 0.7, topK: 40, seed: options.seed &+ UInt64(i)),
                                               stopTokens: [eos])
                let text = tokenizer.decode(g.tokens, skipSpecialTokens: true)
                samples[domain.rawValue, default: []].append(.init(prompt: prompt, completion: text))
            }
        }

        // Routing report on held-out documents of each domain.
        let routing = try routingReport(model, tokenizer: tokenizer)
        try writeRoutingPlot(routing)

        // Post-training on the arithmetic task, accuracy on held-out problems after every stage.
        var stages = [DemoReport.Stage(summary, name: "pretrain", model: pretrainDirectory)]
        stages[0].taskAccuracy = try taskAccuracy(pretrainDirectory, tokenizer)
        log(String(format: "held-out arithmetic, greedy: pre-trained %.1f%%", 100 * stages[0].taskAccuracy!))
        let (sftDirectory, sft) = try supervisedFineTuning(from: pretrainDirectory, tokenizer: tokenizer)
        stages.append(DemoReport.Stage(sft, name: "sft", model: sftDirectory))
        stages[1].taskAccuracy = try taskAccuracy(sftDirectory, tokenizer)
        log(String(format: "SFT: validation loss %@, held-out arithmetic %.1f%%", sft.validationLoss.map { String(format: "%.3f", $0) } ?? "n/a",
                   100 * stages[1].taskAccuracy!))
        let (dpoDirectory, dpo) = try preferenceOptimization(from: sftDirectory, tokenizer: tokenizer)
        stages.append(DemoReport.Stage(dpo, name: "dpo", model: dpoDirectory))
        stages[2].taskAccuracy = try taskAccuracy(dpoDirectory, tokenizer)
        log(String(format: "DPO: validation loss %@, held-out arithmetic %.1f%%", dpo.validationLoss.map { String(format: "%.3f", $0) } ?? "n/a",
                   100 * stages[2].taskAccuracy!))
        let (rlDirectory, rl, reward) = try reinforcementLearning(from: dpoDirectory, tokenizer: tokenizer)
        stages.append(DemoReport.Stage(rl, name: "grpo", model: rlDirectory))
        stages[3].meanReward = reward
        stages[3].taskAccuracy = try taskAccuracy(rlDirectory, tokenizer)
        log(String(format: "GRPO: mean reward %.2f, held-out arithmetic %.1f%%", reward, 100 * stages[3].taskAccuracy!))

        var report = DemoReport(stages: stages, routing: routing, samples: samples, seconds: Date().timeIntervalSince(started))
        report.architectures = [.init(stages[0], modelType: model.config.modelType, parameters: model.store.parameterCount)]
        if options.compare {
            let other: DemoArchitecture = options.architecture == .moe ? .next : .moe
            let (otherModel, otherSummary) = try pretrainOther(other, tokenizer: tokenizer, from: pretrainDirectory)
            report.architectures.append(.init(DemoReport.Stage(otherSummary, name: "pretrain", model: "\(out)/pretrain-\(other.rawValue)"),
                                              modelType: otherModel.config.modelType, parameters: otherModel.store.parameterCount))
        }
        if options.study {
            var studyOptions = options
            studyOptions.trainSeconds = options.studySeconds
            studyOptions.pretrainSteps = nil
            let studyPipeline = DemoPipeline(options: studyOptions, log: log, progress: progress)
            let shards = TokenizedCorpus.paths("\(pretrainDirectory)/data")
            report.study = try MoEDenseStudy.run(studyPipeline, moe: model.config, train: try TokenShard(path: shards.train),
                                                 validation: try TokenShard(path: shards.validation), tokenizerDirectory: tokenizerDirectory)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(report), to: "\(out)/report.json")
        try AtomicFile.write(Data(report.reportCard().utf8), to: "\(out)/report.md")
        return report
    }

    /// Corpus → tokenizer → pre-trained model in OUT/pretrain.
    func pretrain(tokenizerDirectory: String, pretrainDirectory: String) throws -> (TrainableModel, Tokenizer, TrainingSummary) {
        let (tokenizer, train, validation, stops) = try prepareCorpus(tokenizerDirectory: tokenizerDirectory, dataDirectory: pretrainDirectory)
        let config = try modelConfig(vocabSize: tokenizer.vocabSize, eos: stops, architecture: options.architecture)
        let (model, summary) = try pretrainModel(config, train: train, validation: validation, out: pretrainDirectory,
                                         tokenizerDirectory: tokenizerDirectory)
        return (model, tokenizer, summary)
    }

    /// The corpus (OUT/corpus.jsonl), its tokenizer, and its token shards in `dataDirectory`/data; `stops`: the
    /// tokens generation ends at.
    func prepareCorpus(tokenizerDirectory: String, dataDirectory: String) throws
        -> (tokenizer: Tokenizer, train: TokenShard, validation: TokenShard, stops: [Int]) {
        let documents = DemoCorpus.documents(count: options.quick ? 240 : 9000, seed: options.seed)
        let characters = documents.reduce(0) { $0 + $1.text.count }
        log("corpus: \(documents.count) documents (arithmetic, code, prose), \(characters) characters → \(options.out)/corpus.jsonl")
        // The corpus as `moe pretrain --data` reads it, for training other models on it.
        let lines = try documents.map { String(decoding: try JSONSerialization.data(withJSONObject: ["text": $0.text]), as: UTF8.self) }
        try AtomicFile.write(Data((lines.joined(separator: "\n") + "\n").utf8), to: "\(options.out)/corpus.jsonl")
        let trainer = BPETrainer(vocabSize: options.quick ? 384 : 2048, specialTokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        try trainer.train(texts: documents.map(\.text)).write(to: tokenizerDirectory)
        try writeChatTemplate(tokenizerDirectory)
        let tokenizer = try Tokenizer(directory: tokenizerDirectory)
        let eos = try TrainingSetup.eosToken(tokenizer)
        log("tokenizer: byte-level BPE, \(tokenizer.vocabSize) tokens → \(tokenizerDirectory)")
        // Chat turns end with <|im_end|>: generation stops there as well as at <|endoftext|>.
        let stops = [eos] + (tokenizer.id(forToken: "<|im_end|>").map { [$0] } ?? [])
        try removeCheckpoints(dataDirectory)
        let (train, validation) = try TrainingSetup.shards(documents: documents.map(\.text), tokenizer: tokenizer, eosToken: eos,
                                                           validationFraction: 0.05, out: dataDirectory)
        return (tokenizer, train, validation, stops)
    }

    /// `moe study moe-vs-dense`: the corpus and tokenizer in OUT, then the study's three models, each pre-trained for
    /// `trainSeconds` (OUT/study).
    public func runStudy() throws -> MoEDenseStudy.Report {
        try TrainingSetup.prepareOutput(options.out)
        let (tokenizer, train, validation, stops) = try prepareCorpus(tokenizerDirectory: "\(options.out)/tokenizer",
                                                                      dataDirectory: "\(options.out)/corpus")
        let moe = try modelConfig(vocabSize: tokenizer.vocabSize, eos: stops, architecture: .moe)
        return try MoEDenseStudy.run(self, moe: moe, train: train, validation: validation, tokenizerDirectory: "\(options.out)/tokenizer")
    }

    /// The other family (`--compare`) pre-trained on the same token shards for the same time, in OUT/pretrain-ARCH.
    func pretrainOther(_ architecture: DemoArchitecture, tokenizer: Tokenizer, from pretrainDirectory: String) throws -> (TrainableModel, TrainingSummary) {
        let shards = TokenizedCorpus.paths("\(pretrainDirectory)/data")
        let train = try TokenShard(path: shards.train), validation = try TokenShard(path: shards.validation)
        let directory = "\(options.out)/pretrain-\(architecture.rawValue)"
        try removeCheckpoints(directory)
        let eos = try TrainingSetup.eosToken(tokenizer)
        let stops = [eos] + (tokenizer.id(forToken: "<|im_end|>").map { [$0] } ?? [])
        let config = try modelConfig(vocabSize: tokenizer.vocabSize, eos: stops, architecture: architecture)
        return try pretrainModel(config, train: train, validation: validation, out: directory, tokenizerDirectory: "\(options.out)/tokenizer")
    }

    /// Pre-trains `config` from scratch for the time budget.
    func pretrainModel(_ config: ModelConfig, train: TokenShard, validation: TokenShard, out pretrainDirectory: String,
               tokenizerDirectory: String) throws -> (TrainableModel, TrainingSummary) {
        let model = try TrainableModel(config: config, threads: options.threads)
        model.initialize(seed: options.seed)
        var settings = TrainingSettings()
        settings.batchSize = options.quick ? 4 : 16
        settings.seqLen = options.quick ? 64 : 128
        settings.learningRate = 4e-3
        settings.warmup = options.quick ? 2 : 40
        settings.balance = BalanceLosses(auxLossCoef: 0.03, zLossCoef: 0.001)
        settings.seed = options.seed
        let secondsPerStep = options.quick ? 0 : try timedStep(model, settings, train: train)
        if options.quick {
            settings.steps = 12
        } else if let steps = options.pretrainSteps {
            settings.steps = steps
            log(String(format: "pre-training %d steps: about %.1f minutes on this machine (%.3f s a step)", steps,
                       Double(steps) * secondsPerStep / 60, secondsPerStep))
        } else {
            settings.steps = max(20, Int(options.trainSeconds / secondsPerStep))
            settings.timeLimit = options.trainSeconds * 1.3
        }
        settings.evalEvery = max(1, settings.steps / 10)
        settings.checkpointEvery = max(1, settings.steps / 4)
        settings.logEvery = max(1, min(20, settings.steps / 20))
        log("model: \(config.modelType), \(config.numHiddenLayers) layers, \(config.numExperts) experts top-\(config.numExpertsPerToken), "
            + "\(model.store.parameterCount) parameters; \(settings.steps) steps of \(settings.batchSize)×\(settings.seqLen) tokens "
            + "(\(train.count) training tokens)")
        let pretrainer = try Trainer(model: model, settings: settings, train: train, validation: validation,
                                        out: pretrainDirectory, extraFiles: TrainingSetup.tokenizerFiles(tokenizerDirectory))
        let summary = try pretrainer.run(progress: progress)
        log(String(format: "pre-training: %d steps, loss %.3f, validation loss %@, %.0f tokens/s",
                   summary.steps, summary.trainLoss, summary.validationLoss.map { String(format: "%.3f", $0) } ?? "n/a",
                   summary.tokensPerSecond))
        return (model, summary)
    }

    /// Seconds a training step takes here, from timed forward/backward passes (gradients discarded).
    func timedStep(_ model: TrainableModel, _ s: TrainingSettings, train: TokenShard) throws -> Double {
        var batches = try ShardBatches(train: train, validation: train, batchSize: s.batchSize, seqLen: s.seqLen, seed: 999)
        var best = Double.infinity
        for pass in 0..<4 {
            let batch = try batches.next()
            let start = Date()
            _ = try LanguageModeling().step(model, batch, balance: s.balance, scale: 1)
            if pass > 0 { best = min(best, Date().timeIntervalSince(start)) }   // the first pass touches fresh buffers
        }
        model.store.zeroGrads()
        // The optimizer, validation and checkpoints: measured steps run ~10 % slower than the timed passes.
        return best * 1.15
    }

    /// Which experts each domain's tokens choose, per MoE layer, on documents the model did not train on.
    func routingReport(_ model: TrainableModel, tokenizer: Tokenizer) throws -> DemoReport.Routing {
        let heldOut = DemoCorpus.documents(count: options.quick ? 9 : 60, seed: options.seed &+ 1_000_003)
        let E = model.expertCount, L = model.moeLayerCount
        var domains: [String: DemoReport.DomainRouting] = [:]
        for domain in DemoDomain.allCases {
            var counts = [[Double]](repeating: [Double](repeating: 0, count: E), count: L)
            var tokens = 0
            for doc in heldOut where doc.domain == domain {
                let ids = tokenizer.encode(doc.text, addSpecialTokens: false).prefix(model.config.maxPositionEmbeddings).map(Int32.init)
                if ids.isEmpty { continue }
                let targets = [Int32](repeating: -100, count: ids.count)
                _ = try model.evaluate(batch: 1, seqLen: ids.count, inputs: ids, targets: targets, balance: BalanceLosses())
                for (l, load) in model.lastExpertLoad.enumerated() { for e in 0..<E { counts[l][e] += Double(load[e]) } }
                tokens += ids.count
            }
            let share = counts.map { row in let s = row.reduce(0, +); return row.map { s > 0 ? $0 / s : 0 } }
            let top = share.map { row in row.indices.sorted { row[$0] > row[$1] }.prefix(model.config.numExpertsPerToken).map { $0 } }
            domains[domain.rawValue] = .init(tokens: tokens, share: share, topExperts: top,
                                             balance: share.map(normalisedEntropy).reduce(0, +) / Double(max(L, 1)))
        }
        // How differently the domains route: mean over layers of the total-variation distance between domain pairs.
        let names = DemoDomain.allCases.map(\.rawValue)
        var distance = 0.0, pairs = 0
        for i in names.indices { for j in names.indices where j > i {
            for l in 0..<L {
                let a = domains[names[i]]!.share[l], b = domains[names[j]]!.share[l]
                distance += zip(a, b).reduce(0) { $0 + abs($1.0 - $1.1) } / 2
                pairs += 1
            }
        } }
        return .init(layers: L, experts: E, domains: domains, domainSeparation: pairs > 0 ? distance / Double(pairs) : 0)
    }

    /// routing.svg: rows = domain × layer, columns = experts, cells = share of that domain's routed tokens.
    func writeRoutingPlot(_ r: DemoReport.Routing) throws {
        var rows: [[Double]] = [], names: [String] = []
        for d in DemoDomain.allCases {
            guard let dr = r.domains[d.rawValue] else { continue }
            for l in 0..<r.layers { rows.append(dr.share[l]); names.append("\(d.rawValue) L\(l)") }
        }
        try SVGPlot.write(SVGPlot.heatMap(title: "Expert share per domain and layer", rowLabel: "domain · layer", columnLabel: "expert",
                                          values: rows, rowNames: names, cellSize: 30), to: "\(options.out)/routing.svg")
    }
}

/// The model families `moe demo` trains: `qwen3_moe` (attention in every layer) or the hybrid `qwen3_next`.
public enum DemoArchitecture: String, Sendable, CaseIterable {
    case moe, next
}

/// Entropy of a distribution divided by the entropy of the uniform one (1 = perfectly balanced).
func normalisedEntropy(_ p: [Double]) -> Double {
    guard p.count > 1 else { return 1 }
    let h = p.reduce(0) { $1 > 0 ? $0 - $1 * log($1) : $0 }
    return h / log(Double(p.count))
}

/// OUT/report.json.
public struct DemoReport: Codable, Sendable {
    public struct Stage: Codable, Sendable {
        public var name: String
        public var valLoss: Double?
        public var trainLoss: Double
        public var steps: Int
        public var tokens: Int
        public var seconds: Double
        public var tokensPerSecond: Double
        public var model: String
        /// Greedy accuracy on the held-out arithmetic problems after this stage.
        public var taskAccuracy: Double?
        /// GRPO: the mean reward of the last rollouts.
        public var meanReward: Double?
        enum CodingKeys: String, CodingKey {
            case name, steps, tokens, seconds, model
            case valLoss = "val_loss", trainLoss = "train_loss", tokensPerSecond = "tokens_per_s", taskAccuracy = "task_accuracy"
            case meanReward = "mean_reward"
        }

        init(_ s: TrainingSummary, name: String, model: String) {
            self.name = name; valLoss = s.validationLoss; trainLoss = s.trainLoss; steps = s.steps; tokens = s.tokens
            seconds = s.seconds; tokensPerSecond = s.tokensPerSecond; self.model = model
        }
    }
    public struct DomainRouting: Codable, Sendable {
        public var tokens: Int
        /// Per MoE layer, the share of this domain's top-k choices that went to each expert.
        public var share: [[Double]]
        /// Per MoE layer, the experts this domain uses most (top-k of them).
        public var topExperts: [[Int]]
        /// Mean over layers of the normalised entropy of `share` (1 = evenly spread).
        public var balance: Double
        enum CodingKeys: String, CodingKey { case tokens, share, balance; case topExperts = "top_experts" }
    }
    public struct Routing: Codable, Sendable {
        public var layers: Int
        public var experts: Int
        public var domains: [String: DomainRouting]
        /// Mean total-variation distance between the domains' expert shares (0 = identical routing).
        public var domainSeparation: Double
        enum CodingKeys: String, CodingKey { case layers, experts, domains; case domainSeparation = "domain_separation" }
    }
    public struct Sample: Codable, Sendable { public var prompt: String; public var completion: String }

    /// Pre-training of each model family the demo ran (`--compare`: both, on the same corpus and time).
    public struct ArchitectureRun: Codable, Sendable {
        public var modelType: String
        public var parameters: Int
        public var steps: Int
        public var valLoss: Double?
        public var tokensPerSecond: Double
        public var seconds: Double
        public var model: String
        enum CodingKeys: String, CodingKey {
            case steps, seconds, parameters, model
            case modelType = "model_type", valLoss = "val_loss", tokensPerSecond = "tokens_per_s"
        }

        init(_ s: Stage, modelType: String, parameters: Int) {
            self.modelType = modelType; self.parameters = parameters; steps = s.steps; valLoss = s.valLoss
            tokensPerSecond = s.tokensPerSecond; seconds = s.seconds; model = s.model
        }
    }

    public var stages: [Stage]
    public var routing: Routing
    public var samples: [String: [Sample]]
    public var seconds: Double
    public var architectures: [ArchitectureRun] = []
    /// `--study`: MoE against dense in equal time.
    public var study: MoEDenseStudy.Report?

    /// `moe demo --seeds N`: each stage's held-out accuracy per seed, its mean and spread, and what each post-training
    /// stage adds over SFT.
    public static func acrossSeeds(_ reports: [DemoReport], seeds: [UInt64]) -> String {
        func stats(_ x: [Double]) -> (mean: Double, sd: Double) {
            let m = x.reduce(0, +) / Double(max(x.count, 1))
            return (m, x.count > 1 ? (x.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(x.count - 1)).squareRoot() : 0)
        }
        func accuracy(_ r: DemoReport, _ stage: String) -> Double { 100 * (r.stages.first { $0.name == stage }?.taskAccuracy ?? .nan) }
        var s = "# swift-moe demo across \(reports.count) seeds: held-out arithmetic accuracy (%)\n\n| stage | "
            + seeds.map { "seed \($0)" }.joined(separator: " | ") + " | mean | sd |\n|---|" + String(repeating: "---:|", count: seeds.count + 2) + "\n"
        let names = reports.first?.stages.map(\.name) ?? []
        for name in names {
            let x = reports.map { accuracy($0, name) }
            let (m, sd) = stats(x)
            s += "| \(name) | " + x.map { String(format: "%.1f", $0) }.joined(separator: " | ") + String(format: " | %.1f | %.1f |\n", m, sd)
        }
        for stage in ["dpo", "grpo"] where names.contains(stage) && names.contains("sft") {
            let x = reports.map { accuracy($0, stage) - accuracy($0, "sft") }
            let (m, sd) = stats(x)
            s += "| \(stage) − sft | " + x.map { String(format: "%+.1f", $0) }.joined(separator: " | ") + String(format: " | %+.1f | %.1f |\n", m, sd)
        }
        return s
    }

    /// The markdown report card (as nanochat prints one): a row per stage.
    public func reportCard() -> String {
        func f(_ x: Double?, _ format: String) -> String { x.map { String(format: format, $0) } ?? "–" }
        var s = "# swift-moe demo report card\n\n| stage | steps | validation loss | held-out arithmetic accuracy | mean reward | seconds |\n"
        s += "|---|---:|---:|---:|---:|---:|\n"
        for st in stages {
            s += "| \(st.name) | \(st.steps) | \(f(st.valLoss, "%.3f")) | \(f(st.taskAccuracy.map { $0 * 100 }, "%.1f %%")) | "
                + "\(f(st.meanReward, "%.2f")) | \(f(st.seconds, "%.0f")) |\n"
        }
        s += String(format: "\nRouting: domain separation %.2f (0 = every domain uses the same experts).\n", routing.domainSeparation)
        if !architectures.isEmpty {
            s += "\n| pre-trained model | parameters | steps | validation loss | tokens/s | seconds |\n|---|---:|---:|---:|---:|---:|\n"
            for a in architectures {
                s += "| \(a.modelType) | \(a.parameters) | \(a.steps) | \(f(a.valLoss, "%.3f")) | \(f(a.tokensPerSecond, "%.0f")) | \(f(a.seconds, "%.0f")) |\n"
            }
        }
        if let study { s += "\n" + MoEDenseStudy.table(study) }
        return s
    }
}
