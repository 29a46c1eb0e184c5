import MoEModel
import MoETokenizer

/// One choice of a response as text: reads an engine stream, decodes tokens to complete characters, cuts at
/// stop strings, and counts what the choice used.
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

    init(index: Int, stream: InferenceEngine.Stream, tokenizer: Tokenizer, stopStrings: [String]) {
        self.index = index
        self.stream = stream
        events = stream.events.makeAsyncIterator()
        decoder = IncrementalDecoder(tokenizer: tokenizer, skipSpecialTokens: true)
        stops = StopStrings(stopStrings)
    }

    /// The next piece with text, log-probabilities or a finish reason; nil when the choice has ended (also when
    /// the engine stopped or the task was cancelled).
    func next() async -> Piece? {
        guard !done else { return nil }
        var logprobs: [TokenLogprob] = []
        while let event = await events.next() {
            switch event {
            case let .prefilled(prompt, cached):
                promptTokens = prompt
                cachedTokens = cached
            case let .token(id, logprob):
                completionTokens += 1
                if firstTokenAt == nil { firstTokenAt = .now }
                if let logprob { logprobs.append(logprob) }
                let (text, stopped) = stops.add(decoder.add(id))
                if stopped {
                    // The stop string ends the choice here; the engine stops generating it.
                    stream.cancel()
                    return finish("stop", text: text, logprobs)
                }
                if !text.isEmpty || !logprobs.isEmpty { return Piece(text: text, logprobs: logprobs) }
            case let .finished(reason, stopToken):
                if stopToken != nil {
                    completionTokens += 1
                    if firstTokenAt == nil { firstTokenAt = .now }
                }
                let (text, stopped) = stops.add(decoder.flush())
                return finish(stopped ? "stop" : reason.rawValue, text: text + stops.flush(), logprobs)
            }
        }
        done = true
        return nil
    }

    /// Stops the choice's generation (the client went away).
    func cancel() { stream.cancel() }

    private func finish(_ reason: String, text: String, _ logprobs: [TokenLogprob]) -> Piece {
        finishReason = reason
        done = true
        return Piece(text: text, logprobs: logprobs, finishReason: reason)
    }
}
