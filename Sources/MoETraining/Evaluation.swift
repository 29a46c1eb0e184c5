import Foundation
import MoEModel
import MoETokenizer

/// Evaluation of a checkpoint through the inference engine: perplexity and bits per byte of a text, and
/// greedy accuracy on question/answer tasks (`{"prompt", "answer"}` JSONL, the answer read from the
/// completion as GSM8K's `#### N`, an `answer_regex`'s first group, or else the completion's final number).
public enum Evaluation {
    public struct TextResult: Codable, Sendable {
        public var tokens: Int
        public var bytes: Int
        /// Mean negative log-likelihood per predicted token (nats).
        public var loss: Double
        public var perplexity: Double
        public var bitsPerByte: Double
        /// With a reference model (llama.cpp's `perplexity --kl-divergence`): the reference's perplexity, the mean
        /// and 99th percentile over predicted tokens of KL(reference ‖ model) in nats, and how often both put the
        /// same token first.
        public var referencePerplexity: Double?
        public var klDivergence: Double?
        public var klDivergenceP99: Double?
        public var top1Agreement: Double?
        enum CodingKeys: String, CodingKey {
            case tokens, bytes, loss, perplexity
            case bitsPerByte = "bits_per_byte", referencePerplexity = "reference_perplexity"
            case klDivergence = "kl_divergence", klDivergenceP99 = "kl_divergence_p99", top1Agreement = "top1_agreement"
        }
    }

    /// Non-overlapping windows of up to `window` tokens (each window's first token is context only), so the
    /// result does not depend on anything but the text and the window. With `reference` (a model of the same
    /// vocabulary, e.g. the f32 model a quantised one came from), each predicted token's distribution is also
    /// compared with the reference's. `step`: the model (not the reference) runs each window this many tokens per
    /// forward pass, as decode (1) or batched serving does, so that the figures measure that path; default: the
    /// whole window in one pass, as prefill.
    public static func text(_ model: Transformer, reference: Transformer? = nil, tokenizer: Tokenizer, text: String,
                            window: Int = 512, step: Int? = nil,
                            progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> TextResult {
        let ids = tokenizer.encode(text, addSpecialTokens: false)
        guard ids.count >= 2 else { throw TrainingError.badArgument("the text has fewer than two tokens") }
        let vocab = model.config.vocabSize
        if let reference, reference.config.vocabSize != vocab {
            throw TrainingError.badArgument("the reference has \(reference.config.vocabSize) tokens, the model \(vocab)")
        }
        let w = max(2, min(window, model.contextLength, reference?.contextLength ?? .max))
        let cache = model.makeCache(capacity: w)
        let referenceCache = reference?.makeCache(capacity: w)
        var nll = 0.0, predicted = 0
        var comparison = DistributionComparison()
        var start = 0
        while start + 1 < ids.count {
            let chunk = Array(ids[start..<min(start + w, ids.count)])
            cache.reset()
            var logits: [Float] = []
            logits.reserveCapacity(chunk.count * vocab)
            for part in stride(from: 0, to: chunk.count, by: max(1, step ?? chunk.count)) {
                logits += try model.forward(Array(chunk[part..<min(part + (step ?? chunk.count), chunk.count)]), cache: cache,
                                            logitsFor: .all)
            }
            var referenceLogits: [Float]?
            if let reference, let referenceCache {
                referenceCache.reset()
                referenceLogits = Array(try reference.forward(chunk, cache: referenceCache, logitsFor: .all))
            }
            for t in 0..<(chunk.count - 1) {
                let q = logProbabilities(logits[(t * vocab)..<((t + 1) * vocab)])
                nll -= q[chunk[t + 1]]
                if let referenceLogits {
                    comparison.add(reference: logProbabilities(referenceLogits[(t * vocab)..<((t + 1) * vocab)]), model: q, next: chunk[t + 1])
                }
                predicted += 1
            }
            start += chunk.count - 1
            progress?(start + 1, ids.count)
        }
        let bytes = text.utf8.count
        let loss = nll / Double(predicted)
        var result = TextResult(tokens: ids.count, bytes: bytes, loss: loss, perplexity: exp(loss), bitsPerByte: nll / log(2) / Double(bytes))
        if reference != nil {
            result.referencePerplexity = comparison.referencePerplexity
            result.klDivergence = comparison.meanDivergence
            result.klDivergenceP99 = comparison.divergenceP99
            result.top1Agreement = comparison.top1Agreement
        }
        return result
    }

    /// A model's next-token distributions against a reference's, token by token, as llama.cpp's
    /// `perplexity --kl-divergence` compares them: KL(reference ‖ model) in nats, and top-1 agreement.
    struct DistributionComparison {
        private var divergences: [Double] = []
        private var sameTop = 0
        private var referenceNLL = 0.0

        /// One position: both rows of log-probabilities, and the token that came next.
        mutating func add(reference p: [Double], model q: [Double], next: Int) {
            referenceNLL -= p[next]
            var kl = 0.0
            for v in p.indices where p[v] > -60 { kl += exp(p[v]) * (p[v] - q[v]) }
            divergences.append(max(kl, 0))
            if q.indices.max(by: { q[$0] < q[$1] }) == p.indices.max(by: { p[$0] < p[$1] }) { sameTop += 1 }
        }

        var count: Int { divergences.count }
        var referencePerplexity: Double { exp(referenceNLL / Double(max(count, 1))) }
        var meanDivergence: Double { divergences.reduce(0, +) / Double(max(count, 1)) }
        var top1Agreement: Double { Double(sameTop) / Double(max(count, 1)) }
        var divergenceP99: Double {
            guard count > 0 else { return 0 }
            let sorted = divergences.sorted()
            return sorted[min(count - 1, Int((Double(count) * 0.99).rounded(.up)) - 1)]
        }
    }

    /// log softmax of one row of logits, in double precision.
    static func logProbabilities<Row: Collection<Float>>(_ row: Row) -> [Double] {
        let m = Double(row.max()!)
        var s = 0.0
        for v in row { s += exp(Double(v) - m) }
        let logZ = m + log(s)
        return row.map { Double($0) - logZ }
    }

    /// One task: a prompt (text, or chat messages) and its expected answer.
    public struct Task: Sendable {
        public var prompt: String?
        public var messages: [ChatMessage]?
        public var answer: String
        public var answerRegex: String?
        public init(prompt: String, answer: String, answerRegex: String? = nil) { self.prompt = prompt; self.answer = answer; self.answerRegex = answerRegex }
    }

    public struct TaskResult: Codable, Sendable {
        public struct Example: Codable, Sendable { public var prompt: String; public var completion: String; public var expected: String; public var extracted: String?; public var correct: Bool }
        public var total: Int
        public var correct: Int
        public var accuracy: Double
        /// The first few examples (`keepExamples`), for a look at what the model wrote.
        public var examples: [Example]
    }

    /// Reads `{"prompt": text or [messages], "answer": …, "answer_regex"?: …}` per line (`requireAnswer: false`:
    /// prompts alone, as PPO takes them).
    public static func tasks(path: String, requireAnswer: Bool = true) throws -> [Task] {
        var out: [Task] = []
        for (line, object) in try jsonObjects(path: path) {
            func bad(_ why: String) -> DataError { .malformedLine(path: path, line: line, reason: why) }
            let answer: String
            switch object["answer"] {
            case let s as String: answer = s
            case let n as NSNumber: answer = n.stringValue
            default:
                guard !requireAnswer else { throw bad("no \"answer\" (string or number)") }
                answer = ""
            }
            var task = Task(prompt: "", answer: answer, answerRegex: object["answer_regex"] as? String)
            if let p = object["prompt"] as? String { task.prompt = p }
            else if let m = object["prompt"] as? [[String: Any]] {
                task.prompt = nil
                task.messages = try m.map { d in
                    guard let role = d["role"] as? String, let content = d["content"] as? String else { throw bad("messages need \"role\" and \"content\" strings") }
                    return ChatMessage(role: role, content: content)
                }
            } else { throw bad("no \"prompt\" (text or a list of messages)") }
            out.append(task)
        }
        if out.isEmpty { throw TrainingError.badArgument("no prompts in \(path)") }
        return out
    }

    /// The objects of a JSONL file with their line numbers (blank lines skipped; a line that is no object is an
    /// error naming it).
    static func jsonObjects(path: String) throws -> [(line: Int, object: [String: Any])] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw DataError.fileNotFound(path)
        }
        var out: [(line: Int, object: [String: Any])] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.allSatisfy(\.isWhitespace) {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw DataError.malformedLine(path: path, line: i + 1, reason: "not a JSON object")
            }
            out.append((i + 1, object))
        }
        return out
    }

    /// Greedy completions of every task, scored by exact (numeric when both are numbers) answer match.
    /// `chat` sends text prompts through the chat template as a user message; a completion ends at the first
    /// of `stop` (cut there), at an end-of-sequence token, or after `maxTokens`. `batch` tasks decode together
    /// (`Transformer.generate(prompts:)`: one pass over the weights a step for all of them). The first
    /// `keepExamples` tasks' completions come back in `examples`.
    public static func tasks(_ model: Transformer, tokenizer: Tokenizer, tasks: [Task], maxTokens: Int, chat: Bool,
                             stop: [String] = [], keepExamples: Int = 5, batch: Int = 16,
                             progress: ((Int, Int) -> Void)? = nil) throws -> TaskResult {
        var correct = 0
        var examples: [TaskResult.Example] = []
        for first in stride(from: 0, to: tasks.count, by: max(batch, 1)) {
            let group = tasks[first..<min(first + max(batch, 1), tasks.count)]
            let prompts = try group.map { task -> [Int] in
                if let messages = task.messages { return try tokenizer.encodeChat(messages) }
                if chat { return try tokenizer.encodeChat([ChatMessage(role: "user", content: task.prompt ?? "")]) }
                return tokenizer.encode(task.prompt ?? "")
            }
            var generated = [[Int]](repeating: [], count: group.count)
            let results = try model.generate(prompts: prompts, maxTokens: maxTokens,
                                              sampling: Array(repeating: SamplingParameters(temperature: 0), count: group.count)) { i, token in
                guard !stop.isEmpty else { return true }
                generated[i].append(token)
                let text = tokenizer.decode(generated[i], skipSpecialTokens: true)
                return !stop.contains { text.contains($0) }
            }
            for (task, g) in zip(group, results) {
                var completion = tokenizer.decode(g.tokens, skipSpecialTokens: true)
                if let cut = stop.compactMap({ completion.range(of: $0)?.lowerBound }).min() { completion = String(completion[..<cut]) }
                let extracted = extractAnswer(completion, regex: task.answerRegex)
                let ok = extracted.map { sameAnswer($0, expectedAnswer(task.answer)) } ?? false
                if ok { correct += 1 }
                if examples.count < keepExamples {
                    examples.append(.init(prompt: task.prompt ?? task.messages?.last?.content ?? "", completion: completion,
                                          expected: expectedAnswer(task.answer), extracted: extracted, correct: ok))
                }
            }
            progress?(first + group.count, tasks.count)
        }
        return TaskResult(total: tasks.count, correct: correct, accuracy: Double(correct) / Double(max(tasks.count, 1)), examples: examples)
    }

    /// GSM8K's reference answers are whole solutions ending in `#### N`: the part after it.
    public static func expectedAnswer(_ answer: String) -> String {
        guard let r = answer.range(of: "####", options: .backwards) else { return answer.trimmingCharacters(in: .whitespacesAndNewlines) }
        return answer[r.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The answer a completion gives: an `answer_regex`'s first capture group (or whole match), else the
    /// number after GSM8K's `####`, else the completion's last number.
    public static func extractAnswer(_ completion: String, regex: String?) -> String? {
        if let regex {
            guard let re = try? NSRegularExpression(pattern: regex),
                  let m = re.firstMatch(in: completion, range: NSRange(completion.startIndex..., in: completion)) else { return nil }
            let r = m.numberOfRanges > 1 && m.range(at: 1).location != NSNotFound ? m.range(at: 1) : m.range
            return Range(r, in: completion).map { String(completion[$0]).trimmingCharacters(in: .whitespaces) }
        }
        if let r = completion.range(of: "####") { return lastNumber(in: String(completion[r.upperBound...]), first: true) }
        return lastNumber(in: completion, first: false)
    }

    /// The first or last number in a text (a leading minus sign and thousands commas allowed).
    static func lastNumber(in text: String, first: Bool) -> String? {
        let re = try! NSRegularExpression(pattern: #"-?\d[\d,]*(\.\d+)?"#)
        let matches = re.matches(in: text, range: NSRange(text.startIndex..., in: text))
        guard let m = first ? matches.first : matches.last, let r = Range(m.range, in: text) else { return nil }
        return String(text[r])
    }

    /// Numbers compare by value (commas, a `$`, trailing `.0` ignored), anything else as trimmed text.
    public static func sameAnswer(_ a: String, _ b: String) -> Bool {
        func number(_ s: String) -> Double? {
            Double(s.replacingOccurrences(of: ",", with: "").replacingOccurrences(of: "$", with: "")
                .trimmingCharacters(in: CharacterSet(charactersIn: " .\n")))
        }
        if let x = number(a), let y = number(b) { return x == y }
        return a.trimmingCharacters(in: .whitespacesAndNewlines) == b.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
