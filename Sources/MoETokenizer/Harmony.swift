/// Reads gpt-oss's harmony output back into what an OpenAI client expects: the `analysis` channel as reasoning, the
/// `final` channel as content, and commentary messages addressed to a tool (`to=functions.NAME`) as tool calls.
///
/// A harmony assistant turn, as the model writes it after the prompt's `<|start|>assistant`:
///
///     <|channel|>analysis<|message|>Let me think…<|end|>
///     <|start|>assistant<|channel|>final<|message|>The answer.<|return|>
///
///     <|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"location":"Paris"}<|call|>
///
/// (the recipient may also come before the channel: ` to=functions.get_weather<|channel|>commentary json`). The
/// parser reads text as it is decoded, special tokens spelled out, in pieces of any size: a marker split between
/// pieces waits for the rest. Output that is not harmony — no header, a header that never ends — comes back as
/// content, never lost and never an error.
///
/// ```swift
/// var parser = HarmonyParser()
/// let events = parser.add("<|channel|>final<|message|>Hi") + parser.finish()   // [.content("Hi")]
/// ```
public struct HarmonyParser: Sendable {
    public enum Event: Equatable, Sendable {
        /// Text of the analysis channel (chain of thought).
        case reasoning(String)
        /// Text for the user: the final channel, commentary to nobody, or output that is not harmony.
        case content(String)
        /// A message to tool `name` begins (its recipient `functions.NAME`, or the whole recipient for a built-in tool).
        case toolCall(name: String)
        /// Text of the current tool call's arguments.
        case toolArguments(String)
    }

    /// Whether a tokenizer's chat template writes harmony (its special tokens are in the vocabulary).
    public static func isHarmony(_ tokenizer: Tokenizer) -> Bool {
        guard let template = tokenizer.chatTemplate, template.contains("<|channel|>") else { return false }
        return ["<|start|>", "<|message|>", "<|channel|>", "<|end|>"].allSatisfy { tokenizer.id(forToken: $0) != nil }
    }

    static let markers = ["<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|return|>", "<|call|>"]
    /// A header longer than this is not a header: the output is not harmony.
    static let longestHeader = 256

    private enum Kind { case reasoning, content, tool }
    private enum State { case header, body(Kind), between, plain }
    private var state = State.header
    private var header = ""
    /// Text held back because it may be the start of a marker.
    private var pending = ""

    /// A parser at the start of an assistant message's header (right after the prompt's `<|start|>assistant`).
    public init() {}

    /// The events of the next piece of decoded text (special tokens spelled out).
    public mutating func add(_ text: String) -> [Event] {
        pending += text
        var events: [Event] = []
        while let (range, marker) = Self.firstMarker(in: pending) {
            consume(String(pending[..<range.lowerBound]), into: &events)
            pending = String(pending[range.upperBound...])
            handle(marker, into: &events)
        }
        let keep = Self.markerPrefixLength(atEndOf: pending)
        consume(String(pending.dropLast(keep)), into: &events)
        pending = String(pending.suffix(keep))
        return Self.merged(events)
    }

    /// The events of what is left when the output ends.
    public mutating func finish() -> [Event] {
        var events: [Event] = []
        consume(pending, into: &events)
        pending = ""
        if case .header = state, !header.isEmpty {
            events.append(.content(header))   // a header that never reached <|message|>: not harmony
            header = ""
        }
        return Self.merged(events)
    }

    /// Parses a whole output.
    public static func parse(_ text: String) -> [Event] {
        var p = HarmonyParser()
        return merged(p.add(text) + p.finish())
    }

    private mutating func consume(_ text: String, into events: inout [Event]) {
        guard !text.isEmpty else { return }
        switch state {
        case .header:
            header += text
            if header.count > Self.longestHeader {
                state = .plain
                events.append(.content(header))
                header = ""
            }
        case .body(.reasoning): events.append(.reasoning(text))
        case .body(.content), .between, .plain: events.append(.content(text))
        case .body(.tool): events.append(.toolArguments(text))
        }
    }

    private mutating func handle(_ marker: String, into events: inout [Event]) {
        switch (state, marker) {
        case (.plain, _):
            events.append(.content(marker))
        case (.header, "<|channel|>"), (.header, "<|constrain|>"):
            header += " \(marker) "
        case (.header, "<|message|>"):
            let (kind, recipient) = Self.read(header)
            header = ""
            state = .body(kind)
            if let recipient {
                events.append(.toolCall(name: recipient.hasPrefix("functions.") ? String(recipient.dropFirst("functions.".count)) : recipient))
            }
        case (.header, "<|start|>"):
            header = ""
        case (.header, _):
            // <|end|>, <|return|> or <|call|> in a header: not harmony; what came so far is content.
            events.append(.content(header + marker))
            header = ""
            state = .plain
        case (.body, "<|end|>"), (.body, "<|return|>"), (.body, "<|call|>"):
            state = .between
        case (.body, _):
            consume(marker, into: &events)   // a marker inside a message's text is text
        case (.between, "<|start|>"):
            state = .header
        case (.between, "<|channel|>"):
            // A next message without its <|start|>assistant: read it all the same.
            state = .header
            header = " \(marker) "
        case (.between, _):
            break
        }
    }

    /// A header's kind of message: a call when it names a recipient (`to=…`), else by its channel.
    private static func read(_ header: String) -> (Kind, String?) {
        let words = header.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init)
        var channel: String?, recipient: String?
        for (i, w) in words.enumerated() {
            if w == "<|channel|>", i + 1 < words.count { channel = words[i + 1] }
            if w.hasPrefix("to="), w.count > 3 { recipient = String(w.dropFirst(3)) }
        }
        if let recipient { return (.tool, recipient) }
        return (channel == "analysis" ? .reasoning : .content, nil)
    }

    private static func firstMarker(in text: String) -> (Range<String.Index>, String)? {
        var best: (Range<String.Index>, String)?
        for m in markers {
            if let r = text.range(of: m), best == nil || r.lowerBound < best!.0.lowerBound { best = (r, m) }
        }
        return best
    }

    /// Characters at the end of `text` that begin a marker (to wait for the rest).
    private static func markerPrefixLength(atEndOf text: String) -> Int {
        guard let lt = text.lastIndex(of: "<") else { return 0 }
        let tail = text[lt...]
        return markers.contains { $0.hasPrefix(tail) } ? tail.count : 0
    }

    /// Neighbouring events of one kind joined.
    static func merged(_ events: [Event]) -> [Event] {
        var out: [Event] = []
        for e in events {
            switch (out.last, e) {
            case let (.reasoning(a)?, .reasoning(b)): out[out.count - 1] = .reasoning(a + b)
            case let (.content(a)?, .content(b)): out[out.count - 1] = .content(a + b)
            case let (.toolArguments(a)?, .toolArguments(b)): out[out.count - 1] = .toolArguments(a + b)
            default: out.append(e)
            }
        }
        return out.filter { e in
            switch e {
            case .reasoning(let s), .content(let s), .toolArguments(let s): return !s.isEmpty
            case .toolCall: return true
            }
        }
    }
}
