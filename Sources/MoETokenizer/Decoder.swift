import Foundation

/// A tokenizer.json `decoder`: turns token strings back into text, as HF's `decode_chain` followed by
/// joining does.
///
///     let d = try TokenDecoder(json: JSONValue.parse(Data(#"{"type": "ByteLevel"}"#.utf8), path: "-"))
///     d.decode(["Hello", "Ġworld"])   // "Hello world"
indirect enum TokenDecoder: Sendable {
    case byteLevel
    case replace(StringReplacer, with: String)
    case byteFallback
    case fuse
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    case metaspace(replacement: Unicode.Scalar, prependScheme: PreTokenizer.PrependScheme)
    /// HF `BPEDecoder`: the end-of-word suffix becomes a space (none after the last token).
    case bpe(suffix: String)
    case sequence([TokenDecoder])

    init(json: JSONValue) throws {
        guard let type = json["type"]?.string else { throw TokenizerError.unsupported("decoder without a \"type\"") }
        switch type {
        case "ByteLevel": self = .byteLevel
        case "Replace":
            guard let pattern = json["pattern"], let content = json["content"]?.string else {
                throw TokenizerError.unsupported("Replace decoder needs \"pattern\" and \"content\"")
            }
            self = .replace(try StringReplacer(pattern: pattern), with: content)
        case "ByteFallback": self = .byteFallback
        case "Fuse": self = .fuse
        case "Strip":
            let content = json["content"]?.string ?? " "
            guard content.unicodeScalars.count == 1 else { throw TokenizerError.unsupported("Strip decoder content must be one character") }
            self = .strip(content: content.unicodeScalars.first!, start: json["start"]?.int ?? 0, stop: json["stop"]?.int ?? 0)
        case "Metaspace":
            let replacement = json["replacement"]?.string ?? "\u{2581}"
            guard replacement.unicodeScalars.count == 1 else {
                throw TokenizerError.unsupported("Metaspace decoder replacement must be one character")
            }
            self = .metaspace(replacement: replacement.unicodeScalars.first!, prependScheme: try PreTokenizer.prependScheme(json))
        case "BPEDecoder":
            self = .bpe(suffix: json["suffix"]?.string ?? "</w>")
        case "Sequence":
            guard let items = json["decoders"]?.array else { throw TokenizerError.unsupported("Sequence decoder without \"decoders\"") }
            self = .sequence(try items.map(TokenDecoder.init(json:)))
        default:
            throw TokenizerError.unsupported("decoder type \(type) is not supported (supported: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, BPEDecoder, Sequence)")
        }
    }

    /// One token's bytes in the middle of a text: the decoders that rewrite tokens one by one, in order, up to the
    /// one that turns them into bytes (what joins or strips text at its ends does not apply).
    func bytes(ofToken token: String) -> [UInt8] {
        var text = token
        for d in self.steps {
            switch d {
            case .byteLevel: return ByteLevel.bytes(of: text)
            case .byteFallback: if let b = byteFallbackByte(text) { return [b] }
            case let .replace(replacer, content): text = replacer.replaceAll(in: text, with: content)
            case let .metaspace(replacement, _):
                var view = String.UnicodeScalarView()
                for s in text.unicodeScalars { view.append(s == replacement ? " " : s) }
                text = String(view)
            case let .bpe(suffix): text = StringReplacer(literal: suffix).replaceAll(in: text, with: " ")
            case .fuse, .strip, .sequence: break
            }
        }
        return Array(text.utf8)
    }

    /// The decoders a sequence runs, flattened.
    private var steps: [TokenDecoder] {
        if case .sequence(let items) = self { return items.flatMap(\.steps) }
        return [self]
    }

    func decode(_ tokens: [String]) -> String {
        decodeChain(tokens).joined()
    }

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .byteLevel:
            var bytes: [UInt8] = []
            for t in tokens { bytes.append(contentsOf: ByteLevel.bytes(of: t)) }
            return [lossyUTF8(bytes)]
        case let .replace(replacer, content):
            return tokens.map { replacer.replaceAll(in: $0, with: content) }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) {
                    out.append(s)
                } else {
                    // HF: one U+FFFD per byte when the run is not valid UTF-8.
                    out.append(contentsOf: repeatElement("\u{FFFD}", count: pending.count))
                }
                pending.removeAll()
            }
            for t in tokens {
                if let b = byteFallbackByte(t) {
                    pending.append(b)
                } else {
                    flush()
                    out.append(t)
                }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case let .strip(content, start, stop):
            return tokens.map { token in
                let scalars = Array(token.unicodeScalars)
                var lo = 0
                while lo < min(start, scalars.count), scalars[lo] == content { lo += 1 }
                var hi = scalars.count
                var removed = 0
                while removed < stop, hi > lo, scalars[hi - 1] == content { hi -= 1; removed += 1 }
                var view = String.UnicodeScalarView()
                view.append(contentsOf: scalars[lo..<hi])
                return String(view)
            }
        case let .metaspace(replacement, scheme):
            return tokens.enumerated().map { i, token in
                var view = String.UnicodeScalarView()
                for s in token.unicodeScalars {
                    if s == replacement {
                        if i == 0 && scheme != .never { continue }
                        view.append(" ")
                    } else {
                        view.append(s)
                    }
                }
                return String(view)
            }
        case let .bpe(suffix):
            return tokens.enumerated().map { i, token in
                let replacement = i == tokens.count - 1 ? "" : " "
                return StringReplacer(literal: suffix).replaceAll(in: token, with: replacement)
            }
        case let .sequence(items):
            return items.reduce(tokens) { $1.decodeChain($0) }
        }
    }
}

/// The byte of a `<0xNN>` token (HF ByteFallback: exactly six bytes, "<0x", two hex digits, ">").
func byteFallbackByte(_ token: String) -> UInt8? {
    let u = Array(token.utf8)
    guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
    return UInt8(String(decoding: u[3...4], as: UTF8.self), radix: 16)
}
