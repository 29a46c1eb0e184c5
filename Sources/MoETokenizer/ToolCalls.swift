import Foundation

/// Reads the tool calls a model writes back out of its text, in the syntax its chat template teaches it
/// (harmony has its own parser, `HarmonyParser`). Text arrives in pieces of any size; what is not a call streams
/// out as content (a tail that may begin a call's marker is held back until it is clear).
///
/// | format | a call | templates |
/// |---|---|---|
/// | `hermes` | `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>` | Qwen2.5/3/3.5, QwQ, Hermes |
/// | `mistral` | `[TOOL_CALLS][{"name": …, "arguments": {…}}, …]` or `[TOOL_CALLS]name[CALL_ID]id[ARGS]{…}` | Mistral Nemo, Small 3.x |
/// | `deepseek` | `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>name<｜tool▁sep｜>{…}<｜tool▁call▁end｜>…<｜tool▁calls▁end｜>` (V3.1; V3's `function<｜tool▁sep｜>name` + fenced JSON too) | DeepSeek V3, V3.1, R1 |
/// | `llama3` | the whole answer `{"name": …, "parameters": {…}}` (after `<|python_tag|>` or not) | Llama 3.1–3.3 |
///
///     var parser = ToolCallParser(format: .hermes)
///     parser.add("Sure.<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>") + parser.finish()
///     // [.content("Sure."), .toolCall(name: "f"), .toolArguments("{\"x\":1}")]
public struct ToolCallParser: Sendable {
    public enum Format: String, Sendable, CaseIterable {
        case hermes, mistral, deepseek, llama3

        /// The format a chat template writes calls in; nil when it knows no tools (or writes harmony).
        public static func detect(template: String) -> Format? {
            if template.contains("<|channel|>") { return nil }
            if template.contains("<tool_call>") { return .hermes }
            if template.contains("[TOOL_CALLS]") { return .mistral }
            if template.contains("tool▁calls▁begin") { return .deepseek }
            if template.contains("<|start_header_id|>") && template.contains("\"parameters\"") { return .llama3 }
            return nil
        }

        /// What starts calls, and what ends a block of them (nil: the end of the answer).
        var markers: (start: String, end: String?) {
            switch self {
            case .hermes: return ("<tool_call>", "</tool_call>")
            case .mistral: return ("[TOOL_CALLS]", nil)
            case .deepseek: return ("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>")
            case .llama3: return ("<|python_tag|>", nil)
            }
        }
    }

    public typealias Event = HarmonyParser.Event

    /// Marker tokens of every format (special tokens in some vocabularies, which a call's grammar must spell).
    public static let markerTokens: Set<String> = ["<tool_call>", "</tool_call>", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]",
                                                   "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>",
                                                   "<｜tool▁call▁end｜>", "<｜tool▁sep｜>", "<|python_tag|>"]

    public let format: Format
    private var pending = ""
    private var inCall = false
    private var started = false
    /// Llama 3: an answer that opens with `{` may be a call; it is held whole until the end.
    private var holdingAnswer = false
    /// Right after a Hermes call: the line breaks between calls are not content.
    private var afterCall = false

    public init(format: Format) { self.format = format }

    public mutating func add(_ text: String) -> [Event] {
        pending += text
        return drain(final: false)
    }

    /// The rest: an unfinished call is read if it parses, else given back as content.
    public mutating func finish() -> [Event] {
        drain(final: true)
    }

    private mutating func drain(final: Bool) -> [Event] {
        var events: [Event] = []
        let (start, end) = format.markers
        if format == .llama3 && !started {
            let trimmed = pending.drop { $0.isWhitespace }
            if trimmed.isEmpty && !final { return [] }
            started = true
            holdingAnswer = trimmed.hasPrefix("{") || trimmed.hasPrefix(start) || start.hasPrefix(trimmed)
        }
        if holdingAnswer {
            guard final else { return [] }
            var body = pending.trimmingCharacters(in: .whitespacesAndNewlines)
            if body.hasPrefix(start) { body.removeFirst(start.count) }
            let calls = Self.parseCalls(body, format: format)
            pending = ""
            return calls.isEmpty ? [.content(body)] : calls
        }
        while !pending.isEmpty {
            if !inCall {
                if afterCall {
                    pending = String(pending.drop { $0 == "\n" || $0 == " " })
                    if pending.isEmpty { break }
                    afterCall = false
                }
                if let r = pending.range(of: start) {
                    let before = String(pending[..<r.lowerBound])
                    if !before.isEmpty { events.append(.content(before)) }
                    pending = String(pending[r.upperBound...])
                    inCall = true
                    continue
                }
                // Hold back a tail that may be the start of the marker.
                let keep = final ? 0 : Self.partialSuffix(pending, of: start)
                let out = String(pending.dropLast(keep))
                if !out.isEmpty { events.append(.content(out)) }
                pending = String(pending.suffix(keep))
                break
            }
            guard let end, let r = pending.range(of: end) else {
                guard final else { break }
                let calls = Self.parseCalls(pending, format: format)
                events += calls.isEmpty ? [.content(start + pending)] : calls
                pending = ""
                break
            }
            let body = String(pending[..<r.lowerBound])
            let calls = Self.parseCalls(body, format: format)
            events += calls.isEmpty ? [.content(start + body + end)] : calls
            pending = String(pending[r.upperBound...])
            inCall = false
            // Whitespace between calls is not content.
            afterCall = format == .hermes
        }
        return events
    }

    /// The longest suffix of `text` that is a proper prefix of `marker`.
    static func partialSuffix(_ text: String, of marker: String) -> Int {
        let t = Array(text.unicodeScalars), m = Array(marker.unicodeScalars)
        for n in stride(from: min(t.count, m.count - 1), through: 1, by: -1) where Array(t.suffix(n)) == Array(m.prefix(n)) {
            return String(String.UnicodeScalarView(t.suffix(n))).count
        }
        return 0
    }

    /// Qwen3-Coder's and Qwen3.5's calls: `<function=name>` then `<parameter=key>\nvalue\n</parameter>` per
    /// argument; a value that reads as JSON is kept as such, else it is a string.
    static func qwenXML(_ body: String) -> [Event] {
        guard body.hasPrefix("<function="), let close = body.firstIndex(of: ">") else { return [] }
        let name = String(body[body.index(body.startIndex, offsetBy: 10)..<close])
        guard !name.isEmpty, body.contains("</function>") else { return [] }
        var arguments: [TemplateValue.TemplateEntry] = []
        for piece in body.components(separatedBy: "<parameter=").dropFirst() {
            guard let gt = piece.firstIndex(of: ">"), let end = piece.range(of: "</parameter>") else { return [] }
            let key = String(piece[..<gt])
            var value = String(piece[piece.index(after: gt)..<end.lowerBound])
            if value.hasPrefix("\n") { value.removeFirst() }
            if value.hasSuffix("\n") { value.removeLast() }
            let parsed = (try? TemplateValue(decoding: Data(value.utf8))) ?? .string(value)
            arguments.append(.init(key, parsed))
        }
        return [.toolCall(name: name), .toolArguments(TemplateValue.object(arguments).compactJSON)]
    }

    /// The calls in a block's text (empty when it does not parse).
    static func parseCalls(_ body: String, format: Format) -> [Event] {
        func call(_ object: TemplateValue?) -> [Event]? {
            guard let object, case .string(let name)? = object["name"], !name.isEmpty else { return nil }
            let arguments = object["arguments"] ?? object["parameters"] ?? .object([])
            // Arguments sent as a JSON string already stay as they are.
            if case .string(let text) = arguments { return [.toolCall(name: name), .toolArguments(text)] }
            return [.toolCall(name: name), .toolArguments(arguments.compactJSON)]
        }
        func parse(_ text: String) -> TemplateValue? { try? TemplateValue(decoding: Data(text.utf8)) }
        let trimmed = body.trimmingCharacters(in: .whitespacesAndNewlines)
        switch format {
        case .hermes, .llama3:
            if format == .hermes && trimmed.hasPrefix("<function=") { return qwenXML(trimmed) }
            // One object (Llama 3 may put several, separated by ';').
            if let one = call(parse(trimmed)) { return one }
            let parts = trimmed.split(separator: ";").map { call(parse(String($0))) }
            return parts.allSatisfy { $0 != nil } && parts.count > 1 ? parts.flatMap { $0! } : []
        case .mistral:
            if trimmed.hasPrefix("[") {
                guard case .array(let items)? = parse(trimmed) else { return [] }
                let calls = items.map { call($0) }
                return calls.allSatisfy { $0 != nil } ? calls.flatMap { $0! } : []
            }
            // name[ARGS]{…}, repeated after further [TOOL_CALLS] markers.
            var events: [Event] = []
            for part in trimmed.components(separatedBy: "[TOOL_CALLS]") where !part.isEmpty {
                guard let r = part.range(of: "[ARGS]") else { return [] }
                // Small 3.2 puts the call's id between: name[CALL_ID]id[ARGS]{…}.
                let head = part[..<r.lowerBound]
                let name = (head.range(of: "[CALL_ID]").map { head[..<$0.lowerBound] } ?? head).trimmingCharacters(in: .whitespaces)
                let args = part[r.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines)
                guard !name.isEmpty, parse(args) != nil else { return [] }
                events += [.toolCall(name: name), .toolArguments(args)]
            }
            return events
        case .deepseek:
            var events: [Event] = []
            for piece in trimmed.components(separatedBy: "<｜tool▁call▁begin｜>").dropFirst() {
                let inner = piece.components(separatedBy: "<｜tool▁call▁end｜>")[0]
                let halves = inner.components(separatedBy: "<｜tool▁sep｜>")
                guard halves.count == 2 else { return [] }
                var name = halves[0], args = halves[1]
                if name == "function", let newline = args.firstIndex(of: "\n") {
                    // V3: function<｜tool▁sep｜>name\n```json\n{…}\n```
                    name = String(args[..<newline])
                    args = String(args[newline...]).trimmingCharacters(in: .whitespacesAndNewlines)
                    if args.hasPrefix("```json") { args.removeFirst(7) }
                    if args.hasSuffix("```") { args.removeLast(3) }
                }
                args = args.trimmingCharacters(in: .whitespacesAndNewlines)
                guard !name.isEmpty, let value = parse(args) else { return [] }
                events += [.toolCall(name: name), .toolArguments(value.compactJSON)]
            }
            return events
        }
    }
}

/// A reader of a model's answer text into reasoning, content and tool calls (harmony, or a family's tool-call
/// syntax), fed in pieces.
public protocol ChatOutputParser: Sendable {
    mutating func add(_ text: String) -> [HarmonyParser.Event]
    mutating func finish() -> [HarmonyParser.Event]
}

extension HarmonyParser: ChatOutputParser {}
extension ToolCallParser: ChatOutputParser {}
