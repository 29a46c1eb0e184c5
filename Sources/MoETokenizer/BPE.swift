import Foundation

/// What turns one pre-tokenized piece into token ids: HF's BPE model or tiktoken's rank-based BPE.
protocol TokenModel: Sendable {
    /// The ids of one piece (never empty text).
    func tokenize(_ piece: String) -> [Int]
    /// id → token text (for tiktoken ranks, in GPT-2's byte-level alphabet).
    func token(forId id: Int) -> String?
    func id(forToken token: String) -> Int?
    /// One past the largest id.
    var idLimit: Int { get }
}

/// Token text as a byte-exact dictionary key (Swift `String` equality would merge canonically equivalent
/// tokens such as "é" and "e\u{301}").
typealias TokenBytes = [UInt8]

/// HF `tokenizers`' BPE model: vocabulary, ranked merges, unknown-token and byte-fallback handling.
///
///     let bpe = try BPEModel(vocab: [("a", 0), ("b", 1), ("ab", 2)], merges: [("a", "b")], path: "t.json")
///     bpe.tokenize("abab")   // [2, 2]
final class BPEModel: TokenModel, @unchecked Sendable {
    let vocab: [TokenBytes: Int]
    let idToToken: [String?]
    /// Ids of one-scalar tokens, the usual first look-up of `merge`.
    let scalarIds: [UInt32: Int32]
    /// (left id << 32 | right id) → (rank << 32 | merged id).
    let merges: [UInt64: UInt64]
    let unkToken: String?
    let fuseUnk: Bool
    let byteFallback: Bool
    let ignoreMerges: Bool
    let continuingSubwordPrefix: String?
    let endOfWordSuffix: String?
    /// `<0xNN>` token ids, when byte_fallback.
    let byteIds: [Int32]
    let cache = PieceCache()

    var idLimit: Int { idToToken.count }

    init(vocab entries: [(String, Int)], merges mergeList: [(String, String)], path: String,
         unkToken: String? = nil, fuseUnk: Bool = false, byteFallback: Bool = false, ignoreMerges: Bool = false,
         continuingSubwordPrefix: String? = nil, endOfWordSuffix: String? = nil) throws {
        var vocab: [TokenBytes: Int] = [:]
        vocab.reserveCapacity(entries.count)
        var maxId = -1
        var scalarIds: [UInt32: Int32] = [:]
        for (token, id) in entries {
            guard id >= 0, id < 50_000_000 else { throw TokenizerError.badFile(path: path, reason: "token \(token) has invalid id \(id)") }
            vocab[Array(token.utf8)] = id   // HF: a repeated key keeps the last id
            maxId = max(maxId, id)
            var scalars = token.unicodeScalars.makeIterator()
            if let first = scalars.next(), scalars.next() == nil { scalarIds[first.value] = Int32(id) }
        }
        var idToToken = [String?](repeating: nil, count: maxId + 1)
        for (token, id) in entries { idToToken[id] = token }
        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(mergeList.count)
        let prefixLength = continuingSubwordPrefix?.utf8.count ?? 0
        var merged: [UInt8] = []
        for (rank, (a, b)) in mergeList.enumerated() {
            merged.removeAll(keepingCapacity: true)
            merged.append(contentsOf: a.utf8)
            guard let aId = vocab[merged] else {
                throw TokenizerError.badFile(path: path, reason: "merge #\(rank) \"\(a) \(b)\": token \"\(a)\" is not in the vocabulary")
            }
            guard let bId = vocab[Array(b.utf8)] else {
                throw TokenizerError.badFile(path: path, reason: "merge #\(rank) \"\(a) \(b)\": token \"\(b)\" is not in the vocabulary")
            }
            merged.append(contentsOf: b.utf8.dropFirst(prefixLength))
            guard let newId = vocab[merged] else {
                throw TokenizerError.badFile(path: path, reason: "merge #\(rank) \"\(a) \(b)\": merged token \"\(String(decoding: merged, as: UTF8.self))\" is not in the vocabulary")
            }
            merges[UInt64(aId) << 32 | UInt64(bId)] = UInt64(rank) << 32 | UInt64(newId)
        }
        var byteIds = [Int32](repeating: -1, count: 256)
        if byteFallback {
            for b in 0..<256 {
                if let id = vocab[Array(String(format: "<0x%02X>", b).utf8)] { byteIds[b] = Int32(id) }
            }
        }
        self.vocab = vocab
        self.idToToken = idToToken
        self.scalarIds = scalarIds
        self.merges = merges
        self.unkToken = unkToken
        self.fuseUnk = fuseUnk
        self.byteFallback = byteFallback
        self.ignoreMerges = ignoreMerges
        self.continuingSubwordPrefix = continuingSubwordPrefix
        self.endOfWordSuffix = endOfWordSuffix
        self.byteIds = byteIds
    }

    /// Reads a tokenizer.json `model` object of type BPE.
    convenience init(json: JSONValue, path: String) throws {
        guard let vocabJSON = json["vocab"]?.object else {
            throw TokenizerError.badFile(path: path, reason: "BPE model has no \"vocab\" object")
        }
        var entries: [(String, Int)] = []
        entries.reserveCapacity(vocabJSON.count)
        for (token, value) in vocabJSON {
            guard let id = value.int else { throw TokenizerError.badFile(path: path, reason: "vocab entry \(token) has a non-integer id") }
            entries.append((token, id))
        }
        var merges: [(String, String)] = []
        if let list = json["merges"]?.array {
            merges.reserveCapacity(list.count)
            for (i, item) in list.enumerated() {
                if let line = item.string {
                    // Split on the one space, by bytes (Character-based splitting is slow and merges tokens
                    // with following combining marks).
                    let utf8 = line.utf8
                    guard let space = utf8.firstIndex(of: 0x20), !utf8[utf8.index(after: space)...].contains(0x20) else {
                        throw TokenizerError.badFile(path: path, reason: "merge #\(i) \"\(line)\" is not two tokens separated by one space")
                    }
                    merges.append((String(decoding: utf8[..<space], as: UTF8.self),
                                    String(decoding: utf8[utf8.index(after: space)...], as: UTF8.self)))
                } else if let pair = item.array, pair.count == 2, let a = pair[0].string, let b = pair[1].string {
                    merges.append((a, b))
                } else {
                    throw TokenizerError.badFile(path: path, reason: "merge #\(i) is neither \"a b\" nor [\"a\", \"b\"]")
                }
            }
        } else if let m = json["merges"], !m.isNull {
            throw TokenizerError.badFile(path: path, reason: "BPE \"merges\" is not an array")
        }
        if let dropout = json["dropout"]?.double, dropout > 0 {
            throw TokenizerError.unsupported("BPE dropout \(dropout) is not supported (encoding would be random)")
        }
        try self.init(vocab: entries, merges: merges, path: path,
                      unkToken: json["unk_token"]?.string,
                      fuseUnk: json["fuse_unk"]?.bool ?? false,
                      byteFallback: json["byte_fallback"]?.bool ?? false,
                      ignoreMerges: json["ignore_merges"]?.bool ?? false,
                      continuingSubwordPrefix: json["continuing_subword_prefix"]?.string,
                      endOfWordSuffix: json["end_of_word_suffix"]?.string)
    }

    func token(forId id: Int) -> String? { id >= 0 && id < idToToken.count ? idToToken[id] : nil }
    func id(forToken token: String) -> Int? { vocab[Array(token.utf8)] }

    func tokenize(_ piece: String) -> [Int] {
        if piece.isEmpty { return [] }
        let key = Array(piece.utf8)
        if ignoreMerges, let id = vocab[key] { return [id] }
        if let hit = cache.get(key) { return hit }
        let ids = merge(piece)
        cache.put(key, ids)
        return ids
    }

    /// HF `BPE::merge_word` + `Word::merge_all`: one symbol per character (or its bytes, or unk), then
    /// repeatedly the lowest-ranked adjacent merge (leftmost on ties) until none applies.
    func merge(_ piece: String) -> [Int] {
        var symbols: [Int32] = []
        symbols.reserveCapacity(piece.utf8.count)
        var pendingUnk: Int32? = nil      // HF keeps one pending unk to fuse
        let unkId: Int32? = unkToken.flatMap { vocab[Array($0.utf8)] }.map(Int32.init)
        let scalars = piece.unicodeScalars
        let plain = continuingSubwordPrefix == nil && endOfWordSuffix == nil
        var index = scalars.startIndex
        var isFirst = true
        while index != scalars.endIndex {
            let scalar = scalars[index]
            index = scalars.index(after: index)
            var found: Int32? = nil
            var text: [UInt8] = []
            if plain {
                found = scalarIds[scalar.value]
            } else {
                if !isFirst, let p = continuingSubwordPrefix { text.append(contentsOf: p.utf8) }
                text.append(contentsOf: String(scalar).utf8)
                if index == scalars.endIndex, let s = endOfWordSuffix { text.append(contentsOf: s.utf8) }
                found = vocab[text].map(Int32.init)
            }
            isFirst = false
            if let id = found {
                if let u = pendingUnk { symbols.append(u); pendingUnk = nil }
                symbols.append(id)
                continue
            }
            if byteFallback {
                if plain { text = Array(String(scalar).utf8) }
                if text.allSatisfy({ byteIds[Int($0)] >= 0 }) {
                    // As HF: byte tokens go in without flushing a pending unk.
                    for b in text { symbols.append(byteIds[Int(b)]) }
                    continue
                }
            }
            if unkToken != nil {
                // HF errors when unk_token is not in the vocabulary; we drop the character instead.
                guard let u = unkId else { continue }
                if pendingUnk != nil && !fuseUnk { symbols.append(pendingUnk!) }
                pendingUnk = u
            }
        }
        if let u = pendingUnk { symbols.append(u) }
        return mergeAll(symbols)
    }

    /// HF `Word::merge_all` over a doubly linked list with a (rank, position) min-heap; stale heap entries
    /// are recognised as HF does (the pair now at that position no longer merges into the same id).
    func mergeAll(_ initial: [Int32]) -> [Int] {
        let n = initial.count
        if n < 2 { return initial.map(Int.init) }
        var ids = initial
        var prev = [Int32](repeating: -1, count: n)
        var next = [Int32](repeating: -1, count: n)
        var alive = [Bool](repeating: true, count: n)
        for i in 0..<n {
            prev[i] = Int32(i - 1)
            next[i] = i + 1 < n ? Int32(i + 1) : -1
        }
        var heap = MergeHeap()
        for i in 0..<(n - 1) {
            if let m = merges[UInt64(UInt32(bitPattern: ids[i])) << 32 | UInt64(UInt32(bitPattern: ids[i + 1]))] {
                heap.push(MergeEntry(rank: UInt32(m >> 32), pos: Int32(i), newId: Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)))
            }
        }
        while let top = heap.pop() {
            let pos = Int(top.pos)
            guard alive[pos], next[pos] >= 0 else { continue }
            let right = Int(next[pos])
            guard let m = merges[UInt64(UInt32(bitPattern: ids[pos])) << 32 | UInt64(UInt32(bitPattern: ids[right]))],
                  Int32(truncatingIfNeeded: m & 0xFFFF_FFFF) == top.newId else { continue }
            ids[pos] = top.newId
            alive[right] = false
            next[pos] = next[right]
            if next[right] >= 0 { prev[Int(next[right])] = Int32(pos) }
            if prev[pos] >= 0 {
                let p = Int(prev[pos])
                if let m = merges[UInt64(UInt32(bitPattern: ids[p])) << 32 | UInt64(UInt32(bitPattern: ids[pos]))] {
                    heap.push(MergeEntry(rank: UInt32(m >> 32), pos: Int32(p), newId: Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)))
                }
            }
            if next[pos] >= 0 {
                let q = Int(next[pos])
                if let m = merges[UInt64(UInt32(bitPattern: ids[pos])) << 32 | UInt64(UInt32(bitPattern: ids[q]))] {
                    heap.push(MergeEntry(rank: UInt32(m >> 32), pos: Int32(pos), newId: Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)))
                }
            }
        }
        var out: [Int] = []
        out.reserveCapacity(n)
        for i in 0..<n where alive[i] { out.append(Int(ids[i])) }
        return out
    }
}

struct MergeEntry {
    var rank: UInt32
    var pos: Int32
    var newId: Int32

    /// Orders by rank, then position (HF's `Merge` ordering).
    @inline(__always) func before(_ other: MergeEntry) -> Bool {
        rank != other.rank ? rank < other.rank : pos < other.pos
    }
}

/// A binary min-heap of merge candidates.
struct MergeHeap {
    var items: [MergeEntry] = []

    mutating func push(_ e: MergeEntry) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i].before(items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> MergeEntry? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if items.isEmpty { return first }
        items[0] = last
        var i = 0
        let n = items.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < n, items[l].before(items[m]) { m = l }
            if r < n, items[r].before(items[m]) { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
        return first
    }
}

/// A bounded, thread-safe cache of piece → ids (HF caches up to 10,000 words; results never depend on it).
final class PieceCache: @unchecked Sendable {
    private var map: [TokenBytes: [Int]] = [:]
    private let lock = NSLock()
    let capacity: Int
    /// Pieces longer than this (bytes) are not cached.
    let maxKeyLength = 256

    init(capacity: Int = 10_000) { self.capacity = capacity }

    func get(_ key: TokenBytes) -> [Int]? {
        guard key.count <= maxKeyLength else { return nil }
        lock.lock(); defer { lock.unlock() }
        return map[key]
    }

    func put(_ key: TokenBytes, _ ids: [Int]) {
        guard key.count <= maxKeyLength else { return }
        lock.lock(); defer { lock.unlock() }
        if map.count >= capacity { map.removeAll(keepingCapacity: true) }
        map[key] = ids
    }
}
