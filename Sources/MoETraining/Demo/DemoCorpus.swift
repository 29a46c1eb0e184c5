import Foundation

/// The three kinds of text in the built-in demo corpus.
public enum DemoDomain: String, CaseIterable, Sendable, Codable { case arithmetic, code, prose }

public struct DemoDocument: Sendable {
    public let domain: DemoDomain
    public let text: String
}

/// A built-in, deterministic, multi-domain corpus for `moe demo` (no downloads).
///
/// Formats:
/// - arithmetic documents: 18–26 lines, each either an equation `A op B = C` (single-digit sums and products,
///   the inverse differences, two-digit ± one-digit; all results non-negative) or a two-digit sum worked
///   digit by digit: `What is 47 + 38? 7 + 8 = 15, 4 + 3 + 1 = 8, so 47 + 38 = 85.`
/// - code documents: two or three functions of a tiny language (`fn name(a, b) {`, `let`, `if`/`else`,
///   `while`, `return`, 4-space indentation), followed by a `let r = name(3, 4)` call.
/// - prose documents: a short paragraph of templated English about one character.
/// - the task (`arithmeticProblems`): prompt `What is A + B?` for two-digit A and B, answer the sum (`"85"`).
///   SFT examples answer it with the worked steps; the evaluator reads a completion's final number
///   (`Evaluation.extractAnswer`). About one pair (A, B) in ten is held out: never in the pre-training text,
///   the instructions or the RL prompts. What carries over to held-out sums is the procedure and the
///   single-digit facts its steps use.
public enum DemoCorpus {
    /// `count` documents cycling through the domains, deterministic for a seed. Document `i` depends only on
    /// `(seed, i)`, so a shorter list is a prefix of a longer one.
    public static func documents(count: Int, seed: UInt64) -> [DemoDocument] {
        (0..<max(count, 0)).map { i in
            var rng = SplitMix64(seed: seed, stream: UInt64(i))
            let domain = DemoDomain.allCases[i % DemoDomain.allCases.count]
            switch domain {
            case .arithmetic: return DemoDocument(domain: domain, text: arithmeticDocument(&rng))
            case .code: return DemoDocument(domain: domain, text: codeDocument(&rng))
            case .prose: return DemoDocument(domain: domain, text: Prose.paragraph(&rng))
            }
        }
    }

    /// Short prompts per domain for showing samples after training.
    public static func samplePrompts(_ domain: DemoDomain) -> [String] {
        switch domain {
        case .arithmetic: return ["3 + 4 =", "What is 27 + 45?", "15 - 8 =", "6 * 7 ="]
        case .code: return ["fn add(a, b) {", "fn count(n) {\n    let total = 0\n", "let r ="]
        case .prose: return ["The old fox", "In the evening,", "A young girl lived"]
        }
    }

    /// Held-out two-digit sums with exact answers: prompt `What is A + B?`, answer e.g. `"85"`; distinct while
    /// the held-out pool allows, repeating only when `count` outgrows it.
    public static func arithmeticProblems(count: Int, seed: UInt64) -> [(prompt: String, answer: String)] {
        var rng = SplitMix64(seed: seed, stream: 0xE7A1)
        var seen = Set<Sum>(), out: [(prompt: String, answer: String)] = []
        var misses = 0
        while out.count < count {
            let p = Sum.random(&rng)
            guard p.isHeldOut else { continue }
            if seen.contains(p) && misses < 2_000 { misses += 1; continue }
            seen.insert(p); misses = 0
            out.append((prompt: p.question, answer: String(p.value)))
        }
        return out
    }

    /// Chat-style (user, assistant) pairs: half two-digit sums answered step by step (training pairs only), a
    /// quarter code, a quarter prose. The sums never carry: what the carry step looks like in a chat answer is
    /// left for the RL stage to find (pre-training text has it), so the report shows what RL adds.
    public static func instructions(count: Int, seed: UInt64) -> [(user: String, assistant: String)] {
        (0..<max(count, 0)).map { i in
            var rng = SplitMix64(seed: seed, stream: 0x5F7_0000 &+ UInt64(i))
            switch i % 4 {
            case 0, 1:
                var p = Sum.training(&rng)
                while p.carries { p = Sum.training(&rng) }
                return (user: p.question, assistant: p.workedAnswer)
            case 2: return codeInstruction(&rng)
            default: return Prose.instruction(&rng)
            }
        }
    }

    /// Questions of the task from the training side, with their answers (the RL prompts).
    public static func trainingProblems(count: Int, seed: UInt64) -> [(prompt: String, answer: String)] {
        var rng = SplitMix64(seed: seed, stream: 0x7EA1)
        return (0..<max(count, 0)).map { _ in let p = Sum.training(&rng); return (prompt: p.question, answer: String(p.value)) }
    }

    /// Preference pairs on training sums: the chosen answer is the worked one, the rejected one makes a mistake
    /// small models make — a digit copied from the wrong operand, or the carry dropped.
    public static func preferencePairs(count: Int, seed: UInt64) -> [(prompt: String, chosen: String, rejected: String)] {
        var rng = SplitMix64(seed: seed, stream: 0xD90)
        return (0..<max(count, 0)).map { _ in
            let s = Sum.training(&rng)
            return (prompt: s.question, chosen: s.workedAnswer, rejected: s.mistake(&rng))
        }
    }

    /// `pairs` with each rejected answer replaced by `answers[i]`, a model's own answer to pair i's question,
    /// wherever that answer is wrong (its final number is not the chosen answer's): the mistakes that model
    /// makes, as on-policy preference data has them. Returns how many were replaced.
    public static func withOwnMistakes(_ pairs: [(prompt: String, chosen: String, rejected: String)], answers: [String])
        -> (pairs: [(prompt: String, chosen: String, rejected: String)], replaced: Int) {
        var out = pairs, replaced = 0
        for (i, answer) in zip(pairs.indices, answers) {
            let right = Evaluation.extractAnswer(pairs[i].chosen, regex: nil)
            let given = Evaluation.extractAnswer(answer, regex: nil)
            if let right, let given, Evaluation.sameAnswer(given, right) { continue }
            out[i].rejected = answer
            replaced += 1
        }
        return (out, replaced)
    }

    // MARK: Arithmetic

    static func arithmeticDocument(_ rng: inout SplitMix64) -> String {
        (0..<rng.int(in: 18...26)).map { _ in
            if rng.int(100) < 40 { let s = Sum.training(&rng); return "\(s.question) \(s.workedAnswer)" }
            let p = Problem.random(&rng)
            return "\(p.equation) = \(p.value)"
        }.joined(separator: "\n")
    }

    /// The task: a two-digit sum, answered units first, then tens with the carry.
    struct Sum: Hashable {
        let a: Int, b: Int

        var value: Int { a + b }
        var question: String { "What is \(a) + \(b)?" }
        /// `7 + 8 = 15, 4 + 3 + 1 = 8, so 47 + 38 = 85.`
        var workedAnswer: String {
            let units = a % 10 + b % 10, carry = units / 10
            let tens = a / 10 + b / 10 + carry
            let tensStep = carry > 0 ? "\(a / 10) + \(b / 10) + 1 = \(tens)" : "\(a / 10) + \(b / 10) = \(tens)"
            return "\(a % 10) + \(b % 10) = \(units), \(tensStep), so \(a) + \(b) = \(value)."
        }
        /// The units add up to 10 or more.
        var carries: Bool { a % 10 + b % 10 >= 10 }

        /// A wrong worked answer: B's tens or units digit copied from A (the whole answer then follows that
        /// misread B), or, when that changes nothing, the carry dropped from the tens step.
        func mistake(_ rng: inout SplitMix64) -> String {
            let misread = rng.int(2) == 0 ? a / 10 * 10 + b % 10 : b / 10 * 10 + a % 10
            if misread != b {
                let wrong = Sum(a: a, b: misread).workedAnswer
                // The question's numbers are restated as asked half the time.
                return rng.int(2) == 0 ? wrong : wrong.replacingOccurrences(of: "so \(a) + \(misread) =", with: "so \(a) + \(b) =")
            }
            let units = a % 10 + b % 10
            let tens = a / 10 + b / 10   // the carry forgotten (or, without one, an extra 1 added)
            let tensStep = units >= 10 ? "\(a / 10) + \(b / 10) = \(tens)" : "\(a / 10) + \(b / 10) + 1 = \(tens + 1)"
            let total = (units >= 10 ? tens : tens + 1) * 10 + units % 10
            return "\(a % 10) + \(b % 10) = \(units), \(tensStep), so \(a) + \(b) = \(total)."
        }

        /// About one pair in ten is held out, by a multiplicative hash of the operands: scattered over the
        /// grid, so every units-digit and tens-digit pair of a held-out sum also occurs in training sums (a
        /// linear rule like (a + 7b) mod 10 would hold out whole units-digit pairs).
        var isHeldOut: Bool { (UInt32(truncatingIfNeeded: (a * 100 + b) &* 2_654_435_761) >> 16) % 10 == 0 }

        static func random(_ rng: inout SplitMix64) -> Sum { Sum(a: rng.int(in: 10...99), b: rng.int(in: 10...99)) }
        static func training(_ rng: inout SplitMix64) -> Sum {
            while true { let s = random(&rng); if !s.isHeldOut { return s } }
        }
    }

    /// One equation `a op b` with a non-negative result (the single-digit facts the worked sums use, and more).
    struct Problem: Hashable {
        let a: Int, op: Character, b: Int

        var value: Int { op == "+" ? a + b : op == "-" ? a - b : a * b }
        var equation: String { "\(a) \(op) \(b)" }

        /// The mix: mostly single digits (sums, also of three with a 1 as the carry steps need), two-digit ±
        /// one-digit, the times table.
        static func random(_ rng: inout SplitMix64) -> Problem {
            let r = rng.int(100)
            switch r {
            case ..<35: return Problem(a: rng.int(10), op: "+", b: rng.int(10))
            case ..<50:
                let big = rng.int(in: 10...99), small = rng.int(10)
                return rng.int(2) == 0 ? Problem(a: big, op: "+", b: small) : Problem(a: small, op: "+", b: big)
            case ..<65:   // the inverse of a single-digit sum: (x + y) - y
                let x = rng.int(10), y = rng.int(10)
                return Problem(a: x + y, op: "-", b: y)
            case ..<80: return Problem(a: rng.int(in: 10...99), op: "-", b: rng.int(10))
            default: return Problem(a: rng.int(10), op: "*", b: rng.int(10))
            }
        }
    }

    // MARK: Code

    static let functionNames = ["add", "scale", "clamp", "count", "step", "mix", "score", "blend", "shift",
                                "total", "limit", "grow", "merge", "measure", "pick", "fold"]
    static let paramNames = ["a", "b", "x", "y", "n", "k", "size", "rate", "width", "speed", "value", "base"]
    static let localNames = ["t", "sum", "w", "tmp", "res", "m", "d", "q"]

    static func codeDocument(_ rng: inout SplitMix64) -> String {
        var names: [String] = []
        var parts: [String] = []
        for _ in 0..<rng.int(in: 2...3) {
            var name = rng.pick(functionNames)
            while names.contains(name) { name = rng.pick(functionNames) }
            names.append(name)
            parts.append(codeFunction(name: name, &rng))
        }
        parts.append("let r = \(rng.pick(names))(\(rng.int(in: 1...9)), \(rng.int(in: 1...9)))")
        return parts.joined(separator: "\n\n")
    }

    /// A function of two parameters: a few `let`s, then a plain return, an `if`/`else`, or a `while` loop.
    static func codeFunction(name: String, _ rng: inout SplitMix64) -> String {
        let p = rng.pick(paramNames)
        var q = rng.pick(paramNames)
        while q == p { q = rng.pick(paramNames) }
        var vars = [p, q], lines = ["fn \(name)(\(p), \(q)) {"]
        func emit(_ level: Int, _ s: String) { lines.append(String(repeating: "    ", count: level) + s) }
        func expr(_ rng: inout SplitMix64) -> String {   // `v op w` with w another variable or a digit
            let v = rng.pick(vars)
            let w = rng.int(4) == 0 ? String(rng.int(in: 1...9)) : rng.pick(vars.filter { $0 != v })
            return "\(v) \(rng.pick(["+", "-", "*"])) \(w)"
        }
        for _ in 0..<rng.int(in: 1...2) {
            let v = rng.pick(localNames.filter { !vars.contains($0) })
            emit(1, "let \(v) = \(expr(&rng))")
            vars.append(v)
        }
        switch rng.int(3) {
        case 0:
            emit(1, "return \(expr(&rng))")
        case 1:
            let x = rng.pick(vars), y = rng.pick(vars.filter { $0 != x })
            emit(1, "if \(x) \(rng.pick([">", "<", "=="])) \(y) {")
            emit(2, "return \(expr(&rng))")
            emit(1, "} else {")
            emit(2, "return \(expr(&rng))")
            emit(1, "}")
        default:
            emit(1, "let i = 0")
            emit(1, "let acc = 0")
            emit(1, "while i < \(p) {")
            emit(2, "acc = acc + \(rng.pick(vars.filter { $0 != p }))")
            emit(2, "i = i + 1")
            emit(1, "}")
            emit(1, "return acc")
        }
        lines.append("}")
        return lines.joined(separator: "\n")
    }

    static func codeInstruction(_ rng: inout SplitMix64) -> (user: String, assistant: String) {
        let (a, b) = rng.pick([("a", "b"), ("x", "y"), ("m", "n"), ("left", "right")])
        let x = rng.pick(["x", "n", "value"])
        let tasks: [(String, String, [String])] = [
            ("adds two numbers", "fn add(\(a), \(b)) {", ["    return \(a) + \(b)"]),
            ("subtracts one number from another", "fn sub(\(a), \(b)) {", ["    return \(a) - \(b)"]),
            ("multiplies two numbers", "fn mul(\(a), \(b)) {", ["    return \(a) * \(b)"]),
            ("returns the larger of two numbers", "fn max(\(a), \(b)) {",
             ["    if \(a) > \(b) {", "        return \(a)", "    }", "    return \(b)"]),
            ("returns the smaller of two numbers", "fn min(\(a), \(b)) {",
             ["    if \(a) < \(b) {", "        return \(a)", "    }", "    return \(b)"]),
            ("doubles a number", "fn double(\(x)) {", ["    return \(x) * 2"]),
            ("squares a number", "fn square(\(x)) {", ["    return \(x) * \(x)"]),
            ("adds up the numbers below n", "fn sum_to(n) {",
             ["    let i = 0", "    let total = 0", "    while i < n {", "        total = total + i",
              "        i = i + 1", "    }", "    return total"]),
        ]
        let (what, head, body) = rng.pick(tasks)
        return (user: "Write a function that \(what).", assistant: ([head] + body + ["}"]).joined(separator: "\n"))
    }

    // MARK: Prose

    enum Prose {
        static let adjectives = ["old", "young", "quiet", "clever", "tired", "brave", "small", "gentle", "curious", "hungry"]
        static let characters: [(noun: String, pronoun: String)] = [
            ("fox", "it"), ("owl", "it"), ("dog", "it"), ("farmer", "he"), ("sailor", "he"), ("king", "he"),
            ("boy", "he"), ("girl", "she"), ("baker", "she"), ("teacher", "she")]
        static let transitive = ["found", "carried", "watched", "painted", "followed", "dropped", "cleaned", "opened"]
        static let intransitive = ["slept", "waited", "sang", "walked", "rested", "laughed", "worked"]
        static let things = ["apple", "basket", "lantern", "letter", "boat", "door", "map", "stone", "bell", "cup"]
        static let colours = ["red", "blue", "heavy", "wooden", "shiny", "broken", "little", "green"]
        static let places = ["near the river", "in the quiet village", "under the tall tree", "by the old mill",
                             "on the hill", "at the market", "in the dark forest", "beside the lake"]
        static let times = ["at dawn", "in the evening", "every morning", "after the rain", "before supper",
                            "at midnight", "on a cold day"]
        static let feelings = ["happy", "tired", "worried", "proud", "calm", "hungry"]

        static func article(_ word: String) -> String { "aeiou".contains(word.first ?? "x") ? "an" : "a" }
        static func capitalized(_ s: String) -> String { s.prefix(1).uppercased() + s.dropFirst() }
        static func object(_ rng: inout SplitMix64) -> String {
            let c = rng.pick(colours)
            return "\(article(c)) \(c) \(rng.pick(things))"
        }

        /// An introduction, then 3–5 sentences about the same character (by name or pronoun).
        static func paragraph(_ rng: inout SplitMix64) -> String {
            let (noun, pronoun) = rng.pick(characters)
            let adjective = rng.pick(adjectives)
            var sentences = ["\(capitalized(article(adjective))) \(adjective) \(noun) lived \(rng.pick(places))."]
            for _ in 0..<rng.int(in: 3...5) {
                let who = rng.int(2) == 0 ? "the \(noun)" : pronoun
                let other = rng.pick(characters.filter { $0.noun != noun }).noun
                let s: String
                switch rng.int(6) {
                case 0: s = "\(who) \(rng.pick(transitive)) \(object(&rng)) \(rng.pick(places))."
                case 1: s = "\(rng.pick(times)), \(who) \(rng.pick(intransitive)) \(rng.pick(places))."
                case 2: s = "\(who) felt \(rng.pick(feelings)) and \(rng.pick(intransitive)) \(rng.pick(times))."
                case 3: s = "\(who) \(rng.pick(transitive)) \(object(&rng)) \(rng.pick(times)), then \(rng.pick(intransitive))."
                case 4: s = "nobody knew why \(who) \(rng.pick(transitive)) \(object(&rng))."
                default: s = "the \(other) \(rng.pick(intransitive)) \(rng.pick(places)) while \(who) \(rng.pick(intransitive))."
                }
                sentences.append(capitalized(s))
            }
            return sentences.joined(separator: " ")
        }

        static func instruction(_ rng: inout SplitMix64) -> (user: String, assistant: String) {
            let (noun, pronoun) = rng.pick(characters)
            let adjective = rng.pick(adjectives)
            switch rng.int(3) {
            case 0:
                return (user: "Describe \(article(noun)) \(noun).",
                        assistant: "The \(noun) was \(adjective). \(capitalized(pronoun)) \(rng.pick(intransitive)) \(rng.pick(places)) \(rng.pick(times)).")
            case 1:
                return (user: "Write a sentence about \(article(noun)) \(noun).",
                        assistant: "\(capitalized(article(adjective))) \(adjective) \(noun) \(rng.pick(transitive)) \(object(&rng)) \(rng.pick(places)).")
            default:
                let (verb, past) = rng.pick([("sleep", "slept"), ("wait", "waited"), ("rest", "rested"), ("work", "worked")])
                return (user: "Where did the \(noun) \(verb)?",
                        assistant: "The \(noun) \(past) \(rng.pick(places)) \(rng.pick(times)).")
            }
        }
    }
}

private extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
