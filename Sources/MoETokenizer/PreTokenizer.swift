import Foundation

/// A stretch of text on its way through pre-tokenization. `atStart` says it begins at offset 0 of the
/// original input (HF's `offsets_original().0 == 0`, which Metaspace's `prepend_scheme: "first"` tests).
struct Piece: Sendable, Equatable {
    var text: String
    var atStart: Bool
}

/// How a split treats the delimiters it finds (HF `SplitDelimiterBehavior`).
enum SplitBehavior: String, Sendable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"
}

/// A tokenizer.json `pre_tokenizer`: cuts normalized text into the pieces the model tokenizes one by one.
///
///     let p = try PreTokenizer(json: JSONValue.parse(Data(#"{"type": "Digits", "individual_digits": true}"#.utf8), path: "-"))
///     p.preTokenize([Piece(text: "a12", atStart: true)]).map(\.text)   // ["a", "1", "2"]
indirect enum PreTokenizer: Sendable {
    case split(StringReplacer, behavior: SplitBehavior, invert: Bool)
    case byteLevel(addPrefixSpace: Bool, regex: (any TextPattern)?)
    case digits(individual: Bool)
    case metaspace(replacement: Unicode.Scalar, prepend: PrependScheme, split: Bool)
    case whitespace(any TextPattern)
    case whitespaceSplit
    case punctuation(SplitBehavior)
    case charDelimiter(Unicode.Scalar)
    case bert
    case sequence([PreTokenizer])

    enum PrependScheme: String, Sendable { case always, first, never }

    /// GPT-2's pre-tokenizer pattern (HF ByteLevel with `use_regex`).
    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    init(json: JSONValue) throws {
        guard let type = json["type"]?.string else { throw TokenizerError.unsupported("pre_tokenizer without a \"type\"") }
        switch type {
        case "Split":
            guard let pattern = json["pattern"] else { throw TokenizerError.unsupported("Split pre-tokenizer without \"pattern\"") }
            let name = json["behavior"]?.string ?? "Isolated"
            guard let behavior = SplitBehavior(rawValue: name) else {
                throw TokenizerError.unsupported("Split behavior \(name) is not supported")
            }
            self = .split(try StringReplacer(pattern: pattern), behavior: behavior, invert: json["invert"]?.bool ?? false)
        case "ByteLevel":
            let useRegex = json["use_regex"]?.bool ?? true
            self = .byteLevel(addPrefixSpace: json["add_prefix_space"]?.bool ?? true,
                              regex: useRegex ? try TextPatterns.compile(Self.gpt2Pattern) : nil)
        case "Digits":
            self = .digits(individual: json["individual_digits"]?.bool ?? false)
        case "Metaspace":
            let replacement = json["replacement"]?.string ?? "\u{2581}"
            guard replacement.unicodeScalars.count == 1, let r = replacement.unicodeScalars.first else {
                throw TokenizerError.unsupported("Metaspace replacement must be one character, got \(replacement)")
            }
            self = .metaspace(replacement: r, prepend: try Self.prependScheme(json), split: json["split"]?.bool ?? true)
        case "Whitespace":
            self = .whitespace(try TextPatterns.compile(#"\w+|[^\w\s]+"#))
        case "WhitespaceSplit":
            self = .whitespaceSplit
        case "Punctuation":
            let name = json["behavior"]?.string ?? "Isolated"
            guard let behavior = SplitBehavior(rawValue: name) else {
                throw TokenizerError.unsupported("Punctuation behavior \(name) is not supported")
            }
            self = .punctuation(behavior)
        case "CharDelimiterSplit":
            guard let d = json["delimiter"]?.string, d.unicodeScalars.count == 1 else {
                throw TokenizerError.unsupported("CharDelimiterSplit needs a one-character \"delimiter\"")
            }
            self = .charDelimiter(d.unicodeScalars.first!)
        case "BertPreTokenizer":
            self = .bert
        case "Sequence":
            guard let items = json["pretokenizers"]?.array else {
                throw TokenizerError.unsupported("Sequence pre-tokenizer without \"pretokenizers\"")
            }
            self = .sequence(try items.map(PreTokenizer.init(json:)))
        default:
            throw TokenizerError.unsupported("pre-tokenizer type \(type) is not supported (supported: Split, ByteLevel, Digits, Metaspace, Whitespace, WhitespaceSplit, Punctuation, CharDelimiterSplit, BertPreTokenizer, Sequence)")
        }
    }

    /// `prepend_scheme` ("always"/"first"/"never"), or the legacy `add_prefix_space` boolean.
    static func prependScheme(_ json: JSONValue) throws -> PrependScheme {
        if let name = json["prepend_scheme"]?.string {
            guard let scheme = PrependScheme(rawValue: name) else {
                throw TokenizerError.unsupported("Metaspace prepend_scheme \(name) is not supported")
            }
            return scheme
        }
        return (json["add_prefix_space"]?.bool ?? true) ? .always : .never
    }

    /// The pattern text of the first regex split in this pre-tokenizer.
    var firstPattern: String? {
        switch self {
        case let .split(replacer, _, _):
            if case let .regex(p) = replacer.kind { return (p as? UnicodeRegex)?.pattern }
            return nil
        case let .byteLevel(_, regex): return (regex as? UnicodeRegex)?.pattern
        case let .sequence(items): return items.lazy.compactMap(\.firstPattern).first
        default: return nil
        }
    }

    func preTokenize(_ pieces: [Piece]) -> [Piece] {
        switch self {
        case let .sequence(items):
            return items.reduce(pieces) { $1.preTokenize($0) }
        default:
            var out: [Piece] = []
            out.reserveCapacity(pieces.count)
            for piece in pieces { apply(piece, into: &out) }
            return out
        }
    }

    private func apply(_ piece: Piece, into out: inout [Piece]) {
        switch self {
        case let .split(pattern, behavior, invert):
            let matches = pattern.matchOffsets(in: piece.text)
            splitPiece(piece, matches: matches, behavior: behavior, invert: invert, into: &out)
        case let .byteLevel(addPrefixSpace, regex):
            var p = piece
            if addPrefixSpace && p.text.utf8.first != 0x20 { p.text = " " + p.text }
            if let regex {
                var parts: [Piece] = []
                splitPiece(p, matches: utf8Ranges(regex.matches(in: p.text), in: p.text), behavior: .isolated, invert: false, into: &parts)
                for part in parts { out.append(Piece(text: ByteLevel.encode(part.text), atStart: part.atStart)) }
            } else if !p.text.isEmpty {
                out.append(Piece(text: ByteLevel.encode(p.text), atStart: p.atStart))
            }
        case let .digits(individual):
            splitPiece(piece, matches: scalarMatches(piece.text, isNumeric), behavior: individual ? .isolated : .contiguous,
                  invert: false, into: &out)
        case let .metaspace(replacement, prepend, splitOn):
            var text = piece.text.utf8.contains(0x20)
                ? StringReplacer(literal: " ").replaceAll(in: piece.text, with: String(replacement)) : piece.text
            let startsWithReplacement = text.unicodeScalars.first == replacement
            switch prepend {
            case .always where !startsWithReplacement: text = String(replacement) + text
            case .first where !startsWithReplacement && piece.atStart: text = String(replacement) + text
            default: break
            }
            let p = Piece(text: text, atStart: piece.atStart)
            if splitOn {
                splitPiece(p, matches: scalarMatches(text, { $0 == replacement }), behavior: .mergedWithNext, invert: false, into: &out)
            } else if !text.isEmpty {
                out.append(p)
            }
        case let .whitespace(pattern):
            splitPiece(piece, matches: utf8Ranges(pattern.matches(in: piece.text), in: piece.text), behavior: .removed,
                  invert: true, into: &out)
        case .whitespaceSplit:
            splitPiece(piece, matches: scalarMatches(piece.text, { $0.properties.isWhitespace }), behavior: .removed,
                  invert: false, into: &out)
        case let .punctuation(behavior):
            splitPiece(piece, matches: scalarMatches(piece.text, isPunctuation), behavior: behavior, invert: false, into: &out)
        case let .charDelimiter(d):
            splitPiece(piece, matches: scalarMatches(piece.text, { $0 == d }), behavior: .removed, invert: false, into: &out)
        case .bert:
            var parts: [Piece] = []
            splitPiece(piece, matches: scalarMatches(piece.text, { $0.properties.isWhitespace }), behavior: .removed,
                  invert: false, into: &parts)
            for part in parts {
                splitPiece(part, matches: scalarMatches(part.text, isPunctuation), behavior: .isolated, invert: false, into: &out)
            }
        case let .sequence(items):
            out.append(contentsOf: items.reduce([piece]) { $1.preTokenize($0) })
        }
    }
}

/// Rust's `char::is_numeric`: general categories Nd, Nl, No.
func isNumeric(_ s: Unicode.Scalar) -> Bool {
    switch s.properties.generalCategory {
    case .decimalNumber, .letterNumber, .otherNumber: return true
    default: return false
    }
}

/// HF's punctuation test: ASCII punctuation or a Unicode P* category.
func isPunctuation(_ s: Unicode.Scalar) -> Bool {
    if s.isASCII {
        let v = s.value
        return (0x21...0x2F).contains(v) || (0x3A...0x40).contains(v) || (0x5B...0x60).contains(v) || (0x7B...0x7E).contains(v)
    }
    switch s.properties.generalCategory {
    case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
         .finalPunctuation, .otherPunctuation: return true
    default: return false
    }
}

/// UTF-8 offset ranges of String index ranges.
func utf8Ranges(_ ranges: [Range<String.Index>], in text: String) -> [Range<Int>] {
    let utf8 = text.utf8
    var out: [Range<Int>] = []
    out.reserveCapacity(ranges.count)
    for r in ranges {
        let lo = utf8.distance(from: utf8.startIndex, to: r.lowerBound)
        out.append(lo..<(lo + utf8.distance(from: r.lowerBound, to: r.upperBound)))
    }
    return out
}

/// One match per scalar satisfying `predicate` (HF's `impl Pattern for Fn(char) -> bool`).
func scalarMatches(_ text: String, _ predicate: (Unicode.Scalar) -> Bool) -> [Range<Int>] {
    var out: [Range<Int>] = []
    var offset = 0
    for s in text.unicodeScalars {
        let n = UTF8.width(s)
        if predicate(s) { out.append(offset..<(offset + n)) }
        offset += n
    }
    return out
}

/// HF's `NormalizedString::split`: `matches` are the pattern's non-overlapping match ranges (UTF-8 offsets);
/// with `invert` the matches are what is kept apart and the rest are the delimiters. Empty results are
/// dropped (as `PreTokenizedString::split` does).
func splitPiece(_ piece: Piece, matches: [Range<Int>], behavior: SplitBehavior, invert: Bool, into out: inout [Piece]) {
    let bytes = Array(piece.text.utf8)
    if bytes.isEmpty { return }
    // find_matches: the whole text as (range, isDelimiter) runs.
    var runs: [(range: Range<Int>, isMatch: Bool)] = []
    runs.reserveCapacity(matches.count * 2 + 1)
    var prev = 0
    for m in matches {
        if prev != m.lowerBound { runs.append((prev..<m.lowerBound, invert)) }
        runs.append((m, !invert))
        prev = m.upperBound
    }
    if prev != bytes.count { runs.append((prev..<bytes.count, invert)) }

    var pieces: [(range: Range<Int>, remove: Bool)] = []
    pieces.reserveCapacity(runs.count)
    switch behavior {
    case .isolated:
        pieces = runs.map { ($0.range, false) }
    case .removed:
        pieces = runs.map { ($0.range, $0.isMatch) }
    case .contiguous:
        var previous = false
        for run in runs {
            if run.isMatch == previous, let last = pieces.last {
                pieces[pieces.count - 1].range = last.range.lowerBound..<run.range.upperBound
            } else {
                pieces.append((run.range, false))
            }
            previous = run.isMatch
        }
    case .mergedWithPrevious:
        var previous = false
        for run in runs {
            if run.isMatch && !previous, let last = pieces.last {
                pieces[pieces.count - 1].range = last.range.lowerBound..<run.range.upperBound
            } else {
                pieces.append((run.range, false))
            }
            previous = run.isMatch
        }
    case .mergedWithNext:
        var previous = false
        for run in runs.reversed() {
            if run.isMatch && !previous, let last = pieces.last {
                pieces[pieces.count - 1].range = run.range.lowerBound..<last.range.upperBound
            } else {
                pieces.append((run.range, false))
            }
            previous = run.isMatch
        }
        pieces.reverse()
    }
    for p in pieces where !p.remove && !p.range.isEmpty {
        out.append(Piece(text: String(decoding: bytes[p.range], as: UTF8.self),
                         atStart: piece.atStart && p.range.lowerBound == 0))
    }
}
