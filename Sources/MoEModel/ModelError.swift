/// Errors of building or running a model: unsupported architectures and settings, bad requests.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case unknownArchitecture(String, known: [String])
    case unsupported(String)
    case badInput(String)
    case contextOverflow(tokens: Int, context: Int)
    /// A paged KV cache needs more pages than its pool has free.
    case kvPagesExhausted(needed: Int, free: Int)

    public var description: String {
        switch self {
        case let .unknownArchitecture(type, known):
            return "unknown model_type '\(type)' (supported: \(known.joined(separator: ", ")))"
        case let .unsupported(what): return what
        case let .badInput(what): return what
        case let .contextOverflow(tokens, context):
            return "the sequence needs \(tokens) positions but the model's context is \(context) tokens"
        case let .kvPagesExhausted(needed, free):
            return "the KV cache needs \(needed) more pages but its pool has \(free) free"
        }
    }
}
