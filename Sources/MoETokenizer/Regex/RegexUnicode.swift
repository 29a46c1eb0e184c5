// Unicode data for UnicodeRegex: per-scalar property words (General_Category bit + White_Space bits), scalar
// sets (character classes) and simple case folding.

/// Property word of a scalar: bit `gc` (0..<30, the index of its General_Category in `RegexUnicode.categories`),
/// plus bit 30 if it is White_Space, else bit 31. A class item such as `\p{L}`, `\P{N}`, `\s`, `\S`, `\D` or `\W`
/// is a mask over this word: a scalar belongs to it when `word & mask != 0`.
enum RegexUnicode {
    static let whiteSpaceBit: UInt32 = 1 << 30
    static let notWhiteSpaceBit: UInt32 = 1 << 31
    static let allCategories: UInt32 = (1 << 30) - 1

    /// The General_Category values in bit order.
    static let categories: [Unicode.GeneralCategory] = [
        .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
        .nonspacingMark, .spacingMark, .enclosingMark,
        .decimalNumber, .letterNumber, .otherNumber,
        .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
        .initialPunctuation, .finalPunctuation, .otherPunctuation,
        .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol,
        .spaceSeparator, .lineSeparator, .paragraphSeparator,
        .control, .format, .surrogate, .privateUse, .unassigned,
    ]
    static let shortNames = ["Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No",
                             "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So",
                             "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"]

    static func bit(_ name: String) -> UInt32 { 1 << UInt32(shortNames.firstIndex(of: name)!) }
    static func mask(_ names: String...) -> UInt32 { names.reduce(0) { $0 | bit($1) } }

    static let letter = mask("Lu", "Ll", "Lt", "Lm", "Lo")
    static let mark = mask("Mn", "Mc", "Me")
    static let number = mask("Nd", "Nl", "No")
    static let punctuation = mask("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po")
    static let symbol = mask("Sm", "Sc", "Sk", "So")
    static let separator = mask("Zs", "Zl", "Zp")
    static let other = mask("Cc", "Cf", "Cs", "Co", "Cn")
    static let digit = bit("Nd")
    /// Oniguruma's Unicode `\w`: Letter, Mark, Number, Connector_Punctuation (checked against HF tokenizers).
    static let word = letter | mark | number | bit("Pc")

    /// The mask of a `\p{...}` name (General_Category, short or long form); nil if unknown.
    static func propertyMask(_ rawName: String) -> UInt32? {
        let name = rawName.replacingOccurrences(of: "_", with: "").replacingOccurrences(of: " ", with: "")
            .replacingOccurrences(of: "-", with: "")
        if let i = shortNames.firstIndex(of: name) { return 1 << UInt32(i) }
        switch name.lowercased() {
        case "l", "letter": return letter
        case "lc", "l&", "casedletter": return mask("Lu", "Ll", "Lt")
        case "m", "mark", "combiningmark": return mark
        case "n", "number": return number
        case "p", "punctuation", "punct": return punctuation
        case "s", "symbol": return symbol
        case "z", "separator": return separator
        case "c", "other": return other
        case "any": return allCategories
        case "uppercaseletter": return bit("Lu")
        case "lowercaseletter": return bit("Ll")
        case "titlecaseletter": return bit("Lt")
        case "modifierletter": return bit("Lm")
        case "otherletter": return bit("Lo")
        case "nonspacingmark": return bit("Mn")
        case "spacingmark": return bit("Mc")
        case "enclosingmark": return bit("Me")
        case "decimalnumber", "digit": return bit("Nd")
        case "letternumber": return bit("Nl")
        case "othernumber": return bit("No")
        case "connectorpunctuation": return bit("Pc")
        case "dashpunctuation": return bit("Pd")
        case "openpunctuation": return bit("Ps")
        case "closepunctuation": return bit("Pe")
        case "initialpunctuation": return bit("Pi")
        case "finalpunctuation": return bit("Pf")
        case "otherpunctuation": return bit("Po")
        case "mathsymbol": return bit("Sm")
        case "currencysymbol": return bit("Sc")
        case "modifiersymbol": return bit("Sk")
        case "othersymbol": return bit("So")
        case "spaceseparator": return bit("Zs")
        case "lineseparator": return bit("Zl")
        case "paragraphseparator": return bit("Zp")
        case "control", "cntrl": return bit("Cc")
        case "format": return bit("Cf")
        case "surrogate": return bit("Cs")
        case "privateuse": return bit("Co")
        case "unassigned": return bit("Cn")
        case "whitespace", "space": return whiteSpaceBit
        default: return nil
        }
    }

    /// Unicode White_Space (what Oniguruma and Rust's regex take `\s` to be).
    @inline(__always)
    static func isWhiteSpace(_ c: UInt32) -> Bool {
        if c < 0x80 { return c == 0x20 || (c >= 0x09 && c <= 0x0D) }
        switch c {
        case 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    static func computeWord(_ c: UInt32) -> UInt32 {
        let ws = isWhiteSpace(c) ? whiteSpaceBit : notWhiteSpaceBit
        guard let s = Unicode.Scalar(c) else { return bit("Cs") | ws }  // surrogate code points
        let gc = s.properties.generalCategory
        return (1 << UInt32(categoryIndex(gc))) | ws
    }

    static func categoryIndex(_ gc: Unicode.GeneralCategory) -> Int {
        switch gc {
        case .uppercaseLetter: 0
        case .lowercaseLetter: 1
        case .titlecaseLetter: 2
        case .modifierLetter: 3
        case .otherLetter: 4
        case .nonspacingMark: 5
        case .spacingMark: 6
        case .enclosingMark: 7
        case .decimalNumber: 8
        case .letterNumber: 9
        case .otherNumber: 10
        case .connectorPunctuation: 11
        case .dashPunctuation: 12
        case .openPunctuation: 13
        case .closePunctuation: 14
        case .initialPunctuation: 15
        case .finalPunctuation: 16
        case .otherPunctuation: 17
        case .mathSymbol: 18
        case .currencySymbol: 19
        case .modifierSymbol: 20
        case .otherSymbol: 21
        case .spaceSeparator: 22
        case .lineSeparator: 23
        case .paragraphSeparator: 24
        case .control: 25
        case .format: 26
        case .surrogate: 27
        case .privateUse: 28
        case .unassigned: 29
        @unknown default: 29
        }
    }

    /// Property words of the Basic Multilingual Plane, computed once (≈ 65k lookups, a few ms).
    static let bmpWords: [UInt32] = (0..<0x10000).map { computeWord(UInt32($0)) }

    @inline(__always)
    static func propertyWord(_ c: UInt32) -> UInt32 {
        c < 0x10000 ? bmpWords[Int(c)] : computeWord(c)
    }

    // MARK: Simple case folding

    /// Scalars grouped by simple case fold (as Unicode CaseFolding.txt C+S, which is what Oniguruma, Rust's regex
    /// and Python's regex use for these patterns; Oniguruma's multi-character folds such as ß ~ "ss" are not
    /// supported). Built once, on the first case-insensitive pattern.
    static let foldClasses: [UInt32: [UInt32]] = {
        var groups: [UInt32: [UInt32]] = [:]
        for c in UInt32(0)..<0x20000 {
            guard let s = Unicode.Scalar(c), s.properties.changesWhenCaseMapped || s.properties.changesWhenCaseFolded
            else { continue }
            groups[foldKey(s), default: []].append(c)
        }
        return groups
    }()

    static func single(_ s: String) -> Unicode.Scalar? {
        var it = s.unicodeScalars.makeIterator()
        guard let first = it.next(), it.next() == nil else { return nil }
        return first
    }

    /// Simple case fold: the lowercase of the (single-scalar) uppercase, so that ſ, K (Kelvin), ς, ϑ … fold
    /// with their ASCII/Greek letters. U+0131 (dotless i) and U+0130 have no simple fold to i.
    static func foldKey(_ s: Unicode.Scalar) -> UInt32 {
        if s.value == 0x131 || s.value == 0x130 { return s.value }
        let up = single(s.properties.uppercaseMapping) ?? s
        let low = single(up.properties.lowercaseMapping) ?? up
        if let f = single(s.properties.lowercaseMapping), f != s, f.value != low.value {
            return f.value  // e.g. titlecase letters with unusual uppercase
        }
        return low.value
    }

    /// All scalars that fold like `c` (including `c`).
    static func caseVariants(_ c: UInt32) -> [UInt32] {
        guard let s = Unicode.Scalar(c), s.properties.changesWhenCaseMapped || s.properties.changesWhenCaseFolded
        else {
            // A scalar that is not cased itself can still be the fold target of others (e.g. none in practice).
            return [c]
        }
        var out = foldClasses[foldKey(s)] ?? [c]
        if !out.contains(c) { out.append(c) }
        return out
    }
}

/// A set of scalars: the union of ranges and property masks, possibly negated.
struct ScalarSetSpec: Equatable {
    var ranges: [ClosedRange<UInt32>] = []
    var mask: UInt32 = 0
    var negated = false

    static func char(_ c: UInt32) -> ScalarSetSpec { ScalarSetSpec(ranges: [c...c]) }

    func contains(_ c: UInt32) -> Bool {
        var hit = RegexUnicode.propertyWord(c) & mask != 0
        if !hit { hit = ranges.contains { $0.contains(c) } }
        return hit != negated
    }

    /// The single scalar this set matches, if it is one literal.
    var singleScalar: UInt32? {
        if !negated, mask == 0, ranges.count == 1, ranges[0].lowerBound == ranges[0].upperBound {
            return ranges[0].lowerBound
        }
        return nil
    }

    /// Adds the case variants of every explicit scalar (Oniguruma folds the explicit members of a class; the
    /// property items are left as they are).
    mutating func addCaseVariants() {
        var extra: [ClosedRange<UInt32>] = []
        for r in ranges {
            if r.count > 0x20000 { continue }
            for c in r {
                for v in RegexUnicode.caseVariants(c) where !r.contains(v) { extra.append(v...v) }
            }
        }
        ranges += extra
    }
}
