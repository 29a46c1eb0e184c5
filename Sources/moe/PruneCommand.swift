import ArgumentParser
import Foundation
import MoEFormats
import MoEModel
import MoETokenizer
import MoETraining

/// `moe prune`: a smaller checkpoint without each layer's least-used experts, and what that costs.
struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Drop each MoE layer's least-used experts (by routing weight on calibration text) and write a smaller Hugging Face checkpoint.",
        discussion: """
            The routers of --model are traced on the --data files (text, or JSONL with a "text" field) or on moe \
            demo's built-in corpus (--demo-corpus); in every MoE layer the --keep experts that carried the most \
            routing weight stay (renumbered in their old order), the others' weights and router rows go, and \
            config.json's expert count becomes --keep (num_experts_per_tok too, if it was larger). Then the pruned \
            model is compared with the original on --eval-text (default: the calibration text): perplexity, KL \
            divergence mean and p99, top-1 agreement, parameters and bytes — printed as a table and written to \
            OUT/pruning.json with the plan.
            """)

    @OptionGroup var options: ModelOptions
    @Option(parsing: .upToNextOption, help: "Calibration text or JSONL files.") var data: [String] = []
    @Flag(help: "Calibrate on moe demo's built-in corpus instead of files.") var demoCorpus = false
    @Option(help: "Experts each MoE layer keeps.") var keep: Int
    @Option(help: "Where the pruned checkpoint goes.") var out: String
    @Option(help: "The text the quality table is measured on (default: the calibration text).") var evalText: String?
    @Option(help: "At most this many calibration tokens.") var maxTokens = 50000
    @Option(help: "Tokens per scoring window of the quality table.") var window = 512

    func validate() throws {
        if data.isEmpty == !demoCorpus { throw ValidationError("give --data FILE… or --demo-corpus") }
        if keep < 1 || maxTokens < 1 || window < 2 { throw ValidationError("--keep and --max-tokens must be positive, --window at least 2") }
    }

    func run() throws {
        let original = try options.load(defaultActivations: .int16)
        guard let tokenizer = try Tokenizer.forModel(options.model) else {
            throw ValidationError("\(options.model) has no tokenizer (tokenizer.json)")
        }
        let documents = demoCorpus
            ? DemoCorpus.documents(count: 90, seed: 0xCA1B).map { RoutedDocument(domain: "calibration", text: $0.text) }
            : try RoutedDocument.load(paths: data).map { RoutedDocument(domain: "calibration", text: $0.text) }
        let bar = ProgressBar(label: "calibrate", unit: .items)
        let trace = try RoutingTrace.collect(original, tokenizer: tokenizer, documents: documents, maxTokensPerDomain: maxTokens) {
            bar.update(done: $0, total: $1)
        }
        bar.finish()
        let plan = try ExpertPruning.plan(trace, keep: keep)
        try ExpertPruning.write(directory: options.model, plan: plan, to: out)
        let pruned = try Transformer(directory: out, threads: options.threads, activations: .int16)

        let text = try evalText.map { path -> String in
            guard let d = FileManager.default.contents(atPath: path), let s = String(data: d, encoding: .utf8) else {
                throw ValidationError("cannot read \(path) as UTF-8 text")
            }
            return s
        } ?? documents.map(\.text).joined(separator: "\n\n")
        let before = try Evaluation.text(original, tokenizer: tokenizer, text: text, window: window)
        let after = try Evaluation.text(pruned, reference: original, tokenizer: tokenizer, text: text, window: window)
        let a = ModelSummary(original), b = ModelSummary(pruned)
        let table = """
            | model | experts per layer | parameters | weight bytes | perplexity | KL to original (mean / p99) | top-1 agreement |
            |---|---|---|---|---|---|---|
            | original | \(plan.experts) | \(a.totalParameters) | \(a.weightBytes) | \(String(format: "%.3f", before.perplexity)) | – | – |
            | pruned | \(keep) | \(b.totalParameters) | \(b.weightBytes) | \(String(format: "%.3f", after.perplexity)) | \(String(format: "%.5f / %.4f", after.klDivergence ?? 0, after.klDivergenceP99 ?? 0)) | \(String(format: "%.1f%%", 100 * (after.top1Agreement ?? 0))) |

            """
        struct Report: Encodable {
            var plan: ExpertPruning.Plan
            var original: Evaluation.TextResult
            var pruned: Evaluation.TextResult
            var parameters: [Int]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try AtomicFile.write(try encoder.encode(Report(plan: plan, original: before, pruned: after, parameters: [a.totalParameters, b.totalParameters])),
                             to: (out as NSString).appendingPathComponent("pruning.json"))
        printError("calibrated on \(trace.tokens) tokens; routing weight kept per layer: "
                   + plan.massKept.map { String(format: "%.1f%%", 100 * $0) }.joined(separator: " "))
        print(table, terminator: "")
        printError("wrote \(out) (model.safetensors, config.json, pruning.json and the tokenizer files)")
    }
}
