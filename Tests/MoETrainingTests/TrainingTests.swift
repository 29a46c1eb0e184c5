import Foundation
import Testing
import MoEFormats
import MoEModel
@testable import MoETraining

/// A loss as a function of the parameters, for finite differences.
private func totalLoss(_ m: TrainableModel, _ b: (inputs: [Int32], targets: [Int32], B: Int, T: Int), _ balance: BalanceLosses) throws -> Double {
    try m.evaluate(batch: b.B, seqLen: b.T, inputs: b.inputs, targets: b.targets, balance: balance).total
}

private func temporaryDirectory() -> String {
    let dir = NSTemporaryDirectory() + "moe-train-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Token shards of synthetic text (a repeating pattern with noise), for loop tests.
private func syntheticShards(tokens: Int, vocab: Int, in dir: String) throws -> (TokenShard, TokenShard) {
    var rng = SplitMix64(seed: 5)
    let stream = (0..<tokens).map { i in UInt32(i % 7 == 0 ? Int(rng.next() % UInt64(vocab)) : (i * 3) % vocab) }
    try TokenShardFile.write(tokens: stream, vocabSize: vocab, to: dir + "/train.bin")
    try TokenShardFile.write(tokens: Array(stream.prefix(tokens / 4)), vocabSize: vocab, to: dir + "/val.bin")
    return (try TokenShard(path: dir + "/train.bin"), try TokenShard(path: dir + "/val.bin"))
}

private func tinyConfig(vocab: Int = 64, overrides: [String: Any] = [:]) throws -> ModelConfig {
    try ModelPreset.config("tiny", vocabSize: vocab, overrides: ["hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
                                                                 "head_dim": 8, "num_experts": 4, "num_experts_per_tok": 2,
                                                                 "moe_intermediate_size": 16, "max_position_embeddings": 32,
                                                                 "initializer_range": 0.2].merging(overrides) { $1 })
}

@Suite struct FiniteDifferenceTests {
    /// Every kind of parameter (attention with biases and q/k norms of both kinds, router, experts, shared
    /// expert and its gate, dense MLP, norms, embedding, head) against central differences of the loss,
    /// with the z-loss weighted heavily so its gradient is checked too (the aux loss is checked against torch).
    @Test(arguments: ["qwen2_moe", "qwen3_moe", "olmoe"])
    func gradientsMatchFiniteDifferences(_ name: String) throws {
        let e = try TrainingFixtures.expected(name)
        let model = try TrainableModel.load(directory: TrainingFixtures.directory(name), threads: 1)
        let batch = TrainingFixtures.batch(e)
        let balance = BalanceLosses(auxLossCoef: 0.02, zLossCoef: 1.0)
        model.store.zeroGrads()
        _ = try model.trainStep(batch: batch.B, seqLen: batch.T, inputs: batch.inputs, targets: batch.targets, balance: balance)
        let routing = model.blocks.compactMap { $0.moe?.choice }
        var rng = SplitMix64(seed: 3)
        var checked = 0
        for t in model.store.tensors {
            for _ in 0..<3 {
                let i = t.offset + Int(rng.next() % UInt64(t.count))
                let g = Double(model.store.grads[i])
                let saved = model.store.values[i]
                let h: Float = 2e-3
                model.store.values[i] = saved + h
                let up = try totalLoss(model, batch, balance)
                let routedUp = model.blocks.compactMap { $0.moe?.choice }
                model.store.values[i] = saved - h
                let down = try totalLoss(model, batch, balance)
                let routedDown = model.blocks.compactMap { $0.moe?.choice }
                model.store.values[i] = saved
                // A perturbation that flips a top-k choice makes the loss non-differentiable there: skip it.
                guard routedUp == routing && routedDown == routing else { continue }
                let fd = (up - down) / (2 * Double(h))
                #expect(abs(fd - g) <= 2e-3 + 2e-2 * abs(g), "\(name): \(t.name)[\(i - t.offset)] analytic \(g) vs finite difference \(fd)")
                checked += 1
            }
        }
        #expect(checked > model.store.tensors.count)
    }
}

@Suite struct TrainingLoopTests {
    /// One batch of 2 × 32 random tokens (vocabulary 64) as (inputs, targets).
    static func oneBatch() -> (inputs: [Int32], targets: [Int32]) {
        var rng = SplitMix64(seed: 9)
        let tokens = (0..<65).map { _ in Int32(rng.next() % 64) }
        return (Array(tokens[0..<64]), Array(tokens[1...64]))
    }

    /// `steps` AdamW steps of `model` on `oneBatch`; each step's losses.
    static func fit(_ model: TrainableModel, _ optimizer: AdamW, steps: Int, balance: BalanceLosses) throws -> [LossBreakdown] {
        let (inputs, targets) = oneBatch()
        return try (0..<steps).map { _ in
            model.store.zeroGrads()
            let l = try model.trainStep(batch: 2, seqLen: 32, inputs: inputs, targets: targets, balance: balance)
            clipGradients(model.store, maxNorm: 1)
            optimizer.update(model.store, lr: 1e-2, pool: model.pool)
            return l
        }
    }

    @Test func tinyModelOverfitsOneBatch() throws {
        let model = try TrainableModel(config: try tinyConfig(), threads: 2)
        model.initialize(seed: 1)
        let losses = try Self.fit(model, AdamW(model.store), steps: 80, balance: BalanceLosses(auxLossCoef: 0.01))
        let first = losses.first!.crossEntropy, last = losses.last!.crossEntropy
        #expect(first > 3.5)
        #expect(last < 0.5, "cross-entropy \(first) → \(last)")
    }

    /// The multi-token-prediction module learns its token-after-next task with the model, and once frozen (as
    /// objectives other than language modelling leave it) an optimizer step with weight decay leaves it as it is.
    @Test func multiTokenPredictionTrainsAndFreezes() throws {
        let model = try TrainableModel(config: try tinyConfig(), mtpDepth: 1, threads: 2)
        model.initialize(seed: 1)
        let optimizer = AdamW(model.store)
        let losses = try Self.fit(model, optimizer, steps: 80, balance: BalanceLosses())
        for l in losses { #expect(abs(l.total - l.crossEntropy - 0.3 * l.mtp) < 1e-9) }
        let first = losses.first!.mtp, last = losses.last!.mtp
        #expect(first > 3.5 && last < 0.5, "MTP cross-entropy \(first) → \(last)")

        let prefix = model.mtp!.prefix + "."
        let count = model.store.parameterCount
        model.store.freeze { $0.hasPrefix(prefix) }
        #expect(model.store.parameterCount < count)
        let module = model.store.tensors.filter { $0.name.hasPrefix(prefix) }
        let before = module.map { Array(UnsafeBufferPointer(start: model.store.values + $0.offset, count: $0.count)) }
        _ = try Self.fit(model, optimizer, steps: 1, balance: BalanceLosses())
        let after = module.map { Array(UnsafeBufferPointer(start: model.store.values + $0.offset, count: $0.count)) }
        #expect(before == after)
    }

    /// A reward model started from a checkpoint with a multi-token-prediction module leaves the module out (it
    /// predicts through the LM head, which a score head replaces) and saves.
    @Test func aRewardModelLeavesTheModuleOut() throws {
        let model = try TrainableModel.load(directory: TrainingFixtures.directory("deepseek_v3_mtp"), head: .score, threads: 1)
        #expect(model.mtpDepth == 0)
        let out = temporaryDirectory()
        try model.save(to: out)
        #expect(!(try SafeTensorsFile(path: out + "/model.safetensors")).tensors.keys.contains { $0.contains("eh_proj") })
    }

    /// Training 8 steps straight and training 4, stopping, and resuming from the checkpoint give the same
    /// losses (weights, optimizer moments, data order and step are all restored).
    @Test func resumeEqualsAnUninterruptedRun() throws {
        let data = temporaryDirectory()
        let (train, val) = try syntheticShards(tokens: 4000, vocab: 64, in: data)
        var settings = TrainingSettings()
        settings.steps = 8; settings.batchSize = 2; settings.seqLen = 16; settings.learningRate = 5e-3; settings.warmup = 2
        settings.checkpointEvery = 4; settings.evalEvery = 4; settings.evalBatches = 2; settings.logEvery = 2
        settings.balance = BalanceLosses(auxLossCoef: 0.01, zLossCoef: 0.001)
        settings.biasUpdateRate = 1e-3
        func fresh(seed: UInt64) throws -> TrainableModel {
            let m = try TrainableModel(config: try tinyConfig(), selectionBias: true, threads: 2)
            m.initialize(seed: seed)
            return m
        }
        let straight = temporaryDirectory(), interrupted = temporaryDirectory()
        _ = try Trainer(model: try fresh(seed: 1), settings: settings, train: train, validation: val, out: straight).run()
        _ = try Trainer(model: try fresh(seed: 1), settings: settings, train: train, validation: val, out: interrupted).run()
        // Pretend the run was killed after step 4: only checkpoint-4 survives.
        try FileManager.default.removeItem(atPath: interrupted + "/checkpoint-8")
        let resumed = try Trainer(model: try fresh(seed: 77), settings: settings, train: train, validation: val, out: interrupted)
        #expect(try resumed.resume())
        #expect(resumed.step == 4)
        _ = try resumed.run()
        expectSameRun(straight, interrupted, steps: 8)
        for f in ["loss.svg", "expert_load.svg", "model.safetensors", "config.json"] {
            #expect(FileManager.default.fileExists(atPath: interrupted + "/" + f), "\(f) missing")
        }
    }

    /// A NaN loss stops training with a message naming the last good checkpoint, which stays intact.
    @Test func nonFiniteLossStopsAndKeepsTheLastCheckpoint() throws {
        let data = temporaryDirectory(), out = temporaryDirectory()
        let (train, val) = try syntheticShards(tokens: 2000, vocab: 64, in: data)
        var settings = TrainingSettings()
        settings.steps = 2; settings.batchSize = 2; settings.seqLen = 16; settings.checkpointEvery = 2
        let model = try TrainableModel(config: try tinyConfig(), threads: 2)
        model.initialize(seed: 1)
        _ = try Trainer(model: model, settings: settings, train: train, validation: val, out: out).run()
        let before = try Data(contentsOf: URL(fileURLWithPath: out + "/checkpoint-2/model.safetensors"))
        settings.steps = 4
        let again = try Trainer(model: model, settings: settings, train: train, validation: val, out: out)
        try again.resume()
        model.store.values[model.store.tensor("model.norm.weight")!.offset] = .nan
        #expect {
            try again.run()
        } throws: { error in
            "\(error)".contains("NaN") && "\(error)".contains("checkpoint-2")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/checkpoint-2/model.safetensors")) == before)
    }

    @Test func sequenceLongerThanTheModelsContextIsRefused() throws {
        let data = temporaryDirectory()
        let (train, val) = try syntheticShards(tokens: 2000, vocab: 64, in: data)
        var settings = TrainingSettings()
        settings.seqLen = 64   // the tiny config allows 32
        let model = try TrainableModel(config: try tinyConfig(), threads: 1)
        #expect { try Trainer(model: model, settings: settings, train: train, validation: val, out: temporaryDirectory()) }
            throws: { "\($0)".contains("max_position_embeddings") }
    }

    /// A target outside the vocabulary, or an LM loss on a reward model, is an error, not a write past the logits.
    @Test func badTargetsAndHeadsAreErrors() throws {
        let model = try TrainableModel(config: try tinyConfig(), threads: 1)
        let inputs = [Int32](repeating: 1, count: 8)
        var targets = inputs
        targets[3] = 64
        #expect { try model.evaluate(batch: 1, seqLen: 8, inputs: inputs, targets: targets, balance: BalanceLosses()) }
            throws: { "\($0)".contains("outside the vocabulary") }
        let scorer = try TrainableModel(config: try tinyConfig(), head: .score, threads: 1)
        #expect { try scorer.trainStep(batch: 1, seqLen: 8, inputs: inputs, targets: inputs, balance: BalanceLosses()) }
            throws: { "\($0)".contains("score head") }
    }

    /// Batches that cannot fit in memory are refused before training starts.
    @Test func oversizedBatchIsRefused() throws {
        let data = temporaryDirectory()
        let (train, val) = try syntheticShards(tokens: 2000, vocab: 64, in: data)
        var settings = TrainingSettings()
        settings.batchSize = 1 << 20; settings.seqLen = 32
        let model = try TrainableModel(config: try tinyConfig(), threads: 1)
        #expect { try Trainer(model: model, settings: settings, train: train, validation: val, out: temporaryDirectory()) }
            throws: { "\($0)".contains("lower --batch") }
    }

    @Test func unwritableOutputDirectoryIsRefused() throws {
        #expect { try TrainingSetup.prepareOutput("/proc/moe-cannot-write-here") } throws: { "\($0)".contains("/proc/moe-cannot-write-here") }
    }

    /// The auxiliary-loss-free bias moves against the load and travels with the checkpoint under
    /// DeepSeek-V3's name.
    @Test func selectionBiasBalancesAndIsSaved() throws {
        let model = try TrainableModel(config: try tinyConfig(), selectionBias: true, threads: 1)
        model.initialize(seed: 2)
        let inputs = (0..<64).map { Int32($0 % 64) }
        _ = try model.evaluate(batch: 2, seqLen: 32, inputs: inputs, targets: inputs, balance: BalanceLosses())
        let load = model.lastExpertLoad[0]
        model.updateSelectionBias(rate: 0.01)
        let bias = model.store.tensor("model.layers.0.mlp.gate.e_score_correction_bias")!
        let mean = Double(load.reduce(0, +)) / Double(load.count)
        for e in load.indices {
            let b = model.store.values[bias.offset + e]
            if Double(load[e]) > mean { #expect(b < 0) } else if Double(load[e]) < mean { #expect(b > 0) }
        }
        let dir = temporaryDirectory()
        try model.save(to: dir)
        let loaded = try TrainableModel.load(directory: dir, threads: 1)
        let b2 = loaded.store.tensor("model.layers.0.mlp.gate.e_score_correction_bias")!
        #expect((0..<load.count).allSatisfy { loaded.store.values[b2.offset + $0] == model.store.values[bias.offset + $0] })
    }
}

@Suite struct TrainingCheckpointTests {
    /// What training saves has exactly the tensors (names, shapes) `save_pretrained` wrote, and the
    /// inference engine reading it computes the same logits as the training forward.
    @Test(arguments: TrainingFixtures.cases)
    func savedCheckpointMatchesHFLayoutAndInference(_ name: String) throws {
        let model = try TrainableModel.load(directory: TrainingFixtures.directory(name), threads: 2)
        let dir = temporaryDirectory()
        try model.save(to: dir)
        let original = try SafeTensorsFile(path: TrainingFixtures.directory(name) + "/model.safetensors")
        let saved = try SafeTensorsFile(path: dir + "/model.safetensors")
        #expect(Set(saved.tensors.keys) == Set(original.tensors.keys))
        for (k, t) in original.tensors { #expect(saved.tensors[k]?.shape == t.shape, "\(k)") }
        for (k, t) in saved.tensors { #expect(try FloatEncoding.floats(t) == FloatEncoding.floats(original.tensors[k]!), "\(k)") }

        let inference = try Transformer(directory: dir, threads: 2)
        let e = try TrainingFixtures.expected(name)
        let ids = e.input_ids[0].map(Int.init)
        let logits = try inference.forward(ids, cache: inference.makeCache(), logitsFor: .all)
        let reloaded = try TrainableModel.load(directory: dir, threads: 2)
        let training = try reloaded.logits(ids.map(Int32.init))
        var diff: Float = 0
        for i in 0..<training.count { diff = max(diff, abs(training[i] - logits[i])) }
        #expect(diff < 1e-4, "\(name): training forward vs inference max |Δlogit| \(diff)")
    }
}

@Suite struct InferenceModelTests {
    /// Rollouts sample from `inferenceModel()`: the engine over the parameters in memory computes what it computes
    /// from the saved checkpoint, bit for bit, and a new one sees the weights as changed since (a norm, copied).
    @Test(arguments: TrainingFixtures.cases)
    func inferenceModelInMemoryEqualsTheSavedCheckpoint(_ name: String) throws {
        let model = try TrainableModel.load(directory: TrainingFixtures.directory(name), threads: 2)
        let ids = try TrainingFixtures.expected(name).input_ids[0].map(Int.init)
        func logits(_ m: Transformer) throws -> [Float] { Array(try m.forward(ids, cache: m.makeCache(), logitsFor: .all)) }
        func saved() throws -> [Float] {
            let dir = temporaryDirectory()
            try model.save(to: dir)
            return try logits(Transformer(directory: dir, threads: 2))
        }
        let before = try logits(model.inferenceModel()), fromDisk = try saved()
        #expect(before == fromDisk, "\(name)")
        let norm = try #require(model.store.tensor("model.norm.weight"))
        for i in 0..<norm.count { model.store.values[norm.offset + i] *= 1.5 }
        let after = try logits(model.inferenceModel())
        let resaved = try saved()
        #expect(after != before && after == resaved, "\(name)")
    }
}

@Suite struct GptOssCheckpointTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/models/gpt_oss_mxfp4").path

    /// gpt-oss's MXFP4 experts train from their dequantised values and are saved back as MXFP4 bit for bit (the values
    /// are on the grid), or in bf16 without the quantization_config; either gives the fixture's logits.
    @Test(arguments: [true, false])
    func mxfp4ExpertsRoundTrip(mxfp4: Bool) throws {
        let model = try TrainableModel.load(directory: Self.fixture, threads: 1)
        let dir = temporaryDirectory()
        try model.save(to: dir, dtype: .bf16, mxfp4Experts: mxfp4)
        let original = try SafeTensorsFile(path: Self.fixture + "/model.safetensors")
        let saved = try SafeTensorsFile(path: dir + "/model.safetensors")
        let config = try String(contentsOfFile: dir + "/config.json", encoding: .utf8)
        #expect(config.contains("\"mxfp4\"") == mxfp4)
        if mxfp4 {
            #expect(Set(saved.tensors.keys) == Set(original.tensors.keys))
            for (k, t) in original.tensors where k.hasSuffix("_blocks") || k.hasSuffix("_scales") {
                let s = try #require(saved.tensors[k])
                #expect(s.shape == t.shape && Data(bytes: s.pointer, count: s.byteCount) == Data(bytes: t.pointer, count: t.byteCount), "\(k)")
            }
        } else {
            #expect(saved.tensors["model.layers.0.mlp.experts.gate_up_proj"]?.shape == [4, 64, 128])
        }
        let e = try JSONDecoder().decode(Fixtures.self, from: Data(contentsOf: URL(fileURLWithPath: Self.fixture + "/expected.json")))
        let inference = try Transformer(directory: dir, threads: 1, activations: .int16)   // (f32 math on MXFP4)
        let logits = try inference.forward(e.tokens, cache: inference.makeCache(), logitsFor: .all)
        var diff: Float = 0
        for (i, v) in e.logits.joined().enumerated() { diff = max(diff, abs(v - logits[i])) }
        #expect(diff < 1e-4, "max |Δlogit| \(diff)")
        #expect(throws: (any Error).self) { try TrainableModel.load(directory: TrainingFixtures.directory("qwen3_moe")).save(to: dir, mxfp4Experts: true) }
    }

    struct Fixtures: Decodable { let tokens: [Int]; let logits: [[Float]] }
}

extension TrainableModel {
    /// [T × vocab] logits of one sequence (tests).
    func logits(_ ids: [Int32]) throws -> [Float] {
        try forwardHidden(batch: 1, seqLen: ids.count, inputs: ids)
        var out = [Float](repeating: 0, count: ids.count * vocab)
        let w = store.values!
        out.withUnsafeMutableBufferPointer { o in
            linearForward(finalNormed.pointer, rows: ids.count, inputs: hidden, outputs: vocab, weight: w + lmHead, bias: nil,
                          into: o.baseAddress!, pool: pool)
        }
        return out
    }
}

/// A resumed run's metrics.jsonl reads as the uninterrupted run's: steps 1...`steps`, losses and validation
/// losses within 1e-6, the objective's `metrics` (rewards, value losses, …) within 1e-6.
func expectSameRun(_ straight: String, _ interrupted: String, steps: Int, metrics: [String] = [],
                   sourceLocation: SourceLocation = #_sourceLocation) {
    let a = MetricsLog.read(path: straight + "/metrics.jsonl"), b = MetricsLog.read(path: interrupted + "/metrics.jsonl")
    #expect(a.map(\.step) == Array(1...steps) && b.map(\.step) == Array(1...steps), sourceLocation: sourceLocation)
    for (x, y) in zip(a, b) {
        #expect(abs(x.loss - y.loss) <= 1e-6, "step \(x.step): \(x.loss) vs \(y.loss)", sourceLocation: sourceLocation)
        if let vx = x.validationLoss, let vy = y.validationLoss { #expect(abs(vx - vy) <= 1e-6, sourceLocation: sourceLocation) }
        for k in metrics {
            #expect(abs((x.metrics?[k] ?? .nan) - (y.metrics?[k] ?? .nan)) <= 1e-6, "step \(x.step) \(k)", sourceLocation: sourceLocation)
        }
    }
}
