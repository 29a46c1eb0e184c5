import ArgumentParser
import Foundation
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
            "kl_divergence_p99" and "top1_agreement".
            """)

    @OptionGroup var model: ModelOptions
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
    @Option(help: "End each completion at this text (repeatable; e.g. --stop '\\n' for one-line answers). Escapes \\n and \\t are read.")
    var stop: [String] = []

    func validate() throws {
        if [text, tasks, choices].compactMap({ $0 }).count != 1 { throw ValidationError("give exactly one of --text, --tasks and --choices") }
        if window < 2 || maxTokens < 1 || (limit ?? 1) < 1 { throw ValidationError("--window must be at least 2, --max-tokens and --limit positive") }
        if reference != nil && text == nil { throw ValidationError("--reference needs --text") }
        if let step, step < 1 { throw ValidationError("--step must be at least 1") }
    }

    func run() throws {
        let transformer = try model.load()
        guard let tokenizer = try Tokenizer.forModel(model.model) else {
            throw ValidationError("\(model.model) has no tokenizer (tokenizer.json, or a GGUF file's)")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        if let text {
            guard let data = FileManager.default.contents(atPath: text), let s = String(data: data, encoding: .utf8) else {
                throw ValidationError("cannot read \(text) as UTF-8 text")
            }
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
            let stops = stop.map { $0.replacingOccurrences(of: "\\n", with: "\n").replacingOccurrences(of: "\\t", with: "\t") }
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
