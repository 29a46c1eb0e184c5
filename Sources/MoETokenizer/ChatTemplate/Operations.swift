import Foundation

/// Attribute and item access, slicing, string and dict methods, and the operators of the template language.
extension JinjaRenderer {
    // MARK: attribute / item access

    static let unsafeDictMethods: Set<String> = ["pop", "popitem", "update", "setdefault", "clear"]
    static let unsafeListMethods: Set<String> = ["append", "pop", "extend", "insert", "remove", "sort", "reverse", "clear"]

    func getattr(_ v: JValue, _ name: String) throws -> JValue {
        if name.hasPrefix("_") {
            if case .undefined(let h) = v { throw jerr(h) }
            throw jerr("access to attribute '\(name)' of '\(v.typeName)' object is unsafe.")
        }
        switch v {
        case .undefined(let h): throw jerr(h)
        case .dict(let d):
            if let m = dictMethod(d, name) { return m }
            if JinjaRenderer.unsafeDictMethods.contains(name) { throw jerr("access to attribute '\(name)' of 'dict' object is unsafe.") }
            return d[name] ?? .undefined("'dict object' has no attribute '\(name)'")
        case .string(let s):
            if let m = stringMethod(s, name) { return m }
            return .undefined("'str object' has no attribute '\(name)'")
        case .list(let a), .tuple(let a):
            if JinjaRenderer.unsafeListMethods.contains(name), case .list = v { throw jerr("access to attribute '\(name)' of 'list' object is unsafe.") }
            if name == "index" || name == "count" {
                return .callable(JCallable(name) { args, _ in
                    guard args.count == 1 else { throw jerr("\(name)() takes exactly one argument") }
                    if name == "count" { return .int(a.filter { jEq($0, args[0]) }.count) }
                    guard let i = a.firstIndex(where: { jEq($0, args[0]) }) else { throw jerr("value is not in list") }
                    return .int(i)
                })
            }
            return .undefined("'\(v.typeName) object' has no attribute '\(name)'")
        case .namespace(let ns):
            return ns.attrs[name] ?? .undefined("'JNamespace object' has no attribute '\(name)'")
        default:
            return .undefined("'\(v.typeName) object' has no attribute '\(name)'")
        }
    }

    func getitem(_ v: JValue, _ key: JValue) throws -> JValue {
        switch (v, key) {
        case (.undefined(let h), _): throw jerr(h)
        case (.dict(let d), .string(let k)):
            if let x = d[k] { return x }
            return try getattr(v, k)
        case (.dict, _): return .undefined("'dict object' has no attribute \(JPy.repr(key))")
        case (.list(let a), _), (.tuple(let a), _):
            if case .string(let k) = key { return try getattr(v, k) }
            guard let i = jInt(key) else { return .undefined("'\(v.typeName) object' has no attribute \(JPy.repr(key))") }
            let j = i < 0 ? i + a.count : i
            return j >= 0 && j < a.count ? a[j] : .undefined("'\(v.typeName) object' has no attribute '\(i)'")
        case (.string(let s), _):
            if case .string(let k) = key { return try getattr(v, k) }
            guard let i = jInt(key) else { return .undefined("'str object' has no attribute \(JPy.repr(key))") }
            let u = Array(s.unicodeScalars)
            let j = i < 0 ? i + u.count : i
            return j >= 0 && j < u.count ? .string(String(Character(u[j]))) : .undefined("'str object' has no attribute '\(i)'")
        case (.namespace, .string(let k)): return try getattr(v, k)
        case (.iterator, _): throw jerr("'generator' object is not subscriptable")
        default:
            if case .string(let k) = key { return try getattr(v, k) }
            return .undefined("'\(v.typeName) object' has no attribute \(JPy.repr(key))")
        }
    }

    func slice(_ v: JValue, _ start: Int?, _ stop: Int?, _ step: Int?) throws -> JValue {
        func idx(_ n: Int) throws -> [Int] {
            let st = step ?? 1
            if st == 0 { throw jerr("slice step cannot be zero") }
            func norm(_ x: Int?, _ def: Int, lo: Int, hi: Int) -> Int {
                guard var x else { return def }
                if x < 0 { x += n }
                return min(max(x, lo), hi)
            }
            var out: [Int] = []
            if st > 0 {
                var i = norm(start, 0, lo: 0, hi: n); let e = norm(stop, n, lo: 0, hi: n)
                while i < e { out.append(i); i += st }
            } else {
                var i = norm(start, n - 1, lo: -1, hi: n - 1); let e = norm(stop, -1, lo: -1, hi: n - 1)
                while i > e { out.append(i); i += st }
            }
            return out
        }
        switch v {
        case .list(let a): return .list(try idx(a.count).map { a[$0] })
        case .tuple(let a): return .tuple(try idx(a.count).map { a[$0] })
        case .string(let s):
            let u = Array(s.unicodeScalars)
            var r = String.UnicodeScalarView()
            for i in try idx(u.count) { r.append(u[i]) }
            return .string(String(r))
        case .undefined(let h): throw jerr(h)
        default: throw jerr("'\(v.typeName)' object is not subscriptable")
        }
    }

    func dictMethod(_ d: JDict, _ name: String) -> JValue? {
        switch name {
        case "items": return .callable(JCallable("items") { _, _ in .list(d.items.map { .tuple([.string($0.0), $0.1]) }) })
        case "keys": return .callable(JCallable("keys") { _, _ in .list(d.keys.map { .string($0) }) })
        case "values": return .callable(JCallable("values") { _, _ in .list(d.items.map { $0.1 }) })
        case "get":
            return .callable(JCallable("get") { a, _ in
                guard (1...2).contains(a.count) else { throw jerr("get expected 1 or 2 arguments") }
                if case .string(let k) = a[0], let v = d[k] { return v }
                return a.count > 1 ? a[1] : .none
            })
        case "copy": return .callable(JCallable("copy") { _, _ in .dict(d) })
        default: return nil
        }
    }

    func stringMethod(_ s: String, _ name: String) -> JValue? {
        func m(_ f: @escaping ([JValue], [(String, JValue)]) throws -> JValue) -> JValue { .callable(JCallable(name, f)) }
        func optStr(_ a: [JValue], _ i: Int) throws -> String? {
            guard i < a.count else { return nil }
            switch a[i] {
            case .none: return nil
            case .string(let x): return x
            default: throw jerr("\(name) arg must be None or str")
            }
        }
        func prefixes(_ v: JValue) throws -> [String] {
            switch v {
            case .string(let x): return [x]
            case .tuple(let t), .list(let t): return try t.map { guard case .string(let x) = $0 else { throw jerr("\(name) first arg must be str or a tuple of str") }; return x }
            default: throw jerr("\(name) first arg must be str or a tuple of str, not \(v.typeName)")
            }
        }
        switch name {
        case "strip", "lstrip", "rstrip":
            return m { a, _ in .string(JPy.strip(s, try optStr(a, 0), left: name != "rstrip", right: name != "lstrip")) }
        case "split", "rsplit":
            return m { a, kw in
                var sep = try optStr(a, 0)
                var maxs = a.count > 1 ? (jInt(a[1]) ?? -1) : -1
                for (k, v) in kw {
                    if k == "sep" { if case .string(let x) = v { sep = x } else { sep = nil } }
                    else if k == "maxsplit" { maxs = jInt(v) ?? -1 }
                }
                if sep == "" { throw jerr("empty separator") }
                return .list((name == "split" ? JPy.split(s, sep, maxs) : JPy.rsplit(s, sep, maxs)).map { .string($0) })
            }
        case "splitlines": return m { _, _ in .list(JPy.splitlines(s).map { .string($0) }) }
        case "startswith", "endswith":
            return m { a, _ in
                guard a.count == 1 else { throw jerr("\(name) takes exactly one argument in templates") }
                let u = Array(s.unicodeScalars)
                for p in try prefixes(a[0]) {
                    let pu = Array(p.unicodeScalars)
                    if pu.count <= u.count && (name == "startswith" ? Array(u.prefix(pu.count)) == pu : Array(u.suffix(pu.count)) == pu) { return .bool(true) }
                }
                return .bool(false)
            }
        case "upper": return m { _, _ in .string(s.uppercased()) }
        case "lower": return m { _, _ in .string(s.lowercased()) }
        case "title": return m { _, _ in .string(JPy.pyTitle(s)) }
        case "capitalize": return m { _, _ in .string(JPy.capitalize(s)) }
        case "replace":
            return m { a, _ in
                guard a.count >= 2, case .string(let o) = a[0], case .string(let n) = a[1] else { throw jerr("replace() arguments must be str") }
                return .string(JPy.replace(s, o, n, a.count > 2 ? (jInt(a[2]) ?? -1) : -1))
            }
        case "find", "rfind", "index", "rindex", "count":
            return m { a, _ in
                guard a.count == 1, case .string(let p) = a[0] else { throw jerr("\(name)() takes one str argument in templates") }
                let u = Array(s.unicodeScalars), pu = Array(p.unicodeScalars)
                var hits: [Int] = []
                var i = 0
                while i + pu.count <= u.count {
                    if Array(u[i..<i + pu.count]) == pu { hits.append(i); i += max(pu.count, 1); if name != "count" && name.first != "r" { break } } else { i += 1 }
                }
                if name == "count" { return .int(pu.isEmpty ? u.count + 1 : hits.count) }
                let r = name.first == "r" ? hits.last : hits.first
                if r == nil && name.hasSuffix("index") { throw jerr("substring not found") }
                return .int(r ?? -1)
            }
        case "join":
            return m { a, _ in
                guard a.count == 1 else { throw jerr("join() takes exactly one argument") }
                return .string(try jIterate(a[0]).map { x -> String in
                    guard case .string(let t) = x else { throw jerr("sequence item: expected str instance, \(x.typeName) found") }
                    return t
                }.joined(separator: s))
            }
        case "format": return m { a, kw in .string(try jFormat(s, a, kw)) }
        case "removeprefix", "removesuffix":
            return m { a, _ in
                guard a.count == 1, case .string(let p) = a[0] else { throw jerr("\(name)() takes one str argument") }
                if name == "removeprefix", s.unicodeScalars.starts(with: p.unicodeScalars) { return .string(String(String.UnicodeScalarView(s.unicodeScalars.dropFirst(p.unicodeScalars.count)))) }
                if name == "removesuffix", !p.isEmpty, Array(s.unicodeScalars).suffix(p.unicodeScalars.count) == ArraySlice(p.unicodeScalars) { return .string(String(String.UnicodeScalarView(s.unicodeScalars.dropLast(p.unicodeScalars.count)))) }
                return .string(s)
            }
        case "isdigit", "isalpha", "isspace", "isupper", "islower", "isalnum", "isnumeric":
            return m { _, _ in
                let u = Array(s.unicodeScalars)
                switch name {
                case "isdigit", "isnumeric": return .bool(!u.isEmpty && u.allSatisfy { $0.properties.numericType != nil })
                case "isalpha": return .bool(!u.isEmpty && u.allSatisfy { $0.properties.isAlphabetic })
                case "isalnum": return .bool(!u.isEmpty && u.allSatisfy { $0.properties.isAlphabetic || $0.properties.numericType != nil })
                case "isspace": return .bool(!u.isEmpty && u.allSatisfy(jIsSpace))
                case "isupper": return .bool(u.contains { $0.properties.isCased } && s == s.uppercased())
                default: return .bool(u.contains { $0.properties.isCased } && s == s.lowercased())
                }
            }
        default: return nil
        }
    }

    // MARK: operators

    func arith(_ op: String, _ l: JValue, _ r: JValue) throws -> JValue {
        if case .undefined(let h) = l { throw jerr(h) }
        if case .undefined(let h) = r { throw jerr(h) }
        func bad() -> ChatTemplateError { jerr("unsupported operand type(s) for \(op): '\(l.typeName)' and '\(r.typeName)'") }
        switch op {
        case "+":
            switch (l, r) {
            case (.string(let a), .string(let b)): return .string(a + b)
            case (.list(let a), .list(let b)): return .list(a + b)
            case (.tuple(let a), .tuple(let b)): return .tuple(a + b)
            default: break
            }
        case "*":
            switch (l, r) {
            case (.string(let a), _): if let n = jInt(r), !r.isDouble { return .string(String(repeating: a, count: try repeats(n, of: a.utf8.count))) }
            case (_, .string(let b)): if let n = jInt(l), !l.isDouble { return .string(String(repeating: b, count: try repeats(n, of: b.utf8.count))) }
            case (.list(let a), _): if let n = jInt(r), !r.isDouble { return .list(Array([[JValue]](repeating: a, count: try repeats(n, of: a.count)).joined())) }
            default: break
            }
        case "%":
            if case .string(let f) = l { return .string(try jPercentFormat(f, r)) }
        default: break
        }
        guard let a = jNumeric(l), let b = jNumeric(r) else { throw bad() }
        switch (a, b) {
        case (.i(let x), .i(let y)):
            switch op {
            case "+": let (v, o) = x.addingReportingOverflow(y); if o { throw jerr("integer overflow") }; return .int(v)
            case "-": let (v, o) = x.subtractingReportingOverflow(y); if o { throw jerr("integer overflow") }; return .int(v)
            case "*": let (v, o) = x.multipliedReportingOverflow(by: y); if o { throw jerr("integer overflow") }; return .int(v)
            case "/": if y == 0 { throw jerr("division by zero") }; return .double(Double(x) / Double(y))
            case "//": if y == 0 { throw jerr("integer division or modulo by zero") }; return .int(jFloorDiv(x, y))
            case "%": if y == 0 { throw jerr("integer modulo by zero") }; return .int(x - jFloorDiv(x, y) * y)
            case "**":
                if y < 0 { return .double(pow(Double(x), Double(y))) }
                var res = 1
                for _ in 0..<y { let (v, o) = res.multipliedReportingOverflow(by: x); if o { throw jerr("integer overflow") }; res = v }
                return .int(res)
            default: throw bad()
            }
        default:
            let x = a.d, y = b.d
            switch op {
            case "+": return .double(x + y)
            case "-": return .double(x - y)
            case "*": return .double(x * y)
            case "/": if y == 0 { throw jerr("float division by zero") }; return .double(x / y)
            case "//": if y == 0 { throw jerr("float floor division by zero") }; return .double((x / y).rounded(.down))
            case "%":
                if y == 0 { throw jerr("float modulo") }
                var m = fmod(x, y); if m != 0 && (m < 0) != (y < 0) { m += y }; return .double(m)
            case "**": return .double(pow(x, y))
            default: throw bad()
            }
        }
    }

    func contains(_ container: JValue, _ item: JValue) throws -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let x) = item else { throw jerr("'in <string>' requires string as left operand, not \(item.typeName)") }
            if x.isEmpty { return true }
            return JPy.split(s, x, 1).count > 1
        case .list(let a), .tuple(let a), .iterator(let a): return a.contains { jEq($0, item) }
        case .dict(let d):
            if case .string(let k) = item { return d[k] != nil }
            return false
        case .undefined: return false
        default: throw jerr("argument of type '\(container.typeName)' is not iterable")
        }
    }
}

/// The count of a `*` repetition (negative: none), refused when the result would pass `maxRepeatedLength`
/// elements: a template's `'x' * 10**12` must be an error, not an allocation that kills the process.
func repeats(_ n: Int, of length: Int) throws -> Int {
    let n = max(n, 0)
    let (total, overflow) = n.multipliedReportingOverflow(by: max(length, 1))
    guard !overflow, total <= maxRepeatedLength else {
        throw jerr("a repetition of \(n) × \(length) is larger than the \(maxRepeatedLength) a template may build")
    }
    return n
}

let maxRepeatedLength = 1 << 24
