import ArgumentParser
import Foundation
import MoEKernels
import MoEModel

/// `moe bench infer`: prefill and decode speed, printed as `prefill tokens/s: X` and `decode tokens/s: Y`
/// (a contract), beside the memory-bandwidth limit of decoding. As llama-bench: prefill computes logits for
/// the last position only, and decoding starts from a one-token context.
///
/// `--batch N` times decoding as N sequences stepping together through `Transformer.decode` (continuous
/// batching) and adds the aggregate rate over all of them:
///
/// ```
/// moe bench infer --model bench-models/qwen3moe-bf16 --batch 8
/// ```
struct BenchInfer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer",
        abstract: "Measure prefill and decode tokens/s beside the memory-bandwidth limit.")

    @OptionGroup var options: ModelOptions
    @OptionGroup var experts: ExpertBudgetOptions
    @Option(help: "Prompt length for prefill.") var promptTokens: Int = 512
    @Option(help: "Tokens to decode after the prompt.") var genTokens: Int = 128
    @Option(help: "Repetitions; the figures are their mean.") var repetitions: Int = 3
    @Option(help: "Sequences decoded together per step (batched decode); 1 times plain one-sequence decoding.")
    var batch: Int = 1
    @Option(help: "Also time decoding after a context of this many tokens (llama-bench's -d); 0: skip.")
    var depth: Int = 0

    func run() throws {
        guard promptTokens > 0, genTokens > 0, repetitions > 0, batch > 0 else { throw ValidationError("counts must be positive") }
        let model = try options.load()
        try experts.apply(to: model)
        let c = model.config
        guard promptTokens <= model.contextLength, genTokens + 1 + depth <= model.contextLength, depth >= 0 else {
            throw ValidationError("--prompt-tokens + --gen-tokens exceed the context (\(model.contextLength))")
        }
        let summary = ModelSummary(model)
        let cache = model.makeCache(capacity: max(promptTokens, genTokens + 1 + depth))
        var rng = Xoshiro256StarStar(seed: 42)
        let prompt = (0..<promptTokens).map { _ in Int(rng.next() % UInt64(c.vocabSize)) }
        let decodeInputs = (0..<genTokens).map { _ in Int(rng.next() % UInt64(c.vocabSize)) }

        // Warm-up, as llama-bench: pages the weights in and sizes every buffer.
        cache.reset()
        try model.forward(prompt, cache: cache, logitsFor: .last)
        cache.reset()
        for t in decodeInputs.prefix(8) { try model.forward([t], cache: cache, logitsFor: .last) }

        // Batched decode: sequence b starts from its own one-token context and steps through its own inputs.
        let caches = batch > 1 ? (0..<batch).map { _ in model.makeCache(capacity: genTokens + 1) } : []
        let batchInputs = batch > 1 ? (0..<genTokens).map { _ in (0..<batch).map { _ in Int(rng.next() % UInt64(c.vocabSize)) } } : []
        func startBatch() throws {
            for (b, cache) in caches.enumerated() {
                cache.reset()
                try model.forward([prompt[b % promptTokens]], cache: cache, logitsFor: .last)
            }
        }
        if batch > 1 {
            try startBatch()
            for step in batchInputs.prefix(8) { _ = try model.decode(step, caches: caches) }
        }

        var prefillRates: [Double] = [], decodeRates: [Double] = [], batchRates: [Double] = [], depthRates: [Double] = []
        let context = (0..<depth).map { _ in Int(rng.next() % UInt64(c.vocabSize)) }
        for _ in 0..<repetitions {
            cache.reset()
            var start = ContinuousClock.now
            try model.forward(prompt, cache: cache, logitsFor: .last)
            prefillRates.append(Double(promptTokens) / elapsed(start))
            // Decode from an almost empty context, as llama-bench's tg test does.
            cache.reset()
            try model.forward([prompt[0]], cache: cache, logitsFor: .last)
            start = .now
            for t in decodeInputs { try model.forward([t], cache: cache, logitsFor: .last) }
            decodeRates.append(Double(genTokens) / elapsed(start))
            if depth > 0 {
                cache.reset()
                try model.forward(context, cache: cache, logitsFor: .none)
                start = .now
                for t in decodeInputs { try model.forward([t], cache: cache, logitsFor: .last) }
                depthRates.append(Double(genTokens) / elapsed(start))
            }
            if batch > 1 {
                try startBatch()
                start = .now
                for step in batchInputs { _ = try model.decode(step, caches: caches) }
                batchRates.append(Double(genTokens * batch) / elapsed(start))
            }
        }
        // What the experts cost per decoded token, counted (not timed) in one more decode.
        let counter = ExpertUsageCounter()
        if summary.moeLayers > 0 {
            model.routingObserver = counter
            cache.reset()
            try model.forward([prompt[0]], cache: cache, logitsFor: .last)
            counter.reset()
            for t in decodeInputs { try model.forward([t], cache: cache, logitsFor: .last) }
            model.routingObserver = nil
        }
        // Expert bytes read per decoded token, as counted (the top-k's without a budget).
        let expertRead = summary.expertBytesRead(expertsRun: counter.expertsRun, tokens: genTokens)
        let bytesPerToken = Double(summary.bytesPerToken - summary.expertBytesPerToken) + expertRead
        let bandwidth = measureReadBandwidth(pool: model.pool, bytes: 1 << 30)
        let limit = bandwidth * 1e9 / bytesPerToken
        let decode = mean(decodeRates)
        print("model: \(model.directory) (\(c.modelType), \(model.embedding.type)), threads \(model.pool.threads)")
        print("prompt \(promptTokens) tokens, \(genTokens) generated, \(repetitions) repetitions")
        print(String(format: "prefill tokens/s: %.1f", mean(prefillRates)) + String(format: "   (± %.1f)", stddev(prefillRates)))
        print(String(format: "decode tokens/s: %.1f", decode) + String(format: "   (± %.1f)", stddev(decodeRates)))
        print(String(format: "bytes per token: %.1f MB; read bandwidth: %.1f GB/s; bandwidth limit: %.1f tokens/s; decode at %.0f%% of it",
                     bytesPerToken / 1e6, bandwidth, limit, 100 * decode / limit))
        if summary.moeLayers > 0 {
            print(String(format: "experts: budget %@, %.2f per token and layer; expert bytes read per token: %.1f MB (%.0f%% of the full top-k's %.1f MB)",
                         model.expertBudget.description, counter.meanExpertsPerToken, expertRead / 1e6,
                         100 * expertRead / Double(max(summary.expertBytesPerToken, 1)), Double(summary.expertBytesPerToken) / 1e6))
        }
        if depth > 0 {
            print(String(format: "decode at depth %d tokens/s: %.1f   (± %.1f); KV cache %.1f KiB per token",
                         depth, mean(depthRates), stddev(depthRates), Double(model.kvBytesPerToken) / 1024))
        }
        if batch > 1 {
            let aggregate = mean(batchRates)
            print(String(format: "batched decode, %d sequences: aggregate tokens/s: %.1f   (± %.1f); %.1f per sequence; %.2fx one sequence",
                         batch, aggregate, stddev(batchRates), aggregate / Double(batch), aggregate / decode))
        }
    }

    private func elapsed(_ start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
    private func mean(_ x: [Double]) -> Double { x.reduce(0, +) / Double(x.count) }
    private func stddev(_ x: [Double]) -> Double {
        let m = mean(x)
        return x.count > 1 ? (x.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(x.count - 1)).squareRoot() : 0
    }
}
