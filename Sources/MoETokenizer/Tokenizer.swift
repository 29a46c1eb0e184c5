import Foundation

/// A text ↔ token-id tokenizer that gives the ids Hugging Face `tokenizers` gives: a tokenizer.json (BPE
/// model with its normalizer, pre-tokenizer, added tokens, post-processor and decoder) or a tiktoken rank
/// file. Immutable after loading and safe to share between threads.
///
///     let tok = try Tokenizer(directory: "/models/Qwen3-30B-A3B")
///     let ids = tok.encode("Hello world")          // + what the post-processor adds
///     tok.decode(ids, skipSpecialTokens: true)     // "Hello world"
///     tok.eosTokenIds                              // from tokenizer_config.json / generation_config.json
public final class Tokenizer: Sendable {
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let model: any TokenModel
    let decoder: TokenDecoder?
    let postProcessor: PostProcessor?
    let added: AddedVocabulary
    /// The byte-level fast path of pre-tokenizer + model, when they are byte-level BPE (see `ByteLevelBPE`).
    let fast: ByteLevelBPE?

    /// The file the tokenizer came from (tokenizer.json or the tiktoken rank file).
    public let path: String
    /// The chat template (tokenizer_config.json's `chat_template`, or chat_template.jinja when present).
    public let chatTemplate: String?
    public let bosToken: String?
    public let eosToken: String?
    public let padToken: String?
    public let bosTokenId: Int?
    /// End-of-sequence ids: tokenizer_config.json's `eos_token`, then generation_config.json's
    /// `eos_token_id` (one or a list), without repeats.
    public let eosTokenIds: [Int]
    public let padTokenId: Int?
    /// One past the largest id of the vocabulary and the added tokens (the size an embedding table needs).
    public let vocabSize: Int
    /// The added tokens of tokenizer.json (or the tiktoken special tokens), in file order.
    public var addedTokens: [AddedToken] { added.tokens }

    /// Loads `tokenizer.json` from a model directory, with `tokenizer_config.json` (bos/eos/pad tokens,
    /// chat template), `chat_template.jinja` and `generation_config.json` when present.
    public convenience init(directory: String) throws {
        let dir = URL(fileURLWithPath: directory)
        let path = dir.appendingPathComponent("tokenizer.json").path
        guard FileManager.default.fileExists(atPath: path) else {
            throw TokenizerError.badFile(path: path, reason: "no tokenizer.json in \(directory)")
        }
        let data = try Self.read(path)
        let configPath = dir.appendingPathComponent("tokenizer_config.json").path
        let config = FileManager.default.fileExists(atPath: configPath)
            ? try TokenizerConfig(data: Self.read(configPath), path: configPath) : TokenizerConfig()
        var extra = config
        let jinja = dir.appendingPathComponent("chat_template.jinja").path
        if FileManager.default.fileExists(atPath: jinja) {
            extra.chatTemplate = String(decoding: try Self.read(jinja), as: UTF8.self)
        } else if extra.chatTemplate == nil {
            let jsonPath = dir.appendingPathComponent("chat_template.json").path
            if FileManager.default.fileExists(atPath: jsonPath) {
                let json = try JSONValue.parse(Self.read(jsonPath), path: jsonPath)
                extra.chatTemplate = TokenizerConfig.template(json["chat_template"])
            }
        }
        let generationPath = dir.appendingPathComponent("generation_config.json").path
        if FileManager.default.fileExists(atPath: generationPath) {
            let json = try JSONValue.parse(Self.read(generationPath), path: generationPath)
            if let id = json["eos_token_id"]?.int { extra.generationEosIds = [id] }
            if let ids = json["eos_token_id"]?.array { extra.generationEosIds = ids.compactMap(\.int) }
            extra.generationBosId = json["bos_token_id"]?.int
        }
        try self.init(tokenizerJSON: data, path: path, config: extra)
    }

    /// Parses tokenizer.json contents; `path` names the file in errors. `config` carries what
    /// tokenizer_config.json says (see `TokenizerConfig(data:path:)`).
    public convenience init(tokenizerJSON: Data, path: String = "tokenizer.json", config: TokenizerConfig = TokenizerConfig()) throws {
        let (json, raw) = try JSONValue.parse(tokenizerJSON, path: path, skipping: ["vocab", "merges"])
        try self.init(json: json, path: path, config: config, raw: raw)
    }

    /// From a parsed tokenizer.json (`raw`: the model's vocab and merges, when left unparsed).
    convenience init(json: JSONValue, path: String, config: TokenizerConfig = TokenizerConfig(), raw: RawJSON? = nil) throws {
        guard json.object != nil else { throw TokenizerError.badFile(path: path, reason: "the top level is not a JSON object") }
        guard let modelJSON = json["model"], modelJSON.object != nil else {
            throw TokenizerError.badFile(path: path, reason: "no \"model\" object")
        }
        let type = modelJSON["type"]?.string ?? (modelJSON["merges"] != nil ? "BPE" : "unknown")
        let raw = raw?.ranges.isEmpty == false ? raw : nil
        guard type == "BPE" else {
            throw TokenizerError.unsupported("\(path): model type \(type) is not supported (only BPE)")
        }
        let model = try BPEModel(json: modelJSON, path: path, raw: raw)
        func part<T>(_ key: String, _ make: (JSONValue) throws -> T) throws -> T? {
            guard let value = json[key], !value.isNull else { return nil }
            do { return try make(value) } catch let TokenizerError.unsupported(what) {
                throw TokenizerError.unsupported("\(path): \(what)")
            }
        }
        let normalizer = try part("normalizer", Normalizer.init(json:))
        var addedTokens: [AddedToken] = []
        for (i, item) in (json["added_tokens"]?.array ?? []).enumerated() {
            guard let content = item["content"]?.string, let id = item["id"]?.int else {
                throw TokenizerError.badFile(path: path, reason: "added_tokens[\(i)] needs \"id\" and \"content\"")
            }
            let special = item["special"]?.bool ?? false
            addedTokens.append(AddedToken(
                id: model.id(forToken: content) ?? id, content: content,
                singleWord: item["single_word"]?.bool ?? false, lstrip: item["lstrip"]?.bool ?? false,
                rstrip: item["rstrip"]?.bool ?? false, normalized: item["normalized"]?.bool ?? !special,
                special: special))
        }
        try self.init(path: path, normalizer: normalizer,
                      preTokenizer: part("pre_tokenizer", PreTokenizer.init(json:)),
                      model: model, addedTokens: addedTokens,
                      decoder: part("decoder", TokenDecoder.init(json:)),
                      postProcessor: part("post_processor", PostProcessor.init(json:)),
                      config: config)
    }

    /// A tiktoken tokenizer: `tiktokenFile` holds "base64-token rank" lines (as `load_tiktoken_bpe` reads),
    /// `pattern` is the split regex (`pat_str`), `specialTokens` maps special-token text to its id. Special
    /// tokens in the text are always recognised (tiktoken's `allowed_special="all"`); there is no
    /// normalization and nothing is added around the ids.
    public convenience init(tiktokenFile: String, pattern: String, specialTokens: [String: Int] = [:],
                            config: TokenizerConfig = TokenizerConfig()) throws {
        let data = try Self.read(tiktokenFile)
        try self.init(tiktokenData: data, path: tiktokenFile, pattern: pattern, specialTokens: specialTokens, config: config)
    }

    /// As `init(tiktokenFile:pattern:specialTokens:)`, from the file's contents.
    public convenience init(tiktokenData: Data, path: String = "tiktoken", pattern: String,
                            specialTokens: [String: Int] = [:], config: TokenizerConfig = TokenizerConfig()) throws {
        let model = try TiktokenModel(contents: tiktokenData, path: path)
        let specials = specialTokens.sorted { $0.value < $1.value }.map {
            AddedToken(id: $0.value, content: $0.key, normalized: false, special: true)
        }
        try self.init(path: path, normalizer: nil,
                      preTokenizer: .split(StringReplacer(pattern: .object([("Regex", .string(pattern))])),
                                           behavior: .isolated, invert: false),
                      model: model, addedTokens: specials, decoder: .byteLevel, postProcessor: nil, config: config)
    }

    init(path: String, normalizer: Normalizer?, preTokenizer: PreTokenizer?, model: any TokenModel,
         addedTokens: [AddedToken], decoder: TokenDecoder?, postProcessor: PostProcessor?, config: TokenizerConfig) throws {
        self.path = path
        self.normalizer = normalizer
        self.preTokenizer = preTokenizer
        self.model = model
        self.decoder = decoder
        self.postProcessor = postProcessor
        fast = ByteLevelBPE.make(preTokenizer: preTokenizer, model: model)
        let added = AddedVocabulary(addedTokens, normalizer: normalizer)
        self.added = added
        vocabSize = max(model.idLimit, (added.tokens.map(\.id).max() ?? -1) + 1)
        chatTemplate = config.chatTemplate
        bosToken = config.bosToken
        eosToken = config.eosToken
        padToken = config.padToken
        func lookup(_ token: String?) -> Int? {
            guard let token else { return nil }
            return added.byContent[Array(token.utf8)] ?? model.id(forToken: token)
        }
        bosTokenId = lookup(config.bosToken) ?? config.generationBosId
        var eos: [Int] = []
        for id in [lookup(config.eosToken)].compactMap({ $0 }) + config.generationEosIds where !eos.contains(id) {
            eos.append(id)
        }
        eosTokenIds = eos
        padTokenId = lookup(config.padToken)
    }

    static func read(_ path: String) throws -> Data {
        do { return try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw TokenizerError.badFile(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
    }

    // MARK: - Vocabulary

    /// The id of a token (an added token's content, or a vocabulary entry as written in tokenizer.json).
    public func id(forToken token: String) -> Int? {
        added.byContent[Array(token.utf8)] ?? model.id(forToken: token)
    }

    /// The token text of an id (added tokens first, as HF), or nil for an unknown id.
    public func token(forId id: Int) -> String? {
        added.byId[id]?.content ?? model.token(forId: id)
    }

    /// The regex of the first Split (or ByteLevel) pre-tokenizer, e.g. to build the matching tiktoken encoding.
    public var preTokenizerPattern: String? { preTokenizer?.firstPattern }

    /// Whether `id` is an added token marked special.
    public func isSpecial(_ id: Int) -> Bool { added.isSpecial(id) }

    // MARK: - Encoding

    /// The ids of `text`, as HF `Tokenizer.encode(text, add_special_tokens)`: added tokens are found first,
    /// the rest is normalized, pre-tokenized and run through the model; then, with `addSpecialTokens`, the
    /// post-processor adds its special tokens (e.g. BOS).
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        encode(text, addSpecialTokens: addSpecialTokens, atMost: .max)!
    }

    /// The ids of `text` as `encode(_:addSpecialTokens:)`, or nil once they are known to be more than `limit`:
    /// the work stops there, so a server bounds the time a prompt over its context costs.
    public func encode(_ text: String, addSpecialTokens: Bool = true, atMost limit: Int) -> [Int]? {
        var ids: [Int] = []
        ids.reserveCapacity(min(text.utf8.count / 3, limit) + 4)
        for raw in added.split(text, normalized: false) {
            if let id = raw.id { ids.append(id); continue }
            let normalized = normalizer?.normalize(raw.text) ?? raw.text
            for sub in added.split(normalized, normalized: true) {
                if let id = sub.id { ids.append(id); continue }
                if let fast {
                    guard fast.encode(sub.text, into: &ids, limit: limit) else { return nil }
                    continue
                }
                let piece = Piece(text: sub.text, atStart: raw.offset == 0 && sub.offset == 0)
                let pieces = preTokenizer?.preTokenize([piece]) ?? [piece]
                for p in pieces where !p.text.isEmpty {
                    ids.append(contentsOf: model.tokenize(p.text))
                    if ids.count > limit { return nil }
                }
            }
            if ids.count > limit { return nil }
        }
        if addSpecialTokens, let postProcessor { ids = postProcessor.process(ids) }
        return ids.count > limit ? nil : ids
    }

    /// Ids of a pair of texts (e.g. for cross-encoders), joined by the post-processor's pair template.
    public func encode(_ text: String, pair: String, addSpecialTokens: Bool = true) -> [Int] {
        let a = encode(text, addSpecialTokens: false), b = encode(pair, addSpecialTokens: false)
        if addSpecialTokens, let postProcessor { return postProcessor.process(a, pair: b) }
        return a + b
    }

    // MARK: - Decoding

    /// The bytes token `id` adds inside a text (a byte-level piece's bytes, a `<0xNN>` byte, `▁` as a space);
    /// nil for special added tokens and unknown ids. Constrained decoding matches these against a grammar.
    public func bytes(ofToken id: Int) -> [UInt8]? {
        if let t = added.byId[id] { return t.special ? nil : Array(t.content.utf8) }
        if let tiktoken = model as? TiktokenModel { return tiktoken.bytes(forId: id).map { Array($0) } }
        guard let s = model.token(forId: id) else { return nil }
        return decoder?.bytes(ofToken: s) ?? Array(s.utf8)
    }


    /// The text of `ids`, as HF `Tokenizer.decode`: unknown ids are skipped; with `skipSpecialTokens`,
    /// special added tokens are dropped. Invalid UTF-8 becomes U+FFFD.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        if let tiktoken = model as? TiktokenModel {
            var bytes: [UInt8] = []
            for id in ids {
                if let t = added.byId[id] {
                    if !(skipSpecialTokens && t.special) { bytes.append(contentsOf: t.content.utf8) }
                } else if let b = tiktoken.bytes(forId: id) {
                    bytes.append(contentsOf: b)
                }
            }
            return lossyUTF8(bytes)
        }
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            if let t = added.byId[id] {
                if !(skipSpecialTokens && t.special) { tokens.append(t.content) }
            } else if let s = model.token(forId: id) {
                tokens.append(s)
            }
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decode(tokens)
    }
}

/// What tokenizer_config.json contributes: special-token names, the chat template (and, from
/// generation_config.json, extra end-of-sequence ids).
///
///     let config = try TokenizerConfig(data: Data(#"{"eos_token": "</s>"}"#.utf8), path: "tokenizer_config.json")
///     config.eosToken   // "</s>"
public struct TokenizerConfig: Sendable {
    public var bosToken: String?
    public var eosToken: String?
    public var padToken: String?
    public var unkToken: String?
    public var chatTemplate: String?
    public var generationEosIds: [Int] = []
    public var generationBosId: Int?

    public init() {}

    public init(data: Data, path: String) throws {
        let json = try JSONValue.parse(data, path: path)
        func token(_ key: String) -> String? {
            guard let v = json[key] else { return nil }
            return v.string ?? v["content"]?.string
        }
        bosToken = token("bos_token")
        eosToken = token("eos_token")
        padToken = token("pad_token")
        unkToken = token("unk_token")
        chatTemplate = Self.template(json["chat_template"])
    }

    /// A `chat_template` value: a string, or a list of {name, template} (the one named "default", else the first).
    static func template(_ value: JSONValue?) -> String? {
        guard let value else { return nil }
        if let s = value.string { return s }
        if let list = value.array {
            let named = list.first(where: { $0["name"]?.string == "default" }) ?? list.first
            return named?["template"]?.string
        }
        return nil
    }
}
