import Foundation

/// SentencePiece's BPE as llama.cpp runs it for `tokenizer.ggml.model == "llama"` vocabularies (`llm_tokenizer_spm`):
/// there are no merge rules, only a score per token. A piece starts as one symbol per UTF-8 character; the adjacent
/// pair whose concatenation is a token with the highest score is merged (the leftmost pair on equal scores), again
/// and again until no adjacent pair forms a token. A character that is not a token on its own goes out as byte
/// tokens (`<0xXX>`): SentencePiece's byte fallback.
///
/// The piece must already have its spaces escaped as "▁" (U+2581) and the space prefix added: the `Tokenizer`'s
/// normalizer does that, as HF's tokenizer.json for these models does (Prepend "▁", Replace " " → "▁").
///
///     let spm = try SentencePieceModel(tokens: ["<unk>", "▁", "a", "b", "▁a", "ab"],
///                                      scores: [0, -1, -2, -3, -4, -5], path: "t.gguf")
///     spm.tokenize("▁ab")   // [4, 3]: "▁a" (score -4) wins over "ab" (-5)
final class SentencePieceModel: TokenModel, @unchecked Sendable {
    /// Token text (UTF-8, byte-exact) → id; every token takes part in merges, as llama.cpp looks tokens up by text
    /// alone (control and byte tokens included).
    let vocab: ByteSliceTable
    /// id → token text.
    let tokens: [String]
    /// id → merge priority: the higher, the earlier a pair forming this token merges.
    let scores: [Float]
    /// byte → id of its fallback token (`<0xXX>`, else the one-byte token as llama.cpp falls back to), or -1.
    let byteIds: [Int32]
    /// What a byte without a fallback token becomes (llama.cpp would throw there; HF uses the unknown token).
    let unknownId: Int32?
    let cache = PieceCache()

    var idLimit: Int { tokens.count }

    /// `tokens` and `scores` run by id; `unknownId` is the id of `<unk>`. Two tokens with the same text are an
    /// error (llama.cpp refuses such a vocabulary too), and so is a scores array of another length.
    init(tokens: [String], scores: [Float], unknownId: Int? = nil, path: String) throws {
        guard scores.count == tokens.count else {
            throw TokenizerError.badFile(path: path, reason: "tokenizer.ggml.scores has \(scores.count) entries for \(tokens.count) tokens")
        }
        if let unknownId, !tokens.indices.contains(unknownId) {
            throw TokenizerError.badFile(path: path, reason: "unknown token id \(unknownId) is outside the vocabulary of \(tokens.count) tokens")
        }
        var vocab = ByteSliceTable(capacity: tokens.count)
        // An empty token can never match text; llama.cpp renames it "[EMPTY_<id>]", here it is left out of look-ups.
        for (id, token) in tokens.enumerated() where !token.isEmpty {
            let bytes = Array(token.utf8)
            if let first = vocab.get(bytes) {
                throw TokenizerError.badFile(path: path, reason: "token \(token.debugDescription) appears twice in the vocabulary (ids \(first) and \(id))")
            }
            vocab.insert(bytes, Int32(id))
        }
        var byteIds = [Int32](repeating: -1, count: 256)
        for byte in 0..<256 {
            if let id = vocab.get(Array(String(format: "<0x%02X>", byte).utf8)) ?? vocab.get([UInt8(byte)]) {
                byteIds[byte] = Int32(id)
            }
        }
        self.vocab = vocab
        self.tokens = tokens
        self.scores = scores
        self.byteIds = byteIds
        self.unknownId = unknownId.map(Int32.init)
    }

    func token(forId id: Int) -> String? { tokens.indices.contains(id) ? tokens[id] : nil }
    func id(forToken token: String) -> Int? { vocab.get(Array(token.utf8)) }

    func tokenize(_ piece: String) -> [Int] {
        if piece.isEmpty { return [] }
        let key = Array(piece.utf8)
        if let hit = cache.get(key) { return hit }
        let ids = key.withUnsafeBufferPointer { merge($0) }
        cache.put(key, ids)
        return ids
    }

    /// One symbol of the piece being merged: a byte range and its neighbours in the list of live symbols (-1: none).
    /// A symbol merged into its left neighbour keeps `length` 0.
    private struct Symbol {
        var start: Int32
        var length: Int32
        var previous: Int32
        var next: Int32
    }

    /// The score-ordered merge: llama.cpp's `llm_tokenizer_spm_session::tokenize`.
    private func merge(_ bytes: UnsafeBufferPointer<UInt8>) -> [Int] {
        guard let base = bytes.baseAddress else { return [] }
        var symbols: [Symbol] = []
        symbols.reserveCapacity(bytes.count)
        var offset = 0
        while offset < bytes.count {
            let length = min(utf8SequenceLength(leadByte: bytes[offset]), bytes.count - offset)
            let index = Int32(symbols.count)
            symbols.append(Symbol(start: Int32(offset), length: Int32(length), previous: index - 1,
                                  next: offset + length == bytes.count ? -1 : index + 1))
            offset += length
        }

        var queue = SentencePieceBigramQueue()
        /// Queues the pair (left, right) when their text together is a token.
        func consider(_ left: Int32, _ right: Int32) {
            guard left >= 0, right >= 0 else { return }
            let size = Int(symbols[Int(left)].length + symbols[Int(right)].length)
            let id = vocab.get(base + Int(symbols[Int(left)].start), size)
            guard id >= 0 else { return }
            queue.push(SentencePieceBigram(score: scores[Int(id)], left: left, right: right, size: Int32(size)))
        }
        for i in 1..<Int32(symbols.count) { consider(i - 1, i) }

        while let bigram = queue.pop() {
            let left = Int(bigram.left), right = Int(bigram.right)
            // A pair queued before either side changed is stale: a merged-away symbol has length 0, and a grown
            // one makes the lengths no longer add up to the queued size.
            guard symbols[left].length > 0, symbols[right].length > 0,
                  symbols[left].length + symbols[right].length == bigram.size else { continue }
            symbols[left].length += symbols[right].length
            symbols[right].length = 0
            symbols[left].next = symbols[right].next
            if symbols[right].next >= 0 { symbols[Int(symbols[right].next)].previous = bigram.left }
            consider(symbols[left].previous, bigram.left)
            consider(bigram.left, symbols[left].next)
        }

        // A merged symbol is a token by construction, so only a single character can miss the vocabulary (llama.cpp's
        // `resegment`, which would split a non-token back along its merges, reduces to this): it goes out as bytes.
        var ids: [Int] = []
        ids.reserveCapacity(symbols.count)
        var i: Int32 = 0
        while i >= 0 {
            let symbol = symbols[Int(i)]
            let id = vocab.get(base + Int(symbol.start), Int(symbol.length))
            if id >= 0 {
                ids.append(Int(id))
            } else {
                for k in Int(symbol.start)..<Int(symbol.start + symbol.length) {
                    let byteId = byteIds[Int(bytes[k])]
                    if byteId >= 0 {
                        ids.append(Int(byteId))
                    } else if let unknownId {
                        ids.append(Int(unknownId))
                    }
                }
            }
            i = symbol.next
        }
        return ids
    }
}

/// The number of bytes of the UTF-8 sequence a byte starts (1 for a stray continuation byte, as llama.cpp's
/// `unicode_len_utf8` counts it).
@inline(__always)
func utf8SequenceLength(leadByte byte: UInt8) -> Int {
    switch byte {
    case 0xF0...: return 4
    case 0xE0...: return 3
    case 0xC0...: return 2
    default: return 1
    }
}

/// A candidate merge of two adjacent symbols into the token of `score`; `size` is the merged byte length, which
/// tells a stale candidate from a live one.
struct SentencePieceBigram: HeapOrdered {
    var score: Float
    var left: Int32
    var right: Int32
    var size: Int32

    /// Pops first: the higher score, then the leftmost pair (llama.cpp's `llm_bigram_spm::comparator`).
    @inline(__always) func before(_ other: SentencePieceBigram) -> Bool {
        score != other.score ? score > other.score : left < other.left
    }
}

/// SentencePiece merge candidates, highest score first (ties: leftmost).
typealias SentencePieceBigramQueue = BinaryHeap<SentencePieceBigram>
