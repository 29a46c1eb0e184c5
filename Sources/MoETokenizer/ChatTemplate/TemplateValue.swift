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
        do { self.init(try JSONValue.parse(data, path: "JSON")) } catch {
            throw ChatTemplateError.badValue("invalid JSON: \(error)")
        }
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

extension TemplateValue {
    /// The template value of parsed JSON (the tokenizer's own order-keeping parser); a repeated key keeps its
    /// first place and its last value, as a Python dict does.
    init(_ json: JSONValue) {
        switch json {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .array(a.map(TemplateValue.init))
        case .object(let members):
            var entries: [TemplateEntry] = []
            for (k, v) in members {
                if let j = entries.firstIndex(where: { $0.key == k }) { entries[j].value = TemplateValue(v) }
                else { entries.append(TemplateEntry(k, TemplateValue(v))) }
            }
            self = .object(entries)
        }
    }
}

extension TemplateValue {
    /// Compact JSON text (`{"a":[1,"x"]}`), keys in their order; whole doubles written as integers.
    public var compactJSON: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : d.isFinite ? "\(d)" : "null"
        case .string(let s):
            var out = ""
            JPy.jsonString(s, into: &out)
            return out
        case .array(let items): return "[" + items.map(\.compactJSON).joined(separator: ",") + "]"
        case .object(let entries): return "{" + entries.map { TemplateValue.string($0.key).compactJSON + ":" + $0.value.compactJSON }.joined(separator: ",") + "}"
        }
    }
}
