import Foundation

/// A compiled pre-tokenizer pattern (the `Split` regex of a tokenizer.json, or a tiktoken pattern):
/// finds the successive non-overlapping leftmost matches in a text, as Oniguruma (HF `tokenizers`) and
/// fancy-regex (tiktoken) do for the constructs these patterns use.
public protocol TextPattern: Sendable {
    /// Ranges of the successive matches, in order.
    func matches(in text: String) -> [Range<String.Index>]
}

/// Errors of loading tokenizers and their parts; each names what is at fault.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    case badFile(path: String, reason: String)
    case unsupported(String)
    case badPattern(pattern: String, reason: String)
    case badInput(String)

    public var description: String {
        switch self {
        case let .badFile(path, reason): return "\(path): \(reason)"
        case let .unsupported(what): return what
        case let .badPattern(pattern, reason): return "cannot compile pattern \(pattern): \(reason)"
        case let .badInput(what): return what
        }
    }
}

public enum TextPatterns {
    /// Compiles `pattern` with the project's matcher.
    public static func compile(_ pattern: String) throws -> any TextPattern {
        try UnicodeRegex(pattern)
    }
}

/// A pattern run by Foundation's ICU-based NSRegularExpression: correct for these patterns but slow
/// (UTF-16 conversions); kept as a cross-check for the project's own matcher.
public struct ICUPattern: TextPattern, @unchecked Sendable {
    let regex: NSRegularExpression

    public init(_ pattern: String) throws {
        do { regex = try NSRegularExpression(pattern: pattern) } catch {
            throw TokenizerError.badPattern(pattern: pattern, reason: "\(error)")
        }
    }

    public func matches(in text: String) -> [Range<String.Index>] {
        regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap { Range($0.range, in: text) }
    }
}
