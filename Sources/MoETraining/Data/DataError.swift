import Foundation

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
