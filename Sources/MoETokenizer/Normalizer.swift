import Foundation

/// A tokenizer.json `normalizer`: rewrites each stretch of input text (between added tokens) before
/// pre-tokenization, as HF `tokenizers` does.
///
///     let n = try Normalizer(json: JSONValue.parse(Data(#"{"type": "Lowercase"}"#.utf8), path: "-"))
///     n.normalize("HeLLo")   // "hello"
indirect enum Normalizer: Sendable {
    case nfc, nfd, nfkc, nfkd
    case lowercase
    /// Removes combining marks (run NFD first to strip accents of precomposed letters, as HF's users do).
    case stripAccents
    case strip(left: Bool, right: Bool)
    case prepend(String)
    case replace(StringReplacer, with: String)
    case sequence([Normalizer])

    init(json: JSONValue) throws {
        guard let type = json["type"]?.string else {
            throw TokenizerError.unsupported("normalizer without a \"type\"")
        }
        switch type {
        case "NFC": self = .nfc
        case "NFD": self = .nfd
        case "NFKC": self = .nfkc
        case "NFKD": self = .nfkd
        case "Lowercase": self = .lowercase
        case "StripAccents": self = .stripAccents
        case "Strip":
            self = .strip(left: json["strip_left"]?.bool ?? true, right: json["strip_right"]?.bool ?? true)
        case "Prepend":
            guard let p = json["prepend"]?.string else { throw TokenizerError.unsupported("Prepend normalizer without \"prepend\"") }
            self = .prepend(p)
        case "Replace":
            guard let pattern = json["pattern"], let content = json["content"]?.string else {
                throw TokenizerError.unsupported("Replace normalizer needs \"pattern\" and \"content\"")
            }
            self = .replace(try StringReplacer(pattern: pattern), with: content)
        case "Sequence":
            guard let items = json["normalizers"]?.array else {
                throw TokenizerError.unsupported("Sequence normalizer without \"normalizers\"")
            }
            self = .sequence(try items.map(Normalizer.init(json:)))
        default:
            throw TokenizerError.unsupported("normalizer type \(type) is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, Strip, Prepend, Replace, Sequence)")
        }
    }

    func normalize(_ text: String) -> String {
        switch self {
        // Foundation's normalization is slow and allocates; most text is already normalized.
        case .nfc: return isQuickNFC(text) ? text : text.precomposedStringWithCanonicalMapping
        case .nfd: return isASCII(text) ? text : text.decomposedStringWithCanonicalMapping
        case .nfkc: return isASCII(text) ? text : text.precomposedStringWithCompatibilityMapping
        case .nfkd: return isASCII(text) ? text : text.decomposedStringWithCompatibilityMapping
        case .lowercase:
            // Per scalar, like Rust's `char::to_lowercase` (no context-dependent final sigma).
            var out = ""
            out.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
            for s in text.unicodeScalars {
                if s.isASCII {
                    out.unicodeScalars.append(s.value >= 65 && s.value <= 90 ? Unicode.Scalar(s.value + 32)! : s)
                } else {
                    out.unicodeScalars.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
                }
            }
            return out
        case .stripAccents:
            var view = String.UnicodeScalarView()
            for s in text.unicodeScalars where !isMark(s) { view.append(s) }
            return String(view)
        case let .strip(left, right):
            let scalars = text.unicodeScalars
            var start = scalars.startIndex, end = scalars.endIndex
            if left { while start < end, scalars[start].properties.isWhitespace { start = scalars.index(after: start) } }
            if right {
                while end > start, scalars[scalars.index(before: end)].properties.isWhitespace { end = scalars.index(before: end) }
            }
            return String(scalars[start..<end])
        case let .prepend(prefix):
            return text.isEmpty ? text : prefix + text
        case let .replace(replacer, content):
            return replacer.replaceAll(in: text, with: content)
        case let .sequence(items):
            return items.reduce(text) { $1.normalize($0) }
        }
    }
}

/// Whether every byte of `text` is ASCII (which every normalization form leaves as it is).
func isASCII(_ text: String) -> Bool {
    var text = text
    return text.withUTF8 { buffer in
        var i = 0
        var any: UInt64 = 0
        let n = buffer.count
        let p = UnsafeRawPointer(buffer.baseAddress ?? UnsafePointer(bitPattern: 1)!)
        while i + 8 <= n { any |= p.loadUnaligned(fromByteOffset: i, as: UInt64.self); i += 8 }
        while i < n { any |= UInt64(buffer[i]); i += 1 }
        return any & 0x8080_8080_8080_8080 == 0
    }
}

/// A sufficient test that `text` is in NFC, so that normalizing it would change nothing: every scalar is in a
/// range whose characters have NFC_Quick_Check=Yes and canonical combining class 0 (so neither composes with
/// nor reorders against its neighbours; checked with Python's unicodedata): below U+0300, ZWJ, dashes and quotes,
/// arrows, symbols and dingbats (not the singletons U+2329, U+232A, U+2ADC), CJK punctuation (not the combining
/// U+302A–U+302F), kana (not the combining U+3099/U+309A), CJK ideographs, Hangul syllables (no jamo),
/// variation selectors, fullwidth forms, emoji pictographs. Other text gets the full normalization.
func isQuickNFC(_ text: String) -> Bool {
    if isASCII(text) { return true }
    for s in text.unicodeScalars {
        switch s.value {
        case 0..<0x300, 0x200D, 0x2010..<0x2028, 0x2190..<0x2329, 0x232B..<0x2ADC, 0x2ADD..<0x2C00,
             0x3000..<0x302A, 0x3030..<0x3099, 0x309B..<0x3100, 0x4E00..<0xA000, 0xAC00..<0xD7A4,
             0xFE00..<0xFE10, 0xFF00..<0xFFF0, 0x1F300..<0x1FB00: continue
        default: return false
        }
    }
    return true
}

/// General category Mark (Mn, Mc, Me).
func isMark(_ s: Unicode.Scalar) -> Bool {
    switch s.properties.generalCategory {
    case .nonspacingMark, .spacingMark, .enclosingMark: return true
    default: return false
    }
}

/// The `pattern` of a Replace normalizer/decoder or a Split pre-tokenizer: `{"String": literal}` or
/// `{"Regex": pattern}` (compiled with `TextPatterns.compile`).
struct StringReplacer: Sendable {
    enum Kind: Sendable {
        case literal([UInt8])
        case regex(any TextPattern)
    }
    let kind: Kind

    init(pattern: JSONValue) throws {
        if let literal = pattern["String"]?.string {
            kind = .literal(Array(literal.utf8))
        } else if let regex = pattern["Regex"]?.string {
            kind = .regex(try TextPatterns.compile(regex))
        } else if let literal = pattern.string {
            kind = .literal(Array(literal.utf8))
        } else {
            throw TokenizerError.unsupported("pattern must be {\"String\": …} or {\"Regex\": …}")
        }
    }

    init(literal: String) { kind = .literal(Array(literal.utf8)) }

    /// Non-overlapping matches, left to right, as UTF-8 offset ranges of `text`.
    func matchOffsets(in text: String) -> [Range<Int>] {
        switch kind {
        case let .literal(needle):
            return literalMatches(needle, in: Array(text.utf8))
        case let .regex(pattern):
            let utf8 = text.utf8
            return pattern.matches(in: text).map {
                utf8.distance(from: utf8.startIndex, to: $0.lowerBound)..<utf8.distance(from: utf8.startIndex, to: $0.upperBound)
            }
        }
    }

    func replaceAll(in text: String, with content: String) -> String {
        let ranges = matchOffsets(in: text)
        if ranges.isEmpty { return text }
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var last = 0
        for r in ranges {
            out.append(contentsOf: bytes[last..<r.lowerBound])
            out.append(contentsOf: content.utf8)
            last = r.upperBound
        }
        out.append(contentsOf: bytes[last...])
        return String(decoding: out, as: UTF8.self)
    }
}

/// Non-overlapping occurrences of `needle` in `hay`, left to right (UTF-8 being self-synchronising, byte
/// matches of a valid needle fall on character boundaries).
func literalMatches(_ needle: [UInt8], in hay: [UInt8]) -> [Range<Int>] {
    guard !needle.isEmpty, needle.count <= hay.count else { return [] }
    var out: [Range<Int>] = []
    let first = needle[0]
    var i = 0
    let last = hay.count - needle.count
    while i <= last {
        if hay[i] == first {
            var j = 1
            while j < needle.count, hay[i + j] == needle[j] { j += 1 }
            if j == needle.count {
                out.append(i..<(i + needle.count))
                i += needle.count
                continue
            }
        }
        i += 1
    }
    return out
}
