import Foundation

/// Tokens of the jinja2 lexer, with jinja2's `trim_blocks=True, lstrip_blocks=True` whitespace handling applied.
enum JTokKind: Equatable, Sendable {
    case text(String)
    case varBegin, varEnd, blockBegin, blockEnd
    case name(String)
    case string(String)
    case int(Int)
    case float(Double)
    case op(String)
    case eof
}

struct JToken: Sendable {
    var kind: JTokKind
    var line: Int
}

private let operators3: [String] = []
private let operators2 = ["//", "**", "==", "!=", ">=", "<="]
private let operators1 = Set("+-/*%~[](){}><=.:|,;".map { String($0) })

/// Python's `str.isspace` for one scalar (what `\s` matches in a `re` pattern on str).
@inline(__always) func jIsSpace(_ u: Unicode.Scalar) -> Bool {
    switch u.value {
    case 0x09...0x0d, 0x1c...0x20, 0x85, 0xa0, 0x1680, 0x2000...0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000: return true
    default: return false
    }
}

struct JinjaLexer {
    let s: [Unicode.Scalar]
    var pos = 0
    var line = 1
    var tokens: [JToken] = []
    var lineStarting = true

    init(_ source: String) {
        // Newlines are normalised to \n, and (keep_trailing_newline=False) one trailing newline is dropped.
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(source.unicodeScalars.count)
        var it = source.unicodeScalars.makeIterator()
        var pendingCR = false
        while let c = it.next() {
            if pendingCR { pendingCR = false; scalars.append("\n"); if c == "\n" { continue } }
            if c == "\r" { pendingCR = true; continue }
            scalars.append(c)
        }
        if pendingCR { scalars.append("\n") }
        if scalars.last == "\n" { scalars.removeLast() }
        s = scalars
    }

    func at(_ i: Int) -> Unicode.Scalar? { i < s.count ? s[i] : nil }
    func hasPrefix(_ p: String, at i: Int) -> Bool {
        var j = i
        for c in p.unicodeScalars { guard j < s.count, s[j] == c else { return false }; j += 1 }
        return true
    }
    func str(_ a: Int, _ b: Int) -> String { var r = String.UnicodeScalarView(); r.append(contentsOf: s[a..<b]); return String(r) }

    func syntax(_ m: String) -> ChatTemplateError { .syntax(m, line: line) }

    mutating func emit(_ k: JTokKind) { tokens.append(JToken(kind: k, line: line)) }
    mutating func emitText(_ a: Int, _ b: Int) {
        if b > a { emit(.text(str(a, b))); for k in a..<b where s[k] == "\n" { line += 1 } }
    }

    /// Applies the lstrip / `-` rules to the data before a tag and emits it.
    mutating func emitData(_ a: Int, _ b: Int, sign: Unicode.Scalar?, isVariable: Bool) {
        var end = b
        if sign == "-" {
            while end > a, jIsSpace(s[end - 1]) { end -= 1 }
            for k in end..<b where s[k] == "\n" { line += 1 }   // keep line numbers right
            emitText(a, end)
            return
        }
        if sign != "+" && !isVariable {
            var lpos = a
            var k = b
            while k > a { if s[k - 1] == "\n" { lpos = k; break }; k -= 1 }
            if lpos > a || lineStarting {
                if lpos < b && (lpos..<b).allSatisfy({ jIsSpace(s[$0]) }) { end = lpos }
            }
        }
        emitText(a, end)
    }

    mutating func run() throws -> [JToken] {
        while pos < s.count {
            // Find the next tag start.
            var i = pos
            var kind: Unicode.Scalar? = nil
            while i + 1 < s.count {
                if s[i] == "{", s[i + 1] == "{" || s[i + 1] == "%" || s[i + 1] == "#" { kind = s[i + 1]; break }
                i += 1
            }
            guard let k = kind else { emitText(pos, s.count); pos = s.count; break }
            var sign: Unicode.Scalar? = nil
            if let c = at(i + 2), c == "-" || c == "+" { sign = c }
            var after = i + 2 + (sign == nil ? 0 : 1)
            // {% raw %}
            if k == "%", let rawEnd = matchRawBegin(after) {
                emitData(pos, i, sign: sign, isVariable: false)
                lineStarting = false
                try lexRaw(from: rawEnd.end, endLineStarting: rawEnd.lineStarting)
                continue
            }
            emitData(pos, i, sign: sign, isVariable: k == "{")
            lineStarting = false
            if k == "#" {
                var j = after
                var done = false
                while j < s.count {
                    if s[j] == "+", hasPrefix("#}", at: j + 1) { after = j + 3; lineStarting = false; done = true; break }
                    if s[j] == "-", hasPrefix("#}", at: j + 1) {
                        var e = j + 3
                        while e < s.count, jIsSpace(s[e]) { e += 1 }
                        lineStarting = e > j + 3 ? s[e - 1] == "\n" : false
                        after = e; done = true; break
                    }
                    if s[j] == "#", at(j + 1) == "}" {
                        var e = j + 2
                        if at(e) == "\n" { e += 1; lineStarting = true } else { lineStarting = false }
                        after = e; done = true; break
                    }
                    j += 1
                }
                if !done { throw syntax("Missing end of comment tag") }
                for q in i..<after where s[q] == "\n" { line += 1 }
                pos = after
                continue
            }
            emit(k == "%" ? .blockBegin : .varBegin)
            pos = after
            try lexTag(block: k == "%")
        }
        emit(.eof)
        return tokens
    }

    /// `{%(-|+)?\s*raw\s*(-%}\s*|%})` starting after the sign; returns the end position.
    func matchRawBegin(_ start: Int) -> (end: Int, lineStarting: Bool)? {
        var j = start
        while j < s.count, jIsSpace(s[j]) { j += 1 }
        guard hasPrefix("raw", at: j) else { return nil }
        j += 3
        if let c = at(j), c == "_" || c.properties.isAlphabetic || (c.value >= 48 && c.value <= 57) { return nil }
        while j < s.count, jIsSpace(s[j]) { j += 1 }
        if hasPrefix("-%}", at: j) {
            var e = j + 3
            while e < s.count, jIsSpace(s[e]) { e += 1 }
            return (e, e > j + 3 && s[e - 1] == "\n")
        }
        if hasPrefix("%}", at: j) { return (j + 2, false) }
        return nil
    }

    mutating func lexRaw(from start: Int, endLineStarting: Bool) throws {
        lineStarting = endLineStarting
        var j = start
        while j < s.count {
            if s[j] == "{", at(j + 1) == "%" {
                var q = j + 2
                var sign: Unicode.Scalar? = nil
                if let c = at(q), c == "-" || c == "+" { sign = c; q += 1 }
                while q < s.count, jIsSpace(s[q]) { q += 1 }
                if hasPrefix("endraw", at: q) {
                    q += 6
                    while q < s.count, jIsSpace(s[q]) { q += 1 }
                    var end: Int? = nil
                    var ls = false
                    if hasPrefix("+%}", at: q) { end = q + 3 }
                    else if hasPrefix("-%}", at: q) {
                        var e = q + 3
                        while e < s.count, jIsSpace(s[e]) { e += 1 }
                        end = e; ls = e > q + 3 && s[e - 1] == "\n"
                    } else if hasPrefix("%}", at: q) {
                        var e = q + 2
                        if at(e) == "\n" { e += 1; ls = true }
                        end = e
                    }
                    if let end {
                        emitData(start, j, sign: sign, isVariable: false)
                        for k in j..<end where s[k] == "\n" { line += 1 }
                        pos = end
                        lineStarting = ls
                        return
                    }
                }
            }
            j += 1
        }
        throw syntax("Missing end of raw directive")
    }

    mutating func lexTag(block: Bool) throws {
        var balance: [Unicode.Scalar] = []
        while true {
            guard pos < s.count else { throw syntax(block ? "unexpected end of template, expected '%}'" : "unexpected end of template, expected '}}'") }
            if balance.isEmpty {
                if block {
                    if hasPrefix("+%}", at: pos) { pos += 3; lineStarting = false; emit(.blockEnd); return }
                    if hasPrefix("-%}", at: pos) {
                        var e = pos + 3
                        while e < s.count, jIsSpace(s[e]) { e += 1 }
                        lineStarting = e > pos + 3 && s[e - 1] == "\n"
                        emit(.blockEnd)
                        for k in pos..<e where s[k] == "\n" { line += 1 }
                        pos = e; return
                    }
                    if hasPrefix("%}", at: pos) {
                        emit(.blockEnd)
                        var e = pos + 2
                        if at(e) == "\n" { e += 1; lineStarting = true; line += 1 } else { lineStarting = false }
                        pos = e; return
                    }
                } else {
                    if hasPrefix("-}}", at: pos) {
                        var e = pos + 3
                        while e < s.count, jIsSpace(s[e]) { e += 1 }
                        lineStarting = e > pos + 3 && s[e - 1] == "\n"
                        emit(.varEnd)
                        for k in pos..<e where s[k] == "\n" { line += 1 }
                        pos = e; return
                    }
                    if hasPrefix("}}", at: pos) { emit(.varEnd); pos += 2; lineStarting = false; return }
                }
            }
            let c = s[pos]
            if jIsSpace(c) { if c == "\n" { line += 1 }; pos += 1; continue }
            if c.value >= 48 && c.value <= 57 { try lexNumber(); continue }
            if c == "_" || c.properties.isAlphabetic {
                let start = pos
                while pos < s.count, s[pos] == "_" || s[pos].properties.isAlphabetic || (s[pos].value >= 48 && s[pos].value <= 57) { pos += 1 }
                emit(.name(str(start, pos)))
                continue
            }
            if c == "'" || c == "\"" { try lexString(quote: c); continue }
            if pos + 1 < s.count {
                let two = str(pos, pos + 2)
                if operators2.contains(two) { emit(.op(two)); pos += 2; continue }
            }
            let one = String(Character(c))
            if operators1.contains(one) {
                switch c {
                case "{": balance.append("}")
                case "(": balance.append(")")
                case "[": balance.append("]")
                case "}", ")", "]":
                    guard let expected = balance.popLast() else { throw syntax("unexpected '\(one)'") }
                    if expected != c { throw syntax("unexpected '\(one)', expected '\(expected)'") }
                default: break
                }
                emit(.op(one)); pos += 1; continue
            }
            throw syntax("unexpected char '\(one)'")
        }
    }

    mutating func lexNumber() throws {
        let start = pos
        func digits() { while pos < s.count, (s[pos].value >= 48 && s[pos].value <= 57) || (s[pos] == "_" && pos + 1 < s.count && s[pos + 1].value >= 48 && s[pos + 1].value <= 57) { pos += 1 } }
        let precededByDot = start > 0 && s[start - 1] == "."
        digits()
        var isFloat = false
        if !precededByDot {
            let save = pos
            if at(pos) == ".", let d = at(pos + 1), d.value >= 48 && d.value <= 57 { pos += 1; digits(); isFloat = true }
            if let e = at(pos), e == "e" || e == "E" {
                var q = pos + 1
                if let sg = at(q), sg == "+" || sg == "-" { q += 1 }
                if let d = at(q), d.value >= 48 && d.value <= 57 { pos = q; digits(); isFloat = true }
            }
            if !isFloat { pos = save }
        }
        let text = str(start, pos).replacingOccurrences(of: "_", with: "")
        if isFloat {
            guard let d = Double(text) else { throw syntax("bad float literal \(text)") }
            emit(.float(d))
        } else {
            guard let v = Int(text) else { throw syntax("integer literal too large: \(text)") }
            emit(.int(v))
        }
    }

    mutating func lexString(quote: Unicode.Scalar) throws {
        var j = pos + 1
        var out = String.UnicodeScalarView()
        while true {
            guard j < s.count else { throw syntax("unexpected end of string") }
            let c = s[j]
            if c == quote { j += 1; break }
            if c == "\\" {
                guard j + 1 < s.count else { throw syntax("unexpected end of string") }
                let e = s[j + 1]
                j += 2
                switch e {
                case "\n": break
                case "\\": out.append("\\")
                case "'": out.append("'")
                case "\"": out.append("\"")
                case "a": out.append("\u{07}")
                case "b": out.append("\u{08}")
                case "f": out.append("\u{0C}")
                case "n": out.append("\n")
                case "r": out.append("\r")
                case "t": out.append("\t")
                case "v": out.append("\u{0B}")
                case "x", "u", "U":
                    let n = e == "x" ? 2 : e == "u" ? 4 : 8
                    guard j + n <= s.count, let v = UInt32(str(j, j + n), radix: 16), let sc = Unicode.Scalar(v) else { throw syntax("bad escape in string literal") }
                    out.append(sc); j += n
                case "0"..."7":
                    var v = e.value - 48
                    var cnt = 1
                    while cnt < 3, j < s.count, s[j].value >= 48 && s[j].value <= 55 { v = v * 8 + s[j].value - 48; j += 1; cnt += 1 }
                    out.append(Unicode.Scalar(v) ?? "\u{FFFD}")
                default: out.append("\\"); out.append(e)
                }
                continue
            }
            if c == "\n" { line += 1 }
            out.append(c); j += 1
        }
        pos = j
        emit(.string(String(out)))
    }
}
