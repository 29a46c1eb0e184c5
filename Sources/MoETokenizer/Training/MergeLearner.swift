// The merge loop of byte-level BPE training, step for step the one of HF `tokenizers`' BpeTrainer
// (tokenizers/src/models/bpe/trainer.rs, `do_train`), so that the same words give the same merges.

/// One learned merge: symbols `left` and `right` (ids) become `result`.
struct LearnedMerge: Equatable, Sendable {
    var left: Int32
    var right: Int32
    var result: Int32
}

/// Learns BPE merges from counted words.
///
/// Symbol ids: 0..<256 are the bytes, ordered as HF orders its alphabet (by the byte-level scalar
/// `ByteLevel.table[b]`, which is also GPT-2's vocabulary order); each new token gets the next id.
///
/// The loop is HF's:
/// - `pairCounts[p]` is the count of pair p over all words (each word weighted by its count); the priority
///   queue holds entries (pair, count, positions) where positions are the words where the pair was seen
///   when the entry was pushed.
/// - Pop the entry with the largest count; **ties go to the smaller pair (left id, then right id)**, i.e.
///   to the pair of older tokens, the bytes in GPT-2 alphabet order first (HF's `Ord for Merge`). A popped
///   entry whose count is stale is pushed back with the current count.
/// - Stop when the vocabulary (tokens + special tokens) is full, the queue is empty, or the best count is
///   below `minFrequency`.
/// - Merge the pair in the entry's words (left to right, non-overlapping: "aaa" → "aa" "a"), apply the
///   changes to `pairCounts`, and push one entry per pair that gained occurrences, with those words.
/// - A merged token whose string already exists (from another pair) reuses that id.
/// As in HF, a pair can have several queue entries (its words split among them) and is then merged once
/// per entry, consecutively; `dedupedMerges` keeps each pair once, at its last position, as HF's model does.
struct MergeLearner {
    /// Words as symbol ids and how often each occurs.
    var words: [[Int32]]
    let counts: [Int]
    /// Token bytes by id.
    var tokens: [[UInt8]]
    var tokenIds: [[UInt8]: Int32] = [:]
    var merges: [LearnedMerge] = []

    /// The byte of each of the first 256 ids, and the reverse.
    static let byteOfId: [UInt8] = (0..<256).map { UInt8($0) }.sorted {
        ByteLevel.table[Int($0)].value < ByteLevel.table[Int($1)].value
    }
    static let idOfByte: [Int32] = {
        var ids = [Int32](repeating: 0, count: 256)
        for (id, b) in byteOfId.enumerated() { ids[Int(b)] = Int32(id) }
        return ids
    }()

    init(words wordBytes: [[UInt8]], counts: [Int]) {
        precondition(wordBytes.count == counts.count)
        words = wordBytes.map { $0.map { Self.idOfByte[Int($0)] } }
        self.counts = counts
        tokens = Self.byteOfId.map { [$0] }
        for (i, t) in tokens.enumerated() { tokenIds[t] = Int32(i) }
    }

    @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    /// Learns merges until there are `maxTokens` tokens (or no pair occurs `minFrequency` times).
    /// `progress(tokensLearned, tokensWanted)` is called after each merge.
    mutating func learn(maxTokens: Int, minFrequency: Int, progress: ((Int, Int) -> Void)? = nil) {
        var pairCounts: [UInt64: Int] = [:]
        var whereToUpdate: [UInt64: [Int32]] = [:]
        for (w, word) in words.enumerated() where word.count > 1 {
            let c = counts[w]
            for j in 0..<(word.count - 1) {
                let p = Self.key(word[j], word[j + 1])
                pairCounts[p, default: 0] += c
                // Words are visited in order, so a word already listed is the list's last element.
                whereToUpdate[p, default: []].appendIfNotLast(Int32(w))
            }
        }
        var queue = PairQueue()
        for (p, pos) in whereToUpdate {
            let c = pairCounts[p]!
            if c > 0 { queue.push(count: c, pair: p, positions: pos) }
        }
        whereToUpdate.removeAll(keepingCapacity: true)

        let wanted = max(0, maxTokens - 256)
        var changes: [(pair: UInt64, change: Int)] = []
        while tokens.count < maxTokens {
            guard var top = queue.pop() else { break }
            let current = pairCounts[top.pair] ?? 0
            if top.count != current {
                top.count = current
                queue.push(top)
                continue
            }
            if top.count < 1 || minFrequency > top.count { break }

            let a = Int32(truncatingIfNeeded: top.pair >> 32), b = Int32(truncatingIfNeeded: top.pair & 0xFFFF_FFFF)
            let newToken = tokens[Int(a)] + tokens[Int(b)]
            let newId: Int32
            if let existing = tokenIds[newToken] {
                newId = existing
            } else {
                newId = Int32(tokens.count)
                tokens.append(newToken)
                tokenIds[newToken] = newId
            }
            merges.append(LearnedMerge(left: a, right: b, result: newId))

            let positions = queue.takePositions(top)
            for w in positions {
                changes.removeAll(keepingCapacity: true)
                Self.merge(&words[Int(w)], a, b, newId, into: &changes)
                let c = counts[Int(w)]
                for (p, change) in changes {
                    pairCounts[p, default: 0] += change * c
                    if change > 0 { whereToUpdate[p, default: []].appendIfNotLast(w) }
                }
            }
            for (p, pos) in whereToUpdate {
                let c = pairCounts[p]!
                if c > 0 { queue.push(count: c, pair: p, positions: pos) }
            }
            whereToUpdate.removeAll(keepingCapacity: true)
            progress?(tokens.count - 256, wanted)
        }
    }

    /// HF's `Word::merge`: replaces each (a, b) in `word`, left to right, by `id`, and lists the changes of
    /// pair counts (-1 for the pairs the merge breaks, +1 for those it forms; the merged pair itself is not
    /// listed).
    static func merge(_ word: inout [Int32], _ a: Int32, _ b: Int32, _ id: Int32,
                      into changes: inout [(pair: UInt64, change: Int)]) {
        var i = 0
        while i < word.count {
            if word[i] == a && i + 1 < word.count && word[i + 1] == b {
                if i > 0 {
                    changes.append((key(word[i - 1], a), -1))
                    changes.append((key(word[i - 1], id), 1))
                }
                word[i] = id
                word.remove(at: i + 1)
                if i < word.count - 1 {
                    changes.append((key(b, word[i + 1]), -1))
                    changes.append((key(id, word[i + 1]), 1))
                }
            }
            i += 1
        }
    }

    /// The merges as HF's trained model keeps them: a pair merged several times (see above) once, at the
    /// position of its last merge.
    var dedupedMerges: [LearnedMerge] {
        var last: [UInt64: Int] = [:]
        for (i, m) in merges.enumerated() { last[Self.key(m.left, m.right)] = i }
        return merges.enumerated().filter { last[Self.key($0.element.left, $0.element.right)] == $0.offset }.map(\.element)
    }
}

extension Array where Element == Int32 {
    @inline(__always) mutating func appendIfNotLast(_ x: Int32) {
        if last != x { append(x) }
    }
}

/// A max-heap of (count, pair) entries, larger count first and then smaller pair; each entry owns a list of
/// word positions, kept in a side table so that sifting moves only small values.
struct PairQueue {
    struct Entry {
        var count: Int
        var pair: UInt64
        var slot: Int32
    }

    private var heap: [Entry] = []
    private var positions: [[Int32]] = []
    private var freeSlots: [Int32] = []

    var isEmpty: Bool { heap.isEmpty }
    var count: Int { heap.count }

    @inline(__always) private static func before(_ x: Entry, _ y: Entry) -> Bool {
        x.count != y.count ? x.count > y.count : x.pair < y.pair
    }

    mutating func push(count: Int, pair: UInt64, positions pos: [Int32]) {
        let slot: Int32
        if let s = freeSlots.popLast() {
            slot = s
            positions[Int(s)] = pos
        } else {
            slot = Int32(positions.count)
            positions.append(pos)
        }
        push(Entry(count: count, pair: pair, slot: slot))
    }

    /// Pushes back a popped entry (its positions kept).
    mutating func push(_ entry: Entry) {
        heap.append(entry)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard Self.before(heap[i], heap[parent]) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Entry? {
        guard !heap.isEmpty else { return nil }
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            let n = heap.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var best = i
                if l < n && Self.before(heap[l], heap[best]) { best = l }
                if r < n && Self.before(heap[r], heap[best]) { best = r }
                if best == i { break }
                heap.swapAt(i, best)
                i = best
            }
        }
        return top
    }

    /// The positions of a popped entry, which is done with.
    mutating func takePositions(_ entry: Entry) -> [Int32] {
        let pos = positions[Int(entry.slot)]
        positions[Int(entry.slot)] = []
        freeSlots.append(entry.slot)
        return pos
    }
}
