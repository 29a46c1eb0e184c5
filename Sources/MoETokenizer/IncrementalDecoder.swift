/// Streams text out of ids fed one at a time: each `add` returns only text whose characters are complete,
/// holding back an incomplete UTF-8 tail (a multi-byte character split over byte-level or `<0xNN>`
/// tokens); `flush` returns what is left. The pieces concatenate to `tokenizer.decode(allIds)`.
///
///     var stream = IncrementalDecoder(tokenizer: tok, skipSpecialTokens: true)
///     for id in generated { print(stream.add(id), terminator: "") }
///     print(stream.flush())
///
/// It decodes a short window — the ids since the last emitted text plus the one before them, as context for
/// decoders that treat the first token specially (SentencePiece's leading-space strip) — and emits the
/// difference; text ending in U+FFFD is held back until more ids arrive or `flush`.
public struct IncrementalDecoder: Sendable {
    public let tokenizer: Tokenizer
    public let skipSpecialTokens: Bool
    private var ids: [Int] = []
    /// Start of the context window, and the end of what has been emitted.
    private var prefixOffset = 0
    private var readOffset = 0

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// All ids added so far.
    public var allIds: [Int] { ids }

    /// Adds one id; returns the newly completed text ("" when it is held back).
    public mutating func add(_ id: Int) -> String {
        ids.append(id)
        return emit(final: false)
    }

    /// Adds several ids; returns the newly completed text.
    public mutating func add(_ newIds: [Int]) -> String {
        ids.append(contentsOf: newIds)
        return emit(final: false)
    }

    /// Returns the held-back text (with U+FFFD for an incomplete character) and resets the window.
    public mutating func flush() -> String {
        emit(final: true)
    }

    private mutating func emit(final: Bool) -> String {
        guard readOffset < ids.count else { return "" }
        let prefix = tokenizer.decode(Array(ids[prefixOffset..<readOffset]), skipSpecialTokens: skipSpecialTokens)
        let full = tokenizer.decode(Array(ids[prefixOffset...]), skipSpecialTokens: skipSpecialTokens)
        if !final && full.unicodeScalars.last == "\u{FFFD}" { return "" }
        let p = prefix.unicodeScalars, f = full.unicodeScalars
        var text = ""
        if f.count > p.count || final {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: f.dropFirst(min(p.count, f.count)))
            text = String(view)
        }
        if text.isEmpty && !final { return "" }
        prefixOffset = readOffset
        readOffset = ids.count
        return text
    }
}
