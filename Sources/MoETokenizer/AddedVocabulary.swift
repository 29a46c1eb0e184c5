import Foundation

/// One entry of tokenizer.json's `added_tokens`.
public struct AddedToken: Sendable, Equatable {
    public var id: Int
    public var content: String
    public var singleWord = false
    public var lstrip = false
    public var rstrip = false
    /// Matched in the normalized text (true) or in the raw input (false).
    public var normalized = false
    /// Special tokens are dropped by `decode(_:skipSpecialTokens: true)`.
    public var special = false

    public init(id: Int, content: String, singleWord: Bool = false, lstrip: Bool = false, rstrip: Bool = false,
                normalized: Bool = false, special: Bool = false) {
        self.id = id
        self.content = content
        self.singleWord = singleWord
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.normalized = normalized
        self.special = special
    }
}

/// HF's AddedVocabulary: finds added tokens in text before normalization (those with `normalized: false`)
/// and in each normalized stretch (those with `normalized: true`), leftmost-longest, honouring
/// `single_word`, `lstrip` and `rstrip`; the stretches between are tokenized by the model.
///
///     let v = AddedVocabulary([AddedToken(id: 9, content: "<|end|>", special: true)], normalizer: nil)
///     v.split("hi<|end|>", normalized: false)   // [("hi", nil), ("<|end|>", 9)]
struct AddedVocabulary: Sendable {
    let tokens: [AddedToken]
    let byId: [Int: AddedToken]
    let byContent: [TokenBytes: Int]
    let rawTrie: ByteTrie
    let normalizedTrie: ByteTrie

    init(_ tokens: [AddedToken], normalizer: Normalizer?) {
        let kept = tokens.filter { !$0.content.isEmpty }
        self.tokens = kept
        var byId: [Int: AddedToken] = [:]
        var byContent: [TokenBytes: Int] = [:]
        for t in kept {
            byId[t.id] = t
            byContent[Array(t.content.utf8)] = t.id
        }
        self.byId = byId
        self.byContent = byContent
        var raw = ByteTrie(), norm = ByteTrie()
        for (i, t) in kept.enumerated() {
            if t.normalized {
                let pattern = normalizer?.normalize(t.content) ?? t.content
                norm.insert(Array(pattern.utf8), value: i)
            } else {
                raw.insert(Array(t.content.utf8), value: i)
            }
        }
        rawTrie = raw
        normalizedTrie = norm
    }

    var isEmpty: Bool { tokens.isEmpty }

    func isSpecial(_ id: Int) -> Bool { byId[id]?.special ?? false }

    /// Splits `text` into stretches and added tokens (HF `AddedVocabulary::find_matches`); stretches keep
    /// their UTF-8 offset in `text`. Empty stretches are dropped.
    func split(_ text: String, normalized: Bool) -> [(text: String, offset: Int, id: Int?)] {
        let trie = normalized ? normalizedTrie : rawTrie
        if trie.isEmpty || text.isEmpty { return text.isEmpty ? [] : [(text, 0, nil)] }
        let bytes = Array(text.utf8)
        var out: [(text: String, offset: Int, id: Int?)] = []
        func piece(_ lo: Int, _ hi: Int, _ id: Int?) {
            guard hi > lo else { return }
            // By bytes: String slicing rounds to Character boundaries and would swallow a combining mark
            // that follows an added token.
            out.append((String(decoding: bytes[lo..<hi], as: UTF8.self), lo, id))
        }
        var startOffset = 0
        var searchFrom = 0
        while let (matchStart, matchEnd, index) = trie.leftmostLongest(in: bytes, from: searchFrom) {
            searchFrom = matchEnd
            let token = tokens[index]
            var start = matchStart, stop = matchEnd
            if token.singleWord {
                let startSpace = start == 0 || !endsWithWord(bytes, start)
                let stopSpace = stop == bytes.count || !startsWithWord(bytes, stop)
                if !startSpace || !stopSpace { continue }
            }
            if token.lstrip { start = max(leftmostSpaceAtEnd(bytes, start), startOffset) }
            if token.rstrip { stop = rightmostSpaceAtStart(bytes, stop) }
            if startOffset < start { piece(startOffset, start, nil) }
            piece(start, stop, token.id)
            startOffset = stop
        }
        if startOffset < bytes.count { piece(startOffset, bytes.count, nil) }
        return out
    }
}

// Word and space tests of HF's single_word/lstrip/rstrip (Rust regex `\w`, `\s`), on UTF-8 offsets.

private func scalar(before offset: Int, in bytes: [UInt8]) -> Unicode.Scalar? {
    guard offset > 0 else { return nil }
    var i = offset - 1
    while i > 0 && bytes[i] & 0xC0 == 0x80 { i -= 1 }
    return String(decoding: bytes[i..<offset], as: UTF8.self).unicodeScalars.first
}

private func scalar(at offset: Int, in bytes: [UInt8]) -> (Unicode.Scalar, Int)? {
    guard offset < bytes.count else { return nil }
    var j = offset + 1
    while j < bytes.count && bytes[j] & 0xC0 == 0x80 { j += 1 }
    guard let s = String(decoding: bytes[offset..<j], as: UTF8.self).unicodeScalars.first else { return nil }
    return (s, j)
}

func isWordScalar(_ s: Unicode.Scalar) -> Bool {
    let p = s.properties
    if p.isAlphabetic || p.isJoinControl { return true }
    switch p.generalCategory {
    case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
    default: return false
    }
}

private func endsWithWord(_ bytes: [UInt8], _ offset: Int) -> Bool {
    scalar(before: offset, in: bytes).map(isWordScalar) ?? false
}

private func startsWithWord(_ bytes: [UInt8], _ offset: Int) -> Bool {
    scalar(at: offset, in: bytes).map { isWordScalar($0.0) } ?? false
}

/// The start of the run of whitespace that ends at `offset`.
private func leftmostSpaceAtEnd(_ bytes: [UInt8], _ offset: Int) -> Int {
    var o = offset
    while let s = scalar(before: o, in: bytes), s.properties.isWhitespace { o -= UTF8.width(s) }
    return o
}

/// The end of the run of whitespace that starts at `offset`.
private func rightmostSpaceAtStart(_ bytes: [UInt8], _ offset: Int) -> Int {
    var o = offset
    while let (s, next) = scalar(at: o, in: bytes), s.properties.isWhitespace { o = next }
    return o
}

/// A byte trie for leftmost-longest multi-string search (what aho-corasick's `LeftmostLongest` finds).
struct ByteTrie: Sendable {
    private var children: [[UInt8: Int32]] = [[:]]
    private var values: [Int32] = [-1]
    /// Whether some key starts with the byte: most text positions are rejected by this alone.
    private var firstBytes = [Bool](repeating: false, count: 256)

    var isEmpty: Bool { children[0].isEmpty }

    mutating func insert(_ key: [UInt8], value: Int) {
        guard !key.isEmpty else { return }
        firstBytes[Int(key[0])] = true
        var node = 0
        for b in key {
            if let c = children[node][b] { node = Int(c); continue }
            children.append([:])
            values.append(-1)
            children[node][b] = Int32(children.count - 1)
            node = children.count - 1
        }
        if values[node] < 0 { values[node] = Int32(value) }   // first of equal patterns wins
    }

    /// The match that starts leftmost at or after `from`, the longest of those; (start, end, value).
    func leftmostLongest(in bytes: [UInt8], from: Int) -> (Int, Int, Int)? {
        var start = from
        while start < bytes.count {
            if !firstBytes[Int(bytes[start])] { start += 1; continue }
            var node = 0
            var best: (Int, Int)? = nil
            var i = start
            while i < bytes.count, let c = children[node][bytes[i]] {
                node = Int(c)
                i += 1
                if values[node] >= 0 { best = (i, Int(values[node])) }
            }
            if let (end, value) = best { return (start, end, value) }
            start += 1
        }
        return nil
    }
}
