import Foundation
import Testing
import MoEFormats
import MoEModel
import MoETokenizer
@testable import MoETraining

/// Fixtures made by scripts/make_lora_fixtures.py from PEFT: a tiny Qwen3-MoE (base/), a LoRA adapter on its
/// q/k/v/o projections with non-zero lora_B (adapter/), PEFT's logits, loss and autograd gradients.
enum LoRAFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/lora").path
    static let base = root + "/base", adapter = root + "/adapter"

    static func expected() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/expected.json"))) as! [String: Any]
    }

    static func temporaryDirectory(_ tag: String) -> String {
        NSTemporaryDirectory() + "moe-lora-\(tag)-" + UUID().uuidString
    }

    static func json(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    }
}

@Suite struct LoRAReferenceTests {
    /// Base + PEFT's adapter, merged, gives PEFT's logits.
    @Test func mergedModelGivesPEFTsLogits() throws {
        let e = try LoRAFixtures.expected()
        let out = LoRAFixtures.temporaryDirectory("merge")
        try LoRAAdapters.merge(base: LoRAFixtures.base, adapter: LoRAFixtures.adapter, out: out, threads: 2)
        let model = try Transformer(directory: out, threads: 2)
        let tokens = e["tokens"] as! [Int]
        let logits = try model.forward(tokens, cache: model.makeCache(capacity: tokens.count), logitsFor: .all)
        let want = (e["logits"] as! [[Double]]).flatMap { $0 }
        #expect(logits.count == want.count)
        var diff = 0.0
        for (a, b) in zip(logits, want) { diff = max(diff, abs(Double(a) - b)) }
        #expect(diff < 1e-4, "max |logit − PEFT| \(diff)")
    }

    /// `LoRAAdapters.merge` (what `moe lora merge` runs) writes the base with W + s·B·A in the targeted
    /// weights and every other tensor unchanged.
    @Test func mergeRoundTrips() throws {
        let out = LoRAFixtures.temporaryDirectory("merge")
        try LoRAAdapters.merge(base: LoRAFixtures.base, adapter: LoRAFixtures.adapter, out: out, threads: 2)
        for f in ["config.json", "model.safetensors", "generation_config.json"] {
            #expect(FileManager.default.fileExists(atPath: out + "/" + f), "\(f) missing")
        }
        let base = try Checkpoint(directory: LoRAFixtures.base), merged = try Checkpoint(directory: out)
        let adapter = try SafeTensorsFile(path: LoRAFixtures.adapter + "/adapter_model.safetensors")
        #expect(Set(base.tensorNames) == Set(merged.tensorNames))
        var adapted = 0
        for name in base.tensorNames {
            let w0 = try FloatEncoding.floats(try base.tensor(name)), w = try FloatEncoding.floats(try merged.tensor(name))
            let module = "base_model.model." + name.dropLast(".weight".count)
            guard let a = adapter.tensors[module + ".lora_A.weight"], let b = adapter.tensors[module + ".lora_B.weight"] else {
                #expect(w == w0, "\(name) changed")
                continue
            }
            adapted += 1
            let av = try FloatEncoding.floats(a), bv = try FloatEncoding.floats(b)
            let r = a.shape[0], cols = a.shape[1]
            var diff = 0.0
            for i in 0..<b.shape[0] {
                for j in 0..<cols {
                    var s = 0.0
                    for k in 0..<r { s += Double(bv[i * r + k]) * Double(av[k * cols + j]) }
                    diff = max(diff, abs(Double(w[i * cols + j]) - (Double(w0[i * cols + j]) + 2 * s)))   // α/r = 8/4
                }
            }
            #expect(diff < 1e-6, "\(name): max error \(diff)")
        }
        #expect(adapted == 8)
    }

    /// The merged-weight method's lora_A / lora_B gradients equal PEFT's autograd gradients.
    @Test func gradientsMatchPEFT() throws {
        let e = try LoRAFixtures.expected()
        let model = try TrainableModel.load(directory: LoRAFixtures.base, threads: 2)
        let lora = try LoRAAdapters(model: model, settings: LoRASettings(rank: 4, alpha: 8))
        try lora.load(from: LoRAFixtures.adapter)
        lora.apply(to: model)
        let ids = e["input_ids"] as! [[Int]], labels = e["labels"] as! [[Int]]
        let B = ids.count, T = ids[0].count
        var targets = [Int32](repeating: -100, count: B * T)
        for b in 0..<B { for t in 0..<(T - 1) { targets[b * T + t] = Int32(labels[b][t + 1]) } }
        model.store.zeroGrads(); lora.store.zeroGrads()
        let loss = try model.trainStep(batch: B, seqLen: T, inputs: ids.flatMap { $0 }.map(Int32.init), targets: targets,
                                       balance: BalanceLosses())
        #expect(abs(loss.total - (e["loss"] as! Double)) < 1e-5, "loss \(loss.total) vs \(e["loss"]!)")
        lora.accumulateGradients(from: model)
        let reference = try SafeTensorsFile(path: LoRAFixtures.root + "/grads.safetensors")
        #expect(Set(reference.tensors.keys) == Set(lora.store.tensors.map(\.name)))
        for t in lora.store.tensors {
            guard let r = reference.tensors[t.name] else { continue }
            let ref = try FloatEncoding.floats(r)
            var refMax: Float = 0, diff: Float = 0
            for i in 0..<t.count {
                refMax = max(refMax, abs(ref[i])); diff = max(diff, abs(lora.store.grads[t.offset + i] - ref[i]))
            }
            #expect(refMax > 0)
            #expect(diff <= 1e-4 * refMax + 1e-6, "\(t.name) max |g − g_ref| \(diff), max |g_ref| \(refMax)")
        }
    }

    /// An adapter saved here has PEFT's tensor names, shapes and dtype, and the adapter_config.json keys PEFT
    /// reads, with the same values as PEFT's for the same LoRA; it loads back unchanged.
    @Test func savedAdapterHasPEFTsLayout() throws {
        let model = try TrainableModel.load(directory: LoRAFixtures.base, threads: 2)
        let lora = try LoRAAdapters(model: model, settings: LoRASettings(rank: 4, alpha: 8), baseModel: "base")
        let dir = LoRAFixtures.temporaryDirectory("save")
        try lora.save(to: dir)
        let mine = try SafeTensorsFile(path: dir + "/adapter_model.safetensors")
        let peft = try SafeTensorsFile(path: LoRAFixtures.adapter + "/adapter_model.safetensors")
        #expect(Set(mine.tensors.keys) == Set(peft.tensors.keys))
        for (name, t) in peft.tensors {
            #expect(mine.tensors[name]?.shape == t.shape, "\(name)")
            #expect(mine.tensors[name]?.dtype == t.dtype, "\(name)")
        }
        let config = try LoRAFixtures.json(dir + "/adapter_config.json")
        let reference = try LoRAFixtures.json(LoRAFixtures.adapter + "/adapter_config.json")
        for key in config.keys { #expect(reference[key] != nil, "\(key) is not a key of PEFT's adapter_config.json") }
        for key in ["peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "bias", "fan_in_fan_out", "inference_mode",
                    "base_model_name_or_path", "use_dora", "use_rslora"] {
            // Numbers compared as numbers (JSONSerialization writes 0.0 as 0).
            let same = (config[key] as? NSNumber).flatMap { x in (reference[key] as? NSNumber).map { x.doubleValue == $0.doubleValue } }
                ?? ("\(config[key] ?? "missing")" == "\(reference[key] ?? "missing")")
            #expect(same, "\(key): \(config[key] ?? "missing") vs \(reference[key] ?? "missing")")
        }
        #expect(Set(config["target_modules"] as! [String]) == Set(reference["target_modules"] as! [String]))
        // lora_B starts at zero (the adapted model is the base), lora_A within PEFT's U(±1/√in).
        for t in lora.store.tensors {
            let v = UnsafeBufferPointer(start: lora.store.values + t.offset, count: t.count)
            if t.name.hasSuffix("lora_B.weight") { #expect(v.allSatisfy { $0 == 0 }) }
            else { #expect(v.allSatisfy { abs($0) <= 1 / Float(t.shape[1]).squareRoot() } && v.contains { $0 != 0 }) }
        }
        let again = try LoRAAdapters(model: model, settings: LoRASettings(rank: 4, alpha: 8, seed: 99))
        try again.load(from: dir)
        #expect(Array(UnsafeBufferPointer(start: again.store.values, count: again.store.count))
                == Array(UnsafeBufferPointer(start: lora.store.values, count: lora.store.count)))
    }
}

@Suite struct LoRATrainingTests {
    static func examples() throws -> [SFTExample] {
        let tok = SFTDataTests.tokenizer
        let conversations = (0..<40).map { i in
            [ChatMessage(role: "user", content: "what is \(i % 5) + \(i % 3)?"), ChatMessage(role: "assistant", content: "it is \(i % 5 + i % 3).")]
        }
        return try conversations.map { try SFTData.example($0, tokenizer: tok, template: .chatML) }
    }

    static func model() throws -> TrainableModel {
        let config = try ModelPreset.config("tiny", vocabSize: SFTDataTests.tokenizer.vocabSize,
                                            overrides: ["hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
                                                        "num_experts": 4, "moe_intermediate_size": 32, "max_position_embeddings": 256])
        let model = try TrainableModel(config: config, threads: 2)
        model.initialize(seed: 3)
        return model
    }

    static func batches(_ examples: [SFTExample]) throws -> ExampleBatches {
        try ExampleBatches(train: Array(examples[0..<32]), validation: Array(examples[32...]), batchSize: 4,
                           pad: SFTDataTests.tokenizer.eosTokenIds.first!, seed: 1)
    }

    /// LoRA SFT lowers the held-out assistant loss while every base weight stays bit-identical; OUT holds the
    /// adapter (PEFT's files), not a model.
    @Test func loraSFTLowersAssistantLossAndKeepsTheBase() throws {
        let model = try LoRATrainingTests.model()
        let before = Array(UnsafeBufferPointer(start: model.store.values, count: model.store.count))
        let lora = try LoRAAdapters(model: model, settings: LoRASettings(rank: 8, alpha: 16, targets: ["q_proj", "k_proj", "v_proj", "o_proj", "lm_head"]))
        var settings = TrainingSettings()
        settings.steps = 40; settings.learningRate = 1e-2; settings.warmup = 2; settings.evalEvery = 40; settings.checkpointEvery = 40
        let out = LoRAFixtures.temporaryDirectory("sft")
        let trainer = try Trainer(model: model, settings: settings, batches: try LoRATrainingTests.batches(try LoRATrainingTests.examples()),
                                  stage: "sft", out: out, lora: lora)
        let start = try trainer.validationLoss()!
        let summary = try trainer.run()
        #expect(summary.validationLoss! < start * 0.5, "held-out assistant loss \(start) → \(summary.validationLoss!)")
        // The base: untargeted tensors unchanged, the targeted ones' W₀ unchanged (the model holds W₀ + s·B·A).
        let targeted = Set(lora.modules.map { $0.name + ".weight" })
        var w0 = lora.baseWeights()[...]
        for t in model.store.tensors {
            let original = Array(before[t.offset..<(t.offset + t.count)])
            if targeted.contains(t.name) {
                #expect(Array(w0.prefix(t.count)) == original, "\(t.name): W₀ changed")
                w0 = w0.dropFirst(t.count)
                #expect(Array(UnsafeBufferPointer(start: model.store.values + t.offset, count: t.count)) != original)
            } else {
                #expect(Array(UnsafeBufferPointer(start: model.store.values + t.offset, count: t.count)) == original, "\(t.name) changed")
            }
        }
        for f in LoRAAdapters.files { #expect(FileManager.default.fileExists(atPath: out + "/" + f), "\(f) missing") }
        #expect(!FileManager.default.fileExists(atPath: out + "/model.safetensors"))
        // The saved adapter merged into the base is the trained model.
        let baseDir = out + "-base"
        let fresh = try LoRATrainingTests.model()
        try fresh.save(to: baseDir)
        let merged = try LoRAAdapters.merge(base: baseDir, adapter: out, out: out + "-merged", threads: 2)
        var diff: Float = 0
        for i in 0..<model.store.count { diff = max(diff, abs(merged.store.values[i] - model.store.values[i])) }
        #expect(diff < 1e-6, "merged vs trained: \(diff)")
    }

    /// A LoRA run stopped after 4 steps and resumed equals an uninterrupted one.
    @Test func resumeEqualsAnUninterruptedRun() throws {
        var settings = TrainingSettings()
        settings.steps = 8; settings.learningRate = 5e-3; settings.warmup = 2
        settings.checkpointEvery = 4; settings.evalEvery = 4; settings.evalBatches = 2; settings.logEvery = 2
        let examples = try LoRATrainingTests.examples()
        func trainer(_ out: String, seed: UInt64) throws -> Trainer {
            let model = try LoRATrainingTests.model()
            return try Trainer(model: model, settings: settings, batches: try LoRATrainingTests.batches(examples), stage: "sft", out: out,
                               lora: try LoRAAdapters(model: model, settings: LoRASettings(rank: 4, seed: seed)))
        }
        let straight = LoRAFixtures.temporaryDirectory("straight"), interrupted = LoRAFixtures.temporaryDirectory("interrupted")
        _ = try trainer(straight, seed: 1).run()
        _ = try trainer(interrupted, seed: 1).run()
        try FileManager.default.removeItem(atPath: interrupted + "/checkpoint-8")
        let resumed = try trainer(interrupted, seed: 77)
        #expect(try resumed.resume())
        #expect(resumed.step == 4)
        _ = try resumed.run()
        expectSameRun(straight, interrupted, steps: 8)
        let x = try SafeTensorsFile(path: straight + "/adapter_model.safetensors"), y = try SafeTensorsFile(path: interrupted + "/adapter_model.safetensors")
        for (name, t) in x.tensors { #expect(try FloatEncoding.floats(t) == FloatEncoding.floats(y.tensors[name]!), "\(name)") }
        // A full-model trainer refuses the LoRA checkpoint, and a LoRA trainer of another rank too.
        let full = try Trainer(model: try LoRATrainingTests.model(), settings: settings, batches: try LoRATrainingTests.batches(examples),
                               stage: "sft", out: interrupted)
        #expect { try full.resume() } throws: { "\($0)".contains("LoRA") }
        let model = try LoRATrainingTests.model()
        let other = try Trainer(model: model, settings: settings, batches: try LoRATrainingTests.batches(examples), stage: "sft",
                                out: interrupted, lora: try LoRAAdapters(model: model, settings: LoRASettings(rank: 2)))
        #expect { try other.resume() } throws: { "\($0)".contains("rank 4") }
    }
}

@Suite struct LoRABadInputTests {
    @Test func badRanksAndTargetsAreRefused() throws {
        let model = try TrainableModel.load(directory: LoRAFixtures.base, threads: 2)
        for r in [0, -3] {
            #expect { try LoRAAdapters(model: model, settings: LoRASettings(rank: r)) } throws: { "\($0)".contains("--lora-rank must be positive") }
        }
        #expect { try LoRAAdapters(model: model, settings: LoRASettings(rank: 4, alpha: 0)) } throws: { "\($0)".contains("--lora-alpha") }
        #expect { try LoRAAdapters(model: model, settings: LoRASettings(rank: 4, targets: ["q_proj", "qproj"])) } throws: {
            "\($0)".contains("'qproj' matches no weight") && "\($0)".contains("q_proj")
        }
        #expect { try LoRAAdapters(model: model, settings: LoRASettings(rank: 4, targets: ["gate_proj"])) } throws: {
            "\($0)".contains("routed experts")
        }
        #expect { try LoRAAdapters(model: model, settings: LoRASettings(rank: 4, targets: [])) } throws: { "\($0)".contains("no module") }
        // The router (mlp.gate) and lm_head are plain linear layers: allowed.
        #expect(try LoRAAdapters(model: model, settings: LoRASettings(rank: 2, targets: ["mlp.gate", "lm_head"])).modules.count == 3)
    }

    /// Adapters that do not fit the base are refused with the tensor named.
    @Test func mismatchedAdaptersAreRefused() throws {
        let peft = try SafeTensorsFile(path: LoRAFixtures.adapter + "/adapter_model.safetensors")
        let config = try LoRAFixtures.json(LoRAFixtures.adapter + "/adapter_config.json")
        func adapter(_ edit: (inout [String: (shape: [Int], values: [Float])], inout [String: Any]) -> Void) throws -> String {
            var tensors: [String: (shape: [Int], values: [Float])] = [:]
            for (name, t) in peft.tensors { tensors[name] = (t.shape, try FloatEncoding.floats(t)) }
            var c = config
            edit(&tensors, &c)
            let dir = LoRAFixtures.temporaryDirectory("bad")
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try SafeTensorsWriter.write(tensors.map { SafeTensorsWriter.Entry.floats($0.key, shape: $0.value.shape, values: $0.value.values) },
                                        to: dir + "/adapter_model.safetensors")
            try JSONSerialization.data(withJSONObject: c).write(to: URL(fileURLWithPath: dir + "/adapter_config.json"))
            return dir
        }
        func refused(_ dir: String, _ text: String) {
            #expect { try LoRAAdapters.merge(base: LoRAFixtures.base, adapter: dir, out: dir + "-out", threads: 2) } throws: {
                "\($0)".contains(text)
            }
        }
        let q = "base_model.model.model.layers.0.self_attn.q_proj"
        refused(try adapter { t, _ in t[q + ".lora_A.weight"] = ([4, 16], [Float](repeating: 0.1, count: 64)) }, "q_proj: lora_B·lora_A is [32, 16]")
        refused(try adapter { _, c in c["r"] = 8 }, "rank 4 but adapter_config.json says r = 8")
        refused(try adapter { t, _ in t["base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight"] = t[q + ".lora_A.weight"]
                                      t["base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight"] = t[q + ".lora_B.weight"] },
                "model.layers.7.self_attn.q_proj.weight, which the base model does not have")
        refused(try adapter { t, _ in t[q + ".lora_B.weight"] = nil }, "has no \(q).lora_B.weight")
        refused(try adapter { _, c in c["use_dora"] = true }, "DoRA")
        refused(try adapter { _, c in c["peft_type"] = "IA3" }, "not LORA")
        refused(LoRAFixtures.temporaryDirectory("missing"), "adapter_config.json is missing")
    }
}
