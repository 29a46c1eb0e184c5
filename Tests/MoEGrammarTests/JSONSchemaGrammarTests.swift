import Foundation
import MoEModel
import MoETokenizer
import Testing
@testable import MoEGrammar

/// Random sentences of a grammar: a random derivation that, past a depth, takes each rule's shortest alternative
/// (so it ends), with random characters from each class.
struct GrammarSampler {
    let grammar: Grammar
    /// The fewest characters each rule can produce.
    private var shortest: [Int]
    var rng: Xoshiro256StarStar

    init(_ grammar: Grammar, seed: UInt64) {
        self.grammar = grammar
        rng = Xoshiro256StarStar(seed: seed)
        var s = [Int](repeating: Int.max / 4, count: grammar.ruleCount)
        var changed = true
        while changed {
            changed = false
            for r in 0..<grammar.ruleCount {
                for start in grammar.alternatives[r] {
                    let n = Self.length(grammar, Int(start), s)
                    if n < s[r] { s[r] = n; changed = true }
                }
            }
        }
        shortest = s
    }

    static func length(_ g: Grammar, _ start: Int, _ s: [Int]) -> Int {
        var n = 0, i = start
        while true {
            switch g.elements[i] {
            case .end: return n
            case .chars: n += 1
            case .rule(let r): n = min(Int.max / 4, n + s[Int(r)])
            }
            i += 1
        }
    }

    mutating func sample() -> String {
        var out = String.UnicodeScalarView()
        expand(Int(grammar.root), depth: 0, &out)
        return String(out)
    }

    private mutating func expand(_ rule: Int, depth: Int, _ out: inout String.UnicodeScalarView) {
        let alts = grammar.alternatives[rule]
        var start = Int(alts[Int(rng.next() % UInt64(alts.count))])
        if depth > 14 || out.count > 400 {
            start = Int(alts.min { Self.length(grammar, Int($0), shortest) < Self.length(grammar, Int($1), shortest) }!)
        }
        var i = start
        while true {
            switch grammar.elements[i] {
            case .end: return
            case .rule(let r): expand(Int(r), depth: depth + 1, &out)
            case .chars(let k): out.append(pick(grammar.classes[Int(k)]))
            }
            i += 1
        }
    }

    private mutating func pick(_ c: Grammar.CharClass) -> Unicode.Scalar {
        if !c.negated {
            let r = c.ranges[Int(rng.next() % UInt64(c.ranges.count))]
            for _ in 0..<20 {
                let v = r.lowerBound + UInt32(rng.next() % UInt64(min(r.count, 3000)))
                if let s = Unicode.Scalar(v) { return s }
            }
            return Unicode.Scalar(r.lowerBound)!
        }
        let candidates: [Unicode.Scalar] = ["a", "Z", "5", " ", "é", "你", "-", "_", "~", "x"]
        let first = Int(rng.next() % UInt64(candidates.count))
        for k in 0..<candidates.count where c.contains(candidates[(first + k) % candidates.count].value) {
            return candidates[(first + k) % candidates.count]
        }
        return "?"
    }
}

@Suite struct JSONSchemaGrammarTests {
    static func schema(_ json: String) throws -> TemplateValue { try TemplateValue(decoding: Data(json.utf8)) }

    /// Schemas covering objects, arrays, enums, nested required fields, string patterns, lengths and formats,
    /// integer and number bounds, references (recursive too), anyOf and const.
    static let schemas: [String] = [
        #"{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 150}}, "required": ["name", "age"], "additionalProperties": false}"#,
        #"{"type": "object", "properties": {"a": {"type": "boolean"}, "b": {"type": "null"}, "c": {"type": "number"}}}"#,
        #"{"type": "array", "items": {"type": "string", "enum": ["red", "green", "blue \"quoted\""]}, "minItems": 1, "maxItems": 4}"#,
        #"{"type": "object", "properties": {"user": {"type": "object", "properties": {"id": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}}}, "required": ["id", "tags"]}, "note": {"type": "string"}}, "required": ["user"]}"#,
        #"{"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3,4}$"}, "phone": {"type": "string", "pattern": "\\(?[0-9]{3}\\)? [0-9]{3}-[0-9]{4}"}, "word": {"type": "string", "pattern": "^(foo|bar)+\"?[^a-z]*$"}}, "required": ["code", "phone", "word"]}"#,
        #"{"type": "object", "properties": {"t": {"type": "number", "minimum": -5, "maximum": 3}, "u": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, "v": {"type": "integer", "minimum": -1234, "maximum": -17}, "w": {"type": "integer", "exclusiveMinimum": 99}, "x": {"type": "integer", "maximum": 42}, "y": {"type": "number", "minimum": 10}}, "required": ["t", "u", "v", "w", "x", "y"]}"#,
        #"{"type": "object", "properties": {"d": {"type": "string", "format": "date"}, "dt": {"type": "string", "format": "date-time"}, "id": {"type": "string", "format": "uuid"}, "s": {"type": "string", "minLength": 2, "maxLength": 3}}, "required": ["d", "dt", "id", "s"]}"#,
        ##"{"$defs": {"node": {"type": "object", "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}}, "required": ["value"]}}, "$ref": "#/$defs/node"}"##,
        #"{"anyOf": [{"type": "string", "const": "none"}, {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}]}, {"type": ["integer", "null"]}]}"#,
        #"{"type": "object", "properties": {"kind": {"const": "point"}, "xy": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}, "label": {"enum": ["a", 1, null, true, {"k": [1]}]}}, "required": ["kind", "xy", "label"]}"#,
        #"{"type": "object"}"#,
        #"true"#,
    ]

    /// Every sentence each schema's grammar produces is JSON the schema accepts: parsed here, matched by the
    /// grammar, and validated by Python's `jsonschema` (with formats) where the test venv has it.
    @Test func samplesValidateAgainstTheirSchemas() throws {
        var lines: [String] = []
        for (n, text) in Self.schemas.enumerated() {
            let schema = try Self.schema(text)
            let gbnf = try JSONSchemaGrammar.gbnf(schema: schema)
            let grammar = try GBNF.parse(gbnf)
            var sampler = GrammarSampler(grammar, seed: UInt64(n))
            let matcher = GrammarMatcher(grammar)
            for _ in 0..<40 {
                let sample = sampler.sample()
                let state = matcher.step(matcher.start, Array(sample.utf8))
                #expect(state >= 0 && matcher.accepts(state), "schema \(n): the grammar does not take its own sample \(sample)")
                #expect((try? JSONSerialization.jsonObject(with: Data(sample.utf8), options: .fragmentsAllowed)) != nil,
                        "schema \(n): not JSON: \(sample)\n\(gbnf)")
                let record = try JSONSerialization.data(withJSONObject: ["schema": try JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed), "text": sample])
                lines.append(String(decoding: record, as: UTF8.self))
            }
        }
        guard let python = Self.python() else {
            print("jsonschema check skipped: no test venv (bash scripts/setup-test-deps.sh makes it)")
            return
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("schema-samples-\(UUID().uuidString).jsonl")
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/check_json_schema_samples.py").path
        p.arguments = [script, file.path]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(text)")
        #expect(text.contains("\(lines.count)/\(lines.count) valid"))
    }

    /// The test venv's python (MOE_TEST_PYTHON, else ~/.cache/moe-test-venv) when it has jsonschema.
    static func python() -> String? {
        let env = ProcessInfo.processInfo.environment
        let candidates = [env["MOE_TEST_PYTHON"], (env["MOE_TEST_VENV"] ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/moe-test-venv").path) + "/bin/python"]
        for case let c? in candidates where FileManager.default.isExecutableFile(atPath: c) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: c)
            p.arguments = ["-c", "import jsonschema"]
            p.standardError = FileHandle.nullDevice
            if (try? p.run()) != nil { p.waitUntilExit(); if p.terminationStatus == 0 { return c } }
        }
        return nil
    }

    @Test func integerRangesAreExact() throws {
        for (lo, hi) in [(0, 150), (-1234, -17), (7, 7), (-9, 9), (95, 1003), (0, 0), (-100, -100)] {
            let g = try GBNF.parse("root ::= " + NumberRanges.integer(lo: lo, hi: hi).joined(separator: " | "))
            for v in (lo - 30)...(hi + 30) {
                #expect(GrammarTests.matches(g, String(v)) == (lo...hi).contains(v), "\(v) in \(lo)...\(hi)")
            }
            #expect(!GrammarTests.matches(g, "-0") || lo <= 0 && hi >= 0)
            #expect(!GrammarTests.matches(g, "007"))
        }
        let open = try GBNF.parse("root ::= " + NumberRanges.integer(lo: 99, hi: nil).joined(separator: " | "))
        for v in [99, 100, 999, 1000, 123456789] { #expect(GrammarTests.matches(open, String(v))) }
        for v in [0, 9, 98, -100] { #expect(!GrammarTests.matches(open, String(v))) }
    }

    /// Unsupported keywords and impossible schemas are errors naming the keyword.
    @Test func unsupportedSchemasNameTheKeyword() throws {
        let cases: [(String, String)] = [
            (#"{"type": "string", "not": {"const": "x"}}"#, "not"),
            (#"{"type": "array", "items": {"type": "integer"}, "uniqueItems": true}"#, "uniqueItems"),
            (#"{"type": "number", "multipleOf": 3}"#, "multipleOf"),
            (#"{"type": "number", "minimum": 0.5}"#, "minimum"),
            (#"{"type": "integer", "minimum": 5, "maximum": 4}"#, "minimum"),
            (##"{"$ref": "#/$defs/missing"}"##, "$ref"),
            (#"{"$ref": "https://example.com/schema"}"#, "$ref"),
            (##"{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}"##, "grammar"),
            (#"{"enum": [\#((0..<2000).map(String.init).joined(separator: ","))]}"#, "enum"),
            (#"{"type": "string", "pattern": "(?=a)b"}"#, "pattern"),
            (#"{"type": "string", "pattern": "(a)\\1"}"#, "pattern"),
            (#"{"type": "string", "format": "email"}"#, "format"),
            (#"{"type": "object", "properties": {"a": {}}, "required": ["b"]}"#, "required"),
            (#"{"type": "thing"}"#, "type"),
            (#"{"allOf": [{"type": "string"}, {"minLength": 1}]}"#, "allOf"),
        ]
        for (text, keyword) in cases {
            let schema = try Self.schema(text)
            do {
                _ = try JSONSchemaGrammar.grammar(schema: schema)
                Issue.record("accepted: \(text.prefix(80))")
            } catch {
                #expect(error.keyword == keyword, "\(text.prefix(80)): \(error.message)")
            }
        }
    }

    @Test func jsonObjectGrammarTakesObjectsOnly() throws {
        let g = try GBNF.parse(JSONSchemaGrammar.anyObjectGBNF)
        for ok in [#"{}"#, #"{"a": 1, "b": [true, null, "x\n\u00e9"], "c": {"d": -1.5e3}}"#] { #expect(GrammarTests.matches(g, ok), "\(ok)") }
        for bad in [#"[]"#, #""x""#, #"{"a": 01}"#, #"{"a" 1}"#, #"{'a': 1}"#] { #expect(!GrammarTests.matches(g, bad), "\(bad)") }
    }
}
