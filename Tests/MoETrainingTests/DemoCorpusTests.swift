import Foundation
import Testing
@testable import MoETraining

@Suite struct DemoCorpusTests {
    /// `A op B = C` → (the `A op B` text, C as written, C recomputed); nil when the line is not an equation.
    static func parseEquation(_ line: Substring) -> (problem: String, written: Int, computed: Int)? {
        let parts = line.split(separator: " ")
        guard parts.count == 5, parts[3] == "=", let a = Int(parts[0]), let b = Int(parts[2]), let c = Int(parts[4])
        else { return nil }
        let value: Int
        switch parts[1] {
        case "+": value = a + b
        case "-": value = a - b
        case "*": value = a * b
        default: return nil
        }
        return ("\(a) \(parts[1]) \(b)", c, value)
    }

    /// `What is A + B?…` → (A, B).
    static func sumQuestion(_ text: Substring) -> (a: Int, b: Int)? {
        guard text.hasPrefix("What is "), let q = text.firstIndex(of: "?") else { return nil }
        let parts = text[text.index(text.startIndex, offsetBy: 8)..<q].split(separator: " ")
        guard parts.count == 3, parts[1] == "+", let a = Int(parts[0]), let b = Int(parts[2]) else { return nil }
        return (a, b)
    }

    /// The worked answer of A + B, written out independently of the corpus code.
    static func worked(_ a: Int, _ b: Int) -> String {
        let (a1, a0, b1, b0) = (a / 10, a % 10, b / 10, b % 10)
        let carry = a0 + b0 >= 10
        let tens = carry ? "\(a1) + \(b1) + 1 = \(a1 + b1 + 1)" : "\(a1) + \(b1) = \(a1 + b1)"
        return "\(a0) + \(b0) = \(a0 + b0), \(tens), so \(a) + \(b) = \(a + b)."
    }

    @Test func deterministicForASeed() {
        let a = DemoCorpus.documents(count: 60, seed: 7), b = DemoCorpus.documents(count: 60, seed: 7)
        #expect(a.map(\.text) == b.map(\.text))
        #expect(a.map(\.domain) == b.map(\.domain))
        #expect(DemoCorpus.documents(count: 60, seed: 8).map(\.text) != a.map(\.text))
        #expect(DemoCorpus.documents(count: 20, seed: 7).map(\.text) == Array(a.prefix(20)).map(\.text))
        let p = DemoCorpus.arithmeticProblems(count: 50, seed: 3), q = DemoCorpus.arithmeticProblems(count: 50, seed: 3)
        #expect(p.map(\.prompt) == q.map(\.prompt) && p.map(\.answer) == q.map(\.answer))
        let i = DemoCorpus.instructions(count: 40, seed: 3), j = DemoCorpus.instructions(count: 40, seed: 3)
        #expect(i.map(\.user) == j.map(\.user) && i.map(\.assistant) == j.map(\.assistant))
    }

    @Test func allDomainsPresentAndDocumentsAreSized() {
        let docs = DemoCorpus.documents(count: 300, seed: 1)
        #expect(Set(docs.map(\.domain)) == Set(DemoDomain.allCases))
        for (i, doc) in docs.enumerated() {
            #expect(doc.domain == DemoDomain.allCases[i % DemoDomain.allCases.count])
            #expect((100...1_500).contains(doc.text.count), "\(doc.domain): \(doc.text.count) characters")
        }
        #expect(docs.contains { $0.domain == .code && $0.text.contains("fn ") && $0.text.contains("return ") })
        #expect(docs.contains { $0.domain == .prose && $0.text.hasSuffix(".") })
        for domain in DemoDomain.allCases { #expect(!DemoCorpus.samplePrompts(domain).isEmpty) }
    }

    @Test func arithmeticDocumentsAreCorrect() {
        var worked = 0
        for doc in DemoCorpus.documents(count: 300, seed: 2) where doc.domain == .arithmetic {
            for line in doc.text.split(separator: "\n") {
                if let (a, b) = Self.sumQuestion(line) {
                    #expect(line == "What is \(a) + \(b)? " + Self.worked(a, b), "\(line)")
                    #expect((10...99).contains(a) && (10...99).contains(b))
                    worked += 1
                    continue
                }
                let eq = Self.parseEquation(line)
                #expect(eq != nil, "neither an equation nor a worked sum: \(line)")
                if let eq { #expect(eq.written == eq.computed && eq.computed >= 0, "\(line)") }
            }
        }
        #expect(worked > 500)
    }

    @Test func heldOutProblemsNeverAppearInDocumentsInstructionsOrRLPrompts() {
        var seen = Set<[Int]>()
        for doc in DemoCorpus.documents(count: 3_000, seed: 11) where doc.domain == .arithmetic {
            for line in doc.text.split(separator: "\n") { if let (a, b) = Self.sumQuestion(line) { seen.insert([a, b]) } }
        }
        for pair in DemoCorpus.instructions(count: 2_000, seed: 11) {
            if let (a, b) = Self.sumQuestion(Substring(pair.user)) { seen.insert([a, b]) }
        }
        for p in DemoCorpus.trainingProblems(count: 2_000, seed: 11) {
            if let (a, b) = Self.sumQuestion(Substring(p.prompt)) { seen.insert([a, b]) }
        }
        #expect(seen.count > 2_000)
        let problems = DemoCorpus.arithmeticProblems(count: 500, seed: 11)
        #expect(problems.count == 500)
        #expect(Set(problems.map(\.prompt)).count == 500)   // distinct
        for (prompt, answer) in problems {
            let q = Self.sumQuestion(Substring(prompt))
            #expect(q != nil, "prompt format: \(prompt)")
            guard let (a, b) = q else { continue }
            #expect(answer == String(a + b))
            #expect(!seen.contains([a, b]), "held-out \(prompt) appears in training text")
        }
    }

    @Test func preferencePairsPreferTheRightWorkedAnswer() {
        let pairs = DemoCorpus.preferencePairs(count: 300, seed: 4)
        #expect(pairs.count == 300)
        for p in pairs {
            guard let (a, b) = Self.sumQuestion(Substring(p.prompt)) else { Issue.record("prompt format: \(p.prompt)"); continue }
            #expect(p.chosen == Self.worked(a, b))
            #expect(Evaluation.extractAnswer(p.rejected, regex: nil) != String(a + b), "\(p.prompt) \(p.rejected)")
            #expect(!DemoCorpus.Sum(a: a, b: b).isHeldOut)
        }
    }

    /// On-policy pairs: a model's wrong answer (a wrong final number, or none) becomes the rejected one; a right
    /// answer, however worded, keeps the constructed mistake.
    @Test func ownMistakesReplaceTheRejectedAnswers() {
        let pairs = DemoCorpus.preferencePairs(count: 4, seed: 8)
        let sums = pairs.map { Self.sumQuestion(Substring($0.prompt))! }
        let answers = ["\(pairs[0].chosen)",                                      // right, as the chosen one
                       "so \(sums[1].0) + \(sums[1].1) = \(sums[1].0 + sums[1].1 + 10).",   // carry added
                       "The answer is \(sums[2].0 + sums[2].1)",                  // right, another wording
                       "I do not know"]                                           // no number at all
        let (out, replaced) = DemoCorpus.withOwnMistakes(pairs, answers: answers)
        #expect(replaced == 2)
        #expect(out.map(\.rejected) == [pairs[0].rejected, answers[1], pairs[2].rejected, answers[3]])
        #expect(out.map(\.chosen) == pairs.map(\.chosen) && out.map(\.prompt) == pairs.map(\.prompt))
    }

    @Test func instructionsCoverAllDomainsInTheEvaluatedFormat() {
        let pairs = DemoCorpus.instructions(count: 200, seed: 5)
        #expect(pairs.count == 200)
        #expect(pairs.allSatisfy { !$0.user.isEmpty && !$0.assistant.isEmpty })
        let arithmetic = pairs.filter { Self.sumQuestion(Substring($0.user)) != nil }
        #expect(arithmetic.count == 100)
        for pair in arithmetic {
            let (a, b) = Self.sumQuestion(Substring(pair.user))!
            #expect(pair.assistant == Self.worked(a, b))
            #expect(a % 10 + b % 10 < 10, "instructions never carry: \(pair.user)")
            #expect(Evaluation.extractAnswer(pair.assistant, regex: nil) == String(a + b))
        }
        #expect(pairs.contains { $0.user.hasPrefix("Write a function") && $0.assistant.hasPrefix("fn ") })
        #expect(pairs.contains { $0.user.hasPrefix("Describe") || $0.user.hasPrefix("Where") })
    }
}
