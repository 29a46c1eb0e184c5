import Foundation

/// A JSON-like value handed to a chat template: what messages, tools and extra variables are made of.
/// Objects keep their key order (templates that print `tools | tojson` must reproduce it byte for byte).
public enum TemplateValue: Sendable, Equatable, Codable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([TemplateValue])
    case object([TemplateEntry])

    public struct TemplateEntry: Sendable, Equatable {
        public var key: String
        public var value: TemplateValue
        public init(_ key: String, _ value: TemplateValue) { self.key = key; self.value = value }
    }

    /// Builds an object from ordered pairs; a repeated key keeps its first position and its last value.
    public static func object(_ pairs: KeyValuePairs<String, TemplateValue>) -> TemplateValue {
        var entries: [TemplateEntry] = []
        for (k, v) in pairs {
            if let i = entries.firstIndex(where: { $0.key == k }) { entries[i].value = v } else { entries.append(.init(k, v)) }
        }
        return .object(entries)
    }

    /// Converts `JSONSerialization` output (or plain Swift values). Dictionary key order is not preserved by
    /// Foundation, so keys are sorted; use `init(decoding:)` to keep the document's order.
    public init(json: Any?) throws {
        guard let json else { self = .null; return }
        if let b = json as? Bool, type(of: json) == Bool.self { self = .bool(b); return }
        if let i = json as? Int, type(of: json) == Int.self { self = .int(i); return }
        if let d = json as? Double, type(of: json) == Double.self { self = .double(d); return }
        switch json {
        case is NSNull: self = .null
        case let v as TemplateValue: self = v
        case let s as String: self = .string(s)
        case let n as NSNumber:
            let t = String(cString: n.objCType)
            if t == "c" || t == "B" { self = .bool(n.boolValue) }
            else if t == "d" || t == "f" { self = .double(n.doubleValue) }
            else { self = .int(n.intValue) }
        case let a as [Any?]: self = .array(try a.map { try TemplateValue(json: $0) })
        case let a as [Any]: self = .array(try a.map { try TemplateValue(json: $0) })
        case let o as [String: Any?]:
            self = .object(try o.keys.sorted().map { TemplateEntry($0, try TemplateValue(json: o[$0] ?? nil)) })
        case let o as [String: Any]:
            self = .object(try o.keys.sorted().map { TemplateEntry($0, try TemplateValue(json: o[$0])) })
        default:
            throw ChatTemplateError.badValue("cannot convert \(type(of: json)) to a template value")
        }
    }

    /// Parses JSON text, keeping object key order.
    public init(decoding data: Data) throws {
        var p = OrderedJSONReader(bytes: [UInt8](data))
        self = try p.parseDocument()
    }

    public init(parsing text: String) throws { try self.init(decoding: Data(text.utf8)) }

    public subscript(key: String) -> TemplateValue? {
        if case .object(let entries) = self { return entries.first(where: { $0.key == key })?.value }
        return nil
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([TemplateValue].self) { self = .array(a) }
        else {
            let o = try c.decode([String: TemplateValue].self)
            self = .object(o.keys.sorted().map { TemplateEntry($0, o[$0]!) })
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o):
            var d: [String: TemplateValue] = [:]
            for e in o { d[e.key] = e.value }
            try c.encode(d)
        }
    }
}

extension TemplateValue: ExpressibleByStringLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByNilLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(arrayLiteral elements: TemplateValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, TemplateValue)...) {
        var entries: [TemplateEntry] = []
        for (k, v) in elements {
            if let i = entries.firstIndex(where: { $0.key == k }) { entries[i].value = v } else { entries.append(.init(k, v)) }
        }
        self = .object(entries)
    }
}

/// One chat message in the OpenAI / Hugging Face shape.
public struct ChatMessage: Sendable, Codable, Equatable {
    public var role: String
    public var content: String?
    public var reasoningContent: String?
    public var toolCalls: [TemplateValue]?
    public var toolCallId: String?
    public var name: String?

    enum CodingKeys: String, CodingKey {
        case role, content, name
        case reasoningContent = "reasoning_content"
        case toolCalls = "tool_calls"
        case toolCallId = "tool_call_id"
    }

    public init(role: String, content: String?, reasoningContent: String? = nil, toolCalls: [TemplateValue]? = nil,
                toolCallId: String? = nil, name: String? = nil) {
        self.role = role; self.content = content; self.reasoningContent = reasoningContent
        self.toolCalls = toolCalls; self.toolCallId = toolCallId; self.name = name
    }

    /// The message as templates see it: `role`, `content` (null when absent), then the optional fields that are set.
    public var templateValue: TemplateValue {
        var e: [TemplateValue.TemplateEntry] = [.init("role", .string(role)), .init("content", content.map { .string($0) } ?? .null)]
        if let reasoningContent { e.append(.init("reasoning_content", .string(reasoningContent))) }
        if let toolCalls { e.append(.init("tool_calls", .array(toolCalls))) }
        if let toolCallId { e.append(.init("tool_call_id", .string(toolCallId))) }
        if let name { e.append(.init("name", .string(name))) }
        return .object(e)
    }
}

/// Errors from parsing or rendering a chat template.
public enum ChatTemplateError: Error, CustomStringConvertible, Equatable {
    /// The template text is malformed (what jinja2 reports as TemplateSyntaxError / TemplateAssertionError).
    case syntax(String, line: Int)
    /// The template uses a jinja2 feature this interpreter does not implement.
    case unsupported(String, line: Int)
    /// Evaluation failed (undefined attribute access, type error, sandbox violation...).
    case runtime(String)
    /// The template called `raise_exception(message)`.
    case raised(String)
    /// Input data could not be converted.
    case badValue(String)

    public var description: String {
        switch self {
        case let .syntax(m, line): return "chat template syntax error (line \(line)): \(m)"
        case let .unsupported(m, line): return "chat template uses unsupported jinja feature (line \(line)): \(m)"
        case let .runtime(m): return "chat template error: \(m)"
        case let .raised(m): return m
        case let .badValue(m): return m
        }
    }
}

/// Minimal JSON reader that keeps object key order.
struct OrderedJSONReader {
    let bytes: [UInt8]
    var i = 0
    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func fail(_ m: String) -> ChatTemplateError { .badValue("invalid JSON at byte \(i): \(m)") }
    mutating func ws() { while i < bytes.count, [0x20, 0x0a, 0x0d, 0x09].contains(bytes[i]) { i += 1 } }

    mutating func parseDocument() throws -> TemplateValue {
        ws(); let v = try value(); ws()
        if i != bytes.count { throw fail("trailing characters") }
        return v
    }

    mutating func lit(_ s: String, _ v: TemplateValue) throws -> TemplateValue {
        let u = Array(s.utf8)
        guard i + u.count <= bytes.count, Array(bytes[i..<i + u.count]) == u else { throw fail("unexpected token") }
        i += u.count; return v
    }

    mutating func value() throws -> TemplateValue {
        guard i < bytes.count else { throw fail("unexpected end") }
        switch bytes[i] {
        case UInt8(ascii: "{"):
            i += 1; ws()
            var entries: [TemplateValue.TemplateEntry] = []
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(entries) }
            while true {
                ws()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected key") }
                let k = try string(); ws()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                i += 1; ws()
                let v = try value()
                if let j = entries.firstIndex(where: { $0.key == k }) { entries[j].value = v } else { entries.append(.init(k, v)) }
                ws()
                guard i < bytes.count else { throw fail("unexpected end") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(entries) }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            i += 1; ws()
            var items: [TemplateValue] = []
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            while true {
                ws(); items.append(try value()); ws()
                guard i < bytes.count else { throw fail("unexpected end") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try lit("true", .bool(true))
        case UInt8(ascii: "f"): return try lit("false", .bool(false))
        case UInt8(ascii: "n"): return try lit("null", .null)
        default: return try number()
        }
    }

    mutating func number() throws -> TemplateValue {
        let start = i
        var isFloat = false
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
        while i < bytes.count {
            let c = bytes[i]
            if c >= 0x30 && c <= 0x39 { i += 1 } else if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") || c == UInt8(ascii: "+") || c == UInt8(ascii: "-") { isFloat = true; i += 1 } else { break }
        }
        let s = String(decoding: bytes[start..<i], as: UTF8.self)
        if !isFloat, let v = Int(s) { return .int(v) }
        guard let d = Double(s), !s.isEmpty else { throw fail("bad number") }
        return .double(d)
    }

    mutating func hex4() throws -> UInt32 {
        guard i + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[i..<i + 4], as: UTF8.self), radix: 16) else { throw fail("bad \\u escape") }
        i += 4; return v
    }

    mutating func string() throws -> String {
        i += 1
        var out: [UInt8] = []
        while true {
            guard i < bytes.count else { throw fail("unterminated string") }
            let c = bytes[i]; i += 1
            if c == UInt8(ascii: "\"") { break }
            if c != UInt8(ascii: "\\") { out.append(c); continue }
            guard i < bytes.count else { throw fail("bad escape") }
            let e = bytes[i]; i += 1
            switch e {
            case UInt8(ascii: "n"): out.append(0x0a)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0d)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0c)
            case UInt8(ascii: "u"):
                var cp = try hex4()
                if cp >= 0xD800 && cp < 0xDC00, i + 6 <= bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") {
                    i += 2
                    let lo = try hex4()
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                }
                let scalar = Unicode.Scalar(cp) ?? "\u{FFFD}"
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            default: out.append(e)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
