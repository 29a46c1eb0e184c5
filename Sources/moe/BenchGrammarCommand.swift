import ArgumentParser
import Foundation
import MoEGrammar
import MoEModel
import MoETokenizer

/// `moe bench grammar`: what constrained decoding costs — the same sampled decode with and without a JSON
/// Schema's grammar, and the share of the constrained decode spent masking and following tokens.
///
/// ```
/// moe bench grammar --model bench-models/gptoss-bench --tokenizer bench-models/gptoss-bench-tok
/// ```
struct BenchGrammar: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grammar",
        abstract: "Measure the cost of constrained decoding (mask time per token) beside free decoding.")

    @OptionGroup var options: ModelOptions
    @Option(help: "A directory with the tokenizer.json to use (default: the model's).") var tokenizer: String?
    @Option(help: "A JSON Schema file (default: an array of records with strings, integers, enums and booleans).")
    var jsonSchema: String?
    @Option(help: "Tokens to decode per run.") var genTokens: Int = 128
    @Option(help: "Runs (seeds 0…); figures are given as their range.") var runs: Int = 3

    static let defaultSchema = #"""
        {"type": "array", "items": {"type": "object", "properties": {
          "name": {"type": "string"}, "id": {"type": "integer", "minimum": 0, "maximum": 100000},
          "kind": {"enum": ["alpha", "beta", "gamma"]}, "ok": {"type": "boolean"}, "score": {"type": "number"}},
          "required": ["name", "id", "kind", "ok", "score"]}, "minItems": 8}
        """#

    /// Times the calls into a constraint.
    final class Timed: LogitsConstraint, @unchecked Sendable {
        let inner: GrammarConstraint
        var seconds = 0.0
        init(_ inner: GrammarConstraint) { self.inner = inner }
        func time<T>(_ body: () -> T) -> T {
            let start = ContinuousClock.now
            defer { let d = start.duration(to: .now).components; seconds += Double(d.seconds) + Double(d.attoseconds) * 1e-18 }
            return body()
        }
        func apply(_ logits: UnsafeMutablePointer<Float>, count: Int) { time { inner.apply(logits, count: count) } }
        func accept(_ token: Int) -> Bool { time { inner.accept(token) } }
        var isFinished: Bool { time { inner.isFinished } }
        var canEnd: Bool { inner.canEnd }
    }

    func run() throws {
        guard genTokens > 0, runs > 0 else { throw ValidationError("counts must be positive") }
        let model = try options.load()
        guard let tok = try Tokenizer.forModel(tokenizer ?? options.model) else {
            throw ValidationError("no tokenizer.json beside the model; give --tokenizer DIR")
        }
        let schemaText = try jsonSchema.map { path -> String in
            guard let d = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
            return String(decoding: d, as: UTF8.self)
        } ?? Self.defaultSchema
        let grammar: Grammar
        do { grammar = try JSONSchemaGrammar.grammar(schema: try TemplateValue(decoding: Data(schemaText.utf8))) } catch let e as GrammarError {
            throw ValidationError(e.message)
        }
        var clock = ContinuousClock.now
        let trie = TokenTrie(tokenizer: tok, vocabSize: model.config.vocabSize)
        let trieSeconds = seconds(clock.duration(to: .now))
        let prompt = tok.encode("Write the records as JSON:", addSpecialTokens: false)
        print("model: \(model.directory), threads \(model.pool.threads); vocabulary \(trie.vocabSize) tokens (trie of \(trie.nodeCount) nodes made in \(String(format: "%.2f", trieSeconds)) s)")
        print("cpu: \(cpuName())")
        _ = try model.generate(prompt: prompt, maxTokens: 8, sampling: .greedy, stopTokens: [])   // warm-up
        var free: [Double] = [], constrained: [Double] = [], shares: [Double] = [], firstMasks: [Double] = []
        for seed in 0..<runs {
            let sampling = SamplingParameters(temperature: 1, seed: UInt64(seed))
            clock = .now
            let a = try model.generate(prompt: prompt, maxTokens: genTokens, sampling: sampling, stopTokens: [])
            free.append(Double(a.tokens.count - 1) / a.decodeSeconds)
            let shared = GrammarVocabularyMatcher(grammar: grammar, trie: trie)
            clock = .now
            _ = shared.mask(shared.matcher.start)
            firstMasks.append(seconds(clock.duration(to: .now)))
            let timed = Timed(GrammarConstraint(shared, stopTokens: []))
            let b = try model.generate(prompt: prompt, maxTokens: genTokens, sampling: sampling, stopTokens: [], constraint: timed)
            constrained.append(Double(b.tokens.count - 1) / b.decodeSeconds)
            shares.append(timed.seconds / (b.promptSeconds + b.decodeSeconds))
            if seed == 0 {
                let text = tok.decode(b.tokens)
                print("sample (\(b.tokens.count) tokens): \(text.prefix(160))\(text.count > 160 ? "…" : "")")
            }
        }
        func range(_ xs: [Double], _ f: String) -> String { String(format: f, xs.min()!) + "–" + String(format: f, xs.max()!) }
        print("decode tokens/s free: \(range(free, "%.1f")); constrained: \(range(constrained, "%.1f"))")
        print("mask share of constrained decode: \(range(shares.map { $0 * 100 }, "%.1f")) %; first mask (empty cache) \(range(firstMasks.map { $0 * 1000 }, "%.1f")) ms")
    }

    func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
}
