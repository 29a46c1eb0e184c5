import Foundation

/// tiktoken's byte-level BPE: every byte string in the rank file is a token whose id is its rank; a piece
/// is split into bytes and the adjacent pair whose concatenation has the lowest rank is merged (leftmost on
/// ties) until no concatenation is a token. Token text is shown in GPT-2's byte-level alphabet.
///
///     let m = try TiktokenModel(ranks: [[0x61]: 0, [0x62]: 1, [0x61, 0x62]: 2], path: "-")
///     m.tokenize("abab")   // [2, 2]
final class TiktokenModel: TokenModel, @unchecked Sendable {
    let ranks: [TokenBytes: Int]
    let idToBytes: [TokenBytes?]
    let cache = PieceCache()
    /// The ranks in a flat table (what `ByteLevelBPE` looks pieces up in).
    let tokens: ByteSliceTable
    /// Every pair of tokens whose concatenation is a token → (its rank << 32 | its rank): tiktoken's merge
    /// rule as pair merges, for `bpeMerge`. Nil when a byte is not a token (never so in real rank files).
    let pairMerges: PairTable?

    var idLimit: Int { idToBytes.count }

    init(ranks: [TokenBytes: Int], path: String) throws {
        let maxRank = ranks.values.max() ?? -1
        guard maxRank < 50_000_000 else { throw TokenizerError.badFile(path: path, reason: "rank \(maxRank) is too large") }
        var idToBytes = [TokenBytes?](repeating: nil, count: maxRank + 1)
        for (bytes, rank) in ranks {
            if idToBytes[rank] != nil {
                throw TokenizerError.badFile(path: path, reason: "rank \(rank) is given to two tokens")
            }
            idToBytes[rank] = bytes
        }
        self.ranks = ranks
        self.idToBytes = idToBytes
        var tokens = ByteSliceTable(capacity: ranks.count)
        for (bytes, rank) in ranks { tokens.insert(bytes, Int32(rank)) }
        self.tokens = tokens
        pairMerges = Self.pairMerges(idToBytes, tokens)
    }

    static func pairMerges(_ idToBytes: [TokenBytes?], _ tokens: ByteSliceTable) -> PairTable? {
        for b in 0..<256 where tokens.get([UInt8(b)]) == nil { return nil }
        var splits = 0
        for case let bytes? in idToBytes { splits += max(bytes.count - 1, 0) }
        var pairs = PairTable(capacity: splits)
        for (rank, token) in idToBytes.enumerated() {
            guard let token, token.count >= 2 else { continue }
            token.withUnsafeBufferPointer { t in
                let p = t.baseAddress!
                for k in 1..<t.count {
                    let left = tokens.get(p, k), right = tokens.get(p + k, t.count - k)
                    if left >= 0 && right >= 0 { pairs.insert(PairTable.key(left, right), UInt64(rank) << 32 | UInt64(rank)) }
                }
            }
        }
        return pairs
    }

    /// Parses a tiktoken rank file (`load_tiktoken_bpe`): lines of "base64-token rank".
    convenience init(contents: Data, path: String) throws {
        var ranks: [TokenBytes: Int] = [:]
        let text = String(decoding: contents, as: UTF8.self)
        var lineNumber = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            if fields.isEmpty { continue }
            guard fields.count == 2, let rank = Int(fields[1]), rank >= 0,
                  let bytes = Data(base64Encoded: String(fields[0])) else {
                throw TokenizerError.badFile(path: path, reason: "line \(lineNumber) is not \"<base64 token> <rank>\"")
            }
            ranks[Array(bytes)] = rank
        }
        if ranks.isEmpty { throw TokenizerError.badFile(path: path, reason: "no ranks") }
        try self.init(ranks: ranks, path: path)
    }

    func token(forId id: Int) -> String? {
        guard id >= 0, id < idToBytes.count, let bytes = idToBytes[id] else { return nil }
        var view = String.UnicodeScalarView()
        for b in bytes { view.append(ByteLevel.scalar(for: b)) }
        return String(view)
    }

    func id(forToken token: String) -> Int? {
        var bytes: [UInt8] = []
        for s in token.unicodeScalars {
            guard let b = ByteLevel.byte(for: s) else { return nil }
            bytes.append(b)
        }
        return ranks[bytes]
    }

    func bytes(forId id: Int) -> TokenBytes? { id >= 0 && id < idToBytes.count ? idToBytes[id] : nil }

    func tokenize(_ piece: String) -> [Int] {
        let bytes = Array(piece.utf8)
        if bytes.isEmpty { return [] }
        if let id = ranks[bytes] { return [id] }
        if let hit = cache.get(bytes) { return hit }
        let ids = bytePairEncode(bytes)
        cache.put(bytes, ids)
        return ids
    }

    /// tiktoken's `_byte_pair_merge`. A byte that is not a token (never so in real rank files) is skipped.
    func bytePairEncode(_ piece: [UInt8]) -> [Int] {
        if piece.count == 1 { return ranks[piece].map { [$0] } ?? [] }
        let none = Int.max
        func rank(_ lo: Int, _ hi: Int) -> Int { ranks[Array(piece[lo..<hi])] ?? none }
        // parts[i] = (start, rank of the pair starting at start)
        var starts: [Int] = []
        var pairRanks: [Int] = []
        starts.reserveCapacity(piece.count + 1)
        pairRanks.reserveCapacity(piece.count + 1)
        var minRank = (none, Int.max)
        for i in 0..<(piece.count - 1) {
            let r = rank(i, i + 2)
            if r < minRank.0 { minRank = (r, i) }
            starts.append(i)
            pairRanks.append(r)
        }
        starts.append(piece.count - 1); pairRanks.append(none)
        starts.append(piece.count); pairRanks.append(none)
        func getRank(_ i: Int) -> Int { i + 3 < starts.count ? rank(starts[i], starts[i + 3]) : none }
        while minRank.0 != none {
            let i = minRank.1
            if i > 0 { pairRanks[i - 1] = getRank(i - 1) }
            pairRanks[i] = getRank(i)
            starts.remove(at: i + 1)
            pairRanks.remove(at: i + 1)
            minRank = (none, Int.max)
            for j in 0..<(pairRanks.count - 1) where pairRanks[j] < minRank.0 { minRank = (pairRanks[j], j) }
        }
        var out: [Int] = []
        out.reserveCapacity(starts.count - 1)
        for j in 0..<(starts.count - 1) {
            if let id = ranks[Array(piece[starts[j]..<starts[j + 1]])] { out.append(id) }
        }
        return out
    }
}
