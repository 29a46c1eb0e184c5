import Foundation
import MoEFormats
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

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
