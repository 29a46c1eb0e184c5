import Foundation
import MoEFormats

/// The tokenizer a GGUF file carries in its `tokenizer.ggml.*` metadata, so that a GGUF file alone runs.
///
/// `tokenizer.ggml.model` `gpt2` (byte-level BPE): `tokens` and `merges` ("a b") make the BPE model; the split
/// regex is the one llama.cpp picks for `tokenizer.ggml.pre`; tokens of type control (3) or user-defined (4) are
/// added tokens (control ones special), found in text before the BPE runs; `add_bos_token` puts BOS first.
/// SentencePiece-style vocabularies (`llama`: scores and byte fallback) are not read yet: a clear error says so.
extension Tokenizer {
    /// llama.cpp's split regex per `tokenizer.ggml.pre` (llama-vocab.cpp), for the byte-level BPE vocabularies.
    static let ggufPreTokenizerPatterns: [String: String] = {
        let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"#
        let llama3 = #"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let qwen2 = #"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let qwen35 = #"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        var table: [String: String] = [:]
        for name in ["gpt-2", "phi-2", "olmo", "mpt", "roberta-bpe", "default"] { table[name] = gpt2 }
        for name in ["llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "lfm2"] { table[name] = llama3 }
        for name in ["qwen2", "stablelm2", "hunyuan"] { table[name] = qwen2 }
        table["qwen35"] = qwen35
        return table
    }()

    /// The tokenizer of a GGUF file (`file`'s metadata; its tensors are not read).
    public convenience init(gguf file: GGUFFile) throws {
        let path = file.path
        guard let kind = try file.string("tokenizer.ggml.model") else {
            throw TokenizerError.badFile(path: path, reason: "no tokenizer in the GGUF metadata (tokenizer.ggml.model)")
        }
        guard kind == "gpt2" else {
            throw TokenizerError.unsupported("\(path): GGUF tokenizer model '\(kind)' is not supported yet (only gpt2, byte-level BPE)")
        }
        let pre = try file.string("tokenizer.ggml.pre") ?? "default"
        guard let pattern = Self.ggufPreTokenizerPatterns[pre] else {
            throw TokenizerError.unsupported("\(path): GGUF pre-tokenizer '\(pre)' is not supported (supported: \(Self.ggufPreTokenizerPatterns.keys.sorted().joined(separator: ", ")))")
        }
        guard let tokens = try file.array("tokenizer.ggml.tokens", { $0.string }, expected: "strings") else {
            throw TokenizerError.badFile(path: path, reason: "metadata 'tokenizer.ggml.tokens' is missing")
        }
        let types = try file.array("tokenizer.ggml.token_type", { $0.int }, expected: "integers") ?? []
        guard types.isEmpty || types.count == tokens.count else {
            throw TokenizerError.badFile(path: path, reason: "tokenizer.ggml.token_type has \(types.count) entries for \(tokens.count) tokens")
        }
        let mergeLines = try file.array("tokenizer.ggml.merges", { $0.string }, expected: "strings") ?? []
        var merges: [(String, String)] = []
        merges.reserveCapacity(mergeLines.count)
        for (i, line) in mergeLines.enumerated() {
            guard let space = line.firstIndex(of: " ") else {
                throw TokenizerError.badFile(path: path, reason: "tokenizer.ggml.merges[\(i)] '\(line)' is not two tokens separated by a space")
            }
            merges.append((String(line[..<space]), String(line[line.index(after: space)...])))
        }
        let model = try BPEModel(vocab: tokens.enumerated().map { ($1, $0) }, merges: merges, path: path)
        var added: [AddedToken] = []
        for (id, type) in types.enumerated() where type == 3 || type == 4 {
            added.append(AddedToken(id: id, content: tokens[id], normalized: false, special: type == 3))
        }
        var config = TokenizerConfig()
        func token(_ key: String) throws -> String? {
            guard let id = try file.int(key) else { return nil }
            guard tokens.indices.contains(id) else { throw TokenizerError.badFile(path: path, reason: "\(key) \(id) is outside the vocabulary") }
            return tokens[id]
        }
        config.bosToken = try token("tokenizer.ggml.bos_token_id")
        config.eosToken = try token("tokenizer.ggml.eos_token_id")
        config.padToken = try token("tokenizer.ggml.padding_token_id")
        if let eot = try file.int("tokenizer.ggml.eot_token_id") { config.generationEosIds = [eot] }
        config.chatTemplate = try file.string("tokenizer.chat_template")
        var postProcessor: PostProcessor?
        if try file.bool("tokenizer.ggml.add_bos_token") == true, let bos = try file.int("tokenizer.ggml.bos_token_id") {
            postProcessor = .template(single: [.special([bos]), .sequence(0)], pair: [.special([bos]), .sequence(0), .special([bos]), .sequence(1)])
        }
        let split = try JSONSerialization.data(withJSONObject: [
            "type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": pattern], "behavior": "Isolated", "invert": false],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false],
            ],
        ] as [String: Any])
        try self.init(path: path, normalizer: nil, preTokenizer: PreTokenizer(json: JSONValue.parse(split, path: path)),
                      model: model, addedTokens: added, decoder: .byteLevel, postProcessor: postProcessor, config: config)
    }

    /// The tokenizer of a model: a directory's tokenizer.json (or nil when it has none), or a GGUF file's metadata.
    public static func forModel(_ path: String) throws -> Tokenizer? {
        if GGUFCheckpoint.isGGUF(path) { return try Tokenizer(gguf: GGUFFile(path: path)) }
        guard FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("tokenizer.json")) else { return nil }
        return try Tokenizer(directory: path)
    }
}
