import Foundation

/// A parsed JSON value. Objects keep their members in file order and their keys byte-exact (Swift `String`
/// comparison treats canonically equivalent strings as equal, which would merge vocabulary entries such as
/// a precomposed and a decomposed "é"), so they are arrays of pairs, not dictionaries.
///
///     let value = try JSONValue.parse(Data(#"{"a": [1, "x"]}"#.utf8), path: "t.json")
///     value["a"]?[1]?.string   // "x"
enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([(key: String, value: JSONValue)])

    /// The member named `key` of an object (the last one if repeated, as serde does); nil otherwise.
    subscript(key: String) -> JSONValue? {
        guard case let .object(members) = self else { return nil }
        let bytes = Array(key.utf8)
        return members.last(where: { $0.key.utf8.elementsEqual(bytes) })?.value
    }

    subscript(index: Int) -> JSONValue? {
        guard case let .array(items) = self, items.indices.contains(index) else { return nil }
        return items[index]
    }

    var string: String? { if case let .string(s) = self { return s }; return nil }
    var int: Int? {
        switch self {
        case let .int(i): return i
        case let .double(d) where d == d.rounded() && abs(d) < 9e15: return Int(d)
        default: return nil
        }
    }
    var double: Double? {
        switch self {
        case let .int(i): return Double(i)
        case let .double(d): return d
        default: return nil
        }
    }
    var bool: Bool? { if case let .bool(b) = self { return b }; return nil }
    var array: [JSONValue]? { if case let .array(a) = self { return a }; return nil }
    var object: [(key: String, value: JSONValue)]? { if case let .object(o) = self { return o }; return nil }
    var isNull: Bool { if case .null = self { return true }; return false }

    /// Parses a whole JSON document; errors name `path`, the line and the column.
    static func parse(_ data: Data, path: String) throws -> JSONValue {
        try parse(data, path: path, skipping: []).0
    }

    /// Parses a document but leaves out the members named in `skipping` of the objects one level down
    /// (tokenizer.json's model.vocab and model.merges: 450k strings as JSONValues cost half a second); their
    /// values are checked for well-formedness and handed back unparsed, to be read with `RawJSON.scan`.
    static func parse(_ data: Data, path: String, skipping: Set<String>) throws -> (JSONValue, RawJSON) {
        var raw = RawJSON(data: data, path: path)
        let value = try data.withUnsafeBytes { buffer in
            var parser = JSONParser(bytes: buffer.bindMemory(to: UInt8.self), path: path)
            parser.skipNames = skipping
            let value = try parser.document()
            raw.ranges = parser.skipped
            return value
        }
        return (value, raw)
    }
}

/// Members that `JSONValue.parse(_:path:skipping:)` left unparsed: byte ranges of the document.
struct RawJSON: Sendable {
    let data: Data
    let path: String
    var ranges: [String: Range<Int>] = [:]

    /// Runs `body` with a parser at the start of the member `name`'s value, or returns nil without one.
    func scan<T>(_ name: String, _ body: (inout JSONParser) throws -> T) throws -> T? {
        guard let range = ranges[name] else { return nil }
        return try data.withUnsafeBytes { buffer in
            var parser = JSONParser(bytes: buffer.bindMemory(to: UInt8.self), path: path)
            parser.pos = range.lowerBound
            return try body(&parser)
        }
    }
}

/// A recursive-descent JSON parser over UTF-8 bytes (RFC 8259; lone surrogate escapes become U+FFFD). Besides
/// building `JSONValue`s it can walk large objects and arrays member by member, giving strings as bytes.
struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    let path: String
    var pos = 0
    var depth = 0
    /// Members not to parse one level down (see `JSONValue.parse(_:path:skipping:)`), and where they were.
    var skipNames: Set<String> = []
    var skipped: [String: Range<Int>] = [:]

    init(bytes: UnsafeBufferPointer<UInt8>, path: String) {
        self.bytes = bytes
        self.path = path
    }

    mutating func document() throws -> JSONValue {
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { pos = 3 }   // BOM
        skipSpace()
        let value = try parseValue()
        skipSpace()
        if pos != bytes.count { throw error("unexpected '\(describe(bytes[pos]))' after the JSON value") }
        return value
    }

    func error(_ reason: String) -> TokenizerError {
        var line = 1, column = 1
        for i in 0..<min(pos, bytes.count) {
            if bytes[i] == 0x0A { line += 1; column = 1 } else { column += 1 }
        }
        return .badFile(path: path, reason: "malformed JSON at line \(line), column \(column): \(reason)")
    }

    func describe(_ byte: UInt8) -> String {
        byte >= 0x20 && byte < 0x7F ? String(UnicodeScalar(byte)) : String(format: "\\x%02X", byte)
    }

    mutating func skipSpace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x0A, 0x0D, 0x09: pos += 1
            default: return
            }
        }
    }

    mutating func parseValue() throws -> JSONValue {
        guard pos < bytes.count else { throw error("unexpected end of file") }
        switch bytes[pos] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected '\(describe(bytes[pos]))'")
        }
    }

    mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        let p = word.utf8Start
        guard pos + n <= bytes.count, (0..<n).allSatisfy({ bytes[pos + $0] == p[$0] }) else {
            throw error("invalid literal (expected \(word))")
        }
        pos += n
    }

    mutating func enter() throws {
        depth += 1
        if depth > 512 { throw error("nesting deeper than 512") }
    }

    mutating func parseObject() throws -> JSONValue {
        try enter(); defer { depth -= 1 }
        pos += 1
        var members: [(key: String, value: JSONValue)] = []
        skipSpace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
        while true {
            skipSpace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let key = try parseString()
            skipSpace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw error("expected ':' after a key") }
            pos += 1
            skipSpace()
            if depth == 2 && skipNames.contains(key) {
                let start = pos
                try skipValue()
                skipped[key] = start..<pos
                members.append((key, .null))
            } else {
                members.append((key, try parseValue()))
            }
            skipSpace()
            guard pos < bytes.count else { throw error("unexpected end of file in an object") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(members) }
            throw error("expected ',' or '}' in an object")
        }
    }

    mutating func parseArray() throws -> JSONValue {
        try enter(); defer { depth -= 1 }
        pos += 1
        var items: [JSONValue] = []
        skipSpace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
        while true {
            skipSpace()
            items.append(try parseValue())
            skipSpace()
            guard pos < bytes.count else { throw error("unexpected end of file in an array") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
            throw error("expected ',' or ']' in an array")
        }
    }

    mutating func parseString() throws -> String {
        pos += 1   // opening quote
        let start = pos
        // Fast path: no escapes.
        while pos < bytes.count {
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                let s = try makeString(UnsafeBufferPointer(rebasing: bytes[start..<pos]))
                pos += 1
                return s
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw error("control character in a string") }
            pos += 1
        }
        var out = Array(bytes[start..<pos])
        while pos < bytes.count {
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") {
                pos += 1
                return try out.withUnsafeBufferPointer { try makeString($0) }
            }
            if b < 0x20 { throw error("control character in a string") }
            if b != UInt8(ascii: "\\") { out.append(b); pos += 1; continue }
            pos += 1
            guard pos < bytes.count else { break }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code), pos + 1 < bytes.count,
                   bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") {
                    let save = pos
                    pos += 2
                    let low = try hex4()
                    if (0xDC00..<0xE000).contains(low) {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        pos = save
                    }
                }
                let scalar = Unicode.Scalar(code) ?? "\u{FFFD}"
                out.append(contentsOf: String(scalar).utf8)
            default:
                pos -= 1
                throw error("invalid escape '\\\(describe(e))'")
            }
        }
        throw error("unterminated string")
    }

    mutating func hex4() throws -> UInt32 {
        guard pos + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[pos]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw error("invalid \\u escape")
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }

    func makeString(_ buffer: UnsafeBufferPointer<UInt8>) throws -> String {
        // (`String(validating:as:)` is generic and unspecialized: a metadata look-up per string.)
        guard isValidUTF8(buffer) else { throw error("invalid UTF-8 in a string") }
        return String(decoding: buffer, as: UTF8.self)
    }

    // MARK: Walking without building values

    /// Skips one value (checking its syntax; strings are not checked for UTF-8 validity).
    mutating func skipValue() throws {
        guard pos < bytes.count else { throw error("unexpected end of file") }
        switch bytes[pos] {
        case UInt8(ascii: "{"):
            try members { parser, _ in try parser.skipValue() }
        case UInt8(ascii: "["):
            try items { parser in try parser.skipValue() }
        case UInt8(ascii: "\""):
            pos += 1
            while pos < bytes.count && bytes[pos] != UInt8(ascii: "\"") {
                if bytes[pos] < 0x20 { throw error("control character in a string") }
                pos += bytes[pos] == UInt8(ascii: "\\") ? 2 : 1
            }
            guard pos < bytes.count else { throw error("unterminated string") }
            pos += 1
        default:
            _ = try parseValue()
        }
    }

    /// A string value's bytes, unescaped, in place of `out`'s contents.
    mutating func stringBytes(into out: inout [UInt8]) throws {
        skipSpace()
        guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw error("expected a string") }
        out.removeAll(keepingCapacity: true)
        pos += 1
        let start = pos
        while pos < bytes.count {
            let b = bytes[pos]
            if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") || b < 0x20 { break }
            pos += 1
        }
        if pos < bytes.count && bytes[pos] == UInt8(ascii: "\"") {
            let raw = UnsafeBufferPointer(rebasing: bytes[start..<pos])
            guard isValidUTF8(raw) else { throw error("invalid UTF-8 in a string") }
            out.append(contentsOf: raw)
            pos += 1
            return
        }
        pos = start - 1   // escapes: the general parser
        out.append(contentsOf: try parseString().utf8)
    }

    /// An integer value.
    mutating func integer() throws -> Int {
        skipSpace()
        // Fast path: a plain non-negative integer of at most 18 digits, ended by a non-number byte.
        var p = pos
        var v = 0
        while p < bytes.count, p - pos < 18, bytes[p] >= 0x30, bytes[p] <= 0x39 { v = v * 10 + Int(bytes[p] - 0x30); p += 1 }
        if p > pos, p < bytes.count, !(bytes[pos] == 0x30 && p - pos > 1) {
            let c = bytes[p]
            if c != UInt8(ascii: ".") && c != UInt8(ascii: "e") && c != UInt8(ascii: "E") && !(c >= 0x30 && c <= 0x39) {
                pos = p
                return v
            }
        }
        guard let i = try parseValue().int else { throw error("expected an integer") }
        return i
    }

    /// Calls `body` with the parser at each member's value (after the key and colon; `body` must consume the
    /// value) of the object at the current position.
    mutating func members(_ body: (inout JSONParser, [UInt8]) throws -> Void) throws {
        skipSpace()
        guard pos < bytes.count, bytes[pos] == UInt8(ascii: "{") else { throw error("expected an object") }
        try enter(); defer { depth -= 1 }
        pos += 1
        skipSpace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return }
        var key: [UInt8] = []
        while true {
            try stringBytes(into: &key)
            skipSpace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw error("expected ':' after a key") }
            pos += 1
            skipSpace()
            try body(&self, key)
            skipSpace()
            guard pos < bytes.count else { throw error("unexpected end of file in an object") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; skipSpace(); continue }
            if bytes[pos] == UInt8(ascii: "}") { pos += 1; return }
            throw error("expected ',' or '}' in an object")
        }
    }

    /// Calls `body` with the parser at each item (which `body` must consume) of the array at the current position.
    mutating func items(_ body: (inout JSONParser) throws -> Void) throws {
        skipSpace()
        guard pos < bytes.count, bytes[pos] == UInt8(ascii: "[") else { throw error("expected an array") }
        try enter(); defer { depth -= 1 }
        pos += 1
        skipSpace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return }
        while true {
            skipSpace()
            try body(&self)
            skipSpace()
            guard pos < bytes.count else { throw error("unexpected end of file in an array") }
            if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
            if bytes[pos] == UInt8(ascii: "]") { pos += 1; return }
            throw error("expected ',' or ']' in an array")
        }
    }

    /// The byte at the current position (after spaces), or nil at the end.
    mutating func peek() -> UInt8? {
        skipSpace()
        return pos < bytes.count ? bytes[pos] : nil
    }

    mutating func parseNumber() throws -> JSONValue {
        let start = pos
        var isInteger = true
        if bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        func digits(_ p: inout Int) -> Int {
            let s = p
            while p < bytes.count, bytes[p] >= UInt8(ascii: "0"), bytes[p] <= UInt8(ascii: "9") { p += 1 }
            return p - s
        }
        guard digits(&pos) > 0 else { throw error("invalid number") }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
            isInteger = false
            pos += 1
            guard digits(&pos) > 0 else { throw error("invalid number") }
        }
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
            isInteger = false
            pos += 1
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") { pos += 1 }
            guard digits(&pos) > 0 else { throw error("invalid number") }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
        if isInteger, let i = Int(text) { return .int(i) }
        guard let d = Double(text) else { throw error("invalid number \(text)") }
        return .double(d)
    }
}

/// Whether `b` is well-formed UTF-8 (no overlongs, surrogates or scalars past U+10FFFF).
func isValidUTF8(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
    var i = 0
    let n = b.count
    while i < n {
        let c = b[i]
        if c < 0x80 { i += 1; continue }
        if c < 0xC2 { return false }
        if c < 0xE0 {
            guard i + 1 < n, b[i + 1] & 0xC0 == 0x80 else { return false }
            i += 2
        } else if c < 0xF0 {
            guard i + 2 < n, b[i + 1] & 0xC0 == 0x80, b[i + 2] & 0xC0 == 0x80 else { return false }
            if (c == 0xE0 && b[i + 1] < 0xA0) || (c == 0xED && b[i + 1] >= 0xA0) { return false }
            i += 3
        } else if c < 0xF5 {
            guard i + 3 < n, b[i + 1] & 0xC0 == 0x80, b[i + 2] & 0xC0 == 0x80, b[i + 3] & 0xC0 == 0x80 else { return false }
            if (c == 0xF0 && b[i + 1] < 0x90) || (c == 0xF4 && b[i + 1] >= 0x90) { return false }
            i += 4
        } else {
            return false
        }
    }
    return true
}
