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

    /// `A op B =` → `A op B`.
    static func problemText(_ prompt: String) -> String? {
        guard prompt.hasSuffix(" ="), prompt.split(separator: " ").count == 4 else { return nil }
        return String(prompt.dropLast(2))
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
        for doc in DemoCorpus.documents(count: 300, seed: 2) where doc.domain == .arithmetic {
            for line in doc.text.split(separator: "\n") {
                let eq = Self.parseEquation(line)
                #expect(eq != nil, "not an equation: \(line)")
                if let eq { #expect(eq.written == eq.computed && eq.computed >= 0, "\(line)") }
            }
        }
    }

    @Test func heldOutProblemsNeverAppearInDocumentsOrInstructions() {
        var seen = Set<String>()
        for doc in DemoCorpus.documents(count: 3_000, seed: 11) where doc.domain == .arithmetic {
            for line in doc.text.split(separator: "\n") { if let eq = Self.parseEquation(line) { seen.insert(eq.problem) } }
        }
        for pair in DemoCorpus.instructions(count: 2_000, seed: 11) {
            if let text = Self.problemText(pair.user) { seen.insert(text) }
        }
        let problems = DemoCorpus.arithmeticProblems(count: 500, seed: 11)
        #expect(problems.count == 500)
        #expect(Set(problems.map(\.prompt)).count > 250)   // mostly distinct
        for (prompt, answer) in problems {
            let text = Self.problemText(prompt)
            #expect(text != nil, "prompt format: \(prompt)")
            guard let text, let eq = Self.parseEquation(Substring("\(text) = \(answer)")) else { continue }
            #expect(eq.written == eq.computed, "\(prompt) \(answer)")
            #expect(!seen.contains(text), "held-out \(text) appears in training text")
        }
    }

    @Test func instructionsCoverAllDomainsInTheEvaluatedFormat() {
        let pairs = DemoCorpus.instructions(count: 200, seed: 5)
        #expect(pairs.count == 200)
        #expect(pairs.allSatisfy { !$0.user.isEmpty && !$0.assistant.isEmpty })
        let arithmetic = pairs.filter { Self.problemText($0.user) != nil }
        #expect(arithmetic.count == 100)
        for pair in arithmetic {
            let eq = Self.parseEquation(Substring(pair.user + " " + pair.assistant))
            #expect(eq != nil && eq?.written == eq?.computed, "\(pair.user) \(pair.assistant)")
            #expect(Evaluation.extractAnswer(pair.assistant, regex: nil) == eq.map { String($0.computed) })
        }
        #expect(pairs.contains { $0.user.hasPrefix("Write a function") && $0.assistant.hasPrefix("fn ") })
        #expect(pairs.contains { $0.user.hasPrefix("Describe") || $0.user.hasPrefix("Where") })
    }

}
