import Foundation

/// RoPE settings as `transformers` computes them. Read from `rope_parameters` (written by transformers ≥ 5)
/// or from the legacy `rope_theta` + `rope_scaling` of hub checkpoints; both give the same value.
public struct RopeParameters: Sendable, Equatable {
    /// `default`, `linear`, `llama3`, `yarn`, … (the model decides which it supports).
    public var type: String = "default"
    public var theta: Double = 10000
    public var factor: Double?
    public var originalMaxPositionEmbeddings: Int?
    public var lowFreqFactor: Double?
    public var highFreqFactor: Double?
    public var betaFast: Double?
    public var betaSlow: Double?
    public var attentionFactor: Double?
    public var mscale: Double?
    public var mscaleAllDim: Double?
    public var truncate: Bool?
    public var partialRotaryFactor: Double = 1
    /// Per-frequency divisors (GGUF's `rope_freqs.weight`, which llama.cpp's converter writes for Llama 3 scaling
    /// instead of its parameters): inverse frequency i is divided by factor i.
    public var frequencyFactors: [Float]?

    public init() {}
}

/// The typed contents of a Hugging Face `config.json`, for every architecture swift-moe runs.
/// Names follow the HF keys; keys that differ between architectures (Mixtral's `num_local_experts`) are
/// read under each spelling. Absent optional keys stay nil: the architecture supplies its own default.
public struct ModelConfig: Sendable {
    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    public var maxPositionEmbeddings: Int
    public var rmsNormEps: Double
    public var tieWordEmbeddings: Bool
    public var hiddenAct: String
    public var rope: RopeParameters
    // Attention options.
    public var attentionBias: Bool?
    public var qkvBias: Bool?
    public var clipQKV: Double?
    // MoE options (nil / 0 for dense models).
    public var numExperts: Int
    public var numExpertsPerToken: Int
    public var moeIntermediateSize: Int?
    public var sharedExpertIntermediateSize: Int?
    public var normTopKProb: Bool?
    public var decoderSparseStep: Int
    public var mlpOnlyLayers: [Int]
    public var routerAuxLossCoef: Double?
    // Tokens and storage.
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    public var dtype: String?
    /// The whole JSON object, for keys only one architecture reads.
    public var raw: [String: JSONValue]
    /// Top-level keys whose values were written as floats with a whole value (gpt-oss's `"swiglu_limit": 7.0`):
    /// `jsonData` writes them so again, since transformers' strict config classes refuse an int where a float is declared.
    public var wholeFloatKeys: Set<String> = []

    /// Loads `config.json` from a model directory.
    public init(directory: String) throws {
        let path = (directory as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FormatError.badConfig(path: path, reason: "cannot read the file (is this a model directory?)")
        }
        try self.init(json: data, path: path)
    }

    public init(json data: Data, path: String = "config.json") throws {
        guard let object = try? JSONSerialization.jsonObject(with: data), var dict = object as? [String: Any] else {
            throw FormatError.badConfig(path: path, reason: "not a valid JSON object")
        }
        // Multimodal wrappers keep the language model's keys under text_config.
        if let text = dict["text_config"] as? [String: Any], dict["hidden_size"] == nil { dict = text }
        let c = JSONObject(dict, path: path)
        modelType = try c.string("model_type")
        vocabSize = try c.int("vocab_size")
        hiddenSize = try c.int("hidden_size")
        numHiddenLayers = try c.int("num_hidden_layers")
        numAttentionHeads = try c.int("num_attention_heads")
        numKeyValueHeads = try c.optionalInt("num_key_value_heads") ?? numAttentionHeads
        intermediateSize = try c.optionalInt("intermediate_size") ?? 0
        headDim = try c.optionalInt("head_dim") ?? (hiddenSize / max(numAttentionHeads, 1))
        maxPositionEmbeddings = try c.optionalInt("max_position_embeddings") ?? 4096
        rmsNormEps = try c.optionalDouble("rms_norm_eps") ?? 1e-6
        tieWordEmbeddings = try c.optionalBool("tie_word_embeddings") ?? false
        hiddenAct = try c.optionalString("hidden_act") ?? "silu"
        attentionBias = try c.optionalBool("attention_bias")
        qkvBias = try c.optionalBool("qkv_bias")
        clipQKV = try c.optionalDouble("clip_qkv")
        numExperts = try c.optionalInt("num_experts") ?? c.optionalInt("num_local_experts") ?? c.optionalInt("n_routed_experts") ?? 0
        numExpertsPerToken = try c.optionalInt("num_experts_per_tok") ?? 0
        moeIntermediateSize = try c.optionalInt("moe_intermediate_size")
        sharedExpertIntermediateSize = try c.optionalInt("shared_expert_intermediate_size")
        normTopKProb = try c.optionalBool("norm_topk_prob")
        decoderSparseStep = try c.optionalInt("decoder_sparse_step") ?? 1
        mlpOnlyLayers = try c.optionalIntArray("mlp_only_layers") ?? []
        routerAuxLossCoef = try c.optionalDouble("router_aux_loss_coef")
        bosTokenId = try c.optionalInt("bos_token_id")
        eosTokenIds = try c.optionalIntOrArray("eos_token_id") ?? []
        dtype = try c.optionalString("dtype") ?? c.optionalString("torch_dtype")
        rope = try Self.readRope(c, path: path)
        raw = dict.compactMapValues(JSONValue.init)
        // (From the text: how a number was written is not kept by JSONSerialization's NSNumbers in a portable way.)
        let text = String(decoding: data, as: UTF8.self)
        if let pattern = try? NSRegularExpression(pattern: #""([A-Za-z0-9_]+)"\s*:\s*-?[0-9]+\.0+\s*[,}\n]"#) {
            for m in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                if let r = Range(m.range(at: 1), in: text), dict[String(text[r])] is NSNumber { wholeFloatKeys.insert(String(text[r])) }
            }
        }

        for (key, value) in [("hidden_size", hiddenSize), ("num_hidden_layers", numHiddenLayers),
                             ("num_attention_heads", numAttentionHeads), ("num_key_value_heads", numKeyValueHeads),
                             ("head_dim", headDim), ("vocab_size", vocabSize), ("decoder_sparse_step", decoderSparseStep)]
        where value <= 0 {
            throw FormatError.badConfig(path: path, reason: "\(key) must be positive, found \(value)")
        }
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw FormatError.badConfig(path: path, reason: "num_attention_heads (\(numAttentionHeads)) is not a multiple of num_key_value_heads (\(numKeyValueHeads))")
        }
        if numExperts > 0 && !(1...numExperts).contains(numExpertsPerToken) {
            throw FormatError.badConfig(path: path, reason: "num_experts_per_tok (\(numExpertsPerToken)) must be between 1 and the number of experts (\(numExperts))")
        }
    }

    private static func readRope(_ c: JSONObject, path: String) throws -> RopeParameters {
        var r = RopeParameters()
        // transformers ≥ 5: everything under rope_parameters; legacy: rope_theta at top level + rope_scaling.
        let params = try c.optionalObject("rope_parameters")
        let scaling = try c.optionalObject("rope_scaling")
        r.theta = try params?.optionalDouble("rope_theta") ?? c.optionalDouble("rope_theta") ?? 10000
        r.partialRotaryFactor = try params?.optionalDouble("partial_rotary_factor") ?? c.optionalDouble("partial_rotary_factor") ?? 1
        guard let p = params ?? scaling else { return r }
        r.type = try p.optionalString("rope_type") ?? p.optionalString("type") ?? "default"
        r.factor = try p.optionalDouble("factor")
        r.originalMaxPositionEmbeddings = try p.optionalInt("original_max_position_embeddings")
        r.lowFreqFactor = try p.optionalDouble("low_freq_factor")
        r.highFreqFactor = try p.optionalDouble("high_freq_factor")
        r.betaFast = try p.optionalDouble("beta_fast")
        r.betaSlow = try p.optionalDouble("beta_slow")
        r.attentionFactor = try p.optionalDouble("attention_factor")
        r.mscale = try p.optionalDouble("mscale")
        r.mscaleAllDim = try p.optionalDouble("mscale_all_dim")
        r.truncate = try p.optionalBool("truncate")
        return r
    }

    /// A JSON number/bool/string/array/object kept from config.json.
    public var isMoE: Bool { numExperts > 0 }
}

/// A JSON value kept as data (Sendable), for config keys read by one architecture only.
public indirect enum JSONValue: Sendable, Equatable {
    case number(Double), bool(Bool), string(String), array([JSONValue]), object([String: JSONValue]), null

    init?(_ any: Any) {
        switch any {
        case let n as NSNumber:
            self = isJSONBool(n) ? .bool(n.boolValue) : .number(n.doubleValue)
        case let s as String: self = .string(s)
        case let a as [Any]: self = .array(a.compactMap(JSONValue.init))
        case let o as [String: Any]: self = .object(o.compactMapValues(JSONValue.init))
        case is NSNull: self = .null
        default: return nil
        }
    }

    /// The value as `JSONSerialization` objects (for writing config.json back).
    public var foundationObject: Any {
        switch self {
        case let .number(d): return d == d.rounded() && abs(d) < 1e15 ? NSNumber(value: Int64(d)) : NSNumber(value: d)
        case let .bool(b): return NSNumber(value: b)
        case let .string(s): return s
        case let .array(a): return a.map(\.foundationObject)
        case let .object(o): return o.mapValues(\.foundationObject)
        case .null: return NSNull()
        }
    }
}

extension ModelConfig {
    /// config.json as written by `save_pretrained` would have it: every key read, pretty-printed, sorted.
    public func jsonData() throws -> Data {
        let data = try JSONSerialization.data(withJSONObject: raw.mapValues(\.foundationObject), options: [.prettyPrinted, .sortedKeys])
        guard !wholeFloatKeys.isEmpty else { return data }
        // JSONSerialization writes 7.0 as 7: put the ".0" back on the keys that had it (top level: pretty-printed, one a line).
        var lines = String(decoding: data, as: UTF8.self).components(separatedBy: "\n")
        for (i, line) in lines.enumerated() {
            guard line.hasPrefix("  \""), !line.hasPrefix("   "), let colon = line.range(of: "\" : ") else { continue }
            let key = String(line[line.index(line.startIndex, offsetBy: 3)..<colon.lowerBound])
            guard wholeFloatKeys.contains(key), case .number? = raw[key] else { continue }
            var value = String(line[colon.upperBound...]), comma = ""
            if value.hasSuffix(",") { value.removeLast(); comma = "," }
            if Int(value) != nil { lines[i] = line[..<colon.upperBound] + value + ".0" + comma }
        }
        return Data(lines.joined(separator: "\n").utf8)
    }
}

/// Typed look-ups in a JSON object with errors that name the file and key.
struct JSONObject {
    let dict: [String: Any]
    let path: String
    init(_ dict: [String: Any], path: String) { self.dict = dict; self.path = path }

    private func present(_ key: String) -> Any? {
        guard let v = dict[key], !(v is NSNull) else { return nil }
        return v
    }
    private func wrong(_ key: String, _ what: String) -> FormatError {
        .badConfig(path: path, reason: "\"\(key)\" should be \(what), found \(dict[key].map { "\($0)" } ?? "nothing")")
    }
    private static func isBool(_ v: Any) -> Bool { isJSONBool(v) }

    func string(_ key: String) throws -> String {
        guard let v = try optionalString(key) else { throw FormatError.badConfig(path: path, reason: "missing \"\(key)\"") }
        return v
    }
    func int(_ key: String) throws -> Int {
        guard let v = try optionalInt(key) else { throw FormatError.badConfig(path: path, reason: "missing \"\(key)\"") }
        return v
    }
    func optionalString(_ key: String) throws -> String? {
        guard let v = present(key) else { return nil }
        guard let s = v as? String else { throw wrong(key, "a string") }
        return s
    }
    func optionalInt(_ key: String) throws -> Int? {
        guard let v = present(key) else { return nil }
        guard let n = v as? NSNumber, !Self.isBool(v), n.doubleValue == n.doubleValue.rounded(), abs(n.doubleValue) < 1e15 else {
            throw wrong(key, "an integer")
        }
        return n.intValue
    }
    func optionalDouble(_ key: String) throws -> Double? {
        guard let v = present(key) else { return nil }
        guard let n = v as? NSNumber, !Self.isBool(v) else { throw wrong(key, "a number") }
        return n.doubleValue
    }
    func optionalBool(_ key: String) throws -> Bool? {
        guard let v = present(key) else { return nil }
        guard let n = v as? NSNumber, Self.isBool(v) else { throw wrong(key, "true or false") }
        return n.boolValue
    }
    func optionalIntArray(_ key: String) throws -> [Int]? {
        guard let v = present(key) else { return nil }
        guard let a = v as? [Any] else { throw wrong(key, "a list of integers") }
        return try a.map { e in
            guard let n = e as? NSNumber, !Self.isBool(e) else { throw wrong(key, "a list of integers") }
            return n.intValue
        }
    }
    func optionalIntOrArray(_ key: String) throws -> [Int]? {
        guard let v = present(key) else { return nil }
        if v is [Any] { return try optionalIntArray(key) }
        return try optionalInt(key).map { [$0] }
    }
    func optionalObject(_ key: String) throws -> JSONObject? {
        guard let v = present(key) else { return nil }
        guard let o = v as? [String: Any] else { throw wrong(key, "an object") }
        return JSONObject(o, path: path + " (\(key))")
    }
}

/// `generation_config.json`: end-of-sequence ids (a number or a list) and default sampling settings.
public struct GenerationConfig: Sendable, Equatable {
    public var eosTokenIds: [Int] = []
    public var bosTokenId: Int?
    public var padTokenId: Int?
    public var doSample: Bool?
    public var temperature: Double?
    public var topK: Int?
    public var topP: Double?
    public var minP: Double?
    public var repetitionPenalty: Double?
    public var maxNewTokens: Int?

    public init() {}

    /// The ids config.json holds, for a model without a generation_config.json (a GGUF file, weights in memory).
    public init(from config: ModelConfig) {
        eosTokenIds = config.eosTokenIds
        bosTokenId = config.bosTokenId
    }

    /// Reads `generation_config.json` from a model directory; an absent file gives the empty configuration.
    public init(directory: String) throws {
        let path = (directory as NSString).appendingPathComponent("generation_config.json")
        guard let data = FileManager.default.contents(atPath: path) else { return }
        guard let object = try? JSONSerialization.jsonObject(with: data), let dict = object as? [String: Any] else {
            throw FormatError.badConfig(path: path, reason: "not a valid JSON object")
        }
        let c = JSONObject(dict, path: path)
        eosTokenIds = try c.optionalIntOrArray("eos_token_id") ?? []
        bosTokenId = try c.optionalInt("bos_token_id")
        padTokenId = try c.optionalInt("pad_token_id")
        doSample = try c.optionalBool("do_sample")
        temperature = try c.optionalDouble("temperature")
        topK = try c.optionalInt("top_k")
        topP = try c.optionalDouble("top_p")
        minP = try c.optionalDouble("min_p")
        repetitionPenalty = try c.optionalDouble("repetition_penalty")
        maxNewTokens = try c.optionalInt("max_new_tokens")
    }
}

/// Whether a value from JSONSerialization is a JSON `true`/`false` rather than a number.
func isJSONBool(_ v: Any) -> Bool {
    guard let n = v as? NSNumber else { return false }
    return String(cString: n.objCType) == "c"
}

extension ModelConfig {
    /// A key only some architectures read, as an integer (nil when absent or null); a value of another type is
    /// an error naming the key.
    public func extraInt(_ key: String) throws -> Int? {
        switch raw[key] {
        case nil, .null?: return nil
        case let .number(d)? where d == d.rounded() && abs(d) < 1e15: return Int(d)
        default: throw FormatError.badConfig(path: "config.json", reason: "\"\(key)\" should be an integer")
        }
    }

    public func extraDouble(_ key: String) throws -> Double? {
        switch raw[key] {
        case nil, .null?: return nil
        case let .number(d)?: return d
        default: throw FormatError.badConfig(path: "config.json", reason: "\"\(key)\" should be a number")
        }
    }

    public func extraBool(_ key: String) throws -> Bool? {
        switch raw[key] {
        case nil, .null?: return nil
        case let .bool(b)?: return b
        default: throw FormatError.badConfig(path: "config.json", reason: "\"\(key)\" should be true or false")
        }
    }

    public func extraString(_ key: String) throws -> String? {
        switch raw[key] {
        case nil, .null?: return nil
        case let .string(s)?: return s
        default: throw FormatError.badConfig(path: "config.json", reason: "\"\(key)\" should be a string")
        }
    }

    /// Whether `rope_parameters` or the top level names `key` (to tell an absent setting from its default).
    public func ropeSettingGiven(_ key: String) -> Bool {
        if raw[key] != nil { return true }
        for container in ["rope_parameters", "rope_scaling"] {
            if case let .object(o)? = raw[container], o[key] != nil { return true }
        }
        return false
    }
}
