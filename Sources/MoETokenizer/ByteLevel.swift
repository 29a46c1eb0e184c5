/// GPT-2's byte-level alphabet: each of the 256 byte values as a printable Unicode scalar, so that any
/// UTF-8 text becomes a string over 256 "characters" that BPE vocabularies are written in. Printable
/// Latin-1 bytes map to themselves; the others (controls, space, …) to U+0100 onwards.
///
///     ByteLevel.scalar(for: 0x20)          // "Ġ" (U+0120)
///     ByteLevel.encode("hi there")         // "hiĠthere"
///     ByteLevel.byte(for: "Ġ")             // 0x20
enum ByteLevel {
    /// `table[b]` is the scalar for byte b.
    static let table: [Unicode.Scalar] = {
        var printable = [Bool](repeating: false, count: 256)
        for b in 0x21...0x7E { printable[b] = true }
        for b in 0xA1...0xAC { printable[b] = true }
        for b in 0xAE...0xFF { printable[b] = true }
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            if printable[b] {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(256 + n)!
                n += 1
            }
        }
        return table
    }()

    /// `inverse[scalar.value]` is the byte for the scalars of the alphabet (all below U+0144); -1 otherwise.
    static let inverse: [Int16] = {
        var inverse = [Int16](repeating: -1, count: 0x144)
        for (b, s) in table.enumerated() { inverse[Int(s.value)] = Int16(b) }
        return inverse
    }()

    static func scalar(for byte: UInt8) -> Unicode.Scalar { table[Int(byte)] }

    /// The byte that `scalar` stands for, or nil when it is not in the alphabet.
    static func byte(for scalar: Unicode.Scalar) -> UInt8? {
        let v = Int(scalar.value)
        guard v < inverse.count, inverse[v] >= 0 else { return nil }
        return UInt8(inverse[v])
    }

    /// Maps every UTF-8 byte of `text` to its alphabet scalar.
    static func encode(_ text: some StringProtocol) -> String {
        var view = String.UnicodeScalarView()
        for b in text.utf8 { view.append(table[Int(b)]) }
        return String(view)
    }

    /// The bytes a byte-level token stands for; a token with any scalar outside the alphabet (an added token
    /// such as "a b") stands for its own UTF-8 bytes, as HF's ByteLevel decoder does.
    static func bytes(of token: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(token.utf8.count)
        for s in token.unicodeScalars {
            guard let b = byte(for: s) else { return Array(token.utf8) }
            out.append(b)
        }
        return out
    }
}

/// Decodes bytes as UTF-8, each maximal invalid subsequence becoming one U+FFFD (as Rust's
/// `String::from_utf8_lossy` and Python's `errors="replace"`).
func lossyUTF8(_ bytes: [UInt8]) -> String {
    String(decoding: bytes, as: UTF8.self)
}
