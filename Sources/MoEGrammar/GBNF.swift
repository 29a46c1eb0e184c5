/// llama.cpp's GBNF grammar format (grammars/README.md there):
///
///     root   ::= answer ("," space answer)*      # a comment
///     answer ::= "yes" | "no" | [0-9]+ | item{2,4}
///     item   ::= [^"\\] | "\\" ["\\nt]
///     space  ::= " "?
///
/// Rules are `name ::= alternatives` (a rule ends at a newline unless inside parentheses or after `|`);
/// terminals are string literals and character classes (`[a-z]`, `[^…]`, `.` for any character) with the escapes
/// `\n \r \t \\ \" \[ \] \- \xHH \uHHHH \UHHHHHHHH`; `( … )` groups; `* + ? {m} {m,} {m,n}` repeat the element before
/// them. The start rule is `root`.
public enum GBNF {
    /// The most a `{m,n}` bound may be (each copy is a rule element).
    static let maxRepetition = 1000

    public static func parse(_ text: String, root: String = "root") throws(GrammarError) -> Grammar {
        var p = Parser(Array(text.unicodeScalars))
        try p.parseRules()
        return try p.builder.build(root: root)
    }

    struct Parser {
        let s: [Unicode.Scalar]
        var i = 0
        var builder = GrammarBuilder()

        init(_ s: [Unicode.Scalar]) { self.s = s }

        var line: Int { s[..<min(i, s.count)].reduce(1) { $0 + ($1 == "\n" ? 1 : 0) } }

        func error(_ message: String) -> GrammarError {
            GrammarError("grammar, line \(line): \(message)", keyword: "grammar")
        }

        static func isNameChar(_ c: Unicode.Scalar) -> Bool {
            ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) || c == "-" || c == "_"
        }

        /// Skips blanks and comments; newlines too when `newlines`.
        mutating func space(newlines: Bool) {
            while i < s.count {
                let c = s[i]
                if c == " " || c == "\t" || (newlines && (c == "\n" || c == "\r")) {
                    i += 1
                } else if c == "#" {
                    while i < s.count && s[i] != "\n" { i += 1 }
                } else {
                    break
                }
            }
        }

        mutating func name() throws(GrammarError) -> String {
            let start = i
            while i < s.count && Self.isNameChar(s[i]) { i += 1 }
            guard i > start else { throw error("expected a rule name at '\(rest)'") }
            var v = String.UnicodeScalarView()
            v.append(contentsOf: s[start..<i])
            return String(v)
        }

        var rest: String {
            var v = String.UnicodeScalarView()
            v.append(contentsOf: s[i..<min(s.count, i + 20)])
            return String(v)
        }

        mutating func parseRules() throws(GrammarError) {
            space(newlines: true)
            while i < s.count {
                let name = try name()
                space(newlines: false)
                guard i + 2 < s.count, s[i] == ":", s[i + 1] == ":", s[i + 2] == "=" else { throw error("expected '::=' after '\(name)'") }
                i += 3
                space(newlines: true)
                let body = try alternatives(rule: name, nested: false)
                try builder.define(name, body)
                // A rule ends at the end of its line.
                space(newlines: false)
                guard i == s.count || s[i] == "\n" || s[i] == "\r" else { throw error("unexpected '\(rest)'") }
                space(newlines: true)
            }
        }

        mutating func alternatives(rule: String, nested: Bool) throws(GrammarError) -> [[GrammarBuilder.Item]] {
            var out = [try sequence(rule: rule, nested: nested)]
            while i < s.count && s[i] == "|" {
                i += 1
                space(newlines: true)
                out.append(try sequence(rule: rule, nested: nested))
            }
            return out
        }

        mutating func sequence(rule: String, nested: Bool) throws(GrammarError) -> [GrammarBuilder.Item] {
            var items: [GrammarBuilder.Item] = []
            var last: [GrammarBuilder.Item]?   // the atom a repetition applies to, already in `items`
            while i < s.count {
                let c = s[i]
                var atom: [GrammarBuilder.Item]?
                if c == "\"" {
                    i += 1
                    var chars: [GrammarBuilder.Item] = []
                    while true {
                        guard i < s.count, s[i] != "\n" else { throw error("unterminated string literal") }
                        if s[i] == "\"" { i += 1; break }
                        let code = try char()
                        chars.append(.chars(.init(ranges: [code...code])))
                    }
                    atom = chars
                } else if c == "[" {
                    i += 1
                    var negated = false
                    if i < s.count && s[i] == "^" { negated = true; i += 1 }
                    var ranges: [ClosedRange<UInt32>] = []
                    while true {
                        guard i < s.count else { throw error("unterminated character class") }
                        if s[i] == "]" { i += 1; break }
                        let lo = try char()
                        if i + 1 < s.count && s[i] == "-" && s[i + 1] != "]" {
                            i += 1
                            let hi = try char()
                            guard lo <= hi else { throw error("character range \(lo)-\(hi) is backwards") }
                            ranges.append(lo...hi)
                        } else {
                            ranges.append(lo...lo)
                        }
                    }
                    guard !ranges.isEmpty || negated else { throw error("empty character class") }
                    atom = [.chars(.init(ranges: ranges, negated: negated))]
                } else if c == "." {
                    i += 1
                    atom = [.chars(.init(ranges: [], negated: true))]
                } else if c == "(" {
                    i += 1
                    space(newlines: true)
                    let body = try alternatives(rule: rule, nested: true)
                    guard i < s.count, s[i] == ")" else { throw error("expected ')'") }
                    i += 1
                    atom = [.rule(builder.fresh(rule, body))]
                } else if Self.isNameChar(c) {
                    let name = try name()
                    atom = [.rule(builder.id(name, usedAt: "in '\(rule)'"))]
                } else if c == "*" || c == "+" || c == "?" || c == "{" {
                    guard let x = last else { throw error("'\(c)' must follow something to repeat") }
                    var minCount = 0, maxCount: Int? = nil
                    i += 1
                    switch c {
                    case "*": break
                    case "+": minCount = 1
                    case "?": maxCount = 1
                    default:
                        space(newlines: false)
                        minCount = try number()
                        space(newlines: false)
                        if i < s.count && s[i] == "," {
                            i += 1
                            space(newlines: false)
                            if i < s.count && s[i] != "}" { maxCount = try number() }
                        } else {
                            maxCount = minCount
                        }
                        space(newlines: false)
                        guard i < s.count, s[i] == "}" else { throw error("expected '}'") }
                        i += 1
                        if let m = maxCount, m < minCount { throw error("{\(minCount),\(m)}: the bounds are backwards") }
                    }
                    items.removeLast(x.count)
                    items += repeated(x, min: minCount, max: maxCount, rule: rule)
                    last = nil
                    space(newlines: nested)
                    continue
                } else {
                    break
                }
                if let atom {
                    items += atom
                    last = atom
                }
                space(newlines: nested)
            }
            return items
        }

        mutating func number() throws(GrammarError) -> Int {
            let start = i
            while i < s.count && ("0"..."9").contains(s[i]) { i += 1 }
            guard i > start, i - start <= 6 else { throw error("expected a repetition count") }
            var v = 0
            for c in s[start..<i] { v = v * 10 + Int(c.value - 48) }
            guard v <= GBNF.maxRepetition else { throw error("a repetition count is at most \(GBNF.maxRepetition); got \(v)") }
            return v
        }

        /// One character of a literal or class, escapes read.
        mutating func char() throws(GrammarError) -> UInt32 {
            let c = s[i]
            i += 1
            guard c == "\\" else { return c.value }
            guard i < s.count else { throw error("a '\\' ends the grammar") }
            let e = s[i]
            i += 1
            switch e {
            case "n": return 10
            case "r": return 13
            case "t": return 9
            case "\\", "\"", "[", "]", "-", "^", "/": return e.value
            case "x", "u", "U":
                let n = e == "x" ? 2 : e == "u" ? 4 : 8
                guard i + n <= s.count else { throw error("a short \\\(e) escape") }
                var v: UInt32 = 0
                for d in s[i..<(i + n)] {
                    guard let h = UInt32(String(d), radix: 16) else { throw error("\\\(e) needs \(n) hex digits") }
                    v = v * 16 + h
                }
                i += n
                guard v <= 0x10FFFF else { throw error("\\\(e) escape beyond U+10FFFF") }
                return v
            default: throw error("unknown escape '\\\(e)'")
            }
        }

        /// `x` repeated `min`…`max` times (`max` nil: no bound) as rule items.
        mutating func repeated(_ x: [GrammarBuilder.Item], min: Int, max: Int?, rule: String) -> [GrammarBuilder.Item] {
            var out: [GrammarBuilder.Item] = []
            for _ in 0..<min { out += x }
            if let max {
                // (x (x (x)?)?)? — nested from the inside out.
                var tail: [GrammarBuilder.Item] = []
                for _ in min..<max {
                    let r = builder.fresh(rule, [x + tail, []])
                    tail = [.rule(r)]
                }
                out += tail
            } else {
                // star ::= x star | ε
                out.append(.rule(builder.fresh(rule) { star in [x + [.rule(star)], []] }))
            }
            return out
        }
    }
}
