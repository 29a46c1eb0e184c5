import Foundation

/// A trained byte-level BPE tokenizer: what `BPETrainer` learns, written as HF `tokenizers` files.
public struct TrainedBPE: Sendable, Equatable {
    public struct Merge: Sendable, Equatable {
        public var left: String
        public var right: String
        public init(_ left: String, _ right: String) {
            self.left = left
            self.right = right
        }
    }

    /// BPE tokens by id, in GPT-2's byte-level alphabet: the 256 bytes (GPT-2's order), then one per merge.
    public let tokens: [String]
    /// The merges by rank.
    public let merges: [Merge]
    /// Special tokens; their ids follow the BPE tokens.
    public let specialTokens: [String]
    /// The pre-tokenizer's Split pattern.
    public let pattern: String
    public var modelMaxLength: Int
    /// How many distinct words the training text had.
    public let wordCount: Int

    /// BPE tokens + special tokens.
    public var vocabSize: Int { tokens.count + specialTokens.count }

    /// The token for bos / eos / pad in tokenizer_config.json: <|endoftext|> when it is special, else the first
    /// special token.
    public var endOfTextToken: String? {
        specialTokens.contains("<|endoftext|>") ? "<|endoftext|>" : specialTokens.first
    }

    /// tokenizer.json: loads with HF `tokenizers` (≥ 0.20, merges as pairs) and with `Tokenizer`.
    public func tokenizerJSON() -> String {
        var o = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": ["
        for (i, s) in specialTokens.enumerated() {
            o += i == 0 ? "\n" : ",\n"
            o += "    {\"id\": \(tokens.count + i), \"content\": \(jsonStringLiteral(s)), \"single_word\": false, "
            o += "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}"
        }
        o += specialTokens.isEmpty ? "],\n" : "\n  ],\n"
        o += "  \"normalizer\": {\"type\": \"NFC\"},\n"
        o += "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [\n"
        o += "    {\"type\": \"Split\", \"pattern\": {\"Regex\": \(jsonStringLiteral(pattern))}, \"behavior\": \"Isolated\", \"invert\": false},\n"
        o += "    {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}\n  ]},\n"
        o += "  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false},\n"
        o += "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false},\n"
        o += "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
        o += "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n"
        o += "    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n    \"vocab\": {"
        for (id, t) in tokens.enumerated() {
            o += id == 0 ? "\n      " : ",\n      "
            o += "\(jsonStringLiteral(t)): \(id)"
        }
        o += "\n    },\n    \"merges\": ["
        for (i, m) in merges.enumerated() {
            o += i == 0 ? "\n      " : ",\n      "
            o += "[\(jsonStringLiteral(m.left)), \(jsonStringLiteral(m.right))]"
        }
        o += merges.isEmpty ? "]\n  }\n}\n" : "\n    ]\n  }\n}\n"
        return o
    }

    /// tokenizer_config.json: transformers' PreTrainedTokenizerFast with bos/eos/pad = `endOfTextToken`.
    public func tokenizerConfigJSON() -> String {
        var o = "{\n  \"add_bos_token\": false,\n  \"add_prefix_space\": false,\n  \"added_tokens_decoder\": {"
        for (i, s) in specialTokens.enumerated() {
            o += i == 0 ? "\n" : ",\n"
            o += "    \"\(tokens.count + i)\": {\"content\": \(jsonStringLiteral(s)), \"lstrip\": false, \"normalized\": false, "
            o += "\"rstrip\": false, \"single_word\": false, \"special\": true}"
        }
        o += specialTokens.isEmpty ? "},\n" : "\n  },\n"
        let eot = endOfTextToken.map(jsonStringLiteral) ?? "null"
        o += "  \"bos_token\": \(eot),\n  \"eos_token\": \(eot),\n  \"pad_token\": \(eot),\n  \"unk_token\": null,\n"
        o += "  \"clean_up_tokenization_spaces\": false,\n  \"model_max_length\": \(modelMaxLength),\n"
        o += "  \"tokenizer_class\": \"PreTrainedTokenizerFast\"\n}\n"
        return o
    }

    /// Writes tokenizer.json and tokenizer_config.json into `directory` (created if missing), each
    /// atomically (a temporary file in the directory, then renamed over the old one).
    public func write(to directory: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw TokenizerError.badFile(path: directory, reason: "cannot create the directory: \(error.localizedDescription)")
        }
        try Self.writeAtomically(tokenizerJSON(), to: (directory as NSString).appendingPathComponent("tokenizer.json"))
        try Self.writeAtomically(tokenizerConfigJSON(), to: (directory as NSString).appendingPathComponent("tokenizer_config.json"))
    }

    static func writeAtomically(_ text: String, to path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let temp = (dir as NSString).appendingPathComponent(".\(name).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        guard FileManager.default.createFile(atPath: temp, contents: Data(text.utf8)) else {
            throw TokenizerError.badFile(path: path, reason: "cannot write \(temp)")
        }
        if rename(temp, path) != 0 {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: temp)
            throw TokenizerError.badFile(path: path, reason: "cannot rename \(temp) to it: \(reason)")
        }
    }
}

/// `s` as a JSON string literal (control characters, C1 and the line separators escaped: safe in JavaScript too).
public func jsonStringLiteral(_ s: String) -> String {
    var o = "\""
    o.unicodeScalars.reserveCapacity(s.unicodeScalars.count + 2)
    for c in s.unicodeScalars {
        switch c {
        case "\"": o += "\\\""
        case "\\": o += "\\\\"
        case "\n": o += "\\n"
        case "\r": o += "\\r"
        case "\t": o += "\\t"
        default:
            if c.value < 0x20 || c.value == 0x7F || (0x80...0x9F).contains(c.value) || c.value == 0x2028 || c.value == 0x2029 {
                o += String(format: "\\u%04x", c.value)
            } else {
                o.unicodeScalars.append(c)
            }
        }
    }
    o += "\""
    return o
}
