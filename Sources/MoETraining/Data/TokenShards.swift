import Foundation
import MoEFormats
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// What can go wrong reading a corpus, writing or reading token shards, or sampling batches.
public enum DataError: Error, CustomStringConvertible {
    case fileNotFound(String)
    case unreadable(path: String, reason: String)
    case invalidUTF8(path: String)
    case malformedLine(path: String, line: Int, reason: String)
    /// "no tokens in <what>": a file with no text, or documents that tokenize to nothing.
    case emptyCorpus(String)
    case tokenOutOfRange(token: Int, vocabSize: Int)
    case invalidShard(path: String, reason: String)
    case sequenceTooLong(seqLen: Int, tokens: Int)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .fileNotFound(let p): return "file not found: \(p)"
        case .unreadable(let p, let r): return "cannot read \(p): \(r)"
        case .invalidUTF8(let p): return "\(p) is not valid UTF-8 text"
        case .malformedLine(let p, let l, let r): return "\(p):\(l): \(r)"
        case .emptyCorpus(let what): return "no tokens in \(what)"
        case .tokenOutOfRange(let t, let v): return "token id \(t) is outside the vocabulary (size \(v))"
        case .invalidShard(let p, let r): return "\(p) is not a valid token shard: \(r)"
        case .sequenceTooLong(let s, let n):
            return "sequence length \(s) is too long: one window needs \(s + 1) tokens and the data has \(n)"
        case .invalidArgument(let m): return m
        }
    }
}

/// Training text: `try TrainingText.documents(path: "stories.jsonl")` → one string per `{"text": …}` line;
/// any other file is a single document.
public enum TrainingText {
    public static func documents(path: String) throws -> [String] {
        guard FileManager.default.fileExists(atPath: path) else { throw DataError.fileNotFound(path) }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw DataError.unreadable(path: path, reason: error.localizedDescription)
        }
        var docs: [String] = []
        if path.hasSuffix(".jsonl") {
            for (index, line) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated()
            where line.contains(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0D }) {
                let object: Any
                do { object = try JSONSerialization.jsonObject(with: Data(line)) } catch {
                    throw DataError.malformedLine(path: path, line: index + 1, reason: "not valid JSON")
                }
                guard let dict = object as? [String: Any] else {
                    throw DataError.malformedLine(path: path, line: index + 1, reason: "not a JSON object")
                }
                guard let text = dict["text"] as? String else {
                    throw DataError.malformedLine(path: path, line: index + 1, reason: "no string field \"text\"")
                }
                docs.append(text)
            }
        } else {
            guard let text = String(validating: data, as: UTF8.self) else { throw DataError.invalidUTF8(path: path) }
            docs = [text]
        }
        // Say which file is empty here; later the tokenizer only sees strings.
        guard docs.contains(where: { !$0.isEmpty }) else { throw DataError.emptyCorpus(path) }
        return docs
    }
}

/// Token shard files: "MOESHRD1", UInt32 bytes per token (2 or 4), UInt32 0, UInt64 count, tokens; little-endian.
/// `try TokenShardFile.write(tokens: [1, 2, 3], vocabSize: 50_000, to: "train.bin")` writes 2-byte tokens.
public enum TokenShardFile {
    static let magic = Array("MOESHRD1".utf8)
    static let headerSize = 24

    public static func write(tokens: [UInt32], vocabSize: Int, to path: String) throws {
        guard vocabSize > 0, vocabSize <= 1 << 32 else { throw DataError.invalidArgument("vocabulary size \(vocabSize) out of range") }
        if let bad = tokens.first(where: { Int($0) >= vocabSize }) { throw DataError.tokenOutOfRange(token: Int(bad), vocabSize: vocabSize) }
        let width = vocabSize <= 65536 ? 2 : 4
        try AtomicFile.write(to: path) { file in
            var header = magic
            withUnsafeBytes(of: UInt32(width).littleEndian) { header += $0 }
            withUnsafeBytes(of: UInt32(0)) { header += $0 }
            withUnsafeBytes(of: UInt64(tokens.count).littleEndian) { header += $0 }
            try file.write(contentsOf: header)
            // Converted in chunks so a large shard never needs a second full-size copy.
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            var i = 0
            while i < tokens.count {
                let n = min(tokens.count - i, chunk.count / width)
                chunk.withUnsafeMutableBytes { raw in
                    for k in 0..<n {
                        if width == 2 { raw.storeBytes(of: UInt16(tokens[i + k]).littleEndian, toByteOffset: 2 * k, as: UInt16.self) }
                        else { raw.storeBytes(of: tokens[i + k].littleEndian, toByteOffset: 4 * k, as: UInt32.self) }
                    }
                }
                try file.write(contentsOf: chunk[0..<(n * width)])
                i += n
            }
        }
    }

}

/// A memory-mapped token shard: `let shard = try TokenShard(path: "train.bin"); shard[0]`.
public final class TokenShard: @unchecked Sendable {  // immutable after init; the mapping is read-only
    public let path: String
    public let count: Int
    /// Bytes per token in the file (2 or 4).
    public let width: Int
    private let base: UnsafeMutableRawPointer
    private let mappedSize: Int

    public init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw errno == ENOENT ? DataError.fileNotFound(path) : DataError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw DataError.unreadable(path: path, reason: String(cString: strerror(errno))) }
        let size = Int(st.st_size)
        guard size >= TokenShardFile.headerSize else { throw DataError.invalidShard(path: path, reason: "\(size) bytes is shorter than the header") }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw DataError.unreadable(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        let raw = UnsafeRawPointer(map)
        let width = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        let count = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        let problem: String?
        if Array(UnsafeRawBufferPointer(start: raw, count: 8)) != TokenShardFile.magic { problem = "bad magic (expected MOESHRD1)" }
        else if width != 2 && width != 4 { problem = "unsupported token width \(width)" }
        // Compare via division so a garbage count cannot overflow; a truncated file must be an error, never a crash.
        else if count > UInt64((size - TokenShardFile.headerSize) / width) || (size - TokenShardFile.headerSize) != Int(count) * width {
            problem = "file is \(size) bytes but the header promises \(count) tokens of \(width) bytes (truncated?)"
        } else { problem = nil }
        if let problem {
            munmap(map, size)
            throw DataError.invalidShard(path: path, reason: problem)
        }
        (self.path, self.count, self.width, base, mappedSize) = (path, Int(count), width, map, size)
    }

    deinit { munmap(base, mappedSize) }

    public subscript(i: Int) -> UInt32 {
        precondition(i >= 0 && i < count, "token index \(i) out of range 0..<\(count)")
        let p = base + TokenShardFile.headerSize  // 24-byte header keeps the tokens aligned in the page-aligned mapping
        return width == 2 ? UInt32(UInt16(littleEndian: p.assumingMemoryBound(to: UInt16.self)[i]))
                          : UInt32(littleEndian: p.assumingMemoryBound(to: UInt32.self)[i])
    }

    /// Copies tokens [start, start + n) into `dst` as Int32 (the width is checked once, not per token).
    func copy(from start: Int, count n: Int, to dst: UnsafeMutablePointer<Int32>) {
        precondition(start >= 0 && n >= 0 && start + n <= count)
        let p = base + TokenShardFile.headerSize
        if width == 2 {
            let src = p.assumingMemoryBound(to: UInt16.self) + start
            for k in 0..<n { dst[k] = Int32(UInt16(littleEndian: src[k])) }
        } else {
            let src = p.assumingMemoryBound(to: UInt32.self) + start
            for k in 0..<n { dst[k] = Int32(bitPattern: UInt32(littleEndian: src[k])) }
        }
    }

    /// 64-bit FNV-1a over the tokens' little-endian UInt32 bytes (the manifest's check that shards are intact).
    func fnv1a(continuing h: UInt64 = TokenizedCorpus.fnvOffset) -> UInt64 {
        var h = h
        for i in 0..<count { h = TokenizedCorpus.fnv1a(self[i], h) }
        return h
    }
}

/// Tokenizes documents once into `train.bin` / `val.bin` plus `manifest.json`, so later runs can reuse them:
/// ```
/// let shards = try TokenizedCorpus.load(shardDirectory: dir, expecting: fingerprint)
///     ?? TokenizedCorpus.build(documents: docs, encode: { tok.encode($0) }, eosToken: eos, vocabSize: v,
///                              validationFraction: 0.05, shardDirectory: dir, progress: nil)
/// ```
public struct TokenizedCorpus {
    /// What the shards were built from. It cannot see the tokenizer: delete the directory when the tokenizer changes.
    public struct Fingerprint: Codable, Equatable, Sendable {
        public var documents: Int
        public var documentBytes: Int
        /// FNV-1a 64 of the documents' UTF-8, each followed by 0xFF (a byte UTF-8 never uses), as hex.
        public var documentHash: String
        public var vocabSize: Int
        public var eosToken: Int
        public var validationFraction: Double

        public init(documents docs: [String], vocabSize: Int, eosToken: Int, validationFraction: Double) {
            var h = fnvOffset, bytes = 0
            for d in docs {
                for b in d.utf8 { h = (h ^ UInt64(b)) &* fnvPrime }
                h = (h ^ 0xFF) &* fnvPrime
                bytes += d.utf8.count
            }
            (documents, documentBytes, documentHash) = (docs.count, bytes, String(h, radix: 16))
            (self.vocabSize, self.eosToken, self.validationFraction) = (vocabSize, eosToken, validationFraction)
        }
    }

    struct Manifest: Codable {
        var fingerprint: Fingerprint
        var trainTokens: Int
        var validationTokens: Int
        var tokenHash: String  // FNV-1a 64 of train then validation tokens, hex
    }

    static let fnvOffset: UInt64 = 0xcbf2_9ce4_8422_2325
    static let fnvPrime: UInt64 = 0x100_0000_01b3
    static func fnv1a(_ token: UInt32, _ h: UInt64) -> UInt64 {
        var h = h
        for s in stride(from: 0, to: 32, by: 8) { h = (h ^ UInt64((token >> UInt32(s)) & 0xFF)) &* fnvPrime }
        return h
    }

    public static func build(documents: [String], encode: (String) -> [Int], eosToken: Int, vocabSize: Int,
                             validationFraction: Double, shardDirectory: String,
                             progress: ((Int, Int) -> Void)?) throws -> (train: TokenShard, validation: TokenShard) {
        guard validationFraction >= 0 && validationFraction < 1 else {
            throw DataError.invalidArgument("validation fraction \(validationFraction) must be in [0, 1)")
        }
        guard eosToken >= 0 && eosToken < vocabSize else { throw DataError.tokenOutOfRange(token: eosToken, vocabSize: vocabSize) }
        // Every k-th document is held out whole, so validation text is never trained on; at least one when asked for any.
        let k = validationFraction > 0 ? max(2, Int((1 / validationFraction).rounded())) : Int.max
        let lastHeldOut = validationFraction > 0 && documents.count >= 2 && documents.count < k
        var train: [UInt32] = [], val: [UInt32] = [], contentTokens = 0
        for (i, doc) in documents.enumerated() {
            let ids = encode(doc)
            contentTokens += ids.count
            let heldOut = documents.count >= 2 && (i % k == k - 1 || (lastHeldOut && i == documents.count - 1))
            for t in ids + [eosToken] {
                guard t >= 0 && t < vocabSize else { throw DataError.tokenOutOfRange(token: t, vocabSize: vocabSize) }
                if heldOut { val.append(UInt32(t)) } else { train.append(UInt32(t)) }
            }
            progress?(i + 1, documents.count)
        }
        guard contentTokens > 0 else { throw DataError.emptyCorpus("the corpus (\(documents.count) documents)") }
        if documents.count == 1 {  // nothing to hold out whole: cut the one document's tokens instead
            let cut = Int((Double(train.count) * (1 - validationFraction)).rounded(.down))
            val = Array(train[cut...])
            train.removeSubrange(cut...)
        }

        do { try FileManager.default.createDirectory(atPath: shardDirectory, withIntermediateDirectories: true) } catch {
            throw DataError.unreadable(path: shardDirectory, reason: "cannot create the directory: \(error.localizedDescription)")
        }
        let (manifestPath, trainPath, valPath) = paths(shardDirectory)
        unlink(manifestPath)  // written last: until then a crash leaves no manifest, and the next run rebuilds
        try TokenShardFile.write(tokens: train, vocabSize: vocabSize, to: trainPath)
        try TokenShardFile.write(tokens: val, vocabSize: vocabSize, to: valPath)
        var h = fnvOffset
        for t in train { h = fnv1a(t, h) }
        for t in val { h = fnv1a(t, h) }
        let manifest = Manifest(
            fingerprint: Fingerprint(documents: documents, vocabSize: vocabSize, eosToken: eosToken, validationFraction: validationFraction),
            trainTokens: train.count, validationTokens: val.count, tokenHash: String(h, radix: 16))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = try encoder.encode(manifest)
        try AtomicFile.write(json, to: manifestPath)
        return (try TokenShard(path: trainPath), try TokenShard(path: valPath))
    }

    /// The shards in `shardDirectory`, or nil when there is no manifest or it does not match `expecting`.
    /// Throws when the manifest exists but the shards disagree with it (corrupt or half-replaced).
    public static func load(shardDirectory: String, expecting: Fingerprint? = nil) throws -> (train: TokenShard, validation: TokenShard)? {
        let (manifestPath, trainPath, valPath) = paths(shardDirectory)
        guard let data = FileManager.default.contents(atPath: manifestPath) else { return nil }
        let manifest: Manifest
        do { manifest = try JSONDecoder().decode(Manifest.self, from: data) } catch {
            throw DataError.invalidShard(path: manifestPath, reason: "unreadable manifest (\(error)); delete the directory to rebuild")
        }
        if let expecting, expecting != manifest.fingerprint { return nil }
        let train = try TokenShard(path: trainPath), val = try TokenShard(path: valPath)
        guard train.count == manifest.trainTokens, val.count == manifest.validationTokens,
              String(val.fnv1a(continuing: train.fnv1a()), radix: 16) == manifest.tokenHash else {
            throw DataError.invalidShard(path: shardDirectory, reason: "shards do not match manifest.json; delete the directory to rebuild")
        }
        return (train, val)
    }

    static func paths(_ dir: String) -> (manifest: String, train: String, validation: String) {
        let d = dir as NSString
        return (d.appendingPathComponent("manifest.json"), d.appendingPathComponent("train.bin"), d.appendingPathComponent("val.bin"))
    }
}

/// Shuffled fixed windows over a shard: window i is tokens [i·seqLen, i·seqLen + seqLen]; inputs are its first seqLen
/// tokens, targets its last seqLen. Documents are only EOS-separated, so a window may span two (as nanoGPT does).
/// ```
/// var sampler = try BatchSampler(tokenCount: shard.count, seqLen: 256, batchSize: 8, seed: 42)
/// sampler.nextBatch(from: shard, inputs: x, targets: y)   // x, y: 8 × 256 Int32 each
/// ```
/// Its Codable state (seed, epoch, position) recreates the same order, so a resumed run sees the same batches.
public struct BatchSampler: Codable, Sendable {
    public let tokenCount: Int
    public let seqLen: Int
    public let batchSize: Int
    public let seed: UInt64
    public private(set) var epoch = 0
    /// Windows already taken in the current epoch.
    public private(set) var position = 0
    // Derived from (seed, epoch), so not encoded: a permutation can be megabytes.
    private var order: [UInt32] = []
    private var orderEpoch = -1

    private enum CodingKeys: String, CodingKey { case tokenCount, seqLen, batchSize, seed, epoch, position }

    public var windowCount: Int { (tokenCount - 1) / seqLen }
    public var consumedWindows: Int { epoch * windowCount + position }

    public init(tokenCount: Int, seqLen: Int, batchSize: Int, seed: UInt64) throws {
        guard seqLen >= 1, batchSize >= 1 else { throw DataError.invalidArgument("seqLen and batchSize must be at least 1") }
        guard tokenCount >= seqLen + 1 else { throw DataError.sequenceTooLong(seqLen: seqLen, tokens: tokenCount) }
        guard (tokenCount - 1) / seqLen <= Int(UInt32.max) else { throw DataError.invalidArgument("too many windows") }
        (self.tokenCount, self.seqLen, self.batchSize, self.seed) = (tokenCount, seqLen, batchSize, seed)
    }

    /// Fills `inputs` and `targets` with batchSize × seqLen tokens each (row-major); a batch may straddle two epochs.
    public mutating func nextBatch(from shard: TokenShard, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        precondition(shard.count == tokenCount, "sampler was made for \(tokenCount) tokens, shard \(shard.path) has \(shard.count)")
        for row in 0..<batchSize {
            if orderEpoch != epoch { order = Self.permutation(windowCount, seed: seed, epoch: epoch); orderEpoch = epoch }
            let start = Int(order[position]) * seqLen
            shard.copy(from: start, count: seqLen, to: inputs + row * seqLen)
            shard.copy(from: start + 1, count: seqLen, to: targets + row * seqLen)
            position += 1
            if position == windowCount { epoch += 1; position = 0 }
        }
    }

    /// Fisher–Yates with SplitMix64 seeded from (seed, epoch): each epoch's order is reproducible on its own.
    static func permutation(_ n: Int, seed: UInt64, epoch: Int) -> [UInt32] {
        var state = SplitMix64.mix(seed ^ SplitMix64.mix(UInt64(epoch) &+ 0x5EED))
        var p = (0..<n).map { UInt32($0) }
        for i in stride(from: n - 1, to: 0, by: -1) {
            state &+= SplitMix64.gamma
            let j = Int(UInt64(i + 1).multipliedFullWidth(by: SplitMix64.mix(state)).high)  // uniform in 0...i
            p.swapAt(i, j)
        }
        return p
    }

    /// The first windows in order (no shuffling), at most maxBatches batches. The last batch may hold fewer than
    /// batchSize rows (inputs.count / seqLen of them); empty when not even one window fits.
    public static func validationBatches(shard: TokenShard, seqLen: Int, batchSize: Int, maxBatches: Int) -> [(inputs: [Int32], targets: [Int32])] {
        guard seqLen >= 1, batchSize >= 1, shard.count > seqLen else { return [] }
        let windows = min((shard.count - 1) / seqLen, maxBatches * batchSize)
        return stride(from: 0, to: windows, by: batchSize).map { first in
            let rows = min(batchSize, windows - first)
            var x = [Int32](repeating: 0, count: rows * seqLen), y = x
            x.withUnsafeMutableBufferPointer { xb in
                y.withUnsafeMutableBufferPointer { yb in
                    for r in 0..<rows {
                        shard.copy(from: (first + r) * seqLen, count: seqLen, to: xb.baseAddress! + r * seqLen)
                        shard.copy(from: (first + r) * seqLen + 1, count: seqLen, to: yb.baseAddress! + r * seqLen)
                    }
                }
            }
            return (x, y)
        }
    }
}
