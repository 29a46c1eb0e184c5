import Foundation
import Testing
import MoEFormats
import MoETokenizer
@testable import MoETraining

/// Fixtures made by scripts/make_posttrain_fixtures.py from TRL's own trainers.
enum PostTrainingFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/posttraining").path

    static func json(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(root)/\(name)/expected.json"))) as! [String: Any]
    }

    /// Every gradient against the fixture's grads.safetensors (max |g − g_ref| ≤ 1e-4 · max |g_ref| + 1e-6).
    static func expectGradients(_ model: TrainableModel, _ name: String) throws {
        let reference = try SafeTensorsFile(path: "\(root)/\(name)/grads.safetensors")
        #expect(Set(reference.tensors.keys) == Set(model.store.tensors.map(\.name)))
        for t in model.store.tensors {
            guard let r = reference.tensors[t.name] else { continue }
            let ref = try FloatEncoding.floats(r)
            var refMax: Float = 0, diff: Float = 0
            for i in 0..<t.count {
                refMax = max(refMax, abs(ref[i])); diff = max(diff, abs(model.store.grads[t.offset + i] - ref[i]))
            }
            #expect(diff <= 1e-4 * refMax + 1e-6, "\(name): \(t.name) max |g − g_ref| \(diff), max |g_ref| \(refMax)")
        }
    }
}

@Suite struct DPOTests {
    /// TRL's DPOTrainer.compute_loss (sigmoid, β 0.1, policy ≠ reference, aux loss with the attention mask):
    /// sequence log-probs, rewards, loss and every gradient.
    @Test func matchesTRL() throws {
        let e = try PostTrainingFixtures.json("dpo")
        let examples = e["examples"] as! [[String: [Int]]]
        let batch = try DPO.batch(prompts: examples.map { $0["prompt_ids"]! }, chosen: examples.map { $0["chosen_ids"]! },
                                  rejected: examples.map { $0["rejected_ids"]! }, pad: e["pad_token_id"] as! Int)
        #expect(batch.inputs.map(Int.init) == (e["input_ids"] as! [[Int]]).flatMap { $0 })
        let reference = try TrainableModel.load(directory: PostTrainingFixtures.root + "/dpo/reference", threads: 2)
        let refLogProbs = TrainableModel.sequenceSums(try reference.tokenLogProbs(batch), batch)
        let wantRef = (e["reference_chosen_logps"] as! [Double]) + (e["reference_rejected_logps"] as! [Double])
        expectClose(refLogProbs, wantRef, 1e-4, "reference log-probs")

        let policy = try TrainableModel.load(directory: PostTrainingFixtures.root + "/dpo/policy", threads: 2)
        let r = try DPO.step(policy: policy, batch: batch, referenceLogProbs: refLogProbs, beta: e["beta"] as! Double,
                             balance: BalanceLosses(auxLossCoef: e["router_aux_loss_coef"] as! Double))
        expectClose(r.chosenRewards, e["chosen_rewards"] as! [Double], 1e-5, "chosen rewards")
        expectClose(r.rejectedRewards, e["rejected_rewards"] as! [Double], 1e-5, "rejected rewards")
        #expect(abs(r.preferenceLoss - (e["dpo_loss"] as! Double)) < 1e-5)
        #expect(abs(r.aux - (e["aux_loss"] as! Double)) < 1e-5, "aux \(r.aux)")
        #expect(abs(r.loss - (e["loss"] as! Double)) < 1e-5)
        try PostTrainingFixtures.expectGradients(policy, "dpo")
    }
}

@Suite struct RewardModelTests {
    /// TRL's RewardTrainer.compute_loss on Qwen3MoeForSequenceClassification: rewards, loss, every gradient
    /// (score.weight included); the checkpoint saves back in the layout AutoModelForSequenceClassification reads.
    @Test func matchesTRL() throws {
        let e = try PostTrainingFixtures.json("reward")
        let examples = e["examples"] as! [[String: [Int]]]
        let batch = try RewardModeling.batch(chosen: examples.map { $0["chosen_ids"]! }, rejected: examples.map { $0["rejected_ids"]! },
                                             pad: e["pad_token_id"] as! Int)
        #expect(batch.inputs.map(Int.init) == (e["input_ids"] as! [[Int]]).flatMap { $0 })
        let model = try TrainableModel.load(directory: PostTrainingFixtures.root + "/reward", threads: 2)
        #expect(model.head == .score)
        let r = try RewardModeling.step(model, batch: batch)
        expectClose(r.chosen, e["rewards_chosen"] as! [Double], 1e-5, "chosen rewards")
        expectClose(r.rejected, e["rewards_rejected"] as! [Double], 1e-5, "rejected rewards")
        #expect(abs(r.loss - (e["loss"] as! Double)) < 1e-5)
        try PostTrainingFixtures.expectGradients(model, "reward")

        let dir = NSTemporaryDirectory() + "moe-reward-" + UUID().uuidString
        try model.save(to: dir)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as! [String: Any]
        #expect(config["architectures"] as? [String] == ["Qwen3MoeForSequenceClassification"])
        #expect((config["id2label"] as? [String: String])?.count == 1)
        let saved = try SafeTensorsFile(path: dir + "/model.safetensors")
        #expect(saved.tensors["score.weight"]?.shape == [1, 32] && saved.tensors["lm_head.weight"] == nil)
    }
}

@Suite struct GRPOTests {
    /// TRL's GRPOTrainer loss (dapo, β 0.04 with the bias-corrected k3 KL, ε 0.2, old log-probs from a
    /// perturbed policy so clipping happens both ways): advantages, loss, KL, clip fraction, every gradient.
    @Test func matchesTRL() throws {
        let e = try PostTrainingFixtures.json("grpo")
        let prompt = e["prompt"] as! [Int], completions = e["completions"] as! [[Int]]
        let batch = try PaddedBatch(sequences: completions.map { prompt + $0 }, scoredFrom: completions.map { _ in prompt.count },
                                    pad: e["pad_token_id"] as! Int)
        let advantages = GRPO.advantages(rewards: e["rewards"] as! [Double], groupSize: e["num_generations"] as! Int)
        expectClose(advantages, e["advantages"] as! [Double], 1e-6, "advantages")
        // [G][C] (entry t = log p of completion token t) → the batch's positions (prompt.count − 1 + t).
        func layout(_ key: String) -> [Float] {
            var out = [Float](repeating: 0, count: batch.rows * batch.seqLen)
            for (g, row) in (e[key] as! [[Double]]).enumerated() {
                for (t, v) in row.enumerated() where t < completions[g].count { out[g * batch.seqLen + prompt.count - 1 + t] = Float(v) }
            }
            return out
        }
        let policy = try TrainableModel.load(directory: PostTrainingFixtures.root + "/grpo/policy", threads: 2)
        let r = try GRPO.step(policy: policy, batch: batch, oldLogProbs: layout("old_per_token_logps"),
                              referenceLogProbs: layout("ref_per_token_logps"), advantages: advantages,
                              settings: GRPO.Settings(beta: e["beta"] as! Double, epsilon: e["epsilon"] as! Double),
                              tokensInBatch: e["num_items_in_batch"] as! Int,
                              balance: BalanceLosses(auxLossCoef: e["router_aux_loss_coef"] as! Double))
        #expect(abs(r.policyLoss - (e["policy_loss"] as! Double)) < 1e-5, "policy loss \(r.policyLoss)")
        #expect(abs(r.loss - (e["loss"] as! Double)) < 1e-5, "loss \(r.loss)")
        #expect(abs(r.kl - (e["kl_mean"] as! Double)) < 1e-5, "kl \(r.kl)")
        #expect(abs(r.clipFraction - (e["clip_ratio_region_mean"] as! Double)) < 1e-6, "clip \(r.clipFraction)")
        try PostTrainingFixtures.expectGradients(policy, "grpo")
    }
}

@Suite struct SFTDataTests {
    static let tokenizerDirectory: String = {
        let trained = try! BPETrainer(vocabSize: 300).train(texts: ["hello there, how are you? fine thanks. what is 2 + 3? it is 5."])
        let dir = NSTemporaryDirectory() + "moe-sft-tok-" + UUID().uuidString
        try! trained.write(to: dir)
        return dir
    }()
    static let tokenizer = try! Tokenizer(directory: tokenizerDirectory)

    /// Only the assistants' contents and their <|im_end|> are trained, whatever the template writes around them.
    @Test func onlyAssistantTurnsAreTrained() throws {
        let messages = [ChatMessage(role: "system", content: "be brief"), ChatMessage(role: "user", content: "hello there"),
                        ChatMessage(role: "assistant", content: "fine thanks."), ChatMessage(role: "user", content: "what is 2 + 3?"),
                        ChatMessage(role: "assistant", content: "it is 5.")]
        let tok = SFTDataTests.tokenizer
        let e = try SFTData.example(messages, tokenizer: tok, template: .chatML)
        let trainedText = tok.decode(zip(e.ids, e.trained).filter(\.1).map(\.0))
        #expect(trainedText == "fine thanks.<|im_end|>it is 5.<|im_end|>")
        #expect(tok.decode(e.ids) == (try ChatTemplate.chatML.render(messages: messages, addGenerationPrompt: false)))
        let batch = try SFTData.batch([e, e], pad: 0)
        let scored = (0..<batch.seqLen).filter { batch.targets[$0] >= 0 }.map { Int(batch.targets[$0]) }
        #expect(tok.decode(scored) == trainedText)
    }

    @Test func badConversationsNameTheLine() throws {
        let path = NSTemporaryDirectory() + "moe-sft-\(UUID().uuidString).jsonl"
        try "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        #expect { try SFTData.conversations(path: path) } throws: { "\($0)".contains(":2") && "\($0)".contains("no assistant turn") }
        try "{\"messages\": oops}\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect { try SFTData.conversations(path: path) } throws: { "\($0)".contains(":1") }
    }
}

@Suite struct SFTTrainingTests {
    /// A few dozen steps of SFT lower the held-out assistant-token loss (seeded, tiny model).
    @Test func sftLowersAssistantLoss() throws {
        let tok = SFTDataTests.tokenizer
        let conversations = (0..<40).map { i in
            [ChatMessage(role: "user", content: "what is \(i % 5) + \(i % 3)?"), ChatMessage(role: "assistant", content: "it is \(i % 5 + i % 3).")]
        }
        let examples = try conversations.map { try SFTData.example($0, tokenizer: tok, template: .chatML) }
        let config = try ModelPreset.config("tiny", vocabSize: tok.vocabSize,
                                            overrides: ["hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
                                                        "num_experts": 4, "moe_intermediate_size": 32, "max_position_embeddings": 256])
        let model = try TrainableModel(config: config, threads: 2)
        model.initialize(seed: 3)
        let batches = try ExampleBatches(train: Array(examples[0..<32]), validation: Array(examples[32...]), batchSize: 4,
                                         pad: tok.eosTokenIds.first!, seed: 1)
        var settings = TrainingSettings()
        settings.steps = 40; settings.learningRate = 1e-2; settings.warmup = 2; settings.evalEvery = 40; settings.checkpointEvery = 40
        let out = NSTemporaryDirectory() + "moe-sft-" + UUID().uuidString
        let trainer = try Trainer(model: model, settings: settings, batches: batches, stage: "sft", out: out)
        let before = try trainer.validationLoss()!
        let summary = try trainer.run()
        #expect(summary.validationLoss! < before * 0.6, "held-out assistant loss \(before) → \(summary.validationLoss!)")
        #expect(FileManager.default.fileExists(atPath: out + "/loss.svg"))
    }
}

@Suite struct PreferenceTrainingTests {
    static func pairs(_ tok: Tokenizer) -> [PreferencePair] {
        (0..<24).map { i in
            let a = i % 5, b = i % 3
            let eos = tok.eosTokenIds.first!
            return PreferencePair(prompt: tok.encode("what is \(a) + \(b)?", addSpecialTokens: false),
                                  chosen: tok.encode(" it is \(a + b).", addSpecialTokens: false) + [eos],
                                  rejected: tok.encode(" it is \(a + b + 1) or so", addSpecialTokens: false) + [eos])
        }
    }

    static func model(_ tok: Tokenizer, head: TrainableModel.Head = .languageModel) throws -> TrainableModel {
        let config = try ModelPreset.config("tiny", vocabSize: tok.vocabSize,
                                            overrides: ["hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
                                                        "num_experts": 4, "moe_intermediate_size": 32, "max_position_embeddings": 128])
        let m = try TrainableModel(config: config, head: head, threads: 2)
        m.initialize(seed: 5)
        return m
    }

    static func settings(steps: Int, lr: Double) -> TrainingSettings {
        var s = TrainingSettings()
        s.steps = steps; s.learningRate = lr; s.warmup = 2; s.evalEvery = steps; s.checkpointEvery = steps
        return s
    }

    /// DPO raises the held-out chosen-over-rejected reward margin (seeded, bounded steps).
    @Test func dpoRaisesTheMargin() throws {
        let tok = SFTDataTests.tokenizer
        let all = PreferenceTrainingTests.pairs(tok)
        let policy = try PreferenceTrainingTests.model(tok)
        let out = NSTemporaryDirectory() + "moe-dpo-" + UUID().uuidString
        try policy.save(to: out + "-start")
        let reference = try TrainableModel.load(directory: out + "-start", threads: 2)
        func refs(_ p: [PreferencePair]) throws -> [(chosen: Double, rejected: Double)] {
            let b = try DPO.batch(prompts: p.map(\.prompt), chosen: p.map(\.chosen), rejected: p.map(\.rejected), pad: 0)
            let s = TrainableModel.sequenceSums(try reference.tokenLogProbs(b), b)
            return p.indices.map { (s[$0], s[p.count + $0]) }
        }
        let train = Array(all[0..<20]), held = Array(all[20...])
        let batches = try PairBatches(train: train, validation: held, reference: try refs(train), validationReference: try refs(held),
                                      batchSize: 4, pad: 0, seed: 2)
        let trainer = try Trainer(model: policy, settings: PreferenceTrainingTests.settings(steps: 25, lr: 5e-3), batches: batches,
                                  objective: DPOObjective(beta: 0.1), stage: "dpo", out: out)
        _ = try trainer.run()
        let last = MetricsLog.read(path: out + "/metrics.jsonl").last!
        #expect((last.metrics?["val_reward_margin"] ?? 0) > 0.05, "\(last.metrics ?? [:])")
        #expect((last.metrics?["val_reward_accuracy"] ?? 0) >= 0.75)
        #expect(FileManager.default.fileExists(atPath: out + "/metrics.svg"))
    }

    /// A reward model trained on the pairs ranks held-out pairs above chance.
    @Test func rewardModelRanksHeldOutPairs() throws {
        let tok = SFTDataTests.tokenizer
        let all = PreferenceTrainingTests.pairs(tok)
        let scorer = try PreferenceTrainingTests.model(tok, head: .score)
        let batches = try PairBatches(train: Array(all[0..<20]), validation: Array(all[20...]), batchSize: 4, pad: 0, seed: 2,
                                      wholeSequences: true)
        let out = NSTemporaryDirectory() + "moe-rm-" + UUID().uuidString
        let trainer = try Trainer(model: scorer, settings: PreferenceTrainingTests.settings(steps: 30, lr: 3e-3), batches: batches,
                                  objective: RewardObjective(), stage: "reward", out: out)
        _ = try trainer.run()
        let last = MetricsLog.read(path: out + "/metrics.jsonl").last!
        #expect((last.metrics?["val_accuracy"] ?? 0) > 0.5, "\(last.metrics ?? [:])")
    }
}

@Suite struct GRPOTrainingTests {
    /// GRPO with a format reward (the completion holds a digit) raises the mean reward of a random tiny
    /// policy within a bounded number of seeded steps, with the KL to the start kept small.
    @Test func grpoRaisesMeanReward() throws {
        let tok = SFTDataTests.tokenizer
        let policy = try PreferenceTrainingTests.model(tok)
        let dir = NSTemporaryDirectory() + "moe-grpo-" + UUID().uuidString
        try policy.save(to: dir + "-start")
        let reference = try TrainableModel.load(directory: dir + "-start", threads: 2)
        let prompts = (0..<4).map { (ids: tok.encode("what is \($0) + 1?", addSpecialTokens: false), answer: "\($0 + 1)") }
        let batches = try RolloutBatches(policy: policy, reference: reference, tokenizer: tok, prompts: prompts, group: 8, promptsPerBatch: 2,
                                         maxNewTokens: 4, iterations: 2, reward: .regex(try NSRegularExpression(pattern: "[0-9]")),
                                         seed: 4, pad: 0)
        var settings = TrainingSettings()
        settings.steps = 40; settings.learningRate = 1e-2; settings.warmup = 2; settings.evalEvery = 40; settings.checkpointEvery = 40
        let trainer = try Trainer(model: policy, settings: settings, batches: batches,
                                  objective: GRPOObjective(settings: GRPO.Settings(beta: 0.04, epsilon: 0.2)), stage: "grpo", out: dir)
        _ = try trainer.run()
        let rewards = MetricsLog.read(path: dir + "/metrics.jsonl").compactMap { $0.metrics?["mean_reward"] }
        let first = rewards.prefix(6).reduce(0, +) / 6, last = rewards.suffix(6).reduce(0, +) / 6
        #expect(last > first + 0.2, "mean reward \(first) → \(last)")
        let kl = MetricsLog.read(path: dir + "/metrics.jsonl").compactMap { $0.metrics?["kl"] }
        #expect((kl.last ?? 1) < 1.0)
    }
}

extension GRPOTrainingTests {
    /// A GRPO run at temperature 0.7 stopped mid-rollout (after 3 steps of 2 per rollout) and resumed equals an
    /// uninterrupted one: same samples, rewards, losses and final weights.
    @Test func resumeEqualsAnUninterruptedRun() throws {
        let tok = SFTDataTests.tokenizer
        let dir = NSTemporaryDirectory() + "moe-grpo-resume-" + UUID().uuidString
        try PreferenceTrainingTests.model(tok).save(to: dir + "/start")
        func trainer(_ out: String) throws -> Trainer {
            let policy = try TrainableModel.load(directory: dir + "/start", threads: 2)
            let prompts = (0..<4).map { (ids: tok.encode("what is \($0) + 1?", addSpecialTokens: false), answer: "\($0 + 1)") }
            let batches = try RolloutBatches(policy: policy, reference: try TrainableModel.load(directory: dir + "/start", threads: 2),
                                             tokenizer: tok, prompts: prompts, group: 4, promptsPerBatch: 2, maxNewTokens: 4, iterations: 2,
                                             reward: .regex(try NSRegularExpression(pattern: "[0-9]")), seed: 4,
                                             pad: 0, temperature: 0.7)
            var settings = TrainingSettings()
            settings.steps = 6; settings.learningRate = 1e-2; settings.warmup = 1; settings.evalEvery = 6; settings.checkpointEvery = 3
            return try Trainer(model: policy, settings: settings, batches: batches,
                               objective: GRPOObjective(settings: GRPO.Settings(beta: 0.04, epsilon: 0.2, temperature: 0.7)),
                               stage: "grpo", out: out)
        }
        _ = try trainer(dir + "/straight").run()
        _ = try trainer(dir + "/interrupted").run()
        try FileManager.default.removeItem(atPath: dir + "/interrupted/checkpoint-6")
        let resumed = try trainer(dir + "/interrupted")
        #expect(try resumed.resume())
        #expect(resumed.step == 3)
        _ = try resumed.run()
        expectSameRun(dir + "/straight", dir + "/interrupted", steps: 6, metrics: ["mean_reward"])
        let x = try SafeTensorsFile(path: dir + "/straight/model.safetensors"), y = try SafeTensorsFile(path: dir + "/interrupted/model.safetensors")
        for (name, t) in x.tensors { #expect(try FloatEncoding.floats(t) == FloatEncoding.floats(y.tensors[name]!), "\(name)") }
    }

    @Test func rewardModelWithAnotherVocabularyIsRefused() throws {
        let config = try ModelPreset.config("tiny", vocabSize: 64, overrides: ["hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
                                                                              "head_dim": 8, "num_experts": 4, "moe_intermediate_size": 16])
        let scorer = try TrainableModel(config: config, head: .score, threads: 1)
        let dir = NSTemporaryDirectory() + "moe-rm-vocab-" + UUID().uuidString
        try scorer.save(to: dir)
        #expect { try CompletionReward.parse("model:" + dir, vocabularySize: 300) } throws: { "\($0)".contains("vocabulary (64) differs") }
        #expect { try CompletionReward.parse("regex:(", vocabularySize: 300) } throws: { "\($0)".contains("regular expression") }
    }
}

/// `got` and `want` have the same non-zero length and agree within `tolerance` everywhere (a `zip` alone would
/// pass an empty or short result).
func expectClose(_ got: [Double], _ want: [Double], _ tolerance: Double, _ what: String,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(!want.isEmpty && got.count == want.count, "\(what): \(got.count) values, \(want.count) expected",
            sourceLocation: sourceLocation)
    for (i, (a, b)) in zip(got, want).enumerated() {
        #expect(abs(a - b) < tolerance, "\(what)[\(i)]: \(a) vs \(b)", sourceLocation: sourceLocation)
    }
}
