import Foundation

// The fast encode path of byte-level BPE tokenizers (GPT-2/Llama-3/Qwen tokenizer.json, tiktoken files): the
// pre-tokenizer regex runs over the UTF-8 bytes and each piece is looked up and merged as raw bytes, with no
// String, Piece or Array made per piece. It gives the ids of the general path (Tokenizer.encode's
// normalize → pre-tokenize → model.tokenize), which remains for every other tokenizer.json.

/// A byte-string hash for the flat tables: 8 bytes at a time, mixed by multiplication (keys are short).
@inline(__always)
func hashBytes(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
    var h = UInt64(truncatingIfNeeded: n) &* 0x9E37_79B9_7F4A_7C15
    var i = 0
    while i + 8 <= n {
        h = (h ^ UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)) &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 31
        i += 8
    }
    if i < n {
        var w: UInt64 = 0
        var shift: UInt64 = 0
        while i < n { w |= UInt64(p[i]) << shift; shift += 8; i += 1 }
        h ^= w
    }
    // murmur3's finalizer: every bit of the key reaches the low bits (the slot index) and the high bits (tag).
    h ^= h >> 33
    h = h &* 0xFF51_AFD7_ED55_8CCD
    h ^= h >> 33
    h = h &* 0xC4CE_B9FE_1A85_EC53
    return h ^ (h >> 33)
}

/// One hash slot of `ByteSliceTable`: everything a probe needs (tag, length, where the key is, its value) in
/// 16 bytes, so a look-up touches one slot cache line and the key's bytes.
struct ByteSliceSlot: Sendable {
    /// Hash high 16 bits << 16 | min(key length, 0xFFFF).
    var tagLen: UInt32
    /// entry + 1; 0 is empty.
    var entry: UInt32
    var offset: UInt32
    var value: Int32
}

/// An immutable-once-built map from byte strings to ids in flat arrays (open addressing, linear probing):
/// building it allocates nothing per key, and a look-up hashes a byte slice in place.
struct ByteSliceTable: Sendable {
    /// The keys back to back; key e is arena[starts[e]..<starts[e + 1]].
    private var arena: [UInt8] = []
    private var starts: [Int32] = [0]
    private var values: [Int32] = []
    private var slots: [ByteSliceSlot]
    private var mask: Int
    /// Bytes of the longest key.
    private(set) var longestKey = 0

    init(capacity: Int = 16) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [ByteSliceSlot](repeating: ByteSliceSlot(tagLen: 0, entry: 0, offset: 0, value: 0), count: size)
        mask = size - 1
        arena.reserveCapacity(capacity * 8)
        starts.reserveCapacity(capacity + 1)
        values.reserveCapacity(capacity)
    }

    var count: Int { values.count }

    @inline(__always) private static func tagLen(_ h: UInt64, _ n: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: h >> 48) << 16 | UInt32(min(n, 0xFFFF))
    }

    /// Adds or replaces (a repeated key keeps the last value, as HF's vocab map does); the key's entry number.
    @discardableResult
    mutating func insert(_ key: UnsafeBufferPointer<UInt8>, _ value: Int32) -> Int {
        if (values.count + 1) * 2 > slots.count { grow() }
        let base = key.baseAddress ?? UnsafePointer(bitPattern: 1)!
        let h = hashBytes(base, key.count)
        var i = Int(truncatingIfNeeded: h) & mask
        let tl = Self.tagLen(h, key.count)
        while slots[i].entry != 0 {
            let e = Int(slots[i].entry) - 1
            if slots[i].tagLen == tl && equal(e, key) {
                values[e] = value
                slots[i].value = value
                return e
            }
            i = (i + 1) & mask
        }
        let offset = arena.count
        longestKey = max(longestKey, key.count)
        arena.append(contentsOf: key)
        starts.append(Int32(arena.count))
        values.append(value)
        slots[i] = ByteSliceSlot(tagLen: tl, entry: UInt32(values.count), offset: UInt32(offset), value: value)
        return values.count - 1
    }

    @discardableResult
    mutating func insert(_ key: [UInt8], _ value: Int32) -> Int {
        key.withUnsafeBufferPointer { insert($0, value) }
    }

    /// The key of entry `e` as a String.
    func keyString(_ e: Int) -> String {
        String(decoding: arena[Int(starts[e])..<Int(starts[e + 1])], as: UTF8.self)
    }

    /// Every (key, value), in insertion order.
    func forEach(_ body: (UnsafeBufferPointer<UInt8>, Int32) -> Void) {
        arena.withUnsafeBufferPointer { a in
            starts.withUnsafeBufferPointer { st in
                values.withUnsafeBufferPointer { v in
                    for e in 0..<v.count {
                        body(UnsafeBufferPointer(rebasing: a[Int(st[e])..<Int(st[e + 1])]), v[e])
                    }
                }
            }
        }
    }

    private func equal(_ e: Int, _ key: UnsafeBufferPointer<UInt8>) -> Bool {
        let s = Int(starts[e])
        guard Int(starts[e + 1]) - s == key.count else { return false }
        for k in 0..<key.count where arena[s + k] != key[k] { return false }
        return true
    }

    private mutating func grow() {
        var size = slots.count * 2
        if size < 16 { size = 16 }
        var fresh = [ByteSliceSlot](repeating: ByteSliceSlot(tagLen: 0, entry: 0, offset: 0, value: 0), count: size)
        let m = size - 1
        arena.withUnsafeBufferPointer { a in
            for e in 0..<values.count {
                let s = Int(starts[e])
                let n = Int(starts[e + 1]) - s
                let h = hashBytes(a.baseAddress! + s, n)
                var i = Int(truncatingIfNeeded: h) & m
                while fresh[i].entry != 0 { i = (i + 1) & m }
                fresh[i] = ByteSliceSlot(tagLen: Self.tagLen(h, n), entry: UInt32(e + 1), offset: UInt32(s), value: values[e])
            }
        }
        slots = fresh
        mask = m
    }

    /// The id of the `n` bytes at `p`, or -1.
    @inline(__always)
    func get(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int32 {
        get(p, n, hash: hashBytes(p, n))
    }

    /// As `get(_:_:)`, with the bytes' `hashBytes` already computed.
    @inline(__always)
    func get(_ p: UnsafePointer<UInt8>, _ n: Int, hash h: UInt64) -> Int32 {
        let tl = Self.tagLen(h, n)
        return slots.withUnsafeBufferPointer { sl in
            arena.withUnsafeBufferPointer { a in
                var i = Int(truncatingIfNeeded: h) & mask
                while true {
                    let slot = sl[i]
                    if slot.entry == 0 { return -1 }
                    if slot.tagLen == tl {
                        let s = Int(slot.offset)
                        var same = true
                        if n >= 0xFFFF {
                            let e = Int(slot.entry) - 1
                            same = Int(starts[e + 1]) - Int(starts[e]) == n
                        }
                        if same && (n == 0 || memcmp(a.baseAddress! + s, p, n) == 0) { return slot.value }
                    }
                    i = (i + 1) & mask
                }
            }
        }
    }

    func get(_ key: [UInt8]) -> Int? {
        if key.isEmpty { return getEmpty() }
        let id = key.withUnsafeBufferPointer { get($0.baseAddress!, $0.count) }
        return id >= 0 ? Int(id) : nil
    }

    private func getEmpty() -> Int? {
        for e in 0..<values.count where starts[e] == starts[e + 1] { return Int(values[e]) }
        return nil
    }
}

/// Merge rules keyed by a pair of ids packed into a UInt64 (left << 32 | right), in flat open-addressing
/// arrays: a look-up is one multiply and, nearly always, one cache line.
struct PairTable: Sendable {
    static let absent = UInt64.max
    /// Key at 2i, value at 2i + 1: a probe reads one cache line.
    private var cells: [UInt64]
    private var shift: UInt64
    private var mask: Int
    private(set) var count = 0

    init(capacity: Int) {
        var bits: UInt64 = 4
        while (1 << bits) < capacity * 2 { bits += 1 }
        var cells = [UInt64](repeating: 0, count: 2 << bits)
        for i in stride(from: 0, to: cells.count, by: 2) { cells[i] = Self.absent }
        self.cells = cells
        shift = 64 - bits
        mask = (1 << bits) - 1
    }

    @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    /// Adds or replaces (a repeated merge keeps the last rank, as HF's merge map does). Needs room: at most
    /// the capacity given to init.
    mutating func insert(_ key: UInt64, _ value: UInt64) {
        var i = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
        let mask = self.mask
        let isNew = cells.withUnsafeMutableBufferPointer { c -> Bool in
            while c[2 * i] != Self.absent && c[2 * i] != key { i = (i + 1) & mask }
            let new = c[2 * i] == Self.absent
            c[2 * i] = key
            c[2 * i + 1] = value
            return new
        }
        if isNew { count += 1 }
    }

    /// The value for `key`, or `PairTable.absent`.
    @inline(__always)
    func get(_ key: UInt64) -> UInt64 {
        var i = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
        let mask = self.mask
        return cells.withUnsafeBufferPointer { c in
            while true {
                let k = c[2 * i]
                if k == key { return c[2 * i + 1] }
                if k == Self.absent { return Self.absent }
                i = (i + 1) & mask
            }
        }
    }
}

/// Reused buffers of `bpeMerge` (one per encode call: no allocation per piece).
struct MergeScratch {
    var ids: [Int32] = []
    var prev: [Int32] = []
    var next: [Int32] = []
    var heap = MergeHeap()
}

/// HF `Word::merge_all` over a doubly linked list with a (rank, position) min-heap: repeatedly the
/// lowest-ranked adjacent merge (leftmost on ties); stale heap entries are recognised as HF does (the pair now
/// at that position no longer merges into the same id). `merges` maps a pair to rank << 32 | merged id. For
/// tiktoken ranks (every pair whose concatenation is a token, ranked by that token) this is tiktoken's
/// `_byte_pair_merge`. Appends the resulting ids to `out`.
func bpeMerge(_ symbols: inout MergeScratch, merges: PairTable, into out: inout [Int]) {
    let n = symbols.ids.count
    if n < 2 { for id in symbols.ids { out.append(Int(id)) }; return }
    symbols.prev.removeAll(keepingCapacity: true)
    symbols.next.removeAll(keepingCapacity: true)
    for i in 0..<n {
        symbols.prev.append(Int32(i - 1))
        symbols.next.append(i + 1 < n ? Int32(i + 1) : -1)
    }
    symbols.heap.removeAll()
    @inline(__always) func push(_ pos: Int, _ left: Int32, _ right: Int32, _ heap: inout MergeHeap) {
        let m = merges.get(PairTable.key(left, right))
        if m != PairTable.absent {
            heap.push(MergeEntry(rank: UInt32(m >> 32), pos: Int32(pos), newId: Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)))
        }
    }
    for i in 0..<(n - 1) { push(i, symbols.ids[i], symbols.ids[i + 1], &symbols.heap) }
    // A merged-away symbol gets prev = -2 (HF marks it with len 0).
    while let top = symbols.heap.pop() {
        let pos = Int(top.pos)
        guard symbols.prev[pos] != -2, symbols.next[pos] >= 0 else { continue }
        let right = Int(symbols.next[pos])
        let m = merges.get(PairTable.key(symbols.ids[pos], symbols.ids[right]))
        guard m != PairTable.absent, Int32(truncatingIfNeeded: m & 0xFFFF_FFFF) == top.newId else { continue }
        symbols.ids[pos] = top.newId
        symbols.prev[right] = -2
        let after = symbols.next[right]
        symbols.next[pos] = after
        if after >= 0 { symbols.prev[Int(after)] = Int32(pos) }
        let before = symbols.prev[pos]
        if before >= 0 { push(Int(before), symbols.ids[Int(before)], top.newId, &symbols.heap) }
        if after >= 0 { push(pos, top.newId, symbols.ids[Int(after)], &symbols.heap) }
    }
    var i = 0
    while i >= 0 {
        out.append(Int(symbols.ids[i]))
        i = Int(symbols.next[i])
    }
}

/// Byte-level BPE on raw UTF-8: what a tokenizer.json with a regex Split (Isolated) + ByteLevel pre-tokenizer
/// (or a ByteLevel pre-tokenizer with its GPT-2 regex) and a plain BPE model computes, and what a tiktoken
/// file with its pattern computes. Token ids are looked up by the raw bytes they stand for (GPT-2's byte
/// alphabet undone once, at load).
final class ByteLevelBPE: Sendable {
    let regex: UnicodeRegex
    /// HF ByteLevel's add_prefix_space: a space before a stretch that does not start with one.
    let prefixSpace: Bool
    /// The symbol id of each byte.
    let byteIds: [Int32]
    /// Raw bytes → id of every token that is a byte string.
    let tokens: ByteSliceTable
    let merges: PairTable
    /// A piece that is a token is that token without merging (tiktoken; HF BPE's ignore_merges).
    let wholeTokenFirst: Bool
    let cache: PieceCache

    init(regex: UnicodeRegex, prefixSpace: Bool, byteIds: [Int32], tokens: ByteSliceTable, merges: PairTable,
         wholeTokenFirst: Bool, cache: PieceCache) {
        self.regex = regex
        self.prefixSpace = prefixSpace
        self.byteIds = byteIds
        self.tokens = tokens
        self.merges = merges
        self.wholeTokenFirst = wholeTokenFirst
        self.cache = cache
    }

    /// The fast path for `model` behind `preTokenizer`, or nil when they are not byte-level BPE as above.
    static func make(preTokenizer: PreTokenizer?, model: any TokenModel) -> ByteLevelBPE? {
        var regex: UnicodeRegex? = nil
        var prefixSpace = false
        var byteLevel = false
        switch preTokenizer {
        case let .sequence(items)?:
            // Split(regex, Isolated) then ByteLevel without its own regex.
            guard items.count == 2, case let .split(replacer, .isolated, false) = items[0],
                  case let .regex(pattern) = replacer.kind, let r = pattern as? UnicodeRegex,
                  case .byteLevel(false, nil) = items[1] else { return nil }
            regex = r
            byteLevel = true
        case let .byteLevel(addPrefixSpace, pattern?)?:
            guard let r = pattern as? UnicodeRegex else { return nil }
            regex = r
            prefixSpace = addPrefixSpace
            byteLevel = true
        case let .split(replacer, .isolated, false)?:
            guard case let .regex(pattern) = replacer.kind, let r = pattern as? UnicodeRegex else { return nil }
            regex = r
        default:
            return nil
        }
        guard let regex else { return nil }
        if byteLevel, let bpe = model as? BPEModel, let (tokens, byteIds) = bpe.rawByteTokens {
            return ByteLevelBPE(regex: regex, prefixSpace: prefixSpace, byteIds: byteIds, tokens: tokens,
                                merges: bpe.merges, wholeTokenFirst: bpe.ignoreMerges, cache: bpe.cache)
        }
        if !byteLevel, let tiktoken = model as? TiktokenModel, let pairs = tiktoken.pairMerges {
            var byteIds = [Int32](repeating: -1, count: 256)
            for b in 0..<256 { byteIds[b] = tiktoken.tokens.get([UInt8(b)]).map(Int32.init) ?? -1 }
            return ByteLevelBPE(regex: regex, prefixSpace: false, byteIds: byteIds, tokens: tiktoken.tokens,
                                merges: pairs, wholeTokenFirst: true, cache: tiktoken.cache)
        }
        return nil
    }

    /// Appends the ids of `text` (one stretch between added tokens, already normalized). Returns false, with
    /// only some of the ids appended, as soon as `ids` would hold more than `limit`: a piece of n bytes is at
    /// least n / (the longest token's bytes) tokens, so one too long for the limit is not merged at all (a
    /// megabyte without a split would cost a third of a second), and the pattern stops at the match that proves
    /// the limit passed.
    func encode(_ text: String, into ids: inout [Int], limit: Int = .max) -> Bool {
        var text = text
        if text.isEmpty { return true }
        if prefixSpace && text.utf8.first != 0x20 { text = " " + text }
        let longest = max(1, tokens.longestKey)
        return text.withUTF8 { buffer in
            let p = buffer.baseAddress!
            // Every non-empty match is a token at least: one more than the room left proves the limit passed, so
            // the pattern need not run over the rest of a long text.
            let room = limit - ids.count
            let matches = regex.scalarMatches(utf8: buffer, maxNonEmpty: room == .max ? .max : max(room, 0) + 1)
            var scratch = MergeScratch()
            func piece(_ start: Int, _ n: Int) -> Bool {
                guard ids.count + (n + longest - 1) / longest <= limit else { return false }
                encodePiece(p + start, n, &ids, &scratch)
                return ids.count <= limit
            }
            // Split(Isolated): the matches and the stretches between them are the pieces.
            var last = 0
            var k = 0
            while k < matches.count {
                let start = matches[k], end = matches[k + 1]
                if start > last, !piece(last, start - last) { return false }
                if end > start, !piece(start, end - start) { return false }
                last = end
                k += 2
            }
            return buffer.count > last ? piece(last, buffer.count - last) : true
        }
    }

    @inline(__always)
    private func encodePiece(_ p: UnsafePointer<UInt8>, _ n: Int, _ ids: inout [Int], _ scratch: inout MergeScratch) {
        if n == 1 { ids.append(Int(byteIds[Int(p[0])])); return }
        if wholeTokenFirst {
            let id = tokens.get(p, n)
            if id >= 0 { ids.append(Int(id)); return }
        }
        let key = TokenBytes(UnsafeBufferPointer(start: p, count: n))
        if let hit = cache.get(key) { ids.append(contentsOf: hit); return }
        scratch.ids.removeAll(keepingCapacity: true)
        for i in 0..<n { scratch.ids.append(byteIds[Int(p[i])]) }
        let first = ids.count
        bpeMerge(&scratch, merges: merges, into: &ids)
        cache.put(key, Array(ids[first...]))
    }
}
