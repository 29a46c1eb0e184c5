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
    /// Token text (UTF-8, byte-exact) → id.
    let vocab: ByteSliceTable
    /// id → the vocab entry holding its text (-1: no token).
    let idToEntry: [Int32]
    /// Ids of one-scalar tokens, the usual first look-up of `merge`.
    let scalarIds: [UInt32: Int32]
    /// (left id << 32 | right id) → (rank << 32 | merged id).
    let merges: PairTable
    /// For byte-level vocabularies (GPT-2's alphabet, no subword prefix/suffix): the tokens keyed by the raw
    /// bytes they stand for, and the id of each byte — what `ByteLevelBPE` encodes with. Nil otherwise.
    let rawByteTokens: (ByteSliceTable, [Int32])?
    let unkToken: String?
    let fuseUnk: Bool
    let byteFallback: Bool
    let ignoreMerges: Bool
    let continuingSubwordPrefix: String?
    let endOfWordSuffix: String?
    /// `<0xNN>` token ids, when byte_fallback.
    let byteIds: [Int32]
    let cache = PieceCache()

    var idLimit: Int { idToEntry.count }

    convenience init(vocab entries: [(String, Int)], merges mergeList: [(String, String)], path: String,
                     unkToken: String? = nil, fuseUnk: Bool = false, byteFallback: Bool = false, ignoreMerges: Bool = false,
                     continuingSubwordPrefix: String? = nil, endOfWordSuffix: String? = nil) throws {
        var builder = BPEBuilder(path: path, tokens: entries.count, merges: mergeList.count,
                                 continuingSubwordPrefix: continuingSubwordPrefix)
        for (token, id) in entries { try builder.addToken(Array(token.utf8), id: id) }
        var merged: [UInt8] = []
        for (rank, (a, b)) in mergeList.enumerated() { try builder.addMerge(Array(a.utf8), Array(b.utf8), rank: rank, scratch: &merged) }
        try self.init(builder, unkToken: unkToken, fuseUnk: fuseUnk, byteFallback: byteFallback, ignoreMerges: ignoreMerges,
                      continuingSubwordPrefix: continuingSubwordPrefix, endOfWordSuffix: endOfWordSuffix)
    }

    init(_ builder: BPEBuilder, unkToken: String?, fuseUnk: Bool, byteFallback: Bool, ignoreMerges: Bool,
         continuingSubwordPrefix: String?, endOfWordSuffix: String?,
         precomputedRawBytes: RawByteTableBox? = nil) throws {
        let vocab = builder.vocab
        var byteIds = [Int32](repeating: -1, count: 256)
        if byteFallback {
            for b in 0..<256 {
                if let id = vocab.get(Array(String(format: "<0x%02X>", b).utf8)) { byteIds[b] = Int32(id) }
            }
        }
        self.vocab = vocab
        self.idToEntry = builder.idToEntry
        self.scalarIds = builder.scalarIds
        self.merges = builder.merges
        self.unkToken = unkToken
        self.fuseUnk = fuseUnk
        self.byteFallback = byteFallback
        self.ignoreMerges = ignoreMerges
        self.continuingSubwordPrefix = continuingSubwordPrefix
        self.endOfWordSuffix = endOfWordSuffix
        self.byteIds = byteIds
        if continuingSubwordPrefix == nil && endOfWordSuffix == nil {
            if let box = precomputedRawBytes, box.done {
                rawByteTokens = box.result
            } else {
                rawByteTokens = Self.rawByteTable(vocab, scalarIds: builder.scalarIds)
            }
        } else {
            rawByteTokens = nil
        }
    }

    /// The vocabulary keyed by raw bytes when every byte's alphabet scalar is a token; tokens with a scalar
    /// outside GPT-2's alphabet can never come out of a byte-level piece and are left out.
    static func rawByteTable(_ vocab: ByteSliceTable, scalarIds: [UInt32: Int32]) -> (ByteSliceTable, [Int32])? {
        var byteIds = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            guard let id = scalarIds[ByteLevel.table[b].value] else { return nil }
            byteIds[b] = id
        }
        var table = ByteSliceTable(capacity: vocab.count)
        var bytes: [UInt8] = []
        ByteLevel.inverse.withUnsafeBufferPointer { inverse in
            vocab.forEach { token, id in
                // The alphabet's scalars are U+0021…U+0143: one or two UTF-8 bytes.
                bytes.removeAll(keepingCapacity: true)
                var i = 0
                while i < token.count {
                    let c = Int(token[i])
                    var v = c
                    if c >= 0x80 {
                        guard c & 0xE0 == 0xC0, i + 1 < token.count else { return }
                        v = (c & 0x1F) << 6 | Int(token[i + 1] & 0x3F)
                        i += 1
                    }
                    guard v < inverse.count, inverse[v] >= 0 else { return }
                    bytes.append(UInt8(inverse[v]))
                    i += 1
                }
                table.insert(bytes, id)
            }
        }
        return (table, byteIds)
    }

    /// Reads a tokenizer.json `model` object of type BPE; `raw` holds its vocab and merges when the
    /// document was parsed without them (`JSONValue.parse(_:path:skipping:)`).
    convenience init(json: JSONValue, path: String, raw: RawJSON? = nil) throws {
        if let dropout = json["dropout"]?.double, dropout > 0 {
            throw TokenizerError.unsupported("BPE dropout \(dropout) is not supported (encoding would be random)")
        }
        let prefix = json["continuing_subword_prefix"]?.string
        var builder: BPEBuilder
        var text: [UInt8] = []
        var rawBox: RawByteTableBox? = nil
        if let raw, raw.ranges["vocab"] != nil {
            // Straight from the bytes: no String or JSONValue per token.
            let size = raw.ranges["vocab"]!.count
            builder = BPEBuilder(path: path, tokens: size / 12, merges: (raw.ranges["merges"]?.count ?? 0) / 14,
                                 continuingSubwordPrefix: prefix)
            _ = try raw.scan("vocab") { parser in
                guard parser.peek() == UInt8(ascii: "{") else {
                    throw TokenizerError.badFile(path: path, reason: "BPE model has no \"vocab\" object")
                }
                try parser.members { parser, token in
                    guard parser.peek().map({ $0 == UInt8(ascii: "-") || ($0 >= 0x30 && $0 <= 0x39) }) == true else {
                        throw TokenizerError.badFile(path: path, reason: "vocab entry \(String(decoding: token, as: UTF8.self)) has a non-integer id")
                    }
                    try builder.addToken(token, id: parser.integer())
                }
            }
            // The raw-byte table depends on the vocabulary alone: build it on another core while the merges are read.
            let endOfWordSuffix = json["end_of_word_suffix"]?.string
            if prefix == nil && endOfWordSuffix == nil {
                let box = RawByteTableBox()
                let vocab = builder.vocab, scalarIds = builder.scalarIds
                box.group.enter()
                DispatchQueue.global(qos: .userInitiated).async {
                    box.result = BPEModel.rawByteTable(vocab, scalarIds: scalarIds)
                    box.done = true
                    box.group.leave()
                }
                rawBox = box
            }
            defer { rawBox?.group.wait() }
            var a: [UInt8] = [], b: [UInt8] = []
            _ = try raw.scan("merges") { parser in
                if parser.peek() == UInt8(ascii: "n") { _ = try parser.skipValue(); return }
                guard parser.peek() == UInt8(ascii: "[") else {
                    throw TokenizerError.badFile(path: path, reason: "BPE \"merges\" is not an array")
                }
                var rank = 0
                try parser.items { parser in
                    if parser.peek() == UInt8(ascii: "\"") {
                        try parser.stringBytes(into: &text)
                        try builder.queueMerge(line: text, rank: rank)
                    } else if parser.peek() == UInt8(ascii: "[") {
                        var n = 0
                        try parser.items { parser in
                            guard n < 2, parser.peek() == UInt8(ascii: "\"") else {
                                try builder.flushMerges()
                                throw TokenizerError.badFile(path: path, reason: "merge #\(rank) is neither \"a b\" nor [\"a\", \"b\"]")
                            }
                            if n == 0 { try parser.stringBytes(into: &a) } else { try parser.stringBytes(into: &b) }
                            n += 1
                        }
                        guard n == 2 else {
                            try builder.flushMerges()
                            throw TokenizerError.badFile(path: path, reason: "merge #\(rank) is neither \"a b\" nor [\"a\", \"b\"]")
                        }
                        builder.queueMerge(a, b, rank: rank)
                    } else {
                        try builder.flushMerges()
                        throw TokenizerError.badFile(path: path, reason: "merge #\(rank) is neither \"a b\" nor [\"a\", \"b\"]")
                    }
                    rank += 1
                }
            }
            try builder.flushMerges()
        } else {
            guard let vocabJSON = json["vocab"]?.object else {
                throw TokenizerError.badFile(path: path, reason: "BPE model has no \"vocab\" object")
            }
            let list = json["merges"]?.array ?? []
            if list.isEmpty, let m = json["merges"], !m.isNull {
                throw TokenizerError.badFile(path: path, reason: "BPE \"merges\" is not an array")
            }
            builder = BPEBuilder(path: path, tokens: vocabJSON.count, merges: list.count, continuingSubwordPrefix: prefix)
            for (token, value) in vocabJSON {
                guard let id = value.int else { throw TokenizerError.badFile(path: path, reason: "vocab entry \(token) has a non-integer id") }
                try builder.addToken(Array(token.utf8), id: id)
            }
            var a: [UInt8] = [], b: [UInt8] = []
            for (rank, item) in list.enumerated() {
                if let line = item.string {
                    try builder.addMerge(line: Array(line.utf8), rank: rank, a: &a, b: &b, scratch: &text)
                } else if let pair = item.array, pair.count == 2, let a = pair[0].string, let b = pair[1].string {
                    try builder.addMerge(Array(a.utf8), Array(b.utf8), rank: rank, scratch: &text)
                } else {
                    throw TokenizerError.badFile(path: path, reason: "merge #\(rank) is neither \"a b\" nor [\"a\", \"b\"]")
                }
            }
        }
        try self.init(builder, unkToken: json["unk_token"]?.string,
                      fuseUnk: json["fuse_unk"]?.bool ?? false,
                      byteFallback: json["byte_fallback"]?.bool ?? false,
                      ignoreMerges: json["ignore_merges"]?.bool ?? false,
                      continuingSubwordPrefix: prefix,
                      endOfWordSuffix: json["end_of_word_suffix"]?.string,
                      precomputedRawBytes: { rawBox?.group.wait(); return rawBox }())
    }

    func token(forId id: Int) -> String? {
        guard id >= 0, id < idToEntry.count, idToEntry[id] >= 0 else { return nil }
        return vocab.keyString(Int(idToEntry[id]))
    }
    func id(forToken token: String) -> Int? { vocab.get(Array(token.utf8)) }

    func tokenize(_ piece: String) -> [Int] {
        if piece.isEmpty { return [] }
        let key = Array(piece.utf8)
        if ignoreMerges, let id = vocab.get(key) { return [id] }
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
        let unkId: Int32? = unkToken.flatMap { vocab.get(Array($0.utf8)) }.map(Int32.init)
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
                found = vocab.get(text).map(Int32.init)
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

    /// HF `Word::merge_all` (see `bpeMerge`).
    func mergeAll(_ initial: [Int32]) -> [Int] {
        var scratch = MergeScratch()
        scratch.ids = initial
        var out: [Int] = []
        out.reserveCapacity(initial.count)
        bpeMerge(&scratch, merges: merges, into: &out)
        return out
    }
}

/// `BPEModel.rawByteTable`'s result, computed on another thread while the merges are read.
final class RawByteTableBox: @unchecked Sendable {
    let group = DispatchGroup()
    var result: (ByteSliceTable, [Int32])? = nil
    var done = false
}

/// What `BPEBuilder.flushMerges`' workers share: the queued bytes and their disjoint output slots.
struct MergeResolveJob: @unchecked Sendable {
    let bytes: UnsafeBufferPointer<UInt8>
    let out: UnsafeMutableBufferPointer<UInt64>
    let keys: UnsafeMutableBufferPointer<UInt64>
}

/// A BPE vocabulary and merge table as they are read (from tokenizer.json bytes or from strings), checked
/// as HF checks them.
struct BPEBuilder {
    let path: String
    var vocab: ByteSliceTable
    var idToEntry: [Int32] = []
    var scalarIds: [UInt32: Int32] = [:]
    var merges: PairTable
    let prefixLength: Int

    init(path: String, tokens: Int, merges: Int, continuingSubwordPrefix: String?) {
        self.path = path
        vocab = ByteSliceTable(capacity: tokens)
        self.merges = PairTable(capacity: merges)
        prefixLength = continuingSubwordPrefix?.utf8.count ?? 0
    }

    mutating func addToken(_ token: [UInt8], id: Int) throws {
        guard id >= 0, id < 50_000_000 else {
            throw TokenizerError.badFile(path: path, reason: "token \(String(decoding: token, as: UTF8.self)) has invalid id \(id)")
        }
        let entry = vocab.insert(token, Int32(id))   // HF: a repeated key keeps the last id
        if id >= idToEntry.count { idToEntry.append(contentsOf: repeatElement(-1, count: id + 1 - idToEntry.count)) }
        idToEntry[id] = Int32(entry)
        // One scalar: one to four bytes, the first not a continuation byte, the rest all continuations.
        if let first = token.first, token.count <= 4, first & 0xC0 != 0x80,
           token.dropFirst().allSatisfy({ $0 & 0xC0 == 0x80 }), (first < 0x80) == (token.count == 1),
           let scalar = String(decoding: token, as: UTF8.self).unicodeScalars.first {
            scalarIds[scalar.value] = Int32(id)
        }
    }

    /// Merges read but not yet resolved (`queueMerge`): a's bytes then b's, back to back, per merge.
    var pendingBytes: [UInt8] = []
    /// Per pending merge: start of a in `pendingBytes`, a's length, b's length.
    var pending: [(start: Int32, aLength: Int32, bLength: Int32)] = []
    /// The rank of the first pending merge.
    var pendingRank = 0

    /// As `addMerge(line:…)` with the look-ups left for `flushMerges` (which must run before anything else
    /// reads or adds merges); a malformed line throws after the merges before it are resolved.
    mutating func queueMerge(line: [UInt8], rank: Int) throws {
        guard let space = line.firstIndex(of: 0x20), !line[(space + 1)...].contains(0x20) else {
            try flushMerges()
            throw TokenizerError.badFile(path: path, reason: "merge #\(rank) \"\(String(decoding: line, as: UTF8.self))\" is not two tokens separated by one space")
        }
        if pending.isEmpty { pendingRank = rank }
        pending.append((Int32(pendingBytes.count), Int32(space), Int32(line.count - space - 1)))
        pendingBytes.append(contentsOf: line[..<space])
        pendingBytes.append(contentsOf: line[(space + 1)...])
    }

    /// As `addMerge(_:_:…)` with the look-ups left for `flushMerges` (ranks follow on from the queued ones).
    mutating func queueMerge(_ a: [UInt8], _ b: [UInt8], rank: Int) {
        if pending.isEmpty { pendingRank = rank }
        pending.append((Int32(pendingBytes.count), Int32(a.count), Int32(b.count)))
        pendingBytes.append(contentsOf: a)
        pendingBytes.append(contentsOf: b)
    }

    /// Resolves the queued merges: the vocabulary look-ups on two cores (the vocabulary is read-only by now),
    /// then the inserts in rank order (a repeated merge keeps the last rank); errors as `addMerge` gives them,
    /// for the first bad merge.
    mutating func flushMerges() throws {
        let n = pending.count
        if n == 0 { return }
        var results = [UInt64](repeating: UInt64.max, count: n)
        var keys = [UInt64](repeating: 0, count: n)
        let vocab = self.vocab
        let prefixLength = self.prefixLength
        let pendingList = pending
        let baseRank = pendingRank
        pendingBytes.withUnsafeBufferPointer { bytes in
            results.withUnsafeMutableBufferPointer { out in keys.withUnsafeMutableBufferPointer { keyOut in
                let job = MergeResolveJob(bytes: bytes, out: out, keys: keyOut)
                let parts = n >= 4096 ? 2 : 1
                DispatchQueue.concurrentPerform(iterations: parts) { part in
                    let lo = n * part / parts, hi = n * (part + 1) / parts
                    var merged: [UInt8] = []
                    for i in lo..<hi {
                        let m = pendingList[i]
                        let aLen = Int(m.aLength), bLen = Int(m.bLength)
                        guard aLen > 0, bLen > 0, let base = job.bytes.baseAddress else { continue }
                        let pa = base + Int(m.start), pb = pa + aLen
                        let aId = vocab.get(pa, aLen)
                        if aId < 0 { continue }
                        let bId = vocab.get(pb, bLen)
                        if bId < 0 { continue }
                        var newId: Int32
                        if prefixLength == 0 {
                            newId = vocab.get(pa, aLen + bLen)
                        } else {
                            guard bLen >= prefixLength else { continue }
                            merged.removeAll(keepingCapacity: true)
                            merged.append(contentsOf: UnsafeBufferPointer(start: pa, count: aLen))
                            merged.append(contentsOf: UnsafeBufferPointer(start: pb + prefixLength, count: bLen - prefixLength))
                            if merged.isEmpty { continue }
                            newId = merged.withUnsafeBufferPointer { vocab.get($0.baseAddress!, $0.count) }
                        }
                        if newId < 0 { continue }
                        job.out[i] = UInt64(UInt32(baseRank + i)) << 32 | UInt64(UInt32(newId))
                        job.keys[i] = UInt64(UInt32(aId)) << 32 | UInt64(UInt32(bId))
                    }
                }
            } }
        }
        var a: [UInt8] = [], b: [UInt8] = [], scratch: [UInt8] = []
        for i in 0..<n {
            if results[i] != UInt64.max {
                merges.insert(keys[i], results[i])
            } else {
                let m = pending[i]
                let s = Int(m.start), aLen = Int(m.aLength), bLen = Int(m.bLength)
                a.removeAll(keepingCapacity: true); a.append(contentsOf: pendingBytes[s..<(s + aLen)])
                b.removeAll(keepingCapacity: true); b.append(contentsOf: pendingBytes[(s + aLen)..<(s + aLen + bLen)])
                try addMerge(a, b, rank: baseRank + i, scratch: &scratch)
            }
        }
        pending.removeAll()
        pendingBytes.removeAll()
    }

    /// A merge written "a b" (split on its one space).
    mutating func addMerge(line: [UInt8], rank: Int, a: inout [UInt8], b: inout [UInt8], scratch: inout [UInt8]) throws {
        guard let space = line.firstIndex(of: 0x20), !line[(space + 1)...].contains(0x20) else {
            throw TokenizerError.badFile(path: path, reason: "merge #\(rank) \"\(String(decoding: line, as: UTF8.self))\" is not two tokens separated by one space")
        }
        a.removeAll(keepingCapacity: true)
        a.append(contentsOf: line[..<space])
        b.removeAll(keepingCapacity: true)
        b.append(contentsOf: line[(space + 1)...])
        try addMerge(a, b, rank: rank, scratch: &scratch)
    }

    mutating func addMerge(_ a: [UInt8], _ b: [UInt8], rank: Int, scratch merged: inout [UInt8]) throws {
        func text(_ t: [UInt8]) -> String { String(decoding: t, as: UTF8.self) }
        guard let aId = vocab.get(a) else {
            throw TokenizerError.badFile(path: path, reason: "merge #\(rank) \"\(text(a)) \(text(b))\": token \"\(text(a))\" is not in the vocabulary")
        }
        guard let bId = vocab.get(b) else {
            throw TokenizerError.badFile(path: path, reason: "merge #\(rank) \"\(text(a)) \(text(b))\": token \"\(text(b))\" is not in the vocabulary")
        }
        merged.removeAll(keepingCapacity: true)
        merged.append(contentsOf: a)
        merged.append(contentsOf: b.dropFirst(prefixLength))
        guard let newId = vocab.get(merged) else {
            throw TokenizerError.badFile(path: path, reason: "merge #\(rank) \"\(text(a)) \(text(b))\": merged token \"\(text(merged))\" is not in the vocabulary")
        }
        merges.insert(UInt64(aId) << 32 | UInt64(bId), UInt64(rank) << 32 | UInt64(newId))
    }
}

struct MergeEntry: HeapOrdered {
    var rank: UInt32
    var pos: Int32
    var newId: Int32

    /// Orders by rank, then position (HF's `Merge` ordering).
    @inline(__always) func before(_ other: MergeEntry) -> Bool {
        rank != other.rank ? rank < other.rank : pos < other.pos
    }
}

/// An element of a `BinaryHeap`: `before` says which of two comes out first.
protocol HeapOrdered {
    func before(_ other: Self) -> Bool
}

/// A binary heap: `pop` returns the element that comes `before` all others (merge candidates of the BPE models).
struct BinaryHeap<Element: HeapOrdered> {
    private var items: [Element] = []

    /// Empties the heap, keeping its storage (reused across words).
    mutating func removeAll() { items.removeAll(keepingCapacity: true) }

    mutating func push(_ e: Element) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i].before(items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Element? {
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

/// Byte-level BPE's merge candidates, lowest rank first.
typealias MergeHeap = BinaryHeap<MergeEntry>

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
