import Foundation

final class JScope {
    var vars: [String: JValue] = [:]
    let parent: JScope?
    init(parent: JScope?) { self.parent = parent }
    func lookup(_ n: String) -> JValue? {
        var s: JScope? = self
        while let c = s { if let v = c.vars[n] { return v }; s = c.parent }
        return nil
    }
}

enum JFlow { case normal, breakLoop, continueLoop }

func jerr(_ m: String) -> ChatTemplateError { .runtime(m) }

/// Evaluates a parsed template the way jinja2's ImmutableSandboxedEnvironment (as configured by transformers) does.
final class JinjaRenderer {
    let globals: [String: JValue]
    var macroScopes: [JScope] = []
    let now: Date
    /// Macro calls in progress: a macro that calls itself without end is refused at `maxCallDepth`, as Python's
    /// recursion limit stops jinja2, instead of overflowing the stack.
    private var callDepth = 0
    static let maxCallDepth = 64

    init(context: [String: JValue], now: Date) {
        self.now = now
        var g: [String: JValue] = [:]
        g["range"] = .callable(JCallable("range") { a, kw in
            guard kw.isEmpty, (1...3).contains(a.count) else { throw jerr("range expected 1 to 3 integer arguments") }
            let ints = try a.map { v -> Int in guard let i = jInt(v) else { throw jerr("'\(v.typeName)' object cannot be interpreted as an integer") }; return i }
            let (start, stop, step) = ints.count == 1 ? (0, ints[0], 1) : (ints[0], ints[1], ints.count == 3 ? ints[2] : 1)
            if step == 0 { throw jerr("range() arg 3 must not be zero") }
            var out: [JValue] = []
            var i = start
            while step > 0 ? i < stop : i > stop { out.append(.int(i)); i += step; if out.count > 100_000 { throw jerr("range too big (sandbox limit)") } }
            return .list(out)
        })
        g["namespace"] = .callable(JCallable("namespace") { a, kw in
            let ns = JNamespace()
            for p in a { guard case .dict(let d) = p else { throw jerr("namespace() positional argument must be a mapping") }; for (k, v) in d.items { ns.attrs[k] = v } }
            for (k, v) in kw {
                if k.hasPrefix("_") { throw jerr("Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(k)'. Please rename the attribute.") }
                ns.attrs[k] = v
            }
            return .namespace(ns)
        })
        g["dict"] = .callable(JCallable("dict") { a, kw in
            var d = JDict()
            for p in a { guard case .dict(let src) = p else { throw jerr("dict() positional argument must be a mapping") }; for (k, v) in src.items { d[k] = v } }
            for (k, v) in kw { d[k] = v }
            return .dict(d)
        })
        g["raise_exception"] = .callable(JCallable("raise_exception") { a, _ in
            throw ChatTemplateError.raised(a.first.map(JPy.str) ?? "")
        })
        g["strftime_now"] = .callable(JCallable("strftime_now") { a, _ in
            guard a.count == 1, case .string(let f) = a[0] else { throw jerr("strftime_now expects one format string") }
            return .string(try jStrftime(f, now))
        })
        for (k, v) in context { g[k] = v }
        globals = g
    }

    func lookup(_ name: String, _ scope: JScope) -> JValue {
        if let v = scope.lookup(name) { return v }
        if let v = globals[name] { return v }
        if ["lipsum", "cycler", "joiner"].contains(name) {
            return .callable(JCallable(name) { _, _ in throw jerr("the jinja global '\(name)' is not supported") })
        }
        return .undefined("'\(name)' is undefined")
    }

    // MARK: statements

    func exec(_ nodes: [JNode], _ scope: JScope, _ out: inout String) throws -> JFlow {
        for n in nodes {
            switch n {
            case .text(let t): out += t
            case .output(let e):
                let v = try eval(e, scope)
                if case .iterator = v { throw jerr("printing a generator object (its text would be '<generator object ... at 0x...>'); add '| list'") }
                out += JPy.str(v)
            case .ifs(let branches, let elseBody):
                var done = false
                for (cond, body) in branches where try eval(cond, scope).truthy {
                    let f = try exec(body, scope, &out)
                    if f != .normal { return f }
                    done = true; break
                }
                if !done {
                    let f = try exec(elseBody, scope, &out)
                    if f != .normal { return f }
                }
            case let .forLoop(target, iterExpr, cond, body, elseBody):
                var items = try jIterate(try eval(iterExpr, scope))
                if let cond {
                    items = try items.filter { item in
                        let s = JScope(parent: scope)
                        try assign(target, item, s)
                        return try eval(cond, s).truthy
                    }
                }
                if items.isEmpty {
                    let f = try exec(elseBody, scope, &out)
                    if f != .normal { return f }
                    continue
                }
                let n = items.count
                for (idx, item) in items.enumerated() {
                    let s = JScope(parent: scope)
                    try assign(target, item, s)
                    var loop = JDict()
                    loop["index"] = .int(idx + 1); loop["index0"] = .int(idx)
                    loop["revindex"] = .int(n - idx); loop["revindex0"] = .int(n - idx - 1)
                    loop["first"] = .bool(idx == 0); loop["last"] = .bool(idx == n - 1)
                    loop["length"] = .int(n); loop["depth"] = .int(1); loop["depth0"] = .int(0)
                    loop["previtem"] = idx > 0 ? items[idx - 1] : .undefined("there is no previous item")
                    loop["nextitem"] = idx < n - 1 ? items[idx + 1] : .undefined("there is no next item")
                    loop["cycle"] = .callable(JCallable("cycle") { a, _ in
                        guard !a.isEmpty else { throw jerr("no items for cycling given") }
                        return a[idx % a.count]
                    })
                    s.vars["loop"] = .dict(loop)
                    let f = try exec(body, s, &out)
                    if f == .breakLoop { break }
                }
            case .set(let target, let e):
                try assign(target, try eval(e, scope), scope)
            case let .setBlock(name, filters, body):
                var buf = ""
                _ = try exec(body, scope, &buf)
                var v = JValue.string(buf)
                for (fname, args, line) in filters { v = try applyFilter(fname, v, args, scope, line: line) }
                scope.vars[name] = v
            case let .macro(name, params, body):
                let defScope = scope
                macroScopes.append(defScope)
                scope.vars[name] = .callable(JCallable(name) { [unowned self] a, kw in
                    if a.count > params.count { throw jerr("macro '\(name)' takes not more than \(params.count) argument(s)") }
                    let s = JScope(parent: defScope)
                    for (k, p) in params.enumerated() {
                        if k < a.count { s.vars[p.0] = a[k] }
                        else if let kv = kw.first(where: { $0.0 == p.0 }) { s.vars[p.0] = kv.1 }
                        else if let d = p.1 { s.vars[p.0] = try self.eval(d, s) }
                        else { s.vars[p.0] = .undefined("parameter '\(p.0)' was not provided") }
                    }
                    for (k, _) in kw where !params.contains(where: { $0.0 == k }) { throw jerr("macro '\(name)' takes no keyword argument '\(k)'") }
                    self.callDepth += 1
                    defer { self.callDepth -= 1 }
                    guard self.callDepth <= Self.maxCallDepth else {
                        throw jerr("macro '\(name)': calls nested deeper than \(Self.maxCallDepth) (endless recursion?)")
                    }
                    var buf = ""
                    _ = try self.exec(body, s, &buf)
                    return .string(buf)
                })
            case let .filterBlock(filters, body):
                var buf = ""
                let f = try exec(body, scope, &buf)
                var v = JValue.string(buf)
                for (fname, args, line) in filters { v = try applyFilter(fname, v, args, scope, line: line) }
                out += JPy.str(v)
                if f != .normal { return f }
            case .breakLoop: return .breakLoop
            case .continueLoop: return .continueLoop
            }
        }
        return .normal
    }

    func assign(_ target: JTarget, _ v: JValue, _ scope: JScope) throws {
        switch target {
        case .name(let n): scope.vars[n] = v
        case .tuple(let ts):
            let items: [JValue]
            switch v {
            case .list(let a), .tuple(let a): items = a
            default: items = try jIterate(v)
            }
            if items.count != ts.count {
                throw jerr(items.count > ts.count ? "too many values to unpack (expected \(ts.count))" : "not enough values to unpack (expected \(ts.count), got \(items.count))")
            }
            for (t, x) in zip(ts, items) { try assign(t, x, scope) }
        case .attr(let n, let a):
            guard case .namespace(let ns) = lookup(n, scope) else { throw jerr("can only assign attributes on a namespace; '\(n)' is not one") }
            if a.hasPrefix("_") { throw jerr("Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(a)'. Please rename the attribute.") }
            ns.attrs[a] = v
        }
    }

    // MARK: expressions

    func eval(_ e: JExpr, _ scope: JScope) throws -> JValue {
        switch e {
        case .lit(let l):
            switch l {
            case .none: return .none
            case .bool(let b): return .bool(b)
            case .int(let i): return .int(i)
            case .double(let d): return .double(d)
            case .string(let s): return .string(s)
            }
        case .name(let n): return lookup(n, scope)
        case .list(let items): return .list(try items.map { try eval($0, scope) })
        case .tuple(let items): return .tuple(try items.map { try eval($0, scope) })
        case .dict(let pairs):
            var d = JDict()
            for (k, v) in pairs {
                let kv = try eval(k, scope)
                guard case .string(let ks) = kv else { throw jerr("only string keys are supported in dict literals (got \(kv.typeName))") }
                d[ks] = try eval(v, scope)
            }
            return .dict(d)
        case .getattr(let base, let name): return try getattr(try eval(base, scope), name)
        case .getitem(let base, let key): return try getitem(try eval(base, scope), try eval(key, scope))
        case let .slice(base, a, b, c):
            let v = try eval(base, scope)
            func opt(_ x: JExpr?) throws -> Int? {
                guard let x else { return nil }
                let r = try eval(x, scope)
                if case .none = r { return nil }
                guard let i = jInt(r) else { throw jerr("slice indices must be integers or None") }
                return i
            }
            return try slice(v, try opt(a), try opt(b), try opt(c))
        case let .call(callee, args, _):
            let f = try eval(callee, scope)
            let a = try args.positional.map { try eval($0, scope) }
            let kw = try args.keyword.map { ($0.0, try eval($0.1, scope)) }
            switch f {
            case .callable(let c): return try c.fn(a, kw)
            case .undefined(let hint): throw jerr(hint)
            default: throw jerr("'\(f.typeName)' object is not callable")
            }
        case let .filter(base, name, args, line):
            return try applyFilter(name, try eval(base, scope), args, scope, line: line)
        case let .test(base, name, args, negated, line):
            let v = try eval(base, scope)
            let a = try args.positional.map { try eval($0, scope) }
            let r = try applyTest(name, v, a, line: line)
            return .bool(negated ? !r : r)
        case .not(let x): return .bool(!(try eval(x, scope).truthy))
        case .neg(let x):
            switch try eval(x, scope) {
            case .int(let i): return .int(-i)
            case .bool(let b): return .int(b ? -1 : 0)
            case .double(let d): return .double(-d)
            case .undefined(let h): throw jerr(h)
            case let v: throw jerr("bad operand type for unary -: '\(v.typeName)'")
            }
        case .pos(let x):
            let v = try eval(x, scope)
            switch v {
            case .int, .double: return v
            case .bool(let b): return .int(b ? 1 : 0)
            case .undefined(let h): throw jerr(h)
            default: throw jerr("bad operand type for unary +: '\(v.typeName)'")
            }
        case .and(let a, let b):
            let l = try eval(a, scope)
            return l.truthy ? try eval(b, scope) : l
        case .or(let a, let b):
            let l = try eval(a, scope)
            return l.truthy ? l : try eval(b, scope)
        case let .binary(op, a, b):
            let l = try eval(a, scope), r = try eval(b, scope)
            if op == "~" { return .string(JPy.str(l) + JPy.str(r)) }
            return try arith(op, l, r)
        case .compare(let first, let ops):
            var l = try eval(first, scope)
            for (op, rhsE) in ops {
                let r = try eval(rhsE, scope)
                let ok: Bool
                switch op {
                case "==": ok = jEq(l, r)
                case "!=": ok = !jEq(l, r)
                case "<": ok = try jLess(l, r, "<")
                case ">": ok = try jLess(r, l, ">")
                case "<=": ok = try !jLess(r, l, "<=")
                case ">=": ok = try !jLess(l, r, ">=")
                case "in": ok = try contains(r, l)
                default: ok = try !contains(r, l)
                }
                if !ok { return .bool(false) }
                l = r
            }
            return .bool(true)
        case let .cond(test, then, other):
            if try eval(test, scope).truthy { return try eval(then, scope) }
            if let other { return try eval(other, scope) }
            return .undefined("the inline if-expression on line evaluated to false and no else section was defined.")
        }
    }
}

// MARK: helpers

enum JNum { case i(Int), d(Double); var d: Double { switch self { case .i(let x): return Double(x); case .d(let x): return x } } }

func jNumeric(_ v: JValue) -> JNum? {
    switch v {
    case .int(let i): return .i(i)
    case .bool(let b): return .i(b ? 1 : 0)
    case .double(let d): return .d(d)
    default: return nil
    }
}

extension JValue { var isDouble: Bool { if case .double = self { return true }; return false } }

func jInt(_ v: JValue) -> Int? {
    switch v {
    case .int(let i): return i
    case .bool(let b): return b ? 1 : 0
    default: return nil
    }
}

func jFloorDiv(_ x: Int, _ y: Int) -> Int {
    let q = x / y
    return (x % y != 0 && ((x < 0) != (y < 0))) ? q - 1 : q
}

func jEq(_ a: JValue, _ b: JValue) -> Bool {
    switch (a, b) {
    case (.undefined, .undefined), (.none, .none): return true
    case (.string(let x), .string(let y)): return JPy.strEq(x, y)
    case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
        return x.count == y.count && zip(x, y).allSatisfy { jEq($0, $1) }
    case (.dict(let x), .dict(let y)):
        return x.count == y.count && x.items.allSatisfy { k, v in y[k].map { jEq(v, $0) } ?? false }
    case (.namespace(let x), .namespace(let y)): return x === y
    case (.callable(let x), .callable(let y)): return x === y
    default:
        if let x = jNumeric(a), let y = jNumeric(b) {
            if case .i(let p) = x, case .i(let q) = y { return p == q }
            return x.d == y.d
        }
        return false
    }
}

func jLess(_ a: JValue, _ b: JValue, _ op: String) throws -> Bool {
    switch (a, b) {
    case (.string(let x), .string(let y)): return JPy.codepointLess(x, y)
    case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
        for (p, q) in zip(x, y) where !jEq(p, q) { return try jLess(p, q, op) }
        return x.count < y.count
    default:
        if let x = jNumeric(a), let y = jNumeric(b) {
            if case .i(let p) = x, case .i(let q) = y { return p < q }
            return x.d < y.d
        }
        if case .undefined(let h) = a { throw jerr(h) }
        if case .undefined(let h) = b { throw jerr(h) }
        throw jerr("'\(op)' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
    }
}

func jIterate(_ v: JValue) throws -> [JValue] {
    switch v {
    case .list(let a), .tuple(let a), .iterator(let a): return a
    case .dict(let d): return d.keys.map { .string($0) }
    case .string(let s): return s.unicodeScalars.map { .string(String(Character($0))) }
    case .undefined: return []
    default: throw jerr("'\(v.typeName)' object is not iterable")
    }
}

func jLen(_ v: JValue) throws -> Int {
    switch v {
    case .list(let a), .tuple(let a): return a.count
    case .dict(let d): return d.count
    case .string(let s): return s.unicodeScalars.count
    case .undefined: return 0
    default: throw jerr("object of type '\(v.typeName)' has no len()")
    }
}

/// Python `str.format` for plain `{}`, `{0}` and `{name}` fields (no format specs).
func jFormat(_ s: String, _ a: [JValue], _ kw: [(String, JValue)]) throws -> String {
    var out = ""
    let u = Array(s.unicodeScalars)
    var i = 0, auto = 0
    while i < u.count {
        let c = u[i]
        if c == "{" {
            if i + 1 < u.count, u[i + 1] == "{" { out += "{"; i += 2; continue }
            var j = i + 1
            var field = ""
            while j < u.count, u[j] != "}" { field.unicodeScalars.append(u[j]); j += 1 }
            guard j < u.count else { throw jerr("Single '{' encountered in format string") }
            if field.contains(":") || field.contains("!") || field.contains(".") || field.contains("[") {
                throw jerr("str.format field '{\(field)}' is not supported by the chat template renderer")
            }
            let v: JValue
            if field.isEmpty {
                guard auto < a.count else { throw jerr("Replacement index \(auto) out of range for positional args tuple") }
                v = a[auto]; auto += 1
            } else if let n = Int(field) {
                guard n < a.count else { throw jerr("Replacement index \(n) out of range for positional args tuple") }
                v = a[n]
            } else {
                guard let kv = kw.first(where: { $0.0 == field }) else { throw jerr("KeyError: '\(field)'") }
                v = kv.1
            }
            out += JPy.str(v)
            i = j + 1
        } else if c == "}" {
            if i + 1 < u.count, u[i + 1] == "}" { out += "}"; i += 2; continue }
            throw jerr("Single '}' encountered in format string")
        } else { out.unicodeScalars.append(c); i += 1 }
    }
    return out
}

/// Python `str % args` for %s, %d, %i, %r and %% only.
func jPercentFormat(_ f: String, _ args: JValue) throws -> String {
    var items: [JValue]
    if case .tuple(let t) = args { items = t } else { items = [args] }
    var out = ""
    let u = Array(f.unicodeScalars)
    var i = 0
    while i < u.count {
        if u[i] == "%", i + 1 < u.count {
            let c = u[i + 1]
            i += 2
            if c == "%" { out += "%"; continue }
            guard !items.isEmpty else { throw jerr("not enough arguments for format string") }
            let v = items.removeFirst()
            switch c {
            case "s": out += JPy.str(v)
            case "r": out += JPy.repr(v)
            case "d", "i":
                guard let n = jNumeric(v) else { throw jerr("%d format: a real number is required, not \(v.typeName)") }
                switch n { case .i(let x): out += String(x); case .d(let x): out += String(Int(x)) }
            default: throw jerr("format conversion '%\(c)' is not supported by the chat template renderer")
            }
        } else { out.unicodeScalars.append(u[i]); i += 1 }
    }
    if !items.isEmpty { throw jerr("not all arguments converted during string formatting") }
    return out
}

/// `datetime.now().strftime(format)` for the common directives.
func jStrftime(_ f: String, _ date: Date) throws -> String {
    var cal = Calendar(identifier: .gregorian)
    cal.timeZone = TimeZone.current
    let c = cal.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
    let months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
    let days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
    func p2(_ x: Int) -> String { x < 10 ? "0\(x)" : "\(x)" }
    var out = ""
    let u = Array(f)
    var i = 0
    while i < u.count {
        guard u[i] == "%", i + 1 < u.count else { out.append(u[i]); i += 1; continue }
        var d = u[i + 1]
        var noPad = false
        i += 2
        if d == "-", i < u.count { noPad = true; d = u[i]; i += 1 }
        func num(_ x: Int) -> String { noPad ? "\(x)" : p2(x) }
        switch d {
        case "d": out += num(c.day!)
        case "m": out += num(c.month!)
        case "Y": out += String(c.year!)
        case "y": out += p2(c.year! % 100)
        case "H": out += num(c.hour!)
        case "I": out += num((c.hour! + 11) % 12 + 1)
        case "M": out += num(c.minute!)
        case "S": out += num(c.second!)
        case "p": out += c.hour! < 12 ? "AM" : "PM"
        case "b", "h": out += String(months[c.month! - 1].prefix(3))
        case "B": out += months[c.month! - 1]
        case "a": out += String(days[c.weekday! - 1].prefix(3))
        case "A": out += days[c.weekday! - 1]
        case "j":
            let doy = cal.ordinality(of: .day, in: .year, for: date) ?? 1
            out += noPad ? "\(doy)" : String(repeating: "0", count: 3 - String(doy).count) + String(doy)
        case "%": out += "%"
        default: throw jerr("strftime directive %\(d) is not supported by the chat template renderer")
        }
    }
    return out
}
