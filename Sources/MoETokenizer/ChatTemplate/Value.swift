import Foundation

/// Insertion-ordered string-keyed dictionary (Python dict semantics for the keys templates use).
struct JDict {
    var keys: [String] = []
    var store: [String: JValue] = [:]
    subscript(_ k: String) -> JValue? {
        get { store[k] }
        set {
            if let v = newValue { if store.updateValue(v, forKey: k) == nil { keys.append(k) } }
            else if store.removeValue(forKey: k) != nil { keys.removeAll { $0 == k } }
        }
    }
    var count: Int { keys.count }
    var items: [(String, JValue)] { keys.map { ($0, store[$0]!) } }
}

final class JNamespace { var attrs = JDict() }

/// Something callable from a template: built-in functions, bound methods, macros.
final class JCallable {
    let name: String
    let fn: (_ args: [JValue], _ kwargs: [(String, JValue)]) throws -> JValue
    init(_ name: String, _ fn: @escaping ([JValue], [(String, JValue)]) throws -> JValue) { self.name = name; self.fn = fn }
}

/// Runtime values: Python objects as jinja2 sees them.
enum JValue {
    /// jinja2's default `Undefined`; the hint is the message used when it is used in a way that fails.
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([JValue])
    case tuple([JValue])
    case dict(JDict)
    case namespace(JNamespace)
    case callable(JCallable)
    /// A Python generator / iterator (what `map`, `select`, `unique`, `reverse`... return): iterable once, always
    /// truthy, no len(), not subscriptable, not JSON-serialisable.
    case iterator([JValue])

    init(_ t: TemplateValue) {
        switch t {
        case .null: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .list(a.map(JValue.init))
        case .object(let o):
            var d = JDict()
            for e in o { d[e.key] = JValue(e.value) }
            self = .dict(d)
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true }; return false }

    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let a), .tuple(let a): return !a.isEmpty
        case .dict(let d): return d.count > 0
        case .namespace, .callable, .iterator: return true
        }
    }

    /// Python's type name, for error messages.
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .list: return "list"
        case .tuple: return "tuple"
        case .dict: return "dict"
        case .namespace: return "JNamespace"
        case .callable: return "function"
        case .iterator: return "generator"
        }
    }
}

// MARK: Python text conversions

enum JPy {
    /// `str(x)`.
    static func str(_ v: JValue) -> String {
        switch v {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr(v)
        }
    }

    /// `repr(x)`.
    static func repr(_ v: JValue) -> String {
        switch v {
        case .undefined: return "Undefined"
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return floatRepr(d)
        case .string(let s): return strRepr(s)
        case .list(let a): return "[" + a.map(repr).joined(separator: ", ") + "]"
        case .tuple(let a): return a.count == 1 ? "(" + repr(a[0]) + ",)" : "(" + a.map(repr).joined(separator: ", ") + ")"
        case .dict(let d): return "{" + d.items.map { strRepr($0.0) + ": " + repr($0.1) }.joined(separator: ", ") + "}"
        case .namespace(let n): return "<JNamespace " + repr(.dict(n.attrs)) + ">"
        case .callable(let c): return "<function \(c.name)>"
        case .iterator: return "<generator object>"
        }
    }

    static func isPrintable(_ u: Unicode.Scalar) -> Bool {
        if u == " " { return true }
        switch u.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator, .spaceSeparator: return false
        default: return true
        }
    }

    static func strRepr(_ s: String) -> String {
        let hasSingle = s.contains("'"), hasDouble = s.contains("\"")
        let q: Unicode.Scalar = hasSingle && !hasDouble ? "\"" : "'"
        var out = String.UnicodeScalarView()
        out.append(q)
        for u in s.unicodeScalars {
            switch u {
            case q, "\\": out.append("\\"); out.append(u)
            case "\n": out.append(contentsOf: "\\n".unicodeScalars)
            case "\r": out.append(contentsOf: "\\r".unicodeScalars)
            case "\t": out.append(contentsOf: "\\t".unicodeScalars)
            default:
                if isPrintable(u) { out.append(u) }
                else if u.value < 0x100 { out.append(contentsOf: String(format: "\\x%02x", u.value).unicodeScalars) }
                else if u.value < 0x10000 { out.append(contentsOf: String(format: "\\u%04x", u.value).unicodeScalars) }
                else { out.append(contentsOf: String(format: "\\U%08x", u.value).unicodeScalars) }
            }
        }
        out.append(q)
        return String(out)
    }

    /// `repr(float)`: shortest round-trip digits, positional for 1e-4 <= |x| < 1e16, else scientific.
    static func floatRepr(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
        var desc = "\(abs(d))"   // Swift also prints the shortest round-trip digits
        var exp = 0
        if let e = desc.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exp = Int(desc[desc.index(after: e)...])!
            desc = String(desc[..<e])
        }
        let parts = desc.split(separator: ".", omittingEmptySubsequences: false)
        let intPart = String(parts[0]), fracPart = parts.count > 1 ? String(parts[1]) : ""
        let all = Array(intPart + fracPart)
        let lz = all.prefix(while: { $0 == "0" }).count
        var digits = Array(all[lz...])
        while digits.last == "0" { digits.removeLast() }
        let x = intPart.count - 1 - lz + exp   // value = d1.d2d3... * 10^x
        var out = d < 0 ? "-" : ""
        if x >= -4 && x < 16 {
            if x >= 0 {
                let ip = digits.count > x + 1 ? String(digits[0...x]) : String(digits) + String(repeating: "0", count: x + 1 - digits.count)
                let fp = digits.count > x + 1 ? String(digits[(x + 1)...]) : "0"
                out += ip + "." + fp
            } else {
                out += "0." + String(repeating: "0", count: -x - 1) + String(digits)
            }
        } else {
            out += String(digits[0])
            if digits.count > 1 { out += "." + String(digits[1...]) }
            out += "e" + (x < 0 ? "-" : "+") + (abs(x) < 10 ? "0" : "") + String(abs(x))
        }
        return out
    }

    /// `json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...)`.
    static func jsonDumps(_ v: JValue, indent: String?, itemSep: String, keySep: String, sortKeys: Bool, ensureASCII: Bool = false) throws -> String {
        var out = ""
        try jsonWrite(v, into: &out, indent: indent, level: 0, itemSep: itemSep, keySep: keySep, sortKeys: sortKeys)
        if ensureASCII {
            var esc = ""
            for u in out.unicodeScalars {
                if u.value < 0x80 { esc.unicodeScalars.append(u) }
                else if u.value < 0x10000 { esc += String(format: "\\u%04x", u.value) }
                else { let v = u.value - 0x10000; esc += String(format: "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF)) }
            }
            return esc
        }
        return out
    }

    static func jsonString(_ s: String, into out: inout String) {
        out.append("\"")
        for u in s.unicodeScalars {
            switch u {
            case "\"": out.append("\\\"")
            case "\\": out.append("\\\\")
            case "\n": out.append("\\n")
            case "\r": out.append("\\r")
            case "\t": out.append("\\t")
            case "\u{08}": out.append("\\b")
            case "\u{0C}": out.append("\\f")
            default:
                if u.value < 0x20 { out.append(String(format: "\\u%04x", u.value)) } else { out.unicodeScalars.append(u) }
            }
        }
        out.append("\"")
    }

    static func jsonWrite(_ v: JValue, into out: inout String, indent: String?, level: Int, itemSep: String, keySep: String, sortKeys: Bool) throws {
        switch v {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isNaN { out += "NaN" } else if d.isInfinite { out += d < 0 ? "-Infinity" : "Infinity" } else { out += floatRepr(d) }
        case .string(let s): jsonString(s, into: &out)
        case .list(let a), .tuple(let a):
            if a.isEmpty { out += "[]"; return }
            out += "["
            let nl = indent.map { "\n" + String(repeating: $0, count: level + 1) }
            if let nl { out += nl }
            for (k, item) in a.enumerated() {
                if k > 0 { out += itemSep; if let nl { out += nl } }
                try jsonWrite(item, into: &out, indent: indent, level: level + 1, itemSep: itemSep, keySep: keySep, sortKeys: sortKeys)
            }
            if let indent { out += "\n" + String(repeating: indent, count: level) }
            out += "]"
        case .dict(let d):
            if d.count == 0 { out += "{}"; return }
            out += "{"
            let nl = indent.map { "\n" + String(repeating: $0, count: level + 1) }
            if let nl { out += nl }
            var keys = d.keys
            if sortKeys { keys.sort { codepointLess($0, $1) } }
            for (k, key) in keys.enumerated() {
                if k > 0 { out += itemSep; if let nl { out += nl } }
                jsonString(key, into: &out)
                out += keySep
                try jsonWrite(d[key]!, into: &out, indent: indent, level: level + 1, itemSep: itemSep, keySep: keySep, sortKeys: sortKeys)
            }
            if let indent { out += "\n" + String(repeating: indent, count: level) }
            out += "}"
        case .undefined, .namespace, .callable, .iterator:
            throw ChatTemplateError.runtime("Object of type \(v.typeName) is not JSON serializable")
        }
    }

    static func codepointLess(_ a: String, _ b: String) -> Bool {
        a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars) { $0.value < $1.value }
    }
    static func strEq(_ a: String, _ b: String) -> Bool { a.unicodeScalars.elementsEqual(b.unicodeScalars) }

    // MARK: str methods

    static func strip(_ s: String, _ chars: String?, left: Bool, right: Bool) -> String {
        let u = Array(s.unicodeScalars)
        let set = chars.map { Set($0.unicodeScalars) }
        func drop(_ c: Unicode.Scalar) -> Bool { set.map { $0.contains(c) } ?? jIsSpace(c) }
        var a = 0, b = u.count
        if left { while a < b, drop(u[a]) { a += 1 } }
        if right { while b > a, drop(u[b - 1]) { b -= 1 } }
        var r = String.UnicodeScalarView(); r.append(contentsOf: u[a..<b]); return String(r)
    }

    static func split(_ s: String, _ sep: String?, _ maxsplit: Int) -> [String] {
        let u = Array(s.unicodeScalars)
        func mk(_ a: Int, _ b: Int) -> String { var r = String.UnicodeScalarView(); r.append(contentsOf: u[a..<b]); return String(r) }
        var out: [String] = []
        if let sep {
            let p = Array(sep.unicodeScalars)
            var start = 0, i = 0
            while i + p.count <= u.count {
                if (maxsplit < 0 || out.count < maxsplit), Array(u[i..<i + p.count]) == p {
                    out.append(mk(start, i)); i += p.count; start = i
                } else { i += 1 }
            }
            out.append(mk(start, u.count))
            return out
        }
        var i = 0
        while i < u.count {
            while i < u.count, jIsSpace(u[i]) { i += 1 }
            if i >= u.count { break }
            if maxsplit >= 0, out.count >= maxsplit {
                var e = u.count
                while e > i, jIsSpace(u[e - 1]) { e -= 1 }
                out.append(mk(i, e)); break
            }
            let st = i
            while i < u.count, !jIsSpace(u[i]) { i += 1 }
            out.append(mk(st, i))
        }
        return out
    }

    static func rsplit(_ s: String, _ sep: String?, _ maxsplit: Int) -> [String] {
        if maxsplit < 0 { return split(s, sep, -1) }
        let rev = String(String.UnicodeScalarView(s.unicodeScalars.reversed()))
        let rsep = sep.map { String(String.UnicodeScalarView($0.unicodeScalars.reversed())) }
        return split(rev, rsep, maxsplit).reversed().map { String(String.UnicodeScalarView($0.unicodeScalars.reversed())) }
    }

    static func splitlines(_ s: String) -> [String] {
        var out: [String] = []
        var cur = String.UnicodeScalarView()
        let u = Array(s.unicodeScalars)
        var i = 0
        while i < u.count {
            let c = u[i]
            switch c.value {
            case 0x0a, 0x0b, 0x0c, 0x1c, 0x1d, 0x1e, 0x85, 0x2028, 0x2029:
                out.append(String(cur)); cur = .init()
            case 0x0d:
                out.append(String(cur)); cur = .init()
                if i + 1 < u.count, u[i + 1] == "\n" { i += 1 }
            default: cur.append(c)
            }
            i += 1
        }
        if !cur.isEmpty { out.append(String(cur)) }
        return out
    }

    static func replace(_ s: String, _ old: String, _ new: String, _ count: Int) -> String {
        if count < 0 && !old.isEmpty { return s.replacingOccurrences(of: old, with: new, options: .literal) }
        let u = Array(s.unicodeScalars), p = Array(old.unicodeScalars)
        var out = String.UnicodeScalarView()
        var n = 0, i = 0
        if p.isEmpty {
            for c in u { if count < 0 || n < count { out.append(contentsOf: new.unicodeScalars); n += 1 }; out.append(c) }
            if count < 0 || n < count { out.append(contentsOf: new.unicodeScalars) }
            return String(out)
        }
        while i < u.count {
            if (count < 0 || n < count), i + p.count <= u.count, Array(u[i..<i + p.count]) == p {
                out.append(contentsOf: new.unicodeScalars); i += p.count; n += 1
            } else { out.append(u[i]); i += 1 }
        }
        return String(out)
    }

    static func capitalize(_ s: String) -> String {
        guard let f = s.unicodeScalars.first else { return s }
        return String(f).uppercased() + String(String.UnicodeScalarView(s.unicodeScalars.dropFirst())).lowercased()
    }

    /// Python's `str.title()`.
    static func pyTitle(_ s: String) -> String {
        var out = ""
        var prevCased = false
        for u in s.unicodeScalars {
            let cased = u.properties.isCased
            if cased { out += prevCased ? String(u).lowercased() : String(u).uppercased() } else { out.unicodeScalars.append(u) }
            prevCased = cased || u.properties.isCaseIgnorable && prevCased
        }
        return out
    }

    static func htmlEscape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&#34;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}
