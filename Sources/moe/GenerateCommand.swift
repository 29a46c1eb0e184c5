import ArgumentParser
import Foundation
import MoEGrammar
import MoEModel
import MoETokenizer

/// `moe generate`: prefill the prompt, decode with the KV cache, print the generated ids.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate tokens after a prompt; print the text (streamed) when the model has a tokenizer, else the ids.",
        discussion: """
            Sampling defaults come from the model's generation_config.json (greedy unless it sets do_sample); \
            any flag overrides them. --temperature 0 is greedy. Filters apply in HF's order: repetition \
            penalty, presence/frequency penalties, temperature, top-k, top-p, min-p.
            """)

    @OptionGroup var options: ModelOptions

    @OptionGroup var input: PromptOptions

    @OptionGroup var experts: ExpertBudgetOptions

    @Option(help: "Generate at most this many tokens.")
    var maxTokens: Int = 32

    @Option(help: "Sampling temperature; 0 = greedy.") var temperature: Float?
    @Option(help: "Keep the k most likely tokens (0 = off; 50 when sampling without a generation_config top_k, as HF).") var topK: Int?
    @Option(help: "Keep the smallest set of tokens with this total probability (1 = off).") var topP: Float?
    @Option(help: "Drop tokens below min-p × the top probability (0 = off).") var minP: Float?
    @Option(help: "HF repetition penalty (1 = off).") var repetitionPenalty: Float?
    @Option(help: "OpenAI presence penalty (0 = off).") var presencePenalty: Float?
    @Option(help: "OpenAI frequency penalty (0 = off).") var frequencyPenalty: Float?
    @Option(help: "Seed for reproducible sampling.") var seed: UInt64?
    @Flag(help: "Do not stop at end-of-sequence tokens.") var ignoreEos = false
    @Flag(help: "Print the generated ids (comma-separated) even when the model has a tokenizer.") var printIds = false
    @Option(help: "Speculative decoding (same output when greedy, same distribution when sampling): 'lookup' drafts from n-gram matches in the prompt and text so far; 'mtp' from the checkpoint's multi-token-prediction module (DeepSeek-V3, GLM-4.5, or trained with --mtp-depth 1).")
    var speculative: String?
    @Option(help: "Draft tokens per step with --speculative (default: 8 for lookup, 1 for mtp).") var draftTokens: Int?
    @Flag(help: "With --chat on a harmony model (gpt-oss): print the analysis channel (the reasoning) before the answer.")
    var showReasoning = false
    @Option(help: "Constrained decoding: the output is JSON that validates against this JSON Schema file.")
    var jsonSchema: String?
    @Option(help: "Constrained decoding: the output matches this GBNF grammar file (llama.cpp's format; start rule 'root').")
    var grammar: String?

    func run() throws {
        let (prompt, tokenizer) = try input.ids(modelDirectory: options.model)
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be ≥ 0") }
        let model = try options.load()
        try experts.apply(to: model)
        var sampling = model.defaultSampling
        if let temperature {
            guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be ≥ 0") }
            sampling.temperature = temperature
            if temperature > 0 && model.generation.doSample != true { sampling.topK = 50 }   // HF's default top_k when sampling
        }
        if let topK { guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0") }; sampling.topK = topK }
        if let topP { guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }; sampling.topP = topP }
        if let minP { guard minP >= 0, minP <= 1 else { throw ValidationError("--min-p must be in [0, 1]") }; sampling.minP = minP }
        if let repetitionPenalty {
            guard repetitionPenalty > 0 else { throw ValidationError("--repetition-penalty must be > 0") }
            sampling.repetitionPenalty = repetitionPenalty
        }
        if let presencePenalty { sampling.presencePenalty = presencePenalty }
        if let frequencyPenalty { sampling.frequencyPenalty = frequencyPenalty }
        sampling.seed = seed
        var stops = model.eosTokenIds.union(tokenizer?.eosTokenIds ?? [])
        if ignoreEos { stops = [] }
        // With a tokenizer the text is streamed as it is generated, one complete character at a time; a harmony
        // model's chat prints its final channel (and its analysis with --show-reasoning) and its tool calls.
        let harmony = input.chat && tokenizer.map(HarmonyParser.isHarmony) == true ? HarmonyOutput(showReasoning: showReasoning) : nil
        var decoder = printIds ? nil : tokenizer.map { IncrementalDecoder(tokenizer: $0, skipSpecialTokens: harmony == nil) }
        var drafter: Drafter?
        switch speculative {
        case nil: break
        case "lookup"?:
            drafter = .promptLookup(ngram: 3, tokens: draftTokens ?? 8)
        case "mtp"?:
            drafter = .multiTokenPrediction(tokens: draftTokens ?? 1)
        case let other?: throw ValidationError("--speculative must be 'lookup' or 'mtp' (got '\(other)')")
        }
        if let draftTokens {
            guard drafter != nil else { throw ValidationError("--draft-tokens needs --speculative") }
            guard (1...64).contains(draftTokens) else { throw ValidationError("--draft-tokens must be between 1 and 64") }
        }
        let result = try model.generate(prompt: prompt, maxTokens: maxTokens, sampling: sampling, stopTokens: stops,
                                        drafter: drafter, constraint: try constraint(tokenizer: tokenizer, model: model, stops: stops)) { id in
            if decoder != nil, let text = decoder?.add(id), !text.isEmpty {
                FileHandle.standardOutput.write(Data((harmony?.add(text) ?? text).utf8))
            }
            return true
        }
        if var decoder {
            let rest = decoder.flush()
            print(harmony.map { $0.add(rest) + $0.finish() } ?? rest)
        } else {
            print(result.tokens.map(String.init).joined(separator: ","))
        }
        let decodeRate = result.tokens.count > 1 ? Double(result.tokens.count - 1) / result.decodeSeconds : 0
        printError("finish_reason: \(result.finishReason.rawValue); prompt \(prompt.count) tokens in \(String(format: "%.3f", result.promptSeconds)) s; "
                   + "\(result.tokens.count) generated at \(String(format: "%.1f", decodeRate)) tokens/s"
                   + (drafter == nil ? "" : "; drafts \(result.acceptedDraftTokens)/\(result.draftTokens) accepted"))
    }

    /// The grammar of --json-schema or --grammar over the model's vocabulary.
    func constraint(tokenizer: Tokenizer?, model: Transformer, stops: Set<Int>) throws -> GrammarConstraint? {
        let text: String
        switch (jsonSchema, grammar) {
        case (nil, nil): return nil
        case (_?, _?): throw ValidationError("give --json-schema or --grammar, not both")
        case (let path?, nil):
            let schema = try TemplateValue(decoding: try readFile(path, what: "JSON Schema"))
            do { text = try JSONSchemaGrammar.gbnf(schema: schema) } catch { throw ValidationError("\(path): \(error.message)") }
        case (nil, let path?):
            text = String(decoding: try readFile(path, what: "grammar"), as: UTF8.self)
        }
        guard let tokenizer else { throw ValidationError("constrained decoding needs the model's tokenizer.json") }
        let parsed: Grammar
        do { parsed = try GBNF.parse(text) } catch { throw ValidationError("\(jsonSchema ?? grammar ?? ""): \(error.message)") }
        let trie = TokenTrie(tokenizer: tokenizer, vocabSize: model.config.vocabSize)
        return GrammarConstraint(GrammarVocabularyMatcher(grammar: parsed, trie: trie), stopTokens: stops)
    }

    func readFile(_ path: String, what: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read the \(what) file \(path)") }
        return data
    }
}


/// A harmony answer as `moe generate --chat` prints it: the final channel, the analysis first when asked (then a
/// blank line), tool calls as `→ name(arguments)` lines.
final class HarmonyOutput {
    private var parser = HarmonyParser()
    let showReasoning: Bool
    private var inReasoning = false, inCall = false

    init(showReasoning: Bool) { self.showReasoning = showReasoning }

    /// The text to print for the next decoded piece.
    func add(_ text: String) -> String { render(parser.add(text)) }
    func finish() -> String { render(parser.finish()) + close() }

    /// Ends the reasoning or call being printed.
    private func close() -> String {
        defer { inReasoning = false; inCall = false }
        return inCall ? ")\n" : inReasoning ? "\n\n" : ""
    }

    private func render(_ events: [HarmonyParser.Event]) -> String {
        var out = ""
        for event in events {
            switch event {
            case .reasoning(let t):
                guard showReasoning else { continue }
                if !inReasoning { out += close() }
                inReasoning = true
                out += t
            case .content(let t):
                out += close() + t
            case .toolCall(let name):
                out += close() + "→ \(name)("
                inCall = true
            case .toolArguments(let t):
                out += t
            }
        }
        return out
    }
}
