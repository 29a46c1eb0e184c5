import Foundation

extension JinjaRenderer {
    /// Binds positional + keyword arguments to named parameters (after the filtered value); nil default = required.
    func bind(_ fname: String, _ a: [JValue], _ kw: [(String, JValue)], _ params: [(String, JValue?)]) throws -> [JValue] {
        if a.count > params.count { throw jerr("filter '\(fname)' got too many arguments") }
        var out: [JValue?] = params.map { $0.1 }
        for (k, v) in a.enumerated() { out[k] = v }
        for (k, v) in kw {
            guard let idx = params.firstIndex(where: { $0.0 == k }) else { throw jerr("filter '\(fname)' got an unexpected keyword argument '\(k)'") }
            out[idx] = v
        }
        return try out.enumerated().map { k, v in
            guard let v else { throw jerr("filter '\(fname)' missing required argument '\(params[k].0)'") }
            return v
        }
    }

    func applyFilter(_ name: String, _ v: JValue, _ args: JArgs, _ scope: JScope, line: Int) throws -> JValue {
        let a = try args.positional.map { try eval($0, scope) }
        let kw = try args.keyword.map { ($0.0, try eval($0.1, scope)) }
        return try callFilter(name, v, a, kw, line: line)
    }

    /// `environment.getitem` chain for `attribute="a.b.0"` arguments.
    func attrGetter(_ path: JValue) throws -> (JValue) throws -> JValue {
        let parts: [JValue]
        switch path {
        case .string(let s): parts = s.split(separator: ".", omittingEmptySubsequences: false).map { p in Int(p).map { .int($0) } ?? .string(String(p)) }
        case .int: parts = [path]
        default: throw jerr("attribute must be a string")
        }
        return { v in
            var cur = v
            for p in parts { cur = try self.getitem(cur, p) }
            return cur
        }
    }

    func sortKey(_ v: JValue, caseSensitive: Bool) -> JValue {
        if !caseSensitive, case .string(let s) = v { return .string(s.lowercased()) }
        return v
    }

    func stableSort(_ items: [JValue], key: (JValue) throws -> JValue, reverse: Bool) throws -> [JValue] {
        let keyed = try items.enumerated().map { ($0.offset, try key($0.element), $0.element) }
        var err: Error? = nil
        let sorted = keyed.sorted { x, y in
            do {
                if try jLess(x.1, y.1, "<") { return !reverse }
                if try jLess(y.1, x.1, "<") { return reverse }
            } catch { err = error }
            return x.0 < y.0
        }
        if let err { throw err }
        return sorted.map { $0.2 }
    }

    func callFilter(_ name: String, _ v: JValue, _ a: [JValue], _ kw: [(String, JValue)], line: Int) throws -> JValue {
        func str(_ x: JValue) -> String { JPy.str(x) }
        switch name {
        case "tojson":
            let p = try bind(name, a, kw, [("ensure_ascii", .bool(false)), ("indent", JValue.none), ("separators", JValue.none), ("sort_keys", .bool(false))])
            var indent: String? = nil
            switch p[1] {
            case .none: break
            case .int(let n): indent = String(repeating: " ", count: try repeats(n, of: 1))
            case .string(let s): indent = s
            default: throw jerr("tojson indent must be an int or a string")
            }
            var itemSep = indent == nil ? ", " : ",", keySep = ": "
            switch p[2] {
            case .none: break
            case .list(let s), .tuple(let s):
                guard s.count == 2, case .string(let i) = s[0], case .string(let k) = s[1] else { throw jerr("tojson separators must be a pair of strings") }
                itemSep = i; keySep = k
            default: throw jerr("tojson separators must be a pair of strings")
            }
            return .string(try JPy.jsonDumps(v, indent: indent, itemSep: itemSep, keySep: keySep, sortKeys: p[3].truthy, ensureASCII: p[0].truthy))
        case "length", "count":
            _ = try bind(name, a, kw, [])
            return .int(try jLen(v))
        case "string":
            return .string(str(v))
        case "safe":
            return .string(str(v))
        case "escape", "e", "forceescape":
            return .string(JPy.htmlEscape(str(v)))
        case "trim":
            let p = try bind(name, a, kw, [("chars", JValue.none)])
            var chars: String? = nil
            if case .string(let c) = p[0] { chars = c }
            return .string(JPy.strip(str(v), chars, left: true, right: true))
        case "lower": return .string(str(v).lowercased())
        case "upper": return .string(str(v).uppercased())
        case "capitalize": return .string(JPy.capitalize(str(v)))
        case "title":
            // jinja2: split on runs of [-\s({\[<], upper-case the first character of each piece, lower-case the rest
            var out = ""
            var atStart = true
            for u in str(v).unicodeScalars {
                let sep = jIsSpace(u) || "-({[<".unicodeScalars.contains(u)
                if sep { out.unicodeScalars.append(u); atStart = true; continue }
                out += atStart ? String(u).uppercased() : String(u).lowercased()
                atStart = false
            }
            return .string(out)
        case "replace":
            let p = try bind(name, a, kw, [("old", nil), ("new", nil), ("count", JValue.none)])
            return .string(JPy.replace(str(v), str(p[0]), str(p[1]), jInt(p[2]) ?? -1))
        case "default", "d":
            let p = try bind(name, a, kw, [("default_value", .string("")), ("boolean", .bool(false))])
            if v.isUndefined || (p[1].truthy && !v.truthy) { return p[0] }
            return v
        case "first":
            return try jIterate(v).first ?? .undefined("No first item, sequence was empty.")
        case "last":
            if case .undefined(let h) = v { throw jerr(h) }
            if case .iterator = v { throw jerr("'generator' object is not reversible") }
            return try jIterate(v).last ?? .undefined("No last item, sequence was empty.")
        case "list":
            return .list(try jIterate(v))
        case "join":
            let p = try bind(name, a, kw, [("d", .string("")), ("attribute", JValue.none)])
            var items = try jIterate(v)
            if case .none = p[1] {} else { let g = try attrGetter(p[1]); items = try items.map(g) }
            return .string(items.map(str).joined(separator: str(p[0])))
        case "int":
            let p = try bind(name, a, kw, [("default", .int(0)), ("base", .int(10))])
            switch v {
            case .int: return v
            case .bool(let b): return .int(b ? 1 : 0)
            case .double(let d): return d.isFinite ? .int(Int(d)) : p[0]
            case .string(let s):
                let t = JPy.strip(s, nil, left: true, right: true).replacingOccurrences(of: "_", with: "")
                if let i = Int(t, radix: jInt(p[1]) ?? 10) { return .int(i) }
                if let d = Double(t), d.isFinite { return .int(Int(d)) }
                return p[0]
            default: return p[0]
            }
        case "float":
            let p = try bind(name, a, kw, [("default", .double(0))])
            switch v {
            case .int(let i): return .double(Double(i))
            case .bool(let b): return .double(b ? 1 : 0)
            case .double: return v
            case .string(let s): return Double(JPy.strip(s, nil, left: true, right: true)).map { .double($0) } ?? p[0]
            default: return p[0]
            }
        case "abs":
            switch v {
            case .int(let i): return .int(abs(i))
            case .bool(let b): return .int(b ? 1 : 0)
            case .double(let d): return .double(abs(d))
            default: throw jerr("bad operand type for abs(): '\(v.typeName)'")
            }
        case "round":
            let p = try bind(name, a, kw, [("precision", .int(0)), ("method", .string("common"))])
            guard let n = jNumeric(v) else { throw jerr("round() needs a number") }
            let prec = jInt(p[0]) ?? 0
            let scale = pow(10.0, Double(prec))
            let x = n.d * scale
            let r: Double
            switch str(p[1]) {
            case "common": r = x.rounded(.toNearestOrEven)
            case "ceil": r = x.rounded(.up)
            case "floor": r = x.rounded(.down)
            default: throw jerr("method must be common, ceil or floor")
            }
            return .double(r / scale)
        case "items":
            switch v {
            case .undefined: return .iterator([])
            case .dict(let d): return .iterator(d.items.map { .tuple([.string($0.0), $0.1]) })
            default: throw jerr("Can only get item pairs from a mapping.")
            }
        case "dictsort":
            let p = try bind(name, a, kw, [("case_sensitive", .bool(false)), ("by", .string("key")), ("reverse", .bool(false))])
            guard case .dict(let d) = v else { throw jerr("dictsort requires a mapping") }
            let pos = str(p[1]) == "value" ? 1 : 0
            let items = d.items.map { JValue.tuple([.string($0.0), $0.1]) }
            return .list(try stableSort(items, key: { t in
                guard case .tuple(let pair) = t else { return t }
                return self.sortKey(pair[pos], caseSensitive: p[0].truthy)
            }, reverse: p[2].truthy))
        case "reverse":
            switch v {
            case .string(let s): return .string(String(String.UnicodeScalarView(s.unicodeScalars.reversed())))
            default: return .iterator(try jIterate(v).reversed())
            }
        case "sort":
            let p = try bind(name, a, kw, [("reverse", .bool(false)), ("case_sensitive", .bool(false)), ("attribute", JValue.none)])
            let g: ((JValue) throws -> JValue)? = try { if case .none = p[2] { return nil }; return try attrGetter(p[2]) }()
            return .list(try stableSort(try jIterate(v), key: { try self.sortKey(g?($0) ?? $0, caseSensitive: p[1].truthy) }, reverse: p[0].truthy))
        case "unique":
            let p = try bind(name, a, kw, [("case_sensitive", .bool(false)), ("attribute", JValue.none)])
            let g: ((JValue) throws -> JValue)? = try { if case .none = p[1] { return nil }; return try attrGetter(p[1]) }()
            var seen: [JValue] = []
            var out: [JValue] = []
            for x in try jIterate(v) {
                let k = sortKey(try g?(x) ?? x, caseSensitive: p[0].truthy)
                if !seen.contains(where: { jEq($0, k) }) { seen.append(k); out.append(x) }
            }
            return .iterator(out)
        case "min", "max":
            let p = try bind(name, a, kw, [("case_sensitive", .bool(false)), ("attribute", JValue.none)])
            let g: ((JValue) throws -> JValue)? = try { if case .none = p[1] { return nil }; return try attrGetter(p[1]) }()
            let items = try jIterate(v)
            guard var best = items.first else { return .undefined("No aggregated item, sequence was empty.") }
            for x in items.dropFirst() {
                let kx = sortKey(try g?(x) ?? x, caseSensitive: p[0].truthy), kb = sortKey(try g?(best) ?? best, caseSensitive: p[0].truthy)
                if name == "min" ? try jLess(kx, kb, "<") : try jLess(kb, kx, "<") { best = x }
            }
            return best
        case "sum":
            let p = try bind(name, a, kw, [("attribute", JValue.none), ("start", .int(0))])
            let g: ((JValue) throws -> JValue)? = try { if case .none = p[0] { return nil }; return try attrGetter(p[0]) }()
            var acc = p[1]
            for x in try jIterate(v) { acc = try arith("+", acc, try g?(x) ?? x) }
            return acc
        case "map":
            if !v.truthy { return .iterator([]) }
            let items = try jIterate(v)
            if a.isEmpty {
                guard let attr = kw.first(where: { $0.0 == "attribute" })?.1 else { throw jerr("map requires a filter name or attribute=") }
                let g = try attrGetter(attr)
                let def = kw.first(where: { $0.0 == "default" })?.1
                return .iterator(try items.map { x in
                    let r = try g(x)
                    if r.isUndefined, let def { return def }
                    return r
                })
            }
            let fname = str(a[0])
            if !jinjaKnownFilters.contains(fname) { throw jerr("No filter named '\(fname)'.") }
            let rest = Array(a.dropFirst())
            return .iterator(try items.map { try self.callFilter(fname, $0, rest, kw, line: line) })
        case "select", "reject":
            let keep = name == "select"
            if !v.truthy { return .iterator([]) }
            let items = try jIterate(v)
            if a.isEmpty { return .iterator(items.filter { $0.truthy == keep }) }
            let tname = str(a[0]), rest = Array(a.dropFirst())
            if !jinjaKnownTests.contains(tname) { throw jerr("No test named '\(tname)'.") }
            return .iterator(try items.filter { try self.applyTest(tname, $0, rest, line: line) == keep })
        case "selectattr", "rejectattr":
            let keep = name == "selectattr"
            guard !a.isEmpty else { throw jerr("\(name) requires an attribute name") }
            if !v.truthy { return .iterator([]) }
            let g = try attrGetter(a[0])
            let items = try jIterate(v)
            if a.count == 1 { return .iterator(try items.filter { try g($0).truthy == keep }) }
            let tname = str(a[1]), rest = Array(a.dropFirst(2))
            if !jinjaKnownTests.contains(tname) { throw jerr("No test named '\(tname)'.") }
            return .iterator(try items.filter { try self.applyTest(tname, try g($0), rest, line: line) == keep })
        case "indent":
            let p = try bind(name, a, kw, [("width", .int(4)), ("first", .bool(false)), ("blank", .bool(false))])
            let ind: String
            if case .string(let s) = p[0] { ind = s } else { ind = String(repeating: " ", count: try repeats(jInt(p[0]) ?? 4, of: 1)) }
            let s = str(v) + "\n"
            var rv: String
            if p[2].truthy {
                rv = JPy.splitlines(s).joined(separator: "\n" + ind)
            } else {
                var lines = JPy.splitlines(s)
                rv = lines.removeFirst()
                if !lines.isEmpty { rv += "\n" + lines.map { $0.isEmpty ? $0 : ind + $0 }.joined(separator: "\n") }
            }
            if p[1].truthy { rv = ind + rv }
            return .string(rv)
        case "wordcount":
            return .int(JPy.split(str(v), nil, -1).count)
        case "format":
            if !kw.isEmpty { throw jerr("format filter with keyword arguments is not supported") }
            return .string(try jPercentFormat(str(v), .tuple(a)))
        case "attr":
            guard a.count == 1, case .string(let n) = a[0] else { throw jerr("attr filter needs a name") }
            return try getattr(v, n)
        case "center":
            let p = try bind(name, a, kw, [("width", .int(80))])
            let s = str(v), w = jInt(p[0]) ?? 80, n = s.unicodeScalars.count
            if w <= n { return .string(s) }
            let total = try repeats(w - n, of: 1), left = total / 2 + (total & w & 1)
            return .string(String(repeating: " ", count: left) + s + String(repeating: " ", count: total - left))
        default:
            if jinjaKnownFilters.contains(name) { throw ChatTemplateError.unsupported("the jinja filter '\(name)' is not supported by the chat template renderer", line: line) }
            throw ChatTemplateError.syntax("No filter named '\(name)'.", line: line)
        }
    }

    func applyTest(_ name: String, _ v: JValue, _ a: [JValue], line: Int) throws -> Bool {
        func arg() throws -> JValue { guard let x = a.first else { throw jerr("test '\(name)' needs an argument") }; return x }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": if case .none = v { return true }; return false
        case "boolean": if case .bool = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "number": switch v { case .int, .double, .bool: return true; default: return false }
        case "string": if case .string = v { return true }; return false
        case "mapping": if case .dict = v { return true }; return false
        case "iterable": switch v { case .string, .list, .tuple, .dict, .undefined, .iterator: return true; default: return false }
        case "sequence": switch v { case .string, .list, .tuple, .dict, .undefined: return true; default: return false }
        case "callable": if case .callable = v { return true }; return false
        case "odd", "even", "divisibleby":
            guard let n = jInt(v) else {
                if case .undefined(let h) = v { throw jerr(h) }
                if case .double(let d) = v, name == "divisibleby", let m = jNumeric(try arg()) { return fmod(d, m.d) == 0 }
                throw jerr("test '\(name)' needs an integer")
            }
            if name == "odd" { return n % 2 != 0 }
            if name == "even" { return n % 2 == 0 }
            guard let m = jInt(try arg()), m != 0 else { throw jerr("divisibleby needs a non-zero integer") }
            return n % m == 0
        case "==", "eq", "equalto": return jEq(v, try arg())
        case "!=", "ne": return !jEq(v, try arg())
        case "<", "lt", "lessthan": return try jLess(v, try arg(), "<")
        case ">", "gt", "greaterthan": return try jLess(try arg(), v, ">")
        case "<=", "le": return try !jLess(try arg(), v, "<=")
        case ">=", "ge": return try !jLess(v, try arg(), ">=")
        case "in": return try contains(try arg(), v)
        case "sameas":
            let o = try arg()
            switch (v, o) {
            case (.none, .none): return true
            case (.bool(let x), .bool(let y)): return x == y
            case (.namespace(let x), .namespace(let y)): return x === y
            default: return false
            }
        case "lower": if case .string(let s) = v { return s == s.lowercased() && s.unicodeScalars.contains { $0.properties.isCased } }; return false
        case "upper": if case .string(let s) = v { return s == s.uppercased() && s.unicodeScalars.contains { $0.properties.isCased } }; return false
        case "escaped": return false
        case "filter": if case .string(let s) = v { return jinjaKnownFilters.contains(s) }; return false
        case "test": if case .string(let s) = v { return jinjaKnownTests.contains(s) }; return false
        default:
            throw ChatTemplateError.syntax("No test named '\(name)'.", line: line)
        }
    }
}
