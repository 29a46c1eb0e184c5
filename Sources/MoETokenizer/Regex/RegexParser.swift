// Parser of UnicodeRegex's pattern subset into a small syntax tree.

indirect enum RegexNode {
    case empty
    /// One scalar out of a set (a literal, a class, `.`, `\s`, `\p{L}` …).
    case set(ScalarSetSpec)
    case sequence([RegexNode])
    case alternation([RegexNode])
    /// `max == nil`: unbounded.
    case repetition(RegexNode, min: Int, max: Int?, mode: RepetitionMode)
    case lookahead(RegexNode, negative: Bool)
    case atomic(RegexNode)
    case assertion(RegexAssertion)
}

enum RepetitionMode: UInt8 { case greedy, lazy, possessive }

enum RegexAssertion: Int32 {
    case lineStart, lineEnd, textStart, textEnd, textEndBeforeFinalNewline, wordBoundary, notWordBoundary
}

struct RegexParser {
    let pattern: String
    let options: UnicodeRegex.Options
    var chars: [UInt32]
    var i = 0

    init(_ pattern: String, options: UnicodeRegex.Options) {
        self.pattern = pattern
        self.options = options
        chars = pattern.unicodeScalars.map(\.value)
    }

    func fail(_ reason: String) -> TokenizerError {
        .badPattern(pattern: pattern, reason: reason + " (at scalar offset \(i))")
    }

    var atEnd: Bool { i >= chars.count }
    func peek(_ k: Int = 0) -> UInt32? { i + k < chars.count ? chars[i + k] : nil }
    func peekIs(_ s: Character, _ k: Int = 0) -> Bool { peek(k) == s.unicodeScalars.first!.value }

    mutating func parse() throws -> RegexNode {
        var caseless = false
        let node = try parseAlternation(caseless: &caseless)
        if !atEnd { throw fail("unbalanced ')'") }
        return node
    }

    mutating func parseAlternation(caseless: inout Bool) throws -> RegexNode {
        var branches: [RegexNode] = [try parseSequence(caseless: &caseless)]
        while peekIs("|") {
            i += 1
            branches.append(try parseSequence(caseless: &caseless))
        }
        return branches.count == 1 ? branches[0] : .alternation(branches)
    }

    /// A sequence up to `|`, `)` or the end. `caseless` is the current `i` flag; `(?i)` changes it for the rest of
    /// the enclosing group.
    mutating func parseSequence(caseless: inout Bool) throws -> RegexNode {
        var items: [RegexNode] = []
        while let c = peek(), c != 0x7C /* | */, c != 0x29 /* ) */ {
            guard var atom = try parseAtom(caseless: &caseless) else { continue }
            atom = try parseQuantifiers(atom)
            items.append(atom)
        }
        switch items.count {
        case 0: return .empty
        case 1: return items[0]
        default: return .sequence(items)
        }
    }

    mutating func parseQuantifiers(_ atom: RegexNode) throws -> RegexNode {
        var node = atom
        while let c = peek() {
            var lo = 0, hi: Int? = nil
            var interval = false
            switch c {
            case 0x2A: lo = 0; hi = nil; i += 1  // *
            case 0x2B: lo = 1; hi = nil; i += 1  // +
            case 0x3F: lo = 0; hi = 1; i += 1  // ?
            case 0x7B:  // {
                guard let (a, b, len) = parseInterval() else { return node }
                lo = a; hi = b; i += len; interval = true
            default: return node
            }
            if case .assertion = node { throw fail("quantifier after an anchor") }
            if case .lookahead = node { throw fail("quantifier after a lookahead") }
            var mode = RepetitionMode.greedy
            if peekIs("?") {
                mode = .lazy; i += 1
            } else if peekIs("+") {
                if !interval || options.possessiveIntervals {
                    mode = .possessive; i += 1
                }  // else: Oniguruma (Ruby syntax) reads `{n,m}+` as `(?:x{n,m})+`, handled by the loop
            }
            if let h = hi, h < lo { throw fail("bad repetition range {\(lo),\(h)}") }
            if lo > 100_000 || (hi ?? 0) > 100_000 { throw fail("repetition count too large") }
            node = .repetition(node, min: lo, max: hi, mode: mode)
        }
        return node
    }

    /// `{n}`, `{n,}`, `{n,m}`, `{,m}` at `i`; nil if not an interval (then `{` is a literal, as in Oniguruma).
    func parseInterval() -> (Int, Int?, Int)? {
        var k = i + 1
        func number() -> Int? {
            var v: Int? = nil
            while k < chars.count, chars[k] >= 0x30, chars[k] <= 0x39 {
                v = (v ?? 0) * 10 + Int(chars[k] - 0x30)
                if v! > 1_000_000 { return v }
                k += 1
            }
            return v
        }
        let a = number()
        if k < chars.count, chars[k] == 0x7D {  // }
            guard let a else { return nil }
            return (a, a, k + 1 - i)
        }
        guard k < chars.count, chars[k] == 0x2C else { return nil }  // ,
        k += 1
        let b = number()
        guard k < chars.count, chars[k] == 0x7D, a != nil || b != nil else { return nil }
        return (a ?? 0, b, k + 1 - i)
    }

    mutating func parseAtom(caseless: inout Bool) throws -> RegexNode? {
        let c = chars[i]
        switch c {
        case 0x28:  // (
            return try parseGroup(caseless: &caseless)
        case 0x5B:  // [
            i += 1
            var spec = try parseClass()
            if caseless { spec.addCaseVariants() }
            return .set(spec)
        case 0x2E:  // .
            i += 1
            return .set(ScalarSetSpec(ranges: [0x0A...0x0A], negated: true))
        case 0x5E:  // ^
            i += 1
            return .assertion(options.lineAnchors ? .lineStart : .textStart)
        case 0x24:  // $
            i += 1
            return .assertion(options.lineAnchors ? .lineEnd : .textEnd)
        case 0x2A, 0x2B, 0x3F:
            throw fail("quantifier without a target")
        case 0x5C:  // backslash
            i += 1
            guard let e = peek() else { throw fail("trailing backslash") }
            switch e {
            case 0x62: i += 1; return .assertion(.wordBoundary)  // \b
            case 0x42: i += 1; return .assertion(.notWordBoundary)  // \B
            case 0x41: i += 1; return .assertion(.textStart)  // \A
            case 0x7A: i += 1; return .assertion(.textEnd)  // \z
            case 0x5A: i += 1; return .assertion(.textEndBeforeFinalNewline)  // \Z
            default:
                var spec = try parseEscape(inClass: false)
                if caseless { spec.addCaseVariants() }
                return .set(spec)
            }
        default:
            i += 1
            var spec = ScalarSetSpec.char(c)
            if caseless { spec.addCaseVariants() }
            return .set(spec)
        }
    }

    mutating func parseGroup(caseless outer: inout Bool) throws -> RegexNode? {
        i += 1  // (
        var caseless = outer
        var kind = 0  // 0 plain, 1 lookahead, 2 negative lookahead, 3 atomic
        if peekIs("?") {
            i += 1
            guard let k = peek() else { throw fail("unterminated group") }
            switch k {
            case 0x3A: i += 1  // (?:
            case 0x3D: i += 1; kind = 1  // (?=
            case 0x21: i += 1; kind = 2  // (?!
            case 0x3E: i += 1; kind = 3  // (?>
            case 0x23:  // (?# comment )
                while let c = peek(), c != 0x29 { i += 1 }
                if atEnd { throw fail("unterminated comment") }
                i += 1
                return nil
            case 0x3C:  // (?<
                if peekIs("=", 1) || peekIs("!", 1) {
                    throw fail("lookbehind (?<= / (?<! is not supported")
                }
                throw fail("named groups (?<name>...) are not supported")
            case 0x50: throw fail("named groups (?P<name>...) are not supported")
            case 0x27: throw fail("named groups (?'name'...) are not supported")
            default:
                // Flags: (?i) (?-i) (?i:...) (?i-:...)
                var on = true
                var newCaseless = caseless
                while let f = peek(), f != 0x3A, f != 0x29 {
                    switch f {
                    case 0x69: newCaseless = on  // i
                    case 0x2D: on = false  // -
                    default:
                        throw fail("group flag '\(Character(Unicode.Scalar(f)!))' is not supported (only i)")
                    }
                    i += 1
                }
                guard let end = peek() else { throw fail("unterminated group") }
                i += 1
                if end == 0x29 {  // (?i) applies to the rest of the enclosing group
                    outer = newCaseless
                    return nil
                }
                caseless = newCaseless
            }
        }
        let body = try parseAlternation(caseless: &caseless)
        guard peekIs(")") else { throw fail("missing ')'") }
        i += 1
        switch kind {
        case 1: return .lookahead(body, negative: false)
        case 2: return .lookahead(body, negative: true)
        case 3: return .atomic(body)
        default: return body
        }
    }

    /// After `\`: a scalar or a set escape. `inClass`: `\b` is backspace.
    mutating func parseEscape(inClass: Bool) throws -> ScalarSetSpec {
        let e = chars[i]
        i += 1
        switch e {
        case 0x74: return .char(0x09)  // \t
        case 0x6E: return .char(0x0A)  // \n
        case 0x72: return .char(0x0D)  // \r
        case 0x66: return .char(0x0C)  // \f
        case 0x76: return .char(0x0B)  // \v
        case 0x61: return .char(0x07)  // \a
        case 0x65: return .char(0x1B)  // \e
        case 0x62 where inClass: return .char(0x08)
        case 0x30:  // \0, \0oo
            var v: UInt32 = 0
            var n = 0
            while n < 2, let d = peek(), d >= 0x30, d <= 0x37 { v = v * 8 + d - 0x30; i += 1; n += 1 }
            return .char(v)
        case 0x73: return ScalarSetSpec(mask: RegexUnicode.whiteSpaceBit)  // \s
        case 0x53: return ScalarSetSpec(mask: RegexUnicode.notWhiteSpaceBit)  // \S
        case 0x64: return ScalarSetSpec(mask: RegexUnicode.digit)  // \d
        case 0x44: return ScalarSetSpec(mask: RegexUnicode.allCategories & ~RegexUnicode.digit)  // \D
        case 0x77: return ScalarSetSpec(mask: RegexUnicode.word)  // \w
        case 0x57: return ScalarSetSpec(mask: RegexUnicode.allCategories & ~RegexUnicode.word)  // \W
        case 0x70, 0x50:  // \p \P
            var name: String
            if peekIs("{") {
                i += 1
                var s = ""
                while let c = peek(), c != 0x7D { s.unicodeScalars.append(Unicode.Scalar(c)!); i += 1 }
                if atEnd { throw fail("unterminated \\p{") }
                i += 1
                name = s
            } else {
                guard let c = peek() else { throw fail("incomplete \\p") }
                i += 1
                name = String(Character(Unicode.Scalar(c)!))
            }
            var negate = e == 0x50
            if name.hasPrefix("^") { negate.toggle(); name.removeFirst() }
            guard let m = RegexUnicode.propertyMask(name) else {
                throw fail("property \\p{\(name)} is not supported (General_Category names and White_Space only)")
            }
            if negate {
                if m == RegexUnicode.whiteSpaceBit { return ScalarSetSpec(mask: RegexUnicode.notWhiteSpaceBit) }
                return ScalarSetSpec(mask: RegexUnicode.allCategories & ~m)
            }
            return ScalarSetSpec(mask: m)
        case 0x78:  // \xHH or \x{H…}
            if peekIs("{") {
                i += 1
                let v = try hex(maxDigits: 8, until: 0x7D)
                return .char(v)
            }
            return .char(try hex(maxDigits: 2, until: nil))
        case 0x75:  // \uHHHH
            return .char(try hex(maxDigits: 4, until: nil, exact: true))
        case 0x31...0x39:
            throw fail("backreferences (\\\(Character(Unicode.Scalar(e)!))) are not supported")
        case 0x6B: throw fail("named backreferences (\\k) are not supported")
        case 0x67: throw fail("subexpression calls (\\g) are not supported")
        default:
            if (e >= 0x41 && e <= 0x5A) || (e >= 0x61 && e <= 0x7A) {
                throw fail("escape \\\(Character(Unicode.Scalar(e)!)) is not supported")
            }
            return .char(e)  // escaped punctuation (or any other non-letter) is literal
        }
    }

    mutating func hex(maxDigits: Int, until terminator: UInt32?, exact: Bool = false) throws -> UInt32 {
        var v: UInt32 = 0
        var n = 0
        while n < maxDigits, let c = peek(), let d = Self.hexValue(c) {
            v = v * 16 + d; i += 1; n += 1
        }
        if n == 0 || (exact && n != maxDigits) { throw fail("bad hex escape") }
        if let t = terminator {
            guard peek() == t else { throw fail("bad hex escape") }
            i += 1
        }
        guard v <= 0x10FFFF else { throw fail("code point out of range") }
        return v
    }

    static func hexValue(_ c: UInt32) -> UInt32? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x41...0x46: c - 0x41 + 10
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }

    /// After `[`: items up to the closing `]`.
    mutating func parseClass() throws -> ScalarSetSpec {
        var spec = ScalarSetSpec()
        if peekIs("^") { spec.negated = true; i += 1 }
        var first = true
        while true {
            guard let c = peek() else { throw fail("unterminated character class") }
            if c == 0x5D && !first { i += 1; break }  // ]  (a ']' right after '[' or '[^' is literal)
            first = false
            if c == 0x5B {  // [
                if peekIs(":", 1) { throw fail("POSIX bracket classes [:name:] are not supported") }
                throw fail("nested character classes are not supported")
            }
            if c == 0x26 && peekIs("&", 1) { throw fail("class intersection && is not supported") }
            // One item: a scalar (possibly the start of a range) or a set escape.
            let item: ScalarSetSpec
            if c == 0x5C {
                i += 1
                guard !atEnd else { throw fail("trailing backslash") }
                item = try parseEscape(inClass: true)
            } else {
                i += 1
                item = .char(c)
            }
            if let lo = item.singleScalar, peekIs("-"), let after = peek(1), after != 0x5D {
                // A range lo-hi.
                i += 1
                var hi: UInt32
                if after == 0x5C {
                    i += 1
                    guard !atEnd else { throw fail("trailing backslash") }
                    guard let h = try parseEscape(inClass: true).singleScalar else {
                        throw fail("bad range end in character class")
                    }
                    hi = h
                } else {
                    if after == 0x5B { throw fail("nested character classes are not supported") }
                    hi = after
                    i += 1
                }
                guard lo <= hi else { throw fail("empty range in character class") }
                spec.ranges.append(lo...hi)
            } else {
                spec.ranges += item.ranges
                spec.mask |= item.mask
                if item.negated { throw fail("internal: negated class item") }
            }
        }
        return spec
    }
}
