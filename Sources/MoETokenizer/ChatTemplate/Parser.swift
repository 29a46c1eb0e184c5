import Foundation

enum JLit: Sendable { case none, bool(Bool), int(Int), double(Double), string(String) }

struct JArgs: Sendable {
    var positional: [JExpr] = []
    var keyword: [(String, JExpr)] = []
}

indirect enum JExpr: Sendable {
    case lit(JLit)
    case name(String)
    case list([JExpr])
    case tuple([JExpr])
    case dict([(JExpr, JExpr)])
    case getattr(JExpr, String)
    case getitem(JExpr, JExpr)
    case slice(JExpr, JExpr?, JExpr?, JExpr?)
    case call(JExpr, JArgs, line: Int)
    case filter(JExpr, String, JArgs, line: Int)
    case test(JExpr, String, JArgs, negated: Bool, line: Int)
    case not(JExpr)
    case neg(JExpr)
    case pos(JExpr)
    case binary(String, JExpr, JExpr)
    case and(JExpr, JExpr)
    case or(JExpr, JExpr)
    case compare(JExpr, [(String, JExpr)])
    case cond(test: JExpr, then: JExpr, else: JExpr?)
}

indirect enum JTarget: Sendable {
    case name(String)
    case tuple([JTarget])
    case attr(String, String)   // ns.attr (only in set)
}

indirect enum JNode: Sendable {
    case text(String)
    case output(JExpr)
    case ifs([(JExpr, [JNode])], [JNode])
    case forLoop(target: JTarget, iter: JExpr, cond: JExpr?, body: [JNode], elseBody: [JNode])
    case set(JTarget, JExpr)
    case setBlock(String, filters: [(String, JArgs, Int)], body: [JNode])
    case macro(name: String, params: [(String, JExpr?)], body: [JNode])
    case filterBlock(filters: [(String, JArgs, Int)], body: [JNode])
    case breakLoop, continueLoop
}

/// Names of jinja2's built-in filters and tests (so an unknown one fails at parse time, as jinja2 does).
let jinjaKnownFilters: Set<String> = [
    "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
    "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "join", "last",
    "length", "list", "lower", "items", "map", "min", "max", "pprint", "random", "reject", "rejectattr",
    "replace", "reverse", "round", "safe", "select", "selectattr", "slice", "sort", "string", "striptags",
    "sum", "title", "trim", "truncate", "unique", "upper", "urlencode", "urlize", "wordcount", "wordwrap",
    "xmlattr", "tojson",
]
let jinjaKnownTests: Set<String> = [
    "odd", "even", "divisibleby", "defined", "undefined", "filter", "test", "none", "boolean", "false", "true",
    "integer", "float", "lower", "upper", "string", "mapping", "number", "sequence", "iterable", "callable",
    "sameas", "escaped", "in", "==", "eq", "equalto", "!=", "ne", "<", "lt", "lessthan", "<=", "le", ">", "gt",
    "greaterthan", ">=", "ge",
]

struct JinjaParser {
    var toks: [JToken]
    var i = 0
    /// Inside an `{% if %}`: unknown filters/tests fail only when evaluated (jinja2's "soft frame").
    var softDepth = 0
    /// Depth of the tree being built: blocks, nested expressions and each link of an operator or filter chain.
    /// Rendering walks the tree recursively, so a deeper one (no real template comes near) is refused here rather
    /// than overflowing the stack later.
    var depth = 0
    static let maxDepth = 128

    /// One level deeper; callers restore `depth` when they return.
    mutating func deeper() throws {
        depth += 1
        if depth > Self.maxDepth { throw fail("the template nests deeper than \(Self.maxDepth) levels") }
    }

    init(_ tokens: [JToken]) { toks = tokens }

    var cur: JTokKind { toks[i].kind }
    var line: Int { toks[i].line }
    func peek(_ n: Int = 1) -> JTokKind { i + n < toks.count ? toks[i + n].kind : .eof }
    mutating func advance() { if i < toks.count - 1 { i += 1 } }

    func fail(_ m: String) -> ChatTemplateError { .syntax(m, line: line) }
    func describe(_ k: JTokKind) -> String {
        switch k {
        case .text: return "template data"
        case .varBegin: return "'{{'"
        case .varEnd: return "'}}'"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "'%}'"
        case .name(let n): return "'\(n)'"
        case .string: return "string"
        case .int, .float: return "number"
        case .op(let o): return "'\(o)'"
        case .eof: return "end of template"
        }
    }

    func isName(_ n: String) -> Bool { if case .name(n) = cur { return true }; return false }
    func isOp(_ o: String) -> Bool { if case .op(o) = cur { return true }; return false }
    mutating func skipName(_ n: String) -> Bool { if isName(n) { advance(); return true }; return false }
    mutating func skipOp(_ o: String) -> Bool { if isOp(o) { advance(); return true }; return false }
    mutating func expectOp(_ o: String) throws { guard skipOp(o) else { throw fail("expected '\(o)', got \(describe(cur))") } }
    mutating func expectName() throws -> String {
        guard case .name(let n) = cur else { throw fail("expected a name, got \(describe(cur))") }
        advance(); return n
    }
    mutating func expectBlockEnd() throws {
        guard cur == .blockEnd else { throw fail("expected end of statement block, got \(describe(cur))") }
        advance()
    }

    // MARK: statements

    mutating func parseTemplate() throws -> [JNode] {
        let (body, end) = try parseBody(until: [])
        if let end { throw fail("unexpected '\(end)'") }
        return body
    }

    /// Parses nodes until a `{% tag %}` whose name is in `until`; returns the body and the tag (the stream is left
    /// just after the tag name). A nil tag means end of template.
    mutating func parseBody(until: Set<String>) throws -> ([JNode], String?) {
        let saved = depth
        defer { depth = saved }
        try deeper()
        var nodes: [JNode] = []
        while true {
            switch cur {
            case .eof:
                if !until.isEmpty { throw fail("unexpected end of template, expected one of \(until.sorted().map { "'\($0)'" }.joined(separator: ", "))") }
                return (nodes, nil)
            case .text(let t): nodes.append(.text(t)); advance()
            case .varBegin:
                advance()
                let e = try parseTuple()
                guard cur == .varEnd else { throw fail("expected '}}', got \(describe(cur))") }
                advance()
                nodes.append(.output(e))
            case .blockBegin:
                advance()
                guard case .name(let tag) = cur else { throw fail("tag name expected") }
                if until.contains(tag) { advance(); return (nodes, tag) }
                nodes.append(try parseStatement(tag))
            default:
                throw fail("unexpected \(describe(cur))")
            }
        }
    }

    mutating func parseStatement(_ tag: String) throws -> JNode {
        let l = line
        advance()
        switch tag {
        case "if":
            softDepth += 1
            defer { softDepth -= 1 }
            var branches: [(JExpr, [JNode])] = []
            var cond = try parseTuple(withCondExpr: true)
            try expectBlockEnd()
            while true {
                let (body, end) = try parseBody(until: ["elif", "else", "endif"])
                branches.append((cond, body))
                if end == "elif" { cond = try parseTuple(); try expectBlockEnd(); continue }
                if end == "else" {
                    try expectBlockEnd()
                    let (eb, _) = try parseBody(until: ["endif"])
                    try expectBlockEnd()
                    return .ifs(branches, eb)
                }
                try expectBlockEnd()
                return .ifs(branches, [])
            }
        case "for":
            let target = try parseAssignTarget(endName: "in")
            guard skipName("in") else { throw fail("expected 'in', got \(describe(cur))") }
            let iter = try parseTuple(withCondExpr: false, endNames: ["recursive", "if"])
            var cond: JExpr? = nil
            if skipName("if") { cond = try parseExpression() }
            if isName("recursive") { throw ChatTemplateError.unsupported("recursive for loops", line: l) }
            try expectBlockEnd()
            let (body, end) = try parseBody(until: ["endfor", "else"])
            var elseBody: [JNode] = []
            if end == "else" {
                try expectBlockEnd()
                (elseBody, _) = try parseBody(until: ["endfor"])
            }
            try expectBlockEnd()
            return .forLoop(target: target, iter: iter, cond: cond, body: body, elseBody: elseBody)
        case "set":
            let target = try parseAssignTarget(endName: nil, allowAttr: true)
            if skipOp("=") {
                let e = try parseTuple()
                try expectBlockEnd()
                return .set(target, e)
            }
            guard case .name(let n) = target else { throw fail("expected '='") }
            var filters: [(String, JArgs, Int)] = []
            while skipOp("|") { filters.append(try parseFilterCall()) }
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endset"])
            try expectBlockEnd()
            return .setBlock(n, filters: filters, body: body)
        case "macro":
            let name = try expectName()
            try expectOp("(")
            var params: [(String, JExpr?)] = []
            while !isOp(")") {
                if !params.isEmpty { try expectOp(",") }
                if isOp(")") { break }
                let p = try expectName()
                var def: JExpr? = nil
                if skipOp("=") { def = try parseExpression() }
                params.append((p, def))
            }
            try expectOp(")")
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endmacro"])
            if case .name = cur { advance() }   // {% endmacro name %}
            try expectBlockEnd()
            return .macro(name: name, params: params, body: body)
        case "filter":
            var filters: [(String, JArgs, Int)] = [try parseFilterCall()]
            while skipOp("|") { filters.append(try parseFilterCall()) }
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endfilter"])
            try expectBlockEnd()
            return .filterBlock(filters: filters, body: body)
        case "generation":
            // transformers' AssistantTracker extension: renders its body unchanged.
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endgeneration"])
            try expectBlockEnd()
            return .ifs([(.lit(.bool(true)), body)], [])
        case "break":
            try expectBlockEnd(); return .breakLoop
        case "continue":
            try expectBlockEnd(); return .continueLoop
        case "extends", "include", "import", "from", "block", "call", "with", "autoescape", "trans", "do", "print":
            throw ChatTemplateError.unsupported("{% \(tag) %} is not supported by the chat template renderer", line: l)
        default:
            throw ChatTemplateError.syntax("Encountered unknown tag '\(tag)'.", line: l)
        }
    }

    mutating func parseAssignTarget(endName: String?, allowAttr: Bool = false) throws -> JTarget {
        var items: [JTarget] = []
        var sawComma = false
        while true {
            if let endName, isName(endName) { break }
            if !items.isEmpty {
                guard skipOp(",") else { break }
                sawComma = true
                if let endName, isName(endName) { break }
                if isOp("=") || cur == .blockEnd { break }
            }
            if skipOp("(") {
                let inner = try parseAssignTarget(endName: nil)
                try expectOp(")")
                items.append(inner); continue
            }
            let n = try expectName()
            if allowAttr, items.isEmpty, skipOp(".") {
                let attr = try expectName()
                return .attr(n, attr)
            }
            items.append(.name(n))
        }
        if items.isEmpty { throw fail("expected assignment target") }
        return items.count == 1 && !sawComma ? items[0] : .tuple(items)
    }

    mutating func parseFilterCall() throws -> (String, JArgs, Int) {
        let l = line
        var name = try expectName()
        while skipOp(".") { name += "." + (try expectName()) }
        var args = JArgs()
        if isOp("(") { args = try parseCallArgs() }
        if !jinjaKnownFilters.contains(name) && softDepth == 0 { throw ChatTemplateError.syntax("No filter named '\(name)'.", line: l) }
        return (name, args, l)
    }

    // MARK: expressions

    /// A comma-separated list makes a tuple (as in `{{ a, b }}`); otherwise the single expression.
    mutating func parseTuple(withCondExpr: Bool = true, endNames: Set<String> = [], explicitParens: Bool = false) throws -> JExpr {
        var items: [JExpr] = []
        var sawComma = false
        while true {
            if !items.isEmpty {
                guard skipOp(",") else { break }
                sawComma = true
            }
            // tuple end?
            switch cur {
            case .varEnd, .blockEnd, .eof: break
            case .op(")") where explicitParens: break
            case .name(let n) where endNames.contains(n): break
            default:
                items.append(withCondExpr ? try parseExpression() : try parseOr())
                continue
            }
            break
        }
        if items.isEmpty {
            if explicitParens { return .tuple([]) }
            throw fail("expected an expression, got \(describe(cur))")
        }
        return items.count == 1 && !sawComma ? items[0] : .tuple(items)
    }

    mutating func parseExpression() throws -> JExpr {
        let saved = depth
        defer { depth = saved }
        try deeper()
        var e = try parseOr()
        while skipName("if") {
            try deeper()
            let test = try parseOr()
            var other: JExpr? = nil
            if skipName("else") { other = try parseExpression() }
            e = .cond(test: test, then: e, else: other)
        }
        return e
    }

    mutating func parseOr() throws -> JExpr {
        let saved = depth
        defer { depth = saved }
        var e = try parseAnd()
        while skipName("or") { try deeper(); e = .or(e, try parseAnd()) }
        return e
    }
    mutating func parseAnd() throws -> JExpr {
        let saved = depth
        defer { depth = saved }
        var e = try parseNot()
        while skipName("and") { try deeper(); e = .and(e, try parseNot()) }
        return e
    }
    mutating func parseNot() throws -> JExpr {
        let saved = depth
        defer { depth = saved }
        if skipName("not") { try deeper(); return .not(try parseNot()) }
        return try parseCompare()
    }
    mutating func parseCompare() throws -> JExpr {
        let e = try parseMath1()
        var ops: [(String, JExpr)] = []
        while true {
            if case .op(let o) = cur, ["==", "!=", "<", ">", "<=", ">="].contains(o) { advance(); ops.append((o, try parseMath1())) }
            else if skipName("in") { ops.append(("in", try parseMath1())) }
            else if isName("not"), case .name("in") = peek() { advance(); advance(); ops.append(("notin", try parseMath1())) }
            else { break }
        }
        return ops.isEmpty ? e : .compare(e, ops)
    }
    mutating func parseMath1() throws -> JExpr {
        let saved = depth
        defer { depth = saved }
        var e = try parseConcat()
        while case .op(let o) = cur, o == "+" || o == "-" { advance(); try deeper(); e = .binary(o, e, try parseConcat()) }
        return e
    }
    mutating func parseConcat() throws -> JExpr {
        let saved = depth
        defer { depth = saved }
        var e = try parseMath2()
        while skipOp("~") { try deeper(); e = .binary("~", e, try parseMath2()) }
        return e
    }
    mutating func parseMath2() throws -> JExpr {
        let saved = depth
        defer { depth = saved }
        var e = try parsePow()
        while case .op(let o) = cur, ["*", "/", "//", "%"].contains(o) { advance(); try deeper(); e = .binary(o, e, try parsePow()) }
        return e
    }
    mutating func parsePow() throws -> JExpr {
        let saved = depth
        defer { depth = saved }
        var e = try parseUnary()
        while skipOp("**") { try deeper(); e = .binary("**", e, try parseUnary()) }
        return e
    }
    mutating func parseUnary(withFilter: Bool = true) throws -> JExpr {
        let saved = depth
        defer { depth = saved }
        try deeper()
        var e: JExpr
        if skipOp("-") { e = .neg(try parseUnary(withFilter: false)) }
        else if skipOp("+") { e = .pos(try parseUnary(withFilter: false)) }
        else { e = try parsePrimary() }
        e = try parsePostfix(e)
        if withFilter { e = try parseFilterExpr(e) }
        return e
    }

    mutating func parsePrimary() throws -> JExpr {
        switch cur {
        case .name(let n):
            advance()
            switch n {
            case "true", "True": return .lit(.bool(true))
            case "false", "False": return .lit(.bool(false))
            case "none", "None": return .lit(.none)
            default: return .name(n)
            }
        case .string(var s):
            advance()
            while case .string(let more) = cur { s += more; advance() }
            return .lit(.string(s))
        case .int(let v): advance(); return .lit(.int(v))
        case .float(let v): advance(); return .lit(.double(v))
        case .op("("):
            advance()
            let e = try parseTuple(explicitParens: true)
            try expectOp(")")
            return e
        case .op("["):
            advance()
            var items: [JExpr] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            try expectOp("]")
            return .list(items)
        case .op("{"):
            advance()
            var items: [(JExpr, JExpr)] = []
            while !isOp("}") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("}") { break }
                let k = try parseExpression()
                try expectOp(":")
                items.append((k, try parseExpression()))
            }
            try expectOp("}")
            return .dict(items)
        default:
            throw fail("unexpected \(describe(cur))")
        }
    }

    mutating func parsePostfix(_ base: JExpr) throws -> JExpr {
        let saved = depth
        defer { depth = saved }
        var e = base
        while true {
            try deeper()
            if isOp(".") || isOp("[") { e = try parseSubscript(e) }
            else if isOp("(") { let l = line; e = .call(e, try parseCallArgs(), line: l) }
            else { return e }
        }
    }

    mutating func parseFilterExpr(_ base: JExpr) throws -> JExpr {
        let saved = depth
        defer { depth = saved }
        var e = base
        while true {
            try deeper()
            if isOp("|") {
                advance()
                let (name, args, l) = try parseFilterCall()
                e = .filter(e, name, args, line: l)
            } else if isName("is") {
                let l = line
                advance()
                let negated = skipName("not")
                var name = try expectName()
                while skipOp(".") { name += "." + (try expectName()) }
                var args = JArgs()
                if isOp("(") { args = try parseCallArgs() }
                else {
                    var takesArg = false
                    switch cur {
                    case .name(let n): takesArg = !["else", "or", "and"].contains(n)
                    case .string, .int, .float, .op("("), .op("["), .op("{"): takesArg = true
                    default: break
                    }
                    if takesArg {
                        if isName("is") { throw fail("You cannot chain multiple tests with is") }
                        args.positional = [try parsePostfix(try parsePrimary())]
                    }
                }
                if !jinjaKnownTests.contains(name) && softDepth == 0 { throw ChatTemplateError.syntax("No test named '\(name)'.", line: l) }
                e = .test(e, name, args, negated: negated, line: l)
            } else if isOp("(") {
                let l = line
                e = .call(e, try parseCallArgs(), line: l)
            } else {
                return e
            }
        }
    }

    mutating func parseSubscript(_ base: JExpr) throws -> JExpr {
        if skipOp(".") {
            switch cur {
            case .name(let n): advance(); return .getattr(base, n)
            case .int(let v): advance(); return .getitem(base, .lit(.int(v)))
            default: throw fail("expected name or number after '.'")
            }
        }
        try expectOp("[")
        var args: [JExpr] = []
        while !isOp("]") {
            if !args.isEmpty { try expectOp(",") }
            args.append(try parseSubscribed())
        }
        try expectOp("]")
        if args.count == 1 {
            if case .slice(_, let a, let b, let c) = args[0] { return .slice(base, a, b, c) }
            return .getitem(base, args[0])
        }
        return .getitem(base, .tuple(args))
    }

    /// One subscript: an expression or a slice `a:b:c` (returned as .slice with a dummy base).
    mutating func parseSubscribed() throws -> JExpr {
        var parts: [JExpr?] = []
        if isOp(":") { parts.append(nil) } else {
            let e = try parseExpression()
            if !isOp(":") { return e }
            parts.append(e)
        }
        advance()   // ':'
        if isOp("]") || isOp(",") { parts.append(nil) }
        else if isOp(":") { parts.append(nil) }
        else { parts.append(try parseExpression()) }
        if skipOp(":") {
            if isOp("]") || isOp(",") { parts.append(nil) } else { parts.append(try parseExpression()) }
        } else { parts.append(nil) }
        return .slice(.lit(.none), parts[0], parts[1], parts[2])
    }

    mutating func parseCallArgs() throws -> JArgs {
        try expectOp("(")
        var args = JArgs()
        while !isOp(")") {
            if !(args.positional.isEmpty && args.keyword.isEmpty) { try expectOp(",") }
            if isOp(")") { break }
            if isOp("*") || isOp("**") { throw ChatTemplateError.unsupported("*args / **kwargs in calls", line: line) }
            if case .name(let n) = cur, case .op("=") = peek() {
                advance(); advance()
                args.keyword.append((n, try parseExpression()))
            } else {
                if !args.keyword.isEmpty { throw fail("invalid syntax for function call expression") }
                args.positional.append(try parseExpression())
            }
        }
        try expectOp(")")
        return args
    }
}
