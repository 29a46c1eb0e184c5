import Foundation
import MoEKernels

/// A model in GGUF form (one file, or the parts of a split file), presented as a `TensorStore` under Hugging Face
/// tensor names, with its `ModelConfig` read from the `{architecture}.*` metadata — so the engine's architectures
/// run a llama.cpp file exactly as the HF directory it was converted from.
///
/// What llama.cpp's converter changed is undone here: names (`blk.N.attn_q` → `model.layers.N.self_attn.q_proj`),
/// dimension order (ggml's `[cols, rows]` → `[rows, cols]`), stacked experts (`ffn_gate_exps` [E, width, hidden] →
/// `mlp.experts.gate_proj`), and the `llama` architecture's permutation of q/k rows (interleaved RoPE pairs back to
/// HF's halves: those two matrices are copied, rows reordered, in their stored type).
public final class GGUFCheckpoint: TensorStore, @unchecked Sendable {
    /// The parts in order (one for an unsplit file).
    public let files: [GGUFFile]
    /// `general.architecture`.
    public let architecture: String
    public let config: ModelConfig
    private var location: [String: TensorData] = [:]
    /// What the tensors point into, owned by them (the checkpoint holds the tensors: owning them back would be a
    /// cycle, never freed).
    private let backing: Backing

    private final class Backing: @unchecked Sendable {
        let files: [GGUFFile]
        /// The reordered copies of permuted matrices.
        var copies: [UnsafeMutableRawPointer] = []
        init(files: [GGUFFile]) { self.files = files }
        deinit { for p in copies { p.deallocate() } }
    }

    /// GGUF architectures swift-moe runs, with the `model_type` of the engine architecture that runs them
    /// (`llama` with experts is Mixtral).
    public static let architectures = ["qwen2moe", "qwen3moe", "llama", "olmoe", "qwen2", "qwen3", "deepseek2", "glm4moe",
                                       "qwen3next", "qwen35moe", "gpt-oss"]

    /// Whether `path` names a GGUF file (by extension) rather than a model directory.
    public static func isGGUF(_ path: String) -> Bool { path.lowercased().hasSuffix(".gguf") }

    public init(path: String) throws {
        let first = try GGUFFile(path: path)
        files = try Self.openParts(first)
        backing = Backing(files: files)
        guard let arch = try first.string("general.architecture") else {
            throw FormatError.badConfig(path: path, reason: "metadata 'general.architecture' is missing")
        }
        guard Self.architectures.contains(arch) else {
            throw FormatError.badConfig(path: path, reason: "GGUF architecture '\(arch)' is not supported (supported: \(Self.architectures.joined(separator: ", ")))")
        }
        architecture = arch
        var tensors: [String: GGUFTensorInfo] = [:]
        for file in files {
            for t in file.tensors {
                guard tensors.updateValue(t, forKey: t.name) == nil else {
                    throw FormatError.badTensor(path: file.path, tensor: t.name, reason: "appears in more than one split part")
                }
            }
        }
        var config = try GGUFConfig.modelConfig(first, architecture: arch, tensors: tensors)
        if let freqs = tensors["rope_freqs.weight"] {
            // Llama 3 scaling, as llama.cpp's converter stores it: a divisor per rotary frequency.
            config.rope.frequencyFactors = try FloatEncoding.floats(Self.tensorData(freqs, name: freqs.name, owner: first, path: path))
        }
        self.config = config
        let permute = arch == "llama"
        // DeepSeek's and GLM's shared experts are `shared_experts` (ungated) in their HF checkpoints.
        let sharedExperts = arch == "deepseek2" || arch == "glm4moe"
        let hybrid = arch == "qwen3next" || arch == "qwen35moe"
        for (name, t) in tensors {
            // GLM-4.5's, gpt-oss's and Qwen3-Next's second norm is `post_attention_norm` in llama.cpp (`ffn_norm` elsewhere).
            let ggufName = arch == "glm4moe" || arch == "gpt-oss" || hybrid ? name.replacingOccurrences(of: ".post_attention_norm.", with: ".ffn_norm.") : name
            guard var hf = GGUFTensorNames.hfName(ggufName) else { continue }
            if sharedExperts { hf = hf.replacingOccurrences(of: ".mlp.shared_expert.", with: ".mlp.shared_experts.") }
            // Layers past num_hidden_layers are multi-token-prediction blocks (GLM-4.5's nextn): read by the
            // module that drafts with them, and anything past them is not run.
            let mtp = (try? config.extraInt("num_nextn_predict_layers")) ?? nil
            if let layer = GGUFTensorNames.layerIndex(hf), layer >= config.numHiddenLayers + (mtp ?? 0) { continue }
            var data = try Self.tensorData(t, name: hf, owner: backing, path: path)
            if permute, hf.hasSuffix("self_attn.q_proj.weight") || hf.hasSuffix("self_attn.k_proj.weight") {
                let heads = hf.hasSuffix("q_proj.weight") ? config.numAttentionHeads : config.numKeyValueHeads
                data = try unpermuteRows(data, heads: heads)
            }
            if hybrid { data = try undoHybridConversion(data) }
            if hf.hasSuffix("shared_expert_gate.weight"), data.shape.count == 1 {
                data = TensorData(name: hf, dtype: data.dtype, shape: [1, data.shape[0]], pointer: data.pointer,
                                  byteCount: data.byteCount, owner: backing, quant: data.quant)
            }
            location[hf] = data
        }
    }

    public var source: String { files[0].path }
    public var fileCount: Int { files.count }
    public var tensorNames: [String] { location.keys.sorted() }
    public var byteCount: Int { location.values.reduce(0) { $0 + $1.byteCount } }
    public func contains(_ name: String) -> Bool { location[name] != nil }

    public func tensor(_ name: String) throws -> TensorData {
        guard let t = location[name] else {
            throw FormatError.missingTensor(tensor: "\(name) (GGUF: \(GGUFTensorNames.ggufName(name) ?? "?"))", directory: source)
        }
        return t
    }

    /// The metadata of the first part.
    public var metadata: GGUFFile { files[0] }

    /// The other parts of a split file (`NAME-00001-of-00003.gguf`, metadata `split.count`), opened in order;
    /// a missing part is an error naming it.
    static func openParts(_ first: GGUFFile) throws -> [GGUFFile] {
        let count = try first.int("split.count") ?? 1
        guard count > 1 else { return [first] }
        guard count <= 9999, (try first.int("split.no") ?? 0) == 0 else {
            throw FormatError.badConfig(path: first.path, reason: "is part \((try? first.int("split.no")) ?? 0) of \(count); open the first part")
        }
        let suffix = String(format: "-00001-of-%05d.gguf", count)
        guard first.path.hasSuffix(suffix) else {
            throw FormatError.badConfig(path: first.path, reason: "is the first of \(count) split parts but is not named *\(suffix)")
        }
        let stem = String(first.path.dropLast(suffix.count))
        var parts = [first]
        for i in 2...count {
            let path = stem + String(format: "-%05d-of-%05d.gguf", i, count)
            guard FileManager.default.fileExists(atPath: path) else {
                throw FormatError.unreadable(path: path, reason: "split part \(i) of \(count) is missing")
            }
            let part = try GGUFFile(path: path)
            guard (try part.int("split.no")) == i - 1 else {
                throw FormatError.badConfig(path: path, reason: "metadata 'split.no' should be \(i - 1)")
            }
            parts.append(part)
        }
        return parts
    }

    static func tensorData(_ t: GGUFTensorInfo, name: String, owner: AnyObject, path: String) throws -> TensorData {
        let dtype: DType, quant: QuantType?
        switch t.type {
        case .f32: dtype = .f32; quant = nil
        case .f16: dtype = .f16; quant = nil
        case .bf16: dtype = .bf16; quant = nil
        case let .quantized(q): dtype = .u8; quant = q
        }
        return TensorData(name: name, dtype: dtype, shape: t.shape, pointer: t.pointer, byteCount: t.byteCount,
                          owner: owner, quant: quant)
    }

    /// What llama.cpp's converter does to Qwen3-Next / Qwen3.5 tensors, undone: zero-centred norms stored with their
    /// 1 added (HF keeps w, scaling by 1 + w), A stored as −exp(A_log), the convolution squeezed to [channels, kernel].
    private func undoHybridConversion(_ t: TensorData) throws -> TensorData {
        let name = t.name
        if name.hasSuffix("conv1d.weight"), t.shape.count == 2 {
            return TensorData(name: name, dtype: t.dtype, shape: [t.shape[0], 1, t.shape[1]], pointer: t.pointer,
                              byteCount: t.byteCount, owner: backing, quant: t.quant)
        }
        let shifted = name.hasSuffix("norm.weight") && !name.hasSuffix("linear_attn.norm.weight")
        guard shifted || name.hasSuffix(".A_log") else { return t }
        var values = try FloatEncoding.floats(t)
        for i in values.indices {
            if shifted {
                values[i] -= 1
            } else {
                guard values[i] < 0 else {
                    throw FormatError.badTensor(path: source, tensor: "\(name) (GGUF ssm_a)", reason: "holds \(values[i]); A = −exp(A_log) must be negative")
                }
                values[i] = Foundation.log(-values[i])
            }
        }
        let copy = UnsafeMutableRawPointer.allocate(byteCount: values.count * 4, alignment: 64)
        backing.copies.append(copy)
        values.withUnsafeBytes { copy.copyMemory(from: $0.baseAddress!, byteCount: values.count * 4) }
        return TensorData(name: name, dtype: .f32, shape: t.shape, pointer: UnsafeRawPointer(copy), byteCount: values.count * 4,
                          owner: backing, quant: nil)
    }

    /// Undoes llama.cpp's `permute` of q/k rows for the `llama` architecture: within each head, GGUF row 2i + j is
    /// HF row j·(headDim/2) + i. Rows are whole blocks, so this works in any stored type.
    private func unpermuteRows(_ t: TensorData, heads: Int) throws -> TensorData {
        guard t.shape.count == 2, heads > 0, t.shape[0] % (2 * heads) == 0 else {
            throw FormatError.badTensor(path: source, tensor: t.name, reason: "shape \(t.shape) does not split into \(heads) heads")
        }
        let rows = t.shape[0], rowBytes = t.byteCount / rows, headDim = rows / heads
        let copy = UnsafeMutableRawPointer.allocate(byteCount: t.byteCount, alignment: 64)
        backing.copies.append(copy)
        for h in 0..<heads {
            for i in 0..<(headDim / 2) {
                for j in 0..<2 {
                    let src = h * headDim + 2 * i + j, dst = h * headDim + j * (headDim / 2) + i
                    (copy + dst * rowBytes).copyMemory(from: t.pointer + src * rowBytes, byteCount: rowBytes)
                }
            }
        }
        return TensorData(name: t.name, dtype: t.dtype, shape: t.shape, pointer: UnsafeRawPointer(copy),
                          byteCount: t.byteCount, owner: backing, quant: t.quant)
    }
}

/// llama.cpp's tensor names ↔ Hugging Face names, for the architectures swift-moe reads from GGUF.
public enum GGUFTensorNames {
    /// Per-layer suffixes: GGUF `blk.N.<key>` ↔ HF `model.layers.N.<value>`.
    static let layer: [(gguf: String, hf: String)] = [
        ("attn_norm.weight", "input_layernorm.weight"),
        ("attn_q.weight", "self_attn.q_proj.weight"), ("attn_q.bias", "self_attn.q_proj.bias"),
        ("attn_k.weight", "self_attn.k_proj.weight"), ("attn_k.bias", "self_attn.k_proj.bias"),
        ("attn_v.weight", "self_attn.v_proj.weight"), ("attn_v.bias", "self_attn.v_proj.bias"),
        ("attn_output.weight", "self_attn.o_proj.weight"), ("attn_output.bias", "self_attn.o_proj.bias"),
        ("attn_q_norm.weight", "self_attn.q_norm.weight"), ("attn_k_norm.weight", "self_attn.k_norm.weight"),
        ("ffn_norm.weight", "post_attention_layernorm.weight"),
        ("ffn_gate.weight", "mlp.gate_proj.weight"), ("ffn_up.weight", "mlp.up_proj.weight"),
        ("ffn_down.weight", "mlp.down_proj.weight"),
        ("ffn_gate_inp.weight", "mlp.gate.weight"),
        ("ffn_gate_exps.weight", "mlp.experts.gate_proj"), ("ffn_up_exps.weight", "mlp.experts.up_proj"),
        ("ffn_down_exps.weight", "mlp.experts.down_proj"),
        ("ffn_gate_shexp.weight", "mlp.shared_expert.gate_proj.weight"),
        ("ffn_up_shexp.weight", "mlp.shared_expert.up_proj.weight"),
        ("ffn_down_shexp.weight", "mlp.shared_expert.down_proj.weight"),
        ("ffn_gate_inp_shexp.weight", "mlp.shared_expert_gate.weight"),
        ("exp_probs_b.bias", "mlp.gate.e_score_correction_bias"),
        // gpt-oss: attention sinks, the router's and the experts' biases.
        ("attn_sinks.weight", "self_attn.sinks"), ("ffn_gate_inp.bias", "mlp.gate.bias"),
        ("ffn_gate_exps.bias", "mlp.experts.gate_proj_bias"), ("ffn_up_exps.bias", "mlp.experts.up_proj_bias"),
        ("ffn_down_exps.bias", "mlp.experts.down_proj_bias"),
        // Multi-head latent attention (deepseek2); attn_k_b / attn_v_b are llama.cpp's split of kv_b_proj.
        ("attn_q_a.weight", "self_attn.q_a_proj.weight"), ("attn_q_a.bias", "self_attn.q_a_proj.bias"),
        ("attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight"), ("attn_q_b.weight", "self_attn.q_b_proj.weight"),
        ("attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight"),
        ("attn_kv_a_mqa.bias", "self_attn.kv_a_proj_with_mqa.bias"),
        ("attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight"), ("attn_kv_b.weight", "self_attn.kv_b_proj.weight"),
        ("attn_k_b.weight", "self_attn.k_b_proj.weight"), ("attn_v_b.weight", "self_attn.v_b_proj.weight"),
        // Gated DeltaNet (qwen3next: ssm_in, or attn_qkv + attn_gate, and ssm_ba; qwen35moe: attn_qkv, attn_gate,
        // ssm_beta, ssm_alpha). ssm_a is A = −exp(A_log).
        ("ssm_in.weight", "linear_attn.in_proj_qkvz.weight"), ("attn_qkv.weight", "linear_attn.in_proj_qkv.weight"),
        ("attn_gate.weight", "linear_attn.in_proj_z.weight"), ("ssm_ba.weight", "linear_attn.in_proj_ba.weight"),
        ("ssm_beta.weight", "linear_attn.in_proj_b.weight"), ("ssm_alpha.weight", "linear_attn.in_proj_a.weight"),
        ("ssm_a", "linear_attn.A_log"), ("ssm_dt.bias", "linear_attn.dt_bias"), ("ssm_conv1d.weight", "linear_attn.conv1d.weight"),
        ("ssm_norm.weight", "linear_attn.norm.weight"), ("ssm_out.weight", "linear_attn.out_proj.weight"),
        // The multi-token-prediction module (GLM-4.5's nextn block, layer num_hidden_layers).
        ("nextn.eh_proj.weight", "eh_proj.weight"), ("nextn.enorm.weight", "enorm.weight"),
        ("nextn.hnorm.weight", "hnorm.weight"), ("nextn.shared_head_norm.weight", "shared_head.norm.weight"),
        ("nextn.embed_tokens.weight", "embed_tokens.weight"), ("nextn.shared_head_head.weight", "shared_head.head.weight"),
    ]
    static let global: [(gguf: String, hf: String)] = [
        ("token_embd.weight", "model.embed_tokens.weight"), ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
    ]
    static let hfByGGUF = Dictionary(uniqueKeysWithValues: layer)
    static let ggufByHF = Dictionary(uniqueKeysWithValues: layer.map { ($0.hf, $0.gguf) })

    /// The HF name of a GGUF tensor, nil for tensors the engine does not use.
    public static func hfName(_ gguf: String) -> String? {
        if let g = global.first(where: { $0.gguf == gguf }) { return g.hf }
        guard gguf.hasPrefix("blk.") else { return nil }
        let rest = gguf.dropFirst(4)
        guard let dot = rest.firstIndex(of: "."), let n = Int(rest[..<dot]),
              let suffix = hfByGGUF[String(rest[rest.index(after: dot)...])] else { return nil }
        return "model.layers.\(n).\(suffix)"
    }

    /// N of an HF name `model.layers.N.…`.
    static func layerIndex(_ hf: String) -> Int? {
        guard hf.hasPrefix("model.layers.") else { return nil }
        let rest = hf.dropFirst("model.layers.".count)
        guard let dot = rest.firstIndex(of: ".") else { return nil }
        return Int(rest[..<dot])
    }

    /// The GGUF name of an HF tensor (for messages and the writer), nil when GGUF has none.
    public static func ggufName(_ hf: String) -> String? {
        if let g = global.first(where: { $0.hf == hf }) { return g.gguf }
        guard hf.hasPrefix("model.layers.") else { return nil }
        let rest = hf.dropFirst("model.layers.".count)
        guard let dot = rest.firstIndex(of: "."), let n = Int(rest[..<dot]) else { return nil }
        var suffix = String(rest[rest.index(after: dot)...])
        // Mixtral's hub names; DeepSeek's plural shared experts.
        for (a, b) in [("block_sparse_moe.", "mlp."), (".w1.", ".gate_proj."), (".w3.", ".up_proj."), (".w2.", ".down_proj."),
                       ("shared_experts.", "shared_expert.")] {
            suffix = suffix.replacingOccurrences(of: a, with: b)
        }
        return ggufByHF[suffix].map { "blk.\(n).\($0)" }
    }
}
