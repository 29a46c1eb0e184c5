/// A JSON Schema `pattern` (ECMA-262 regular expressions, the common subset) as a GBNF expression for the
/// *inside* of a JSON string: characters that JSON must escape (`"`, `\`, control characters) are written
/// escaped, and the match is anchored at both ends (a full match also satisfies JSON Schema's search
/// semantics).
///
/// Supported: literals and escapes (`\d \w \s \D \W \S \n \t \uXXXX`, escaped punctuation), `.`, classes with
/// ranges and negation, groups (`( )`, `(?: )`, `(?<name> )`), `|`, and `* + ? {m} {m,} {m,n}` (lazy `?`
/// suffixes read as greedy); `^` at the start and `$` at the end. Lookarounds and back-references are refused.
enum RegexGrammar {
    static func expression(_ pattern: String) throws(GrammarError) -> String {
        var p = Parser(Array(pattern.unicodeScalars))
        if p.peek == "^" { p.i += 1 }
        let e = try p.alternation()
        guard p.i == p.s.count else { throw p.error("unexpected '\(p.s[p.i])'") }
        return e
    }

    struct Parser {
        let s: [Unicode.Scalar]
        var i = 0
        init(_ s: [Unicode.Scalar]) { self.s = s }
        var peek: Unicode.Scalar? { i < s.count ? s[i] : nil }

        func error(_ message: String) -> GrammarError {
            var v = String.UnicodeScalarView()
            v.append(contentsOf: s)
            return GrammarError("pattern \"\(String(v))\": \(message)", keyword: "pattern")
        }

        mutating func alternation() throws(GrammarError) -> String {
            var alts = [try sequence()]
            while peek == "|" {
                i += 1
                alts.append(try sequence())
            }
            return alts.count == 1 ? alts[0] : "(" + alts.joined(separator: " | ") + ")"
        }

        mutating func sequence() throws(GrammarError) -> String {
            var items: [String] = []
            while let c = peek, c != "|", c != ")" {
                if c == "$" {
                    i += 1
                    guard peek == nil || peek == ")" || peek == "|" else { throw error("'$' is only supported at the end") }
                    continue
                }
                var atom = try self.atom()
                if let q = peek, "*+?{".unicodeScalars.contains(q) {
                    atom = "(" + atom + ")" + (try quantifier())
                    if peek == "?" { i += 1 }   // lazy: the same language
                }
                items.append(atom)
            }
            return items.isEmpty ? "\"\"" : items.joined(separator: " ")
        }

        mutating func quantifier() throws(GrammarError) -> String {
            let q = s[i]
            i += 1
            guard q == "{" else { return String(q) }
            var text = ""
            while let c = peek, c != "}" { text.unicodeScalars.append(c); i += 1 }
            guard peek == "}" else { throw error("unterminated '{'") }
            i += 1
            let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingSpaces }
            guard (1...2).contains(parts.count), let m = Int(parts[0]), m <= GBNF.maxRepetition,
                  parts.count == 1 || parts[1].isEmpty || (Int(parts[1]).map { $0 >= m && $0 <= GBNF.maxRepetition } ?? false) else {
                throw error("bad repetition {\(text)}")
            }
            return "{" + text.filter { $0 != " " } + "}"
        }

        mutating func atom() throws(GrammarError) -> String {
            let c = s[i]
            i += 1
            switch c {
            case "(":
                if peek == "?" {
                    if i + 1 < s.count && s[i + 1] == ":" {
                        i += 2
                    } else if i + 1 < s.count && s[i + 1] == "<" && i + 2 < s.count && s[i + 2] != "=" && s[i + 2] != "!" {
                        while let d = peek, d != ">" { i += 1; _ = d }
                        guard peek == ">" else { throw error("unterminated group name") }
                        i += 1
                    } else {
                        throw error("lookarounds and other (? groups are not supported")
                    }
                }
                let inner = try alternation()
                guard peek == ")" else { throw error("missing ')'") }
                i += 1
                return "(" + inner + ")"
            case "[": return try charClass()
            case ".": return RegexGrammar.classExpression(RegexGrammar.complement([10...10, 13...13]))
            case "\\": return try escape(inClass: false).expression
            case "*", "+", "?", "{": throw error("'\(c)' has nothing to repeat")
            case "^": throw error("'^' is only supported at the start")
            default: return RegexGrammar.classExpression([c.value...c.value])
            }
        }

        /// An escape: a class (`\d`) or one character.
        enum Escaped {
            case ranges([ClosedRange<UInt32>])
            var expression: String { if case .ranges(let r) = self { return RegexGrammar.classExpression(r) }; return "" }
        }

        mutating func escape(inClass: Bool) throws(GrammarError) -> Escaped {
            guard let e = peek else { throw error("a '\\' ends the pattern") }
            i += 1
            let digit: [ClosedRange<UInt32>] = [48...57]
            let word: [ClosedRange<UInt32>] = [48...57, 65...90, 95...95, 97...122]
            let space: [ClosedRange<UInt32>] = [9...10, 13...13, 32...32]
            switch e {
            case "d": return .ranges(digit)
            case "D": return .ranges(RegexGrammar.complement(digit))
            case "w": return .ranges(word)
            case "W": return .ranges(RegexGrammar.complement(word))
            case "s": return .ranges(space)
            case "S": return .ranges(RegexGrammar.complement(space))
            case "n": return .ranges([10...10])
            case "t": return .ranges([9...9])
            case "r": return .ranges([13...13])
            case "u":
                guard i + 4 <= s.count, let v = UInt32(String(String.UnicodeScalarView(s[i..<(i + 4)])), radix: 16) else {
                    throw error("\\u needs four hex digits")
                }
                i += 4
                return .ranges([v...v])
            case "b" where inClass: return .ranges([8...8])
            case "1"..."9", "b", "B", "k": throw error("back-references and word boundaries are not supported")
            default:
                guard !(("a"..."z").contains(e) || ("A"..."Z").contains(e) || ("0"..."9").contains(e)) else {
                    throw error("unknown escape '\\\(e)'")
                }
                return .ranges([e.value...e.value])
            }
        }

        mutating func charClass() throws(GrammarError) -> String {
            var negated = false
            if peek == "^" { negated = true; i += 1 }
            var ranges: [ClosedRange<UInt32>] = []
            var first = true
            while true {
                guard let c = peek else { throw error("unterminated '['") }
                if c == "]" && !first { i += 1; break }
                first = false
                i += 1
                var lo: UInt32
                if c == "\\" {
                    let e = try escape(inClass: true)
                    guard case .ranges(let r) = e, r.count == 1, r[0].count == 1 else {
                        if case .ranges(let r) = e { ranges += r }
                        continue
                    }
                    lo = r[0].lowerBound
                } else {
                    lo = c.value
                }
                if peek == "-", i + 1 < s.count, s[i + 1] != "]" {
                    i += 1
                    var hi = s[i].value
                    i += 1
                    if s[i - 1] == "\\" {
                        guard case .ranges(let r) = try escape(inClass: true), r.count == 1, r[0].count == 1 else {
                            throw error("a class cannot end a range")
                        }
                        hi = r[0].lowerBound
                    }
                    guard lo <= hi else { throw error("range out of order") }
                    ranges.append(lo...hi)
                } else {
                    ranges.append(lo...lo)
                }
            }
            let set = negated ? RegexGrammar.complement(ranges) : ranges
            guard !set.isEmpty else { throw error("a class that matches nothing") }
            return RegexGrammar.classExpression(set)
        }
    }

    /// Code points outside `ranges`.
    static func complement(_ ranges: [ClosedRange<UInt32>]) -> [ClosedRange<UInt32>] {
        var out: [ClosedRange<UInt32>] = []
        var next: UInt32 = 0
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if r.lowerBound > next { out.append(next...(r.lowerBound - 1)) }
            next = max(next, r.upperBound &+ 1)
        }
        if next <= 0x10FFFF { out.append(next...0x10FFFF) }
        return out
    }

    /// A set of characters as they appear inside a JSON string: plain ones as a class, and `"`, `\`, newline,
    /// tab and carriage return by their escapes (other control characters are left out).
    static func classExpression(_ ranges: [ClosedRange<UInt32>]) -> String {
        let plain = ranges.flatMap { r -> [ClosedRange<UInt32>] in
            // Minus the control characters, '"' and '\'.
            var parts: [ClosedRange<UInt32>] = []
            for allowed: ClosedRange<UInt32> in [0x20...0x21, 0x23...0x5B, 0x5D...0x10FFFF] {
                let lo = max(r.lowerBound, allowed.lowerBound), hi = min(r.upperBound, allowed.upperBound)
                if lo <= hi { parts.append(lo...hi) }
            }
            return parts
        }
        var alts: [String] = []
        if !plain.isEmpty { alts.append("[" + plain.map { $0.count == 1 ? gbnfChar($0.lowerBound) : gbnfChar($0.lowerBound) + "-" + gbnfChar($0.upperBound) }.joined() + "]") }
        for (c, escaped) in [(UInt32(34), #""\\\"""#), (92, #""\\\\""#), (10, #""\\n""#), (9, #""\\t""#), (13, #""\\r""#)]
        where ranges.contains(where: { $0.contains(c) }) {
            alts.append(escaped)
        }
        return alts.count == 1 ? alts[0] : "(" + alts.joined(separator: " | ") + ")"
    }

    /// A code point written for a GBNF literal or class.
    static func gbnfChar(_ c: UInt32) -> String {
        switch c {
        case 0x5C: return "\\\\"
        case 0x22: return "\\\""
        case 0x5D: return "\\]"
        case 0x5B: return "\\["
        case 0x2D: return "\\-"
        case 0x5E: return "\\^"
        case 0x20...0x7E: return String(UnicodeScalar(UInt8(c)))
        case 0..<0x10000: return "\\u" + hex(c, 4)
        default: return "\\U" + hex(c, 8)
        }
    }

    static func hex(_ v: UInt32, _ digits: Int) -> String {
        let h = String(v, radix: 16)
        return String(repeating: "0", count: max(0, digits - h.count)) + h
    }
}

extension Substring {
    var trimmingSpaces: String { String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
}
