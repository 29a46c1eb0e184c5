import MoETokenizer

/// JSON Schema → GBNF, as llama.cpp's `json_schema_to_grammar` and OpenAI's structured outputs read a schema:
/// every text the grammar produces is valid JSON that validates against the schema (the grammar may allow less
/// than the schema: no extra properties, no exponent on a bounded number, single spaces only).
///
///     let gbnf = try JSONSchemaGrammar.gbnf(schema: try TemplateValue(decoding: Data(#"{"type": "object",
///         "properties": {"name": {"type": "string"}}, "required": ["name"]}"#.utf8)))
///     let grammar = try GBNF.parse(gbnf)
///
/// Supported: `type` (one or a list), `properties`/`required`/`additionalProperties` (extras are never
/// generated), `items`/`prefixItems`/`minItems`/`maxItems`, `enum`, `const`, `anyOf`/`oneOf`, a one-element `allOf`,
/// `$ref` into `$defs`/`definitions` (recursion allowed), `minLength`/`maxLength`, `pattern` (see
/// `RegexGrammar`), `format` (date, time, date-time, uuid), `minimum`/`maximum`/`exclusiveMinimum`/
/// `exclusiveMaximum` (integers; whole-valued bounds for numbers). Annotations are ignored; anything else is an
/// error naming the keyword.
public enum JSONSchemaGrammar {
    /// `response_format: {"type": "json_object"}`: any JSON object.
    public static let anyObjectGBNF = "root ::= object\n" + primitives.map { "\($0.key) ::= \($0.value)" }.sorted().joined(separator: "\n")

    public static func gbnf(schema: TemplateValue) throws(GrammarError) -> String {
        var c = Converter(root: schema)
        let root = try c.visit(schema, name: "root")
        return c.text(root: root)
    }

    /// Several schemas in one grammar (each resolving its own `$ref`s): `root` gets the expression of each schema's
    /// value, in order, and returns the root rule's body (e.g. tool calls around each tool's arguments).
    public static func gbnf(schemas: [TemplateValue], root: ([String]) -> String) throws(GrammarError) -> String {
        var c = Converter(root: .null)
        _ = c.reserve("root")
        var values: [String] = []
        for (i, schema) in schemas.enumerated() {
            c.root = schema
            c.refs = [:]
            values.append(try c.visit(schema, name: "schema-\(i)"))
        }
        return c.text(root: root(values))
    }

    public static func grammar(schema: TemplateValue) throws(GrammarError) -> Grammar {
        try GBNF.parse(gbnf(schema: schema))
    }

    /// Limits that keep a request's grammar small: a schema beyond them is refused, naming the keyword.
    public static let maxEnumValues = 1024
    public static let maxRules = 10_000
    public static let maxGrammarBytes = 1 << 20

    static let primitives: [String: String] = [
        "space": "\" \"?",
        // \u escapes stop short of the surrogates (D800-DFFF): a lone one is not a character, and parsers refuse it.
        "char": #"[^"\\\u0000-\u001f\u007f] | "\\" (["\\/bfnrt] | "u" ([0-9a-cA-CefEF] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}))"#,
        "string": #""\"" char* "\"" space"#,
        "boolean": "(\"true\" | \"false\") space",
        "null": "\"null\" space",
        "integral-part": "[0] | [1-9] [0-9]{0,15}",
        "decimal-part": "[0-9]{1,16}",
        "integer": "\"-\"? integral-part space",
        "number": "\"-\"? integral-part (\".\" decimal-part)? ([eE] [-+]? [0-9]{1,2})? space",  // exponents within a double
        "value": "object | array | string | number | boolean | null",
        "object": #""{" space (string ":" space value ("," space string ":" space value)*)? "}" space"#,
        "array": #""[" space (value ("," space value)*)? "]" space"#,
    ]

    /// What each primitive rule refers to.
    static let primitiveUses: [String: [String]] = [
        "char": [], "space": [], "string": ["char", "space"], "boolean": ["space"], "null": ["space"], "integral-part": [],
        "decimal-part": [], "integer": ["integral-part", "space"], "number": ["integral-part", "decimal-part", "space"],
        "value": ["object", "array", "string", "number", "boolean", "null"],
        "object": ["space", "string", "value"], "array": ["space", "value"],
    ]

    static let annotations: Set<String> = ["title", "description", "default", "examples", "$schema", "$id", "$comment",
                                           "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "strict", "name"]

    struct Converter {
        /// The schema document `$ref`s resolve against.
        var root: TemplateValue
        var rules: [(name: String, body: String)] = []
        var names: Set<String> = []
        var used: Set<String> = []
        /// `$ref` targets already given a rule (recursion ends there).
        var refs: [String: String] = [:]

        init(root: TemplateValue) { self.root = root }

        func text(root: String) -> String {
            var out = rules.map { "\($0.name) ::= \($0.body)" }
            if root != "root" { out.insert("root ::= \(root)", at: 0) }
            var needed = used, queue = Array(used)
            while let p = queue.popLast() {
                for d in primitiveUses[p] ?? [] where needed.insert(d).inserted { queue.append(d) }
            }
            for p in needed.sorted() where !names.contains(p) { out.append("\(p) ::= \(primitives[p]!)") }
            return out.joined(separator: "\n")
        }

        mutating func primitive(_ name: String) -> String {
            used.insert(name)
            return name
        }

        /// A new rule named after `base` (letters, digits and dashes).
        mutating func rule(_ base: String, _ body: String) throws(GrammarError) -> String {
            let name = reserve(base)
            try define(name, body)
            return name
        }

        mutating func reserve(_ base: String) -> String {
            var clean = String(base.unicodeScalars.map { c -> Character in
                (("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c)) ? Character(c) : "-"
            })
            if clean.isEmpty { clean = "r" }
            var name = clean, n = 1
            while names.contains(name) || primitives[name] != nil { n += 1; name = "\(clean)-\(n)" }
            names.insert(name)
            return name
        }

        mutating func define(_ name: String, _ body: String) throws(GrammarError) {
            rules.append((name, body))
            guard rules.count <= JSONSchemaGrammar.maxRules else {
                throw GrammarError("the schema makes more than \(JSONSchemaGrammar.maxRules) grammar rules", keyword: "schema")
            }
        }

        /// A GBNF expression for `schema` (a rule name for anything larger than a primitive).
        mutating func visit(_ schema: TemplateValue, name: String) throws(GrammarError) -> String {
            switch schema {
            case .bool(true): return primitive("value")
            case .bool(false): throw GrammarError("schema 'false' at \(name) matches nothing", keyword: name)
            case .object: break
            default: throw GrammarError("a schema must be an object or a boolean (at \(name))", keyword: name)
            }
            if let ref = schema["$ref"] { return try reference(ref, name: name) }
            for entry in objectEntries(schema) where !Self.known.contains(entry.key) && !annotations.contains(entry.key) {
                throw GrammarError("JSON Schema keyword '\(entry.key)' (at \(name)) is not supported", keyword: entry.key)
            }
            if let c = schema["const"] { return try rule(name, literal(c) + " space") }
            if let values = schema["enum"] {
                guard case .array(let items) = values, !items.isEmpty else { throw GrammarError("'enum' must be a non-empty array", keyword: "enum") }
                guard items.count <= JSONSchemaGrammar.maxEnumValues else {
                    throw GrammarError("'enum' holds \(items.count) values; at most \(JSONSchemaGrammar.maxEnumValues) are supported", keyword: "enum")
                }
                _ = primitive("space")
                return try rule(name, "(" + items.map(literal).joined(separator: " | ") + ") space")
            }
            for key in ["anyOf", "oneOf"] {
                if let list = schema[key] {
                    guard case .array(let items) = list, !items.isEmpty else { throw GrammarError("'\(key)' must be a non-empty array", keyword: key) }
                    var alts: [String] = []
                    for (i, item) in items.enumerated() { alts.append(try visit(item, name: "\(name)-\(i)")) }
                    return try rule(name, alts.joined(separator: " | "))
                }
            }
            if let all = schema["allOf"] {
                guard case .array(let items) = all, items.count == 1 else {
                    throw GrammarError("'allOf' is supported with one schema only", keyword: "allOf")
                }
                return try visit(items[0], name: name)
            }
            var types: [String]
            switch schema["type"] {
            case .string(let t)?: types = [t]
            case .array(let list)?:
                types = []
                for t in list { guard case .string(let s) = t else { throw GrammarError("'type' must name types", keyword: "type") }; types.append(s) }
            case nil:
                if schema["properties"] != nil { types = ["object"] }
                else if schema["items"] != nil || schema["prefixItems"] != nil { types = ["array"] }
                else if schema["pattern"] != nil || schema["minLength"] != nil || schema["format"] != nil { types = ["string"] }
                else { return primitive("value") }
            default: throw GrammarError("'type' must be a string or an array of strings", keyword: "type")
            }
            var alts: [String] = []
            for t in types {
                switch t {
                case "object": alts.append(try object(schema, name: types.count > 1 ? "\(name)-object" : name))
                case "array": alts.append(try array(schema, name: types.count > 1 ? "\(name)-array" : name))
                case "string": alts.append(try string(schema, name: name))
                case "integer", "number": alts.append(try number(schema, integer: t == "integer", name: name))
                case "boolean": alts.append(primitive("boolean"))
                case "null": alts.append(primitive("null"))
                default: throw GrammarError("unknown type '\(t)'", keyword: "type")
                }
            }
            return alts.count == 1 ? alts[0] : try rule(name, alts.joined(separator: " | "))
        }

        static let known: Set<String> = ["type", "properties", "required", "additionalProperties", "items", "prefixItems",
                                         "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref",
                                         "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
                                         "exclusiveMinimum", "exclusiveMaximum", "uniqueItems"]

        func objectEntries(_ v: TemplateValue) -> [TemplateValue.TemplateEntry] {
            if case .object(let e) = v { return e }
            return []
        }

        mutating func reference(_ ref: TemplateValue, name: String) throws(GrammarError) -> String {
            guard case .string(let path) = ref else { throw GrammarError("'$ref' must be a string", keyword: "$ref") }
            if let known = refs[path] { return known }
            var target = root
            if path != "#" {
                let prefixes = ["#/$defs/", "#/definitions/"]
                guard let prefix = prefixes.first(where: { path.hasPrefix($0) }) else {
                    throw GrammarError("'$ref' \"\(path)\": only references into #/$defs or #/definitions are supported", keyword: "$ref")
                }
                let key = String(path.dropFirst(prefix.count))
                guard let defs = root[prefix == "#/$defs/" ? "$defs" : "definitions"], let t = defs[key] else {
                    throw GrammarError("'$ref' \"\(path)\" points to nothing", keyword: "$ref")
                }
                target = t
            }
            let ruleName = reserve("ref-" + (path.split(separator: "/").last.map(String.init) ?? "root"))
            refs[path] = ruleName
            let body = try visit(target, name: ruleName + "-body")
            try define(ruleName, body)
            return ruleName
        }

        mutating func object(_ schema: TemplateValue, name: String) throws(GrammarError) -> String {
            var required: Set<String> = []
            if let r = schema["required"] {
                guard case .array(let items) = r else { throw GrammarError("'required' must be an array of names", keyword: "required") }
                for item in items { guard case .string(let s) = item else { throw GrammarError("'required' must be an array of names", keyword: "required") }; required.insert(s) }
            }
            var props: [(key: String, expr: String, required: Bool)] = []
            let properties = objectEntries(schema["properties"] ?? .object([]))
            if let p = schema["properties"], case .object = p {} else if schema["properties"] != nil {
                throw GrammarError("'properties' must be an object", keyword: "properties")
            }
            _ = primitive("space")
            for entry in properties {
                let value = try visit(entry.value, name: "\(name)-\(entry.key)")
                let kv = try rule("\(name)-\(entry.key)-kv", literal(.string(entry.key)) + " space \":\" space " + value)
                props.append((entry.key, kv, required.contains(entry.key)))
            }
            if let missing = required.first(where: { key in !props.contains { $0.key == key } }) {
                throw GrammarError("'required' names '\(missing)', which is not among the properties", keyword: "required")
            }
            // Required properties first (in the schema's order), then the optional ones, each optional.
            let req = props.filter(\.required).map(\.expr), opt = props.filter { !$0.required }.map(\.expr)
            var body = "\"{\" space "
            if !req.isEmpty {
                body += req.joined(separator: " \",\" space ")
                body += opt.map { " (\",\" space \($0))?" }.joined()
            } else if !opt.isEmpty {
                // The first optional one present leads, without a comma.
                let starts = opt.indices.map { i in ([opt[i]] + opt[(i + 1)...].map { "(\",\" space \($0))?" }).joined(separator: " ") }
                body += "(" + starts.joined(separator: " | ") + ")?"
            }
            body += " \"}\" space"
            return try rule(name, body)
        }

        mutating func array(_ schema: TemplateValue, name: String) throws(GrammarError) -> String {
            if let u = schema["uniqueItems"], u != .bool(false) {
                throw GrammarError("'uniqueItems' is not supported", keyword: "uniqueItems")
            }
            let minItems = try count(schema, "minItems") ?? 0
            let maxItems = try count(schema, "maxItems")
            if let maxItems, maxItems < minItems { throw GrammarError("'maxItems' is below 'minItems'", keyword: "maxItems") }
            _ = primitive("space")
            if let prefix = schema["prefixItems"] {
                guard case .array(let items) = prefix else { throw GrammarError("'prefixItems' must be an array", keyword: "prefixItems") }
                var exprs: [String] = []
                for (i, item) in items.enumerated() { exprs.append(try visit(item, name: "\(name)-\(i)")) }
                return try rule(name, "\"[\" space " + exprs.joined(separator: " \",\" space ") + " \"]\" space")
            }
            let item = try visit(schema["items"] ?? .bool(true), name: "\(name)-item")
            let body: String
            switch (minItems, maxItems) {
            case (_, 0?): body = "\"[\" space \"]\" space"
            case (0, let m): body = "\"[\" space (" + item + " (\",\" space " + item + ")" + repeatSuffix(0, m.map { $0 - 1 }) + ")? \"]\" space"
            case (let n, let m):
                body = "\"[\" space " + item + " (\",\" space " + item + ")" + repeatSuffix(n - 1, m.map { $0 - 1 }) + " \"]\" space"
            }
            return try rule(name, body)
        }

        func repeatSuffix(_ lo: Int, _ hi: Int?) -> String {
            switch (lo, hi) {
            case (0, nil): return "*"
            case (let l, nil): return "{\(l),}"
            case (let l, let h?): return "{\(l),\(h)}"
            }
        }

        func count(_ schema: TemplateValue, _ key: String) throws(GrammarError) -> Int? {
            guard let v = schema[key] else { return nil }
            guard case .int(let n) = v, n >= 0 else { throw GrammarError("'\(key)' must be a non-negative integer", keyword: key) }
            guard n <= GBNF.maxRepetition else { throw GrammarError("'\(key)' is at most \(GBNF.maxRepetition) here", keyword: key) }
            return n
        }

        mutating func string(_ schema: TemplateValue, name: String) throws(GrammarError) -> String {
            _ = primitive("space")
            let minLength = try count(schema, "minLength"), maxLength = try count(schema, "maxLength")
            if let pattern = schema["pattern"] {
                guard case .string(let p) = pattern else { throw GrammarError("'pattern' must be a string", keyword: "pattern") }
                guard minLength == nil && maxLength == nil else {
                    throw GrammarError("'pattern' together with 'minLength'/'maxLength' is not supported", keyword: "pattern")
                }
                return try rule(name, "\"\\\"\" " + RegexGrammar.expression(p) + " \"\\\"\" space")
            }
            if let format = schema["format"] {
                guard case .string(let f) = format, let body = Self.formats[f] else {
                    throw GrammarError("'format' \(schema["format"].map { "\($0)" } ?? "") is not supported (supported: \(Self.formats.keys.sorted().joined(separator: ", ")))",
                                       keyword: "format")
                }
                return try rule(name, "\"\\\"\" " + body + " \"\\\"\" space")
            }
            guard minLength != nil || maxLength != nil else { return primitive("string") }
            if let maxLength, maxLength < (minLength ?? 0) { throw GrammarError("'maxLength' is below 'minLength'", keyword: "maxLength") }
            let char = primitive("char")
            return try rule(name, "\"\\\"\" " + char + repeatSuffix(minLength ?? 0, maxLength) + " \"\\\"\" space")
        }

        static let formats: [String: String] = {
            // Days that every year has in each month (February to the 28th).
            let date = #"[0-9]{4} "-" (("0" [13578] | "1" [02]) "-" ("0" [1-9] | [12] [0-9] | "3" [01]) | ("0" [469] | "11") "-" ("0" [1-9] | [12] [0-9] | "30") | "02" "-" ("0" [1-9] | "1" [0-9] | "2" [0-8]))"#
            let time = #"([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? ("Z" | [+\-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])"#
            return ["date": date, "time": time, "date-time": date + " \"T\" " + time,
                    "uuid": #"[0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12}"#]
        }()

        mutating func number(_ schema: TemplateValue, integer: Bool, name: String) throws(GrammarError) -> String {
            func bound(_ key: String) throws(GrammarError) -> Double? {
                switch schema[key] {
                case nil: return nil
                case .int(let v)?: return Double(max(-999_999_999_999_999, min(999_999_999_999_999, v)))
                case .double(let d)? where d.isFinite && (integer || d == d.rounded()): return max(-1e15 + 1, min(1e15 - 1, d))
                default: throw GrammarError("'\(key)' must be a whole number here (fractional bounds are supported for integers only)", keyword: key)
                }
            }
            let minimum = try bound("minimum"), maximum = try bound("maximum")
            let exclusiveMinimum = try bound("exclusiveMinimum"), exclusiveMaximum = try bound("exclusiveMaximum")
            guard minimum != nil || maximum != nil || exclusiveMinimum != nil || exclusiveMaximum != nil else {
                return primitive(integer ? "integer" : "number")
            }
            _ = primitive("space")
            let alts: [String]
            if integer {
                // Inclusive integer bounds, the tightest of each pair.
                let los = [minimum.map { Int($0.rounded(.up)) }, exclusiveMinimum.map { Int($0.rounded(.down)) + 1 }].compactMap { $0 }
                let his = [maximum.map { Int($0.rounded(.down)) }, exclusiveMaximum.map { Int($0.rounded(.up)) - 1 }].compactMap { $0 }
                alts = NumberRanges.integer(lo: los.max(), hi: his.min())
            } else {
                // (value, exclusive), the tightest of each pair.
                var lo: (Int, Bool)? = minimum.map { (Int($0), false) }
                if let e = exclusiveMinimum.map({ Int($0) }), lo == nil || e >= lo!.0 { lo = (e, true) }
                var hi: (Int, Bool)? = maximum.map { (Int($0), false) }
                if let e = exclusiveMaximum.map({ Int($0) }), hi == nil || e <= hi!.0 { hi = (e, true) }
                alts = NumberRanges.decimal(lo: lo, hi: hi)
            }
            guard !alts.isEmpty else {
                throw GrammarError("the bounds at \(name) leave no \(integer ? "integer" : "number")",
                                   keyword: minimum != nil ? "minimum" : exclusiveMinimum != nil ? "exclusiveMinimum" : "maximum")
            }
            return try rule(name, "(" + alts.joined(separator: " | ") + ") space")
        }

        /// A JSON value as a GBNF literal of its compact serialisation.
        func literal(_ v: TemplateValue) -> String {
            "\"" + RegexGrammar.escapeLiteral(v.compactJSON) + "\""
        }

    }
}

extension RegexGrammar {
    /// Text as the inside of a GBNF string literal.
    static func escapeLiteral(_ text: String) -> String {
        text.unicodeScalars.map { c -> String in
            switch c {
            case "\"": return "\\\""
            case "\\": return "\\\\"
            case "\n": return "\\n"
            case "\r": return "\\r"
            case "\t": return "\\t"
            default: return c.value < 0x20 || c.value == 0x7F ? "\\x" + hex(c.value, 2) : String(c)
            }
        }.joined()
    }
}

/// Numbers between bounds as GBNF alternatives (each a sequence), built digit by digit as regular expressions
/// for numeric ranges are: no leading zeros, at most 16 digits.
enum NumberRanges {
    static let maxDigits = 16

    /// Integers in `lo...hi` (nil: unbounded), negatives with "-".
    static func integer(lo: Int?, hi: Int?) -> [String] {
        if let lo, let hi, lo > hi { return [] }
        var alts: [String] = []
        if hi.map({ $0 >= 0 }) ?? true { alts += natural(max(lo ?? 0, 0), hi) }
        if lo.map({ $0 < 0 }) ?? true {
            // -m for m in max(1, -hi) ... -lo
            let mLo = hi.map { max(1, -$0) } ?? 1, mHi = lo.map { -$0 }
            if mHi.map({ mLo <= $0 }) ?? true { alts += natural(mLo, mHi).map { "\"-\" " + $0 } }
        }
        return alts
    }

    /// Decimals (no exponent) between whole bounds given as (value, exclusive).
    static func decimal(lo: (Int, Bool)?, hi: (Int, Bool)?) -> [String] {
        let fraction = "(\".\" [0-9]{1,\(maxDigits)})?", zeros = "(\".\" \"0\"{1,\(maxDigits)})?"
        let nonzero = "\".\" [0-9]{0,\(maxDigits - 1)} [1-9]"
        var alts: [String] = []
        // k.f for whole parts k ≥ 0 whose every fraction fits: lo ≤ k (lo < k when exclusive), k + 1 ≤ hi.
        let kLo = max(0, lo.map { $0.1 ? $0.0 + 1 : $0.0 } ?? 0), kHi = hi.map { $0.0 - 1 }
        if kHi.map({ kLo <= $0 }) ?? true { alts += natural(kLo, kHi).map { $0 + " " + fraction } }
        if let (l, exclusive) = lo, exclusive, l >= 0, hi.map({ $0.0 >= l + 1 }) ?? true {
            alts.append("\"\(l)\" " + nonzero)
        }
        if let (h, exclusive) = hi, !exclusive, h >= 0, lo.map({ $0.1 ? h > $0.0 : h >= $0.0 }) ?? true {
            alts.append("\"\(h)\" " + zeros)
        }
        // -(m.f) for m ≥ 1: the value lies in (-(m + 1), -m], inside when -m ≤ hi (< hi when exclusive) and -(m + 1) ≥ lo.
        let mLo = max(1, hi.map { $0.1 ? -$0.0 + 1 : -$0.0 } ?? 1), mHi = lo.map { -$0.0 - 1 }
        if mHi.map({ mLo <= $0 }) ?? true { alts += natural(mLo, mHi).map { "\"-\" " + $0 + " " + fraction } }
        if let (l, exclusive) = lo, !exclusive, l < 0, hi.map({ $0.1 ? l < $0.0 : l <= $0.0 }) ?? true {
            alts.append("\"-\(-l)\" " + zeros)
        }
        return alts
    }

    static func digits(_ n: Int) -> Int { String(n).count }
    static func power(_ n: Int) -> Int { (0..<n).reduce(1) { r, _ in r * 10 } }

    /// Naturals in `a...b` (b nil: any larger, up to 16 digits).
    static func natural(_ a: Int, _ b: Int?) -> [String] {
        let da = digits(a)
        guard let b else {
            var alts = da >= maxDigits ? [] : natural(a, power(da) - 1)
            if da < maxDigits { alts.append("[1-9] [0-9]{\(da),\(maxDigits - 1)}") }
            return alts
        }
        guard a <= b else { return [] }
        var alts: [String] = []
        for n in da...digits(b) {
            let lo = max(a, n == 1 ? 0 : power(n - 1)), hi = min(b, power(n) - 1)
            if lo <= hi { alts.append(sameLength(Array(String(lo)), Array(String(hi)))) }
        }
        return alts
    }

    /// Digit strings of one length from `lo` to `hi`.
    static func sameLength(_ lo: [Character], _ hi: [Character]) -> String {
        if lo.isEmpty { return "\"\"" }
        if lo == hi { return "\"" + String(lo) + "\"" }
        let l0 = lo[0], h0 = hi[0], rest = lo.count - 1
        let loRest = Array(lo.dropFirst()), hiRest = Array(hi.dropFirst())
        if l0 == h0 { return "\"\(l0)\" " + sameLength(loRest, hiRest) }
        let loAllZero = loRest.allSatisfy { $0 == "0" }, hiAllNine = hiRest.allSatisfy { $0 == "9" }
        func shift(_ c: Character, _ d: Int) -> Character { Character(UnicodeScalar(UInt8(Int(c.asciiValue!) + d))) }
        let midLo = loAllZero ? l0 : shift(l0, 1), midHi = hiAllNine ? h0 : shift(h0, -1)
        var alts: [String] = []
        if !loAllZero { alts.append("\"\(l0)\" " + sameLength(loRest, Array(repeating: "9", count: rest))) }
        if midLo <= midHi { alts.append("[\(midLo)-\(midHi)]" + (rest > 0 ? " [0-9]{\(rest)}" : "")) }
        if !hiAllNine { alts.append("\"\(h0)\" " + sameLength(Array(repeating: "0", count: rest), hiRest)) }
        return alts.count == 1 ? alts[0] : "(" + alts.joined(separator: " | ") + ")"
    }
}
