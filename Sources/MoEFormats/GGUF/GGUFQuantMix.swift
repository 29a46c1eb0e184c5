import MoEKernels

/// llama.cpp's quantisation presets (`llama_ftype`: Q4_K_M, Q8_0, …) and its choice of a type per tensor
/// (llama-quant.cpp: `tensor_allows_quantization`, `llama_tensor_get_type`, `tensor_type_fallback`), so that
/// `moe quantize --type q4_k_m` gives every tensor the type `llama-quantize … Q4_K_M` gives it: more bits for the
/// attention V and FFN down matrices of some layers (`use_more_bits`), Q6_K for the output matrix, Q8_0 for
/// 8-expert models' attention, fallbacks for rows that are not whole 256-value blocks. Only the rules that the
/// presets below reach are here (the IQ1/IQ2/IQ3, Q2_K_S and ternary presets need an importance matrix and are not offered;
/// the Falcon and Llama-70B special cases concern architectures swift-moe does not write).
public struct GGUFQuantMix: Sendable {
    /// A preset: its name (lower case, as `moe quantize --type` takes it), llama.cpp's `llama_ftype` id
    /// (stored as `general.file_type`) and its base tensor type.
    public struct Preset: Sendable, Equatable {
        public let name: String
        public let fileType: Int
        public let base: GGUFTensorType
    }

    public static let presets: [Preset] = [
        Preset(name: "f32", fileType: 0, base: .f32), Preset(name: "f16", fileType: 1, base: .f16),
        Preset(name: "bf16", fileType: 32, base: .bf16),
        Preset(name: "q4_0", fileType: 2, base: .quantized(.q4_0)), Preset(name: "q4_1", fileType: 3, base: .quantized(.q4_1)),
        Preset(name: "q5_0", fileType: 8, base: .quantized(.q5_0)), Preset(name: "q5_1", fileType: 9, base: .quantized(.q5_1)),
        Preset(name: "q8_0", fileType: 7, base: .quantized(.q8_0)),
        Preset(name: "q2_k", fileType: 10, base: .quantized(.q2_K)),
        Preset(name: "q3_k_s", fileType: 11, base: .quantized(.q3_K)), Preset(name: "q3_k_m", fileType: 12, base: .quantized(.q3_K)),
        Preset(name: "q3_k_l", fileType: 13, base: .quantized(.q3_K)),
        Preset(name: "q4_k_s", fileType: 14, base: .quantized(.q4_K)), Preset(name: "q4_k_m", fileType: 15, base: .quantized(.q4_K)),
        Preset(name: "q5_k_s", fileType: 16, base: .quantized(.q5_K)), Preset(name: "q5_k_m", fileType: 17, base: .quantized(.q5_K)),
        Preset(name: "q6_k", fileType: 18, base: .quantized(.q6_K)),
        Preset(name: "iq4_nl", fileType: 25, base: .quantized(.iq4_nl)), Preset(name: "iq4_xs", fileType: 30, base: .quantized(.iq4_xs)),
        Preset(name: "mxfp4_moe", fileType: 38, base: .quantized(.mxfp4)),
    ]
    /// llama-quantize's short names for the medium presets.
    static let aliases = ["q3_k": "q3_k_m", "q4_k": "q4_k_m", "q5_k": "q5_k_m"]

    /// The preset called `name` (case-insensitive, llama-quantize's aliases accepted).
    public static func preset(named name: String) -> Preset? {
        let key = name.lowercased()
        return presets.first { $0.name == (aliases[key] ?? key) }
    }

    /// The model facts the rules read.
    public struct Model: Sendable {
        public var architecture: String
        public var layers: Int
        public var heads: Int
        public var kvHeads: Int
        public var experts: Int
        public init(architecture: String, layers: Int, heads: Int, kvHeads: Int, experts: Int) {
            self.architecture = architecture; self.layers = layers; self.heads = heads; self.kvHeads = kvHeads; self.experts = experts
        }
    }

    public let preset: Preset
    /// Every matrix in the base type (llama-quantize `--pure`), fallbacks aside.
    public let pure: Bool

    public init(preset: Preset, pure: Bool = false) {
        self.preset = preset; self.pure = pure
    }

    /// The type of each tensor, given in llama.cpp's order (`GGUFExport.llamaCppOrder`: the per-layer counters
    /// depend on it) as (name, ggml dims, current type).
    public func types(for tensors: [(name: String, dims: [Int], type: GGUFTensorType)], model: Model) throws -> [GGUFTensorType] {
        var state = State(model: model)
        state.attentionVCount = tensors.filter { Self.isAttentionV(Self.category($0.name)) }.count
        state.tiedEmbeddings = !tensors.contains { $0.name == "output.weight" }
        return try tensors.map { t in
            guard Self.allowsQuantization(t.name, dims: t.dims) else { return t.type }
            var type = preset.base
            if case .quantized = preset.base {
                if !pure { type = try rules(type, name: t.name, dims: t.dims, state: &state) }
                type = Self.fallback(type, columns: t.dims[0])
            }
            return type
        }
    }

    // MARK: - llama.cpp's rules

    enum Category { case output, tokenEmbedding, attentionQKV, attentionKVB, attentionV, attentionK, attentionQ,
                    attentionOutput, ffnUp, ffnGate, ffnDown, other }

    struct State {
        let model: Model
        var attentionVCount = 0, attentionV = 0, ffnDown = 0, ffnGate = 0, ffnUp = 0
        var tiedEmbeddings = true
    }

    static func category(_ name: String) -> Category {
        if name == "output.weight" { return .output }
        if name == "token_embd.weight" || name == "per_layer_token_embd.weight" { return .tokenEmbedding }
        if name.contains("attn_qkv.weight") { return .attentionQKV }
        if name.contains("attn_kv_b.weight") { return .attentionKVB }
        if name.contains("attn_v.weight") { return .attentionV }
        if name.contains("attn_k.weight") { return .attentionK }
        if name.contains("attn_q.weight") { return .attentionQ }
        if name.contains("attn_output.weight") { return .attentionOutput }
        if name.contains("ffn_up") { return .ffnUp }
        if name.contains("ffn_gate") { return .ffnGate }
        if name.contains("ffn_down") { return .ffnDown }
        return .other
    }

    static func isAttentionV(_ c: Category) -> Bool { c == .attentionV || c == .attentionQKV || c == .attentionKVB }

    /// Matrices (two or more non-trivial dims) named `*weight`, except norms and routers (the names of llama.cpp's
    /// list that swift-moe's architectures can have).
    static func allowsQuantization(_ name: String, dims: [Int]) -> Bool {
        let nonTrivialDims = (dims.lastIndex { $0 > 1 } ?? 0) + 1   // ggml_n_dims: trailing 1s do not count
        return nonTrivialDims >= 2 && name.hasSuffix("weight") && !name.contains("_norm.weight")
            && !name.contains("ffn_gate_inp.weight") && !name.contains("attn_rel_b.weight")
    }

    /// A type whose blocks do not divide the rows falls back to one with 32-value blocks, else F16.
    static func fallback(_ type: GGUFTensorType, columns: Int) -> GGUFTensorType {
        guard columns % type.block.elements != 0, case let .quantized(q) = type else { return type }
        let replacement: GGUFTensorType
        switch q {
        case .iq4_xs: replacement = .quantized(.iq4_nl)
        case .q2_K, .q3_K: replacement = .quantized(.q4_0)
        case .q4_K: replacement = .quantized(.q5_0)
        case .q5_K: replacement = .quantized(.q5_1)
        case .q6_K: replacement = .quantized(.q8_0)
        default: replacement = type
        }
        return columns % replacement.block.elements == 0 ? replacement : .f16
    }

    /// `llama_tensor_get_type_impl` for the presets offered.
    private func rules(_ base: GGUFTensorType, name: String, dims: [Int], state s: inout State) throws -> GGUFTensorType {
        let f = preset.name, m = s.model
        var type = base
        let category = Self.category(name)
        let gqa = m.heads / max(m.kvHeads, 1)
        func moreBits(_ i: Int, _ n: Int) -> Bool { i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2 }
        // Mixtral's experts are not consecutive in a file, so MoE models take the layer from the name.
        func layer(_ counter: Int) throws -> (Int, Int) {
            guard m.experts > 1 else { return (counter, m.layers) }
            guard let i = GGUFExport.layer(of: name), i < m.layers else {
                throw FormatError.badTensor(path: "(quantize)", tensor: name, reason: "has no layer number below \(m.layers)")
            }
            return (i, m.layers)
        }
        if category == .output || (s.tiedEmbeddings && category == .tokenEmbedding) {
            if f == "mxfp4_moe" || dims[0] % type.block.elements != 0 {
                type = .quantized(.q8_0)
            } else if type != .quantized(.q8_0) {
                type = .quantized(.q6_K)
            }
        } else if f == "mxfp4_moe" {
            type = dims.count > 2 && dims[2] > 1 ? .quantized(.mxfp4) : .quantized(.q8_0)
        } else if Self.isAttentionV(category) {
            if f == "q2_k" { type = .quantized(gqa >= 4 ? .q4_K : .q3_K) }
            else if f == "q3_k_m" { type = .quantized(s.attentionV < 2 ? .q5_K : .q4_K) }
            else if f == "q3_k_l" { type = .quantized(.q5_K) }
            else if (f == "iq4_nl" || f == "iq4_xs") && gqa >= 4 { type = .quantized(.q5_K) }
            else if (f == "q4_k_m" || f == "q5_k_m") && moreBits(s.attentionV, s.attentionVCount) { type = .quantized(.q6_K) }
            else if f == "q4_k_s" && s.attentionV < 4 { type = .quantized(.q5_K) }
            if m.experts == 8 { type = .quantized(.q8_0) }
            s.attentionV += 1
        } else if category == .attentionK {
            if m.experts == 8 { type = .quantized(.q8_0) }
        } else if category == .ffnDown {
            let (i, n) = try layer(s.ffnDown)
            if f == "q2_k" { type = .quantized(.q3_K) }
            else if f == "q3_k_m" { type = .quantized(i < n / 16 ? .q5_K : .q4_K) }
            else if f == "q3_k_l" { type = .quantized(.q5_K) }
            else if f == "q4_k_m" { if moreBits(i, n) { type = .quantized(.q6_K) } }
            else if i < n / 8 && (f == "iq4_nl" || f == "iq4_xs") { type = .quantized(.q5_K) }
            else if f == "q5_k_m" && moreBits(i, n) { type = .quantized(.q6_K) }
            else if f == "q4_k_s" && i < n / 8 { type = .quantized(.q5_K) }
            s.ffnDown += 1
        } else if category == .attentionOutput {
            if m.experts == 8 {
                if ["q2_k", "q3_k_s", "q3_k_m", "iq4_nl", "q4_k_s", "q4_k_m", "iq4_xs"].contains(f) { type = .quantized(.q5_K) }
            } else {
                if f == "q2_k" { type = .quantized(.q3_K) }
                else if f == "q3_k_m" { type = .quantized(.q4_K) }
                else if f == "q3_k_l" { type = .quantized(.q5_K) }
            }
        } else if category == .ffnGate {
            _ = try layer(s.ffnGate)
            s.ffnGate += 1
        } else if category == .ffnUp {
            _ = try layer(s.ffnUp)
            s.ffnUp += 1
        }
        return type
    }
}
