import Foundation
import MoEModel
import MoETokenizer

/// Multiple-choice accuracy by log-likelihood, as lm-evaluation-harness scores `multiple_choice` tasks: each choice's
/// continuation (`target_delimiter` + the choice) is scored as the sum of its tokens' log-probabilities after the
/// context; the most likely choice is the answer (`acc`), or the most likely per character of the choice (`acc_norm`).
/// The tokens split as lm-eval splits them: the context's trailing spaces move to the continuation, and the
/// continuation's tokens are those of context + continuation after the context's own.
extension Evaluation {
    public struct ChoiceItem: Sendable {
        public var context: String
        public var choices: [String]
        public var answer: Int
        public init(context: String, choices: [String], answer: Int) {
            self.context = context
            self.choices = choices
            self.answer = answer
        }
    }

    public struct ChoiceResult: Codable, Sendable {
        public var total: Int
        public var correct: Int
        public var accuracy: Double
        public var correctNorm: Int
        public var accuracyNorm: Double
        /// Each item's log-likelihood per choice (what lm-eval's `resps` hold), for comparing scorers.
        public var loglikelihoods: [[Double]]
        enum CodingKeys: String, CodingKey {
            case total, correct, accuracy, loglikelihoods
            case correctNorm = "correct_norm", accuracyNorm = "accuracy_norm"
        }
    }

    /// Reads `{"question" (or "context"), "choices": [text…], "answer": index}` per line.
    public static func choiceItems(path: String) throws -> [ChoiceItem] {
        var out: [ChoiceItem] = []
        for (line, o) in try jsonObjects(path: path) {
            func bad(_ why: String) -> DataError { .malformedLine(path: path, line: line, reason: why) }
            guard let context = o["question"] as? String ?? o["context"] as? String else { throw bad("no \"question\" (or \"context\") string") }
            guard let choices = o["choices"] as? [String], choices.count >= 2 else { throw bad("\"choices\" must be at least two strings") }
            guard let answer = o["answer"] as? Int, choices.indices.contains(answer) else { throw bad("\"answer\" must be the index of a choice") }
            out.append(ChoiceItem(context: context, choices: choices, answer: answer))
        }
        if out.isEmpty { throw TrainingError.badArgument("no items in \(path)") }
        return out
    }

    public static func choices(_ model: Transformer, tokenizer: Tokenizer, items: [ChoiceItem], delimiter: String = " ",
                               progress: ((Int, Int) -> Void)? = nil) throws -> ChoiceResult {
        var correct = 0, correctNorm = 0
        var all: [[Double]] = []
        let vocab = model.config.vocabSize
        for (n, item) in items.enumerated() {
            var scores: [Double] = []
            for choice in item.choices {
                var context = item.context, continuation = delimiter + choice
                let trailing = context.count - String(context.reversed().drop { $0 == " " }.reversed()).count
                if trailing > 0 {
                    continuation = String(context.suffix(trailing)) + continuation
                    context = String(context.dropLast(trailing))
                }
                let contextIDs = tokenizer.encode(context, addSpecialTokens: false)
                let whole = tokenizer.encode(context + continuation, addSpecialTokens: false)
                guard contextIDs.count >= 1, whole.count > contextIDs.count, whole.count <= model.contextLength else {
                    throw TrainingError.badArgument("item \(n + 1): the context and a choice must each be at least one token, and fit the context together")
                }
                let logits = try model.forward(whole, cache: model.makeCache(capacity: whole.count), logitsFor: .all)
                var total = 0.0
                for p in contextIDs.count..<whole.count {
                    total += logProbabilities(logits[((p - 1) * vocab)..<(p * vocab)])[whole[p]]
                }
                scores.append(total)
            }
            func best(_ values: [Double]) -> Int { values.indices.max { values[$0] < values[$1] } ?? 0 }
            if best(scores) == item.answer { correct += 1 }
            // lm-eval's acc_norm divides by the choice's length in characters.
            let perByte = zip(scores, item.choices).map { $0 / Double(max(1, $1.unicodeScalars.count)) }
            if best(perByte) == item.answer { correctNorm += 1 }
            all.append(scores)
            progress?(n + 1, items.count)
        }
        let total = max(items.count, 1)
        return ChoiceResult(total: items.count, correct: correct, accuracy: Double(correct) / Double(total), correctNorm: correctNorm,
                            accuracyNorm: Double(correctNorm) / Double(total), loglikelihoods: all)
    }
}
