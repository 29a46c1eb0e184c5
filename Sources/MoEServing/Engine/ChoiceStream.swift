import MoEModel
import MoETokenizer

/// One choice of a response as text: reads an engine stream, decodes tokens to complete characters, cuts at
/// stop strings, and counts what the choice used. For a harmony model's chat (gpt-oss), or a chat with tools, the
/// text goes through a `ChatOutputParser`: reasoning, content and tool calls apart (stop strings apply to the content).
///
/// ```swift
/// let choice = ChoiceStream(index: 0, stream: try engine.submit(request), tokenizer: tokenizer, stopStrings: ["\n"])
/// while let piece = await choice.next() { print(piece.text, terminator: "") }
/// ```
final class ChoiceStream {
    /// A part of the choice: new text, the log-probabilities of the tokens that arrived with it, and the finish
    /// reason on the last piece ("stop" or "length").
    struct Piece: Sendable {
        var text: String
        var logprobs: [TokenLogprob]
        var finishReason: String?
        /// Harmony's analysis channel.
        var reasoning = ""
        var toolCalls: [ToolCallDelta] = []
        /// An echoed prompt's first token: it leads `logprobs` with no log-probability (nothing comes before it).
        var unscoredToken: Int?
    }

    /// Part of a tool call: its `id` and `name` come with its first part, `arguments` grow.
    struct ToolCallDelta: Sendable {
        var index: Int
        var id: String?
        var name: String?
        var arguments: String
    }

    let index: Int
    private let stream: InferenceEngine.Stream
    private var events: AsyncStream<GenerationEvent>.Iterator
    private var decoder: IncrementalDecoder
    private var stops: StopStrings
    /// Generated tokens, an end-of-sequence token included (what the ledger counts and bills).
    private(set) var completionTokens = 0
    private(set) var promptTokens = 0
    private(set) var cachedTokens = 0
    /// "stop" or "length" once finished; nil while running or when cut short.
    private(set) var finishReason: String?
    private(set) var done = false
    /// When the first generated token arrived.
    private(set) var firstTokenAt: ContinuousClock.Instant?
    private var parser: (any ChatOutputParser)?
    private var toolCalls = 0
    /// `echo`: the prompt's text and first token, sent as the first piece; its scores when the engine sends them.
    private let echo: (text: String, firstToken: Int)?
    private var promptScores: [TokenLogprob]?

    /// `parser`: read the text through it (special tokens then stay in the decoded text: the parser's markers).
    init(index: Int, stream: InferenceEngine.Stream, tokenizer: Tokenizer, stopStrings: [String], parser: (any ChatOutputParser)? = nil,
         echo: (text: String, firstToken: Int)? = nil) {
        self.echo = echo
        self.index = index
        self.stream = stream
        events = stream.events.makeAsyncIterator()
        decoder = IncrementalDecoder(tokenizer: tokenizer, skipSpecialTokens: parser == nil)
        stops = StopStrings(stopStrings)
        self.parser = parser
    }

    /// Decoded text as a piece: all of it content, or the parser's reasoning, content and calls.
    private func split(_ decoded: String, last: Bool = false) -> Piece {
        guard var parser else { return Piece(text: decoded, logprobs: []) }
        var piece = Piece(text: "", logprobs: [])
        for event in parser.add(decoded) + (last ? parser.finish() : []) {
            switch event {
            case .reasoning(let t): piece.reasoning += t
            case .content(let t): piece.text += t
            case .toolCall(let name):
                piece.toolCalls.append(ToolCallDelta(index: toolCalls, id: Self.newCallID(), name: name, arguments: ""))
                toolCalls += 1
            case .toolArguments(let t):
                if let last = piece.toolCalls.indices.last { piece.toolCalls[last].arguments += t }
                else { piece.toolCalls.append(ToolCallDelta(index: toolCalls - 1, arguments: t)) }
            }
        }
        self.parser = parser
        return piece
    }

    /// "call_" and 24 random hex digits, as OpenAI's tool call ids.
    static func newCallID() -> String {
        var g = SystemRandomNumberGenerator()
        return "call_" + String((0..<2).map { _ in String(g.next() as UInt64, radix: 16) }.joined().prefix(24))
    }

    /// The next piece with text, log-probabilities or a finish reason; nil when the choice has ended (also when
    /// the engine stopped or the task was cancelled).
    func next() async -> Piece? {
        guard !done else { return nil }
        var logprobs: [TokenLogprob] = []
        while let event = await events.next() {
            switch event {
            case let .promptLogprobs(scores):
                promptScores = scores
            case let .prefilled(prompt, cached):
                promptTokens = prompt
                cachedTokens = cached
                if let echo {
                    // The prompt as it was sent, never cut by stop strings.
                    var piece = Piece(text: echo.text, logprobs: promptScores ?? [])
                    if promptScores != nil { piece.unscoredToken = echo.firstToken }
                    return piece
                }
            case let .token(id, logprob):
                completionTokens += 1
                if firstTokenAt == nil { firstTokenAt = .now }
                if let logprob { logprobs.append(logprob) }
                var piece = split(decoder.add(id))
                piece.logprobs = logprobs
                let (text, stopped) = stops.add(piece.text)
                piece.text = text
                if stopped {
                    // The stop string ends the choice here; the engine stops generating it.
                    stream.cancel()
                    return finish("stop", piece)
                }
                if !piece.text.isEmpty || !piece.reasoning.isEmpty || !piece.toolCalls.isEmpty || !logprobs.isEmpty { return piece }
            case let .finished(reason, stopToken):
                if stopToken != nil {
                    completionTokens += 1
                    if firstTokenAt == nil { firstTokenAt = .now }
                }
                var piece = split(decoder.flush(), last: true)
                piece.logprobs = logprobs
                let (text, stopped) = stops.add(piece.text)
                piece.text = text + stops.flush()
                // A turn that ends on a call (harmony's <|call|> is a stop token, other families end the turn) finishes
                // with "tool_calls", as OpenAI's.
                return finish(stopped ? "stop" : toolCalls > 0 && reason == .stop ? "tool_calls" : reason.rawValue, piece)
            }
        }
        done = true
        return nil
    }

    /// Stops the choice's generation (the client went away).
    func cancel() { stream.cancel() }

    private func finish(_ reason: String, _ piece: Piece) -> Piece {
        finishReason = reason
        done = true
        var piece = piece
        piece.finishReason = reason
        return piece
    }
}
