import ArgumentParser
import Foundation
import MoEFormats
import MoEModel
import MoETokenizer
import MoETraining

/// `moe eval --model DIR --text FILE` or `--tasks FILE.jsonl`.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a model: perplexity and bits per byte of a text, or greedy accuracy on question/answer tasks.",
        discussion: """
            --text FILE: the text is tokenized with the model's tokenizer and scored in non-overlapping windows \
            (--window tokens; each window's first token is context only). --tasks FILE.jsonl: one \
            {"prompt": text or [messages], "answer": …, "answer_regex"?: …} per line; each prompt is completed \
            greedily (up to --max-tokens) and the answer is read from the completion as an answer_regex's first \
            group, GSM8K's "#### N", or else its final number; numbers compare by value. --choices FILE.jsonl: \
            {"question", "choices", "answer": index} per line, each choice scored by the log-likelihood of " " + \
            choice after the question, as lm-evaluation-harness does ("accuracy", "accuracy_norm"). The last line is \
            JSON ({"perplexity", "bits_per_byte", …} or {"accuracy", "correct", "total", …}). With --reference MODEL \
            (--text): also "reference_perplexity", "kl_divergence" (mean KL(reference ‖ model), nats), \
            "kl_divergence_p99" and "top1_agreement". --budget-sweep (with --text, and optionally --tasks or --choices): \
            the same model at full budget is the reference for K = k−1 … 1 experts per token and each of \
            --thresholds; a table (also budget.md, budget.json and two SVG charts in --out) of experts kept, KL \
            divergence mean and p99, top-1 agreement, perplexity, accuracy, expert bytes read and decode tokens/s.
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var experts: ExpertBudgetOptions
    @Option(help: "A UTF-8 text file to score.") var text: String?
    @Option(help: "With --text: a reference model (e.g. the f32 model a quantised file came from) to compare each token's distribution with: KL divergence (mean, 99th percentile) and top-1 agreement, as llama.cpp's perplexity --kl-divergence.")
    var reference: String?
    @Option(help: "A JSONL file of {\"prompt\", \"answer\"} tasks.") var tasks: String?
    @Option(help: "A JSONL file of multiple-choice items {\"question\", \"choices\": [...], \"answer\": index}, scored by log-likelihood as lm-evaluation-harness scores them.")
    var choices: String?
    @Option(help: "Tokens per scoring window (--text).") var window: Int = 512
    @Option(help: "With --text: run each window this many tokens per forward pass, as decode (1) or batched serving does, to score that path (default: the whole window at once, as prefill).")
    var step: Int?
    @Option(help: "Most tokens generated per task (--tasks).") var maxTokens: Int = 256
    @Option(help: "Evaluate only the first N tasks.") var limit: Int?
    @Flag(help: "Send text prompts through the chat template as a user message (--tasks).") var chat = false
    @Flag(help: "Measure what fewer experts cost (needs --text): every top-K and each of --thresholds against the full model.")
    var budgetSweep = false
    @Option(help: "With --budget-sweep: the expert thresholds to try, comma-separated.") var thresholds = "0.1,0.2,0.3,0.5"
    @Option(help: "With --budget-sweep: tokens decoded per budget for the speed (3 times; the median).") var decodeTokens = 64
    @Option(help: "With --budget-sweep: where budget.md, budget.json, budget-kl.svg and budget-speed.svg go.") var out = "budget-sweep"
    @Option(help: "End each completion at this text (repeatable; e.g. --stop '\\n' for one-line answers). Escapes \\n and \\t are read.")
    var stop: [String] = []

    func validate() throws {
        if budgetSweep {
            if text == nil || (tasks != nil && choices != nil) { throw ValidationError("--budget-sweep needs --text, and takes at most one of --tasks and --choices") }
            if experts.expertsPerToken != nil || experts.expertThreshold != nil { throw ValidationError("--budget-sweep tries the budgets itself; drop --experts-per-token and --expert-threshold") }
            if reference != nil || step != nil { throw ValidationError("--budget-sweep compares with the model itself; drop --reference and --step") }
            if decodeTokens < 1 { throw ValidationError("--decode-tokens must be at least 1") }
            _ = try sweepThresholds()
        } else if [text, tasks, choices].compactMap({ $0 }).count != 1 { throw ValidationError("give exactly one of --text, --tasks and --choices") }
        if window < 2 || maxTokens < 1 || (limit ?? 1) < 1 { throw ValidationError("--window must be at least 2, --max-tokens and --limit positive") }
        if reference != nil && text == nil { throw ValidationError("--reference needs --text") }
        if let step, step < 1 { throw ValidationError("--step must be at least 1") }
    }

    func sweepThresholds() throws -> [Float] {
        try thresholds.split(separator: ",").map {
            guard let t = Float($0.trimmingCharacters(in: .whitespaces)), (0...1).contains(t) else {
                throw ValidationError("--thresholds: '\($0)' is not a number between 0 and 1")
            }
            return t
        }
    }

    /// --stop with its escapes \n and \t read.
    var stops: [String] { stop.map { $0.replacingOccurrences(of: "\\n", with: "\n").replacingOccurrences(of: "\\t", with: "\t") } }

    func readText(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path), let s = String(data: data, encoding: .utf8) else {
            throw ValidationError("cannot read \(path) as UTF-8 text")
        }
        return s
    }

    /// `--budget-sweep`: the table on stdout (and in --out with the charts), one JSON line last.
    func sweep(_ transformer: Transformer, tokenizer: Tokenizer, text: String, encoder: JSONEncoder) throws {
        let budgets = BudgetSweep.budgets(topK: transformer.expertsPerToken, thresholds: try sweepThresholds())
        let taskList = try tasks.map { path in try Evaluation.tasks(path: path).prefix(limit ?? .max) }
        let choiceItems = try choices.map { path in try Evaluation.choiceItems(path: path).prefix(limit ?? .max) }
        let accuracy: ((ExpertBudget) throws -> Double)?
        if let taskList {
            accuracy = { _ in try Evaluation.tasks(transformer, tokenizer: tokenizer, tasks: Array(taskList), maxTokens: maxTokens, chat: chat, stop: stops).accuracy }
        } else if let choiceItems {
            accuracy = { _ in try Evaluation.choices(transformer, tokenizer: tokenizer, items: Array(choiceItems)).accuracy }
        } else {
            accuracy = nil
        }
        let bar = ProgressBar(label: "budget sweep", unit: .items)
        let rows = try BudgetSweep.run(transformer, tokenizer: tokenizer, text: text, window: window, budgets: budgets,
                                       decodeTokens: decodeTokens, accuracy: accuracy) { bar.update(done: $0, total: $1) }
        bar.finish()
        let table = BudgetSweep.markdown(rows)
        let name = URL(fileURLWithPath: model.model).lastPathComponent
        let plots = BudgetSweep.plots(rows, model: name)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try AtomicFile.write(Data(table.utf8), to: "\(out)/budget.md")
        try AtomicFile.write(try encoder.encode(rows), to: "\(out)/budget.json")
        try SVGPlot.write(plots.divergence, to: "\(out)/budget-kl.svg")
        try SVGPlot.write(plots.speed, to: "\(out)/budget-speed.svg")
        printError("model: \(model.model), threads \(transformer.pool.threads), CPU \(cpuName())")
        printError(table)
        printError("wrote \(out)/budget.md, budget.json, budget-kl.svg, budget-speed.svg")
        print(String(decoding: try encoder.encode(rows), as: UTF8.self))
    }

    func run() throws {
        let transformer = try model.load()
        try experts.apply(to: transformer)
        guard let tokenizer = try Tokenizer.forModel(model.model) else {
            throw ValidationError("\(model.model) has no tokenizer (tokenizer.json, or a GGUF file's)")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        if budgetSweep, let text {
            try sweep(transformer, tokenizer: tokenizer, text: try readText(text), encoder: encoder)
        } else if let text {
            let s = try readText(text)
            // The reference in f32 math (16-bit activations where it is quantised too).
            let referenceModel = try reference.map { try Transformer(directory: $0, threads: model.threads, activations: .int16) }
            let bar = ProgressBar(label: "eval", unit: .items)
            let r = try Evaluation.text(transformer, reference: referenceModel, tokenizer: tokenizer, text: s, window: window,
                                           step: step) {
                bar.update(done: $0, total: $1)
            }
            bar.finish()
            printError(String(format: "%d tokens, %d bytes: loss %.4f, perplexity %.3f, %.4f bits per byte", r.tokens, r.bytes, r.loss,
                              r.perplexity, r.bitsPerByte))
            if let kl = r.klDivergence, let p99 = r.klDivergenceP99, let top1 = r.top1Agreement, let ref = r.referencePerplexity {
                printError(String(format: "vs reference (perplexity %.3f): KL divergence mean %.6f, p99 %.6f nats; top-1 agreement %.2f%%",
                                  ref, kl, p99, 100 * top1))
            }
            print(String(decoding: try encoder.encode(r), as: UTF8.self))
        } else if let choices {
            var items = try Evaluation.choiceItems(path: choices)
            if let limit { items = Array(items.prefix(limit)) }
            let bar = ProgressBar(label: "eval", unit: .items)
            let r = try Evaluation.choices(transformer, tokenizer: tokenizer, items: items) { bar.update(done: $0, total: $1) }
            bar.finish()
            printError(String(format: "accuracy %.1f%% (%d of %d), per-character normalised %.1f%%", 100 * r.accuracy, r.correct, r.total,
                              100 * r.accuracyNorm))
            print(String(decoding: try encoder.encode(r), as: UTF8.self))
        } else if let tasks {
            var all = try Evaluation.tasks(path: tasks)
            if let limit { all = Array(all.prefix(limit)) }
            let r = try Evaluation.tasks(transformer, tokenizer: tokenizer, tasks: all, maxTokens: maxTokens, chat: chat, stop: stops) { done, total in
                if isatty(2) != 0 { FileHandle.standardError.write(Data("\rtask \(done)/\(total)".utf8)) }
            }
            if isatty(2) != 0 { FileHandle.standardError.write(Data("\n".utf8)) }
            for e in r.examples {
                printError("[\(e.correct ? "right" : "wrong")] expected \(e.expected), read \(e.extracted ?? "nothing") from \(e.completion.prefix(120).debugDescription)")
            }
            printError(String(format: "accuracy %.1f%% (%d of %d)", 100 * r.accuracy, r.correct, r.total))
            print(String(decoding: try encoder.encode(r), as: UTF8.self))
        }
    }
}
