import Foundation
import MoEFormats

/// The tokenizer a GGUF file carries in its `tokenizer.ggml.*` metadata, so that a GGUF file alone runs. The ids
/// are llama.cpp's (whose vocabulary tests check them against the Hugging Face tokenizer the file came from).
///
/// `tokenizer.ggml.model` `gpt2` (byte-level BPE): `tokens` and `merges` ("a b") make the BPE model; the split
/// regexes are the ones llama.cpp picks for `tokenizer.ggml.pre` (see `ggufPreTokenizers`).
///
/// `tokenizer.ggml.model` `llama` (SentencePiece): `tokens` and `scores` make a `SentencePieceModel`; spaces become
/// "▁" and, with `add_space_prefix` (default true), every stretch of text between special tokens starts with one;
/// characters outside the vocabulary fall back to `<0xXX>` byte tokens. Decoding turns "▁" back into spaces, byte
/// tokens back into bytes, and drops the prefixed space.
///
/// For both: tokens of type control (3) or unknown (2) are special added tokens, user-defined ones (4) plain added
/// tokens, found in text before the model runs (llama.cpp's `tokenizer_st_partition`); `add_bos_token` and
/// `add_eos_token` put BOS first and EOS last when special tokens are added.
extension Tokenizer {
    /// How llama.cpp pre-tokenizes for one `tokenizer.ggml.pre` of a byte-level BPE vocabulary: the regexes that
    /// split text one after the other (each match is a piece, as HF's `Split` with behavior Isolated), and whether
    /// a piece that is itself a token skips the merges (HF BPE's `ignore_merges`, which llama.cpp sets for the
    /// llama3 family).
    struct GGUFPreTokenizer: Sendable {
        var patterns: [String]
        var ignoreMerges = false
    }

    /// llama.cpp's pre-tokenizers per `tokenizer.ggml.pre` (llama-vocab.cpp: `llama_vocab::impl::load` picks the
    /// type, `llm_tokenizer_bpe` its regexes).
    static let ggufPreTokenizers: [String: GGUFPreTokenizer] = {
        let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"#
        let llama3 = #"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let qwen2 = #"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let qwen35 = #"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        var table: [String: GGUFPreTokenizer] = [:]
        for name in ["gpt-2", "phi-2", "olmo", "mpt", "roberta-bpe", "default"] {
            table[name] = GGUFPreTokenizer(patterns: [gpt2])
        }
        for name in ["llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "lfm2"] {
            table[name] = GGUFPreTokenizer(patterns: [llama3], ignoreMerges: true)
        }
        for name in ["qwen2", "stablelm2", "hunyuan"] { table[name] = GGUFPreTokenizer(patterns: [qwen2]) }
        table["qwen35"] = GGUFPreTokenizer(patterns: [qwen35])
        // Digits one by one first, then GPT-2's split.
        for name in ["starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva"] {
            table[name] = GGUFPreTokenizer(patterns: [#"\p{N}"#, gpt2])
        }
        // Runs of punctuation, then GPT-2's split, then digits in threes.
        table["falcon"] = GGUFPreTokenizer(patterns: [#"[\p{P}\$\+<=>\^~\|`]+"#, gpt2, "[0-9][0-9][0-9]"])
        // CJK ideographs, everything from U+0800 to them, Hangul: one run.
        let cjk = "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+"
        // Line breaks, letters, punctuation, CJK, digits: each split off in turn.
        table["deepseek-coder"] = GGUFPreTokenizer(patterns: ["[\r\n]", #"\s?\p{L}+"#, #"\s?\p{P}+"#, cjk, #"\p{N}"#])
        // As deepseek-coder, with letters and punctuation spelled out as ranges, trailing whitespace on its own, and
        // digit runs. Written with escapes: source text may be normalized, and NFC would turn U+1F7D into U+03CE, an empty range.
        table["deepseek-llm"] = GGUFPreTokenizer(patterns: [
            "[\r\n]",
            "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+",
            "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+",
            "\\s+$",
            cjk,
            "\\p{N}+",
        ])
        return table
    }()

    /// The tokenizer of a GGUF file (`file`'s metadata; its tensors are not read).
    public convenience init(gguf file: GGUFFile) throws {
        let path = file.path
        guard let kind = try file.string("tokenizer.ggml.model") else {
            throw TokenizerError.badFile(path: path, reason: "no tokenizer in the GGUF metadata (tokenizer.ggml.model)")
        }
        guard kind == "gpt2" || kind == "llama" else {
            throw TokenizerError.unsupported("\(path): GGUF tokenizer model '\(kind)' is not supported (supported: gpt2 for byte-level BPE, llama for SentencePiece)")
        }
        // Checked before the vocabulary is read, so that an unsupported file fails fast.
        var preTokenizer: GGUFPreTokenizer?
        if kind == "gpt2" {
            let pre = try file.string("tokenizer.ggml.pre") ?? "default"
            guard let known = Self.ggufPreTokenizers[pre] else {
                throw TokenizerError.unsupported("\(path): GGUF pre-tokenizer '\(pre)' is not supported (supported: \(Self.ggufPreTokenizers.keys.sorted().joined(separator: ", ")))")
            }
            preTokenizer = known
        }
        let vocabulary = try GGUFVocabularyMetadata(file, sentencePiece: kind == "llama")
        if let preTokenizer {
            try self.init(byteLevelGGUF: file, vocabulary: vocabulary, preTokenizer: preTokenizer)
        } else {
            try self.init(sentencePieceGGUF: file, vocabulary: vocabulary)
        }
    }

    /// The byte-level BPE tokenizer of a `gpt2` GGUF vocabulary.
    private convenience init(byteLevelGGUF file: GGUFFile, vocabulary: GGUFVocabularyMetadata, preTokenizer: GGUFPreTokenizer) throws {
        let path = file.path
        let mergeLines = try file.array("tokenizer.ggml.merges", { $0.string }, expected: "strings") ?? []
        var merges: [(String, String)] = []
        merges.reserveCapacity(mergeLines.count)
        for (i, line) in mergeLines.enumerated() {
            guard let space = line.firstIndex(of: " ") else {
                throw TokenizerError.badFile(path: path, reason: "tokenizer.ggml.merges[\(i)] '\(line)' is not two tokens separated by a space")
            }
            merges.append((String(line[..<space]), String(line[line.index(after: space)...])))
        }
        let model = try BPEModel(vocab: vocabulary.tokens.enumerated().map { ($1, $0) }, merges: merges, path: path,
                                 ignoreMerges: preTokenizer.ignoreMerges)
        var steps: [[String: Any]] = preTokenizer.patterns.map {
            ["type": "Split", "pattern": ["Regex": $0], "behavior": "Isolated", "invert": false]
        }
        steps.append(["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false])
        let json = try JSONSerialization.data(withJSONObject: ["type": "Sequence", "pretokenizers": steps] as [String: Any])
        try self.init(path: path, normalizer: nil, preTokenizer: PreTokenizer(json: JSONValue.parse(json, path: path)),
                      model: model, addedTokens: vocabulary.addedTokens(), decoder: .byteLevel,
                      postProcessor: vocabulary.postProcessor, config: vocabulary.config)
    }

    /// The SentencePiece tokenizer of a `llama` GGUF vocabulary, built from the parts HF's tokenizer.json for these
    /// models uses: a normalizer that escapes spaces (and prepends one), the score-merging model, and the decoder
    /// chain Replace "▁" → " ", ByteFallback, Fuse, Strip one leading space.
    private convenience init(sentencePieceGGUF file: GGUFFile, vocabulary: GGUFVocabularyMetadata) throws {
        let path = file.path
        let tokens = vocabulary.tokens
        guard let scoreValues = try file.array("tokenizer.ggml.scores", { $0.double }, expected: "numbers") else {
            throw TokenizerError.badFile(path: path, reason: "metadata 'tokenizer.ggml.scores' is missing (a SentencePiece vocabulary merges by score)")
        }
        let unknownId = try vocabulary.specialId("tokenizer.ggml.unknown_token_id", default: 0)
        let model = try SentencePieceModel(tokens: tokens, scores: scoreValues.map { Float($0) }, unknownId: unknownId, path: path)
        let addSpacePrefix = try file.bool("tokenizer.ggml.add_space_prefix") ?? true
        let escapeSpaces = Normalizer.replace(StringReplacer(literal: " "), with: "\u{2581}")
        let normalizer: Normalizer = addSpacePrefix ? .sequence([.prepend("\u{2581}"), escapeSpaces]) : escapeSpaces
        var decoders: [TokenDecoder] = [.replace(StringReplacer(literal: "\u{2581}"), with: " "), .byteFallback, .fuse]
        if addSpacePrefix { decoders.append(.strip(content: " ", start: 1, stop: 0)) }
        // llama.cpp gives Phi-3's special tokens, except these, rstrip: the spaces after them are not text.
        let name = try file.string("general.name")?.lowercased() ?? ""
        let rstripped = name.contains("phi-3") || name.contains("phi3")
        let addedTokens = vocabulary.addedTokens(rstrip: { id in
            rstripped && !["<unk>", "<s>", "<|endoftext|>"].contains(tokens[id])
        })
        try self.init(path: path, normalizer: normalizer, preTokenizer: nil, model: model, addedTokens: addedTokens,
                      decoder: .sequence(decoders), postProcessor: vocabulary.postProcessor, config: vocabulary.config)
    }

    /// The tokenizer of a model: a directory's tokenizer.json or a GGUF file's metadata; nil when the model has none.
    public static func forModel(_ path: String) throws -> Tokenizer? {
        if GGUFCheckpoint.isGGUF(path) {
            let file = try GGUFFile(path: path)
            return try file.string("tokenizer.ggml.model") == nil ? nil : Tokenizer(gguf: file)
        }
        guard FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("tokenizer.json")) else { return nil }
        return try Tokenizer(directory: path)
    }
}

/// What both GGUF tokenizer kinds read alike: the tokens and their types, the special-token ids, whether BOS/EOS are
/// added, the chat template.
struct GGUFVocabularyMetadata {
    let file: GGUFFile
    let path: String
    let tokens: [String]
    /// `tokenizer.ggml.token_type` per token (llama.cpp's `LLAMA_TOKEN_TYPE_*`); empty when the file has none.
    let types: [Int]
    var config = TokenizerConfig()
    var postProcessor: PostProcessor?

    /// `sentencePiece`: llama.cpp's defaults for `llama` vocabularies apply (BOS 1, EOS 2, add BOS).
    init(_ file: GGUFFile, sentencePiece: Bool) throws {
        self.file = file
        path = file.path
        guard let tokens = try file.array("tokenizer.ggml.tokens", { $0.string }, expected: "strings") else {
            throw TokenizerError.badFile(path: path, reason: "metadata 'tokenizer.ggml.tokens' is missing")
        }
        self.tokens = tokens
        types = try file.array("tokenizer.ggml.token_type", { $0.int }, expected: "integers") ?? []
        guard types.isEmpty || types.count == tokens.count else {
            throw TokenizerError.badFile(path: path, reason: "tokenizer.ggml.token_type has \(types.count) entries for \(tokens.count) tokens")
        }
        let bos = try Self.specialId(file, "tokenizer.ggml.bos_token_id", default: sentencePiece ? 1 : nil, tokens: tokens)
        let eos = try Self.specialId(file, "tokenizer.ggml.eos_token_id", default: sentencePiece ? 2 : nil, tokens: tokens)
        config.bosToken = bos.map { tokens[$0] }
        config.eosToken = eos.map { tokens[$0] }
        config.padToken = try Self.specialId(file, "tokenizer.ggml.padding_token_id", default: nil, tokens: tokens).map { tokens[$0] }
        if let eot = try Self.specialId(file, "tokenizer.ggml.eot_token_id", default: nil, tokens: tokens) {
            config.generationEosIds = [eot]
        }
        config.chatTemplate = try file.string("tokenizer.chat_template")
        let addBos = try file.bool("tokenizer.ggml.add_bos_token") ?? sentencePiece
        let addEos = try file.bool("tokenizer.ggml.add_eos_token") ?? false
        let prefix: [PostProcessor.Item] = addBos ? bos.map { [.special([$0])] } ?? [] : []
        let suffix: [PostProcessor.Item] = addEos ? eos.map { [.special([$0])] } ?? [] : []
        if !prefix.isEmpty || !suffix.isEmpty {
            postProcessor = .template(single: prefix + [.sequence(0)] + suffix,
                                      pair: prefix + [.sequence(0)] + suffix + prefix + [.sequence(1)] + suffix)
        }
    }

    /// The id under `key`, else `defaultId`; an id outside the vocabulary is an error when the file names it, and no
    /// token when it is the default (llama.cpp disables such a default).
    static func specialId(_ file: GGUFFile, _ key: String, default defaultId: Int?, tokens: [String]) throws -> Int? {
        if let id = try file.int(key) {
            guard tokens.indices.contains(id) else {
                throw TokenizerError.badFile(path: file.path, reason: "\(key) \(id) is outside the vocabulary of \(tokens.count) tokens")
            }
            return id
        }
        return defaultId.flatMap { tokens.indices.contains($0) ? $0 : nil }
    }

    func specialId(_ key: String, default defaultId: Int?) throws -> Int? {
        try Self.specialId(file, key, default: defaultId, tokens: tokens)
    }

    /// Control (3) and unknown (2) tokens as special added tokens, user-defined ones (4) as plain added tokens, all
    /// matched in the raw text; `rstrip(id)` says which swallow the whitespace after them.
    func addedTokens(rstrip: (Int) -> Bool = { _ in false }) -> [AddedToken] {
        var added: [AddedToken] = []
        for (id, type) in types.enumerated() where type == 2 || type == 3 || type == 4 {
            added.append(AddedToken(id: id, content: tokens[id], rstrip: rstrip(id), normalized: false, special: type != 4))
        }
        return added
    }
}
