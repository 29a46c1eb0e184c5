import ArgumentParser
import Foundation
import MoEKernels
import MoEModel
import MoETokenizer
import MoETraining

/// `moe bench rollouts --model DIR`: what GRPO's and PPO's sampling costs, batched against one sequence at a time.
///
/// ```
/// moe bench rollouts --model demo-out/dpo     # the demo's GRPO stage: 8 sums × 8 completions, 40 tokens
/// ```
struct BenchRollouts: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollouts",
        abstract: "Time a rollout batch: batched in memory (what GRPO and PPO run) beside one sequence at a time through a saved copy.",
        discussion: """
            The prompts are the demo's sums (`What is A + B?`) in the model's chat template. The peer is the way \
            rollouts used to be made: the policy written to a scratch directory, loaded by the inference engine and \
            sampled one completion after another. Both use the same seeds; the number of completions that come out \
            token for token the same is printed (batching changes only float summation order).
            """)

    @Option(help: "A model directory the trainer loads (config.json + safetensors), with its tokenizer.") var model: String
    @Option(help: "Prompts per rollout batch.") var prompts: Int = 8
    @Option(help: "Completions per prompt.") var group: Int = 8
    @Option(help: "Tokens per completion at most.") var maxNewTokens: Int = 40
    @Option(help: "Sampling temperature.") var temperature: Double = 0.7
    @Option(help: "Runs; figures are given as their range.") var runs: Int = 3
    @Option(help: "Worker threads.") var threads: Int = WorkerPool.defaultThreadCount

    func validate() throws {
        if prompts < 1 || group < 1 || maxNewTokens < 1 || runs < 1 || threads < 1 { throw ValidationError("counts must be positive") }
        if !(temperature > 0) { throw ValidationError("--temperature must be positive") }
    }

    func run() throws {
        let policy = try TrainableModel.load(directory: model, threads: threads)
        guard let tokenizer = try Tokenizer.forModel(model) else { throw ValidationError("no tokenizer.json in \(model)") }
        let questions = try DemoCorpus.trainingProblems(count: prompts, seed: 9).map {
            try tokenizer.encodeChat([ChatMessage(role: "user", content: $0.prompt)])
        }
        let batch = questions.flatMap { Array(repeating: $0, count: group) }
        let sampling = batch.indices.map { SamplingParameters(temperature: Float(temperature), seed: UInt64($0)) }
        let scratch = NSTemporaryDirectory() + "moe-bench-rollouts-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        print("model: \(model) (\(policy.config.modelType), \(policy.store.parameterCount) parameters), \(prompts) prompts × \(group) completions, ≤ \(maxNewTokens) tokens, temperature \(temperature), \(threads) threads, CPU \(cpuName())")

        var batched: [Double] = [], oneByOne: [Double] = [], same = 0, tokens = 0
        for _ in 0..<runs {
            var start = Date()
            let together = try policy.inferenceModel().generate(prompts: batch, maxTokens: maxNewTokens, sampling: sampling)
            let batchedSeconds = Date().timeIntervalSince(start)
            start = Date()
            try policy.save(to: scratch)
            let sampler = try Transformer(directory: scratch, threads: threads)
            let alone = try zip(batch, sampling).map { try sampler.generate(prompt: $0, maxTokens: maxNewTokens, sampling: $1) }
            let aloneSeconds = Date().timeIntervalSince(start)
            tokens = together.reduce(0) { $0 + $1.tokens.count }
            same = zip(together, alone).filter { $0.tokens == $1.tokens }.count
            batched.append(Double(tokens) / batchedSeconds)
            oneByOne.append(Double(alone.reduce(0) { $0 + $1.tokens.count }) / aloneSeconds)
        }
        func range(_ x: [Double]) -> String { String(format: "%.0f–%.0f", x.min()!, x.max()!) }
        print("completions token for token the same: \(same) of \(batch.count) (\(tokens) tokens)")
        print("one at a time, through disk: \(range(oneByOne)) tokens/s")
        print("batched, in memory:          \(range(batched)) tokens/s")
        let ratios = zip(batched, oneByOne).map { $0 / $1 }
        print(String(format: "ratio: %.1f–%.1f×", ratios.min()!, ratios.max()!))
    }
}
