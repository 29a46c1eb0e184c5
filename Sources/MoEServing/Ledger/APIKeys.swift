import Foundation

/// The API keys a server accepts, held only as SHA-256 hashes so that neither memory dumps nor the usage
/// ledger (which stores the same hashes) reveal a key.
///
/// The keys file has one key per line; surrounding whitespace is trimmed, blank lines and lines starting
/// with `#` are skipped:
///
///     # team A
///     sk-team-a-4f1c…
///
///     let keys = try APIKeys(contentsOfFile: "keys.txt")
///     if let keyHash = keys.authorize(bearer: token) { … } else { /* 401 */ }
public struct APIKeys: Sendable {
    /// The accepted keys' hashes (lowercase hex SHA-256), in file order, without duplicates.
    public let hashes: [String]
    private let digests: [[UInt8]]

    /// Accepts exactly `keys` (used as given: not trimmed).
    public init(keys: [String]) {
        var seen = Set<String>()
        var hashes: [String] = [], digests: [[UInt8]] = []
        for key in keys {
            let digest = SHA256.digest(of: Array(key.utf8))
            let hex = SHA256.hex(digest)
            if seen.insert(hex).inserted { hashes.append(hex); digests.append(digest) }
        }
        self.hashes = hashes
        self.digests = digests
    }

    /// Reads a keys file; a missing, unreadable or key-less file is an error rather than an open server.
    public init(contentsOfFile path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { throw APIKeysError.missingFile(path: path) }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw APIKeysError.unreadable(path: path, reason: error.localizedDescription)
        }
        let keys = text.split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        guard !keys.isEmpty else { throw APIKeysError.noKeys(path: path) }
        self.init(keys: keys)
    }

    /// The hash the server keeps and the ledger stores for `key`: SHA-256 of its UTF-8 bytes, lowercase hex.
    ///
    ///     APIKeys.hash(of: "abc")  // "ba7816bf…f20015ad"
    public static func hash(of key: String) -> String { SHA256.hex(of: key) }

    /// The hash of the key `bearer` if it is one of ours, else nil (also for nil or an empty token).
    /// `bearer` is the token after `Bearer ` in the Authorization header.
    ///
    /// Every stored hash is compared in full, in time independent of where bytes differ, so response
    /// times tell an attacker nothing about how close a guess was.
    public func authorize(bearer: String?) -> String? {
        guard let bearer, !bearer.isEmpty else { return nil }
        let presented = SHA256.digest(of: Array(bearer.utf8))
        var match: Int?
        for (index, digest) in digests.enumerated() where Self.constantTimeEqual(digest, presented) {
            match = index
        }
        return match.map { hashes[$0] }
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}

/// Why a keys file was refused.
public enum APIKeysError: Error, CustomStringConvertible, Equatable {
    case missingFile(path: String)
    case unreadable(path: String, reason: String)
    case noKeys(path: String)

    public var description: String {
        switch self {
        case let .missingFile(path): return "keys file \(path) does not exist"
        case let .unreadable(path, reason): return "cannot read keys file \(path): \(reason)"
        case let .noKeys(path): return "keys file \(path) has no keys (one per line; blank lines and # comments are skipped)"
        }
    }
}
