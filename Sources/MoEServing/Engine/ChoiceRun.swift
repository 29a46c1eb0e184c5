import Foundation
import MoETokenizer

/// The `n` choices of one request, run concurrently and merged into one sequence of pieces (streaming) or
/// collected whole. What each choice produced so far stays readable in `results`, also after a cancellation.
final class ChoiceRun: @unchecked Sendable {
    struct Result: Sendable {
        var index: Int
        var text = ""
        /// Harmony's reasoning, and its tool calls (id, name, arguments).
        var reasoning = ""
        var toolCalls: [(id: String, name: String, arguments: String)] = []
        var logprobs: [TokenLogprob] = []
        /// An echoed prompt's first token (no log-probability), before `logprobs`.
        var unscoredToken: Int?
        /// nil while running, or when the choice was cut short.
        var finishReason: String?
        var completionTokens = 0
        var cachedTokens = 0
        var firstTokenAt: ContinuousClock.Instant?
    }

    let streams: [InferenceEngine.Stream]
    let tokenizer: Tokenizer
    let stopStrings: [String]
    /// Reads each choice's text (harmony, or a family's tool calls); a fresh copy per choice.
    let parser: (any ChatOutputParser)?
    /// Completions with `echo`: each choice starts with the prompt.
    let echo: (text: String, firstToken: Int)?
    private let lock = NSLock()
    private var current: [Result]

    init(streams: [InferenceEngine.Stream], tokenizer: Tokenizer, stopStrings: [String], parser: (any ChatOutputParser)? = nil,
         echo: (text: String, firstToken: Int)? = nil) {
        self.echo = echo
        self.streams = streams
        self.tokenizer = tokenizer
        self.stopStrings = stopStrings
        self.parser = parser
        current = streams.indices.map { Result(index: $0) }
    }

    var results: [Result] { lock.withLock { current } }

    /// Calls `body` with every piece as it comes (choices interleaved). If `body` throws (the client went
    /// away), every choice is cancelled and the error rethrown.
    func forEachPiece(_ body: (Int, ChoiceStream.Piece) async throws -> Void) async throws {
        enum Event: Sendable { case piece(Int, ChoiceStream.Piece), done }
        let (events, continuation) = AsyncStream.makeStream(of: Event.self)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, stream) in streams.enumerated() {
                group.addTask { [self] in
                    let choice = ChoiceStream(index: i, stream: stream, tokenizer: tokenizer, stopStrings: stopStrings, parser: parser, echo: echo)
                    while let piece = await choice.next() {
                        update(i, choice) { r in
                            r.text += piece.text
                            r.reasoning += piece.reasoning
                            for call in piece.toolCalls {
                                if call.index < r.toolCalls.count { r.toolCalls[call.index].arguments += call.arguments }
                                else { r.toolCalls.append((call.id ?? "", call.name ?? "", call.arguments)) }
                            }
                            r.logprobs += piece.logprobs
                            if let t = piece.unscoredToken { r.unscoredToken = t }
                        }
                        continuation.yield(.piece(i, piece))
                    }
                    update(i, choice) { _ in }
                    continuation.yield(.done)
                }
            }
            var running = streams.count
            do {
                for await event in events {
                    switch event {
                    case let .piece(i, piece): try await body(i, piece)
                    case .done: running -= 1
                    }
                    if running == 0 { break }
                }
            } catch {
                for s in streams { s.cancel() }
                group.cancelAll()
                throw error
            }
            continuation.finish()
        }
    }

    /// Runs every choice to its end.
    func collect() async -> [Result] {
        try? await forEachPiece { _, _ in }
        return results
    }

    private func update(_ i: Int, _ choice: ChoiceStream, _ change: (inout Result) -> Void) {
        lock.withLock {
            change(&current[i])
            current[i].finishReason = choice.finishReason
            current[i].completionTokens = choice.completionTokens
            current[i].cachedTokens = choice.cachedTokens
            current[i].firstTokenAt = choice.firstTokenAt
        }
    }
}
