import Foundation
import MoEKernels

/// A tensor on its way into a GGUF file: its GGUF name and ggml dims, the type it is stored in now, its values as
/// f32 on demand, and — for a tensor read from a GGUF file — its stored bytes, copied unchanged when the target
/// type is the stored one.
public struct GGUFSourceTensor {
    public let name: String
    public let dims: [Int]
    public let type: GGUFTensorType
    public let floats: () throws -> [Float]
    public let stored: UnsafeRawBufferPointer?

    public var elementCount: Int { dims.reduce(1, *) }
}

/// Hugging Face checkpoints and GGUF files as GGUF tensors and metadata, laid out as llama.cpp's
/// `convert_hf_to_gguf.py` lays them out (names, dims, stacked experts, the `llama` q/k row permutation, Llama 3
/// RoPE as `rope_freqs.weight`), and the encoding of each tensor into its target type while the file is written.
/// Which target type each tensor gets is `GGUFQuantMix`'s concern; the tokenizer's metadata is MoETokenizer's.
public enum GGUFExport {
    /// GGUF architecture per HF `model_type`, for the architectures swift-moe writes.
    public static let architectures = ["qwen2_moe": "qwen2moe", "qwen3_moe": "qwen3moe", "mixtral": "llama",
                                       "llama": "llama", "olmoe": "olmoe", "qwen2": "qwen2", "qwen3": "qwen3"]

    /// The GGUF architecture of `config`, or an error naming the model type.
    public static func architecture(of config: ModelConfig) throws -> String {
        guard let a = architectures[config.modelType] else {
            throw FormatError.badConfig(path: "config.json", reason: "model_type '\(config.modelType)' has no GGUF writer (supported: \(architectures.keys.sorted().joined(separator: ", ")))")
        }
        return a
    }

    /// The `general.*` and `{architecture}.*` metadata llama.cpp reads for `config`'s model.
    public static func metadata(config c: ModelConfig, name: String) throws -> [(key: String, value: GGUFValue)] {
        let a = try architecture(of: c)
        var m: [(key: String, value: GGUFValue)] = []
        func u32(_ key: String, _ v: Int) { m.append(("\(a).\(key)", .uint32(UInt32(clamping: v)))) }
        func f32(_ key: String, _ v: Double) { m.append(("\(a).\(key)", .float32(Float(v)))) }
        m.append(("general.architecture", .string(a)))
        m.append(("general.type", .string("model")))
        m.append(("general.name", .string(name)))
        u32("block_count", c.numHiddenLayers)
        u32("context_length", c.maxPositionEmbeddings)
        u32("embedding_length", c.hiddenSize)
        u32("feed_forward_length", c.intermediateSize)
        u32("attention.head_count", c.numAttentionHeads)
        u32("attention.head_count_kv", c.numKeyValueHeads)
        f32("rope.freq_base", c.rope.theta)
        f32("attention.layer_norm_rms_epsilon", c.rmsNormEps)
        if c.numExperts > 0 {
            u32("expert_count", c.numExperts)
            u32("expert_used_count", c.numExpertsPerToken)
        }
        u32("attention.key_length", c.headDim)
        u32("attention.value_length", c.headDim)
        switch a {
        case "qwen2moe", "qwen3moe":
            if let w = c.moeIntermediateSize { u32("expert_feed_forward_length", w) }
            if let w = c.sharedExpertIntermediateSize, w > 0 { u32("expert_shared_feed_forward_length", w) }
            // llama.cpp renormalises Qwen3-MoE's top-k weights and never Qwen2-MoE's; say so only where the model differs.
            let norm = c.normTopKProb ?? false
            if norm != (a == "qwen3moe") { m.append(("\(a).expert_weights_norm", .bool(norm))) }
        case "llama":
            u32("vocab_size", c.vocabSize)
            u32("rope.dimension_count", c.headDim)
        default:
            break
        }
        if let clip = c.clipQKV { f32("attention.clamp_kqv", clip) }
        switch c.rope.type {
        case "default", "llama3":   // Llama 3's factors travel as the rope_freqs.weight tensor
            break
        case "linear":
            m.append(("\(a).rope.scaling.type", .string("linear")))
            f32("rope.scaling.factor", c.rope.factor ?? 1)
        case "yarn":
            m.append(("\(a).rope.scaling.type", .string("yarn")))
            f32("rope.scaling.factor", c.rope.factor ?? 1)
            if let original = c.rope.originalMaxPositionEmbeddings { u32("rope.scaling.original_context_length", original) }
        default:
            throw FormatError.badConfig(path: "config.json", reason: "RoPE type '\(c.rope.type)' has no GGUF form")
        }
        return m
    }

    /// The tensors of an HF checkpoint under GGUF names, in llama.cpp's order. Per-expert matrices are stacked
    /// into `ffn_{gate,up,down}_exps` ([cols, rows, experts]); the `llama` architecture's q/k rows are permuted to
    /// llama.cpp's interleaved RoPE pairs; Llama 3 scaling becomes `rope_freqs.weight`.
    public static func tensors(of store: any TensorStore, config c: ModelConfig) throws -> [GGUFSourceTensor] {
        let a = try architecture(of: c)
        var out: [GGUFSourceTensor] = []
        // Experts: (layer, projection) → expert → HF name.
        var experts: [String: [Int: String]] = [:]
        for name in store.tensorNames {
            if name.hasSuffix("rotary_emb.inv_freq") { continue }
            if let (key, e) = expertKey(name) {
                experts[key, default: [:]][e] = name
                continue
            }
            guard let gguf = GGUFTensorNames.ggufName(name) else {
                throw FormatError.badTensor(path: store.source, tensor: name, reason: "has no GGUF name for architecture \(a)")
            }
            let t = try store.tensor(name)
            var floats: () throws -> [Float] = { try FloatEncoding.floats(t) }
            if a == "llama", gguf.hasSuffix("attn_q.weight") || gguf.hasSuffix("attn_k.weight") {
                let heads = gguf.hasSuffix("attn_q.weight") ? c.numAttentionHeads : c.numKeyValueHeads
                floats = { try permuteRows(FloatEncoding.floats(t), rows: t.shape[0], heads: heads, name: name) }
            }
            out.append(GGUFSourceTensor(name: gguf, dims: t.shape.reversed(), type: try sourceType(t), floats: floats, stored: nil))
        }
        for (key, byExpert) in experts {
            guard byExpert.count == c.numExperts, let first = byExpert[0] else {
                throw FormatError.badTensor(path: store.source, tensor: key, reason: "has \(byExpert.count) experts, config.json says \(c.numExperts)")
            }
            let shape = try store.tensor(first).shape
            let names = try (0..<c.numExperts).map { e -> String in
                guard let n = byExpert[e] else { throw FormatError.missingTensor(tensor: "\(key) expert \(e)", directory: store.source) }
                guard try store.tensor(n).shape == shape else { throw FormatError.shapeMismatch(tensor: n, expected: shape, found: try store.tensor(n).shape) }
                return n
            }
            guard let gguf = GGUFTensorNames.ggufName(key) else {
                throw FormatError.badTensor(path: store.source, tensor: key, reason: "has no GGUF name")
            }
            out.append(GGUFSourceTensor(name: gguf, dims: shape.reversed() + [c.numExperts], type: try sourceType(store.tensor(first)),
                                        floats: { try names.flatMap { try FloatEncoding.floats(store.tensor($0)) } }, stored: nil))
        }
        // Only llama.cpp's `llama` architecture reads rope_freqs (its converter drops Llama 3 scaling elsewhere).
        if c.rope.type == "llama3" && a == "llama" {
            let factors = try llama3Factors(c)
            out.append(GGUFSourceTensor(name: "rope_freqs.weight", dims: [factors.count], type: .f32, floats: { factors }, stored: nil))
        }
        return out.sorted { llamaCppOrder($0.name, $1.name) }
    }

    /// The tensors of a GGUF model as stored (names, dims and types unchanged), in llama.cpp's order.
    public static func tensors(of model: GGUFCheckpoint) -> [GGUFSourceTensor] {
        model.files.flatMap(\.tensors).map { t in
            GGUFSourceTensor(name: t.name, dims: t.dims, type: t.type, floats: {
                try FloatEncoding.floats(GGUFCheckpoint.tensorData(t, name: t.name, owner: model, path: model.source))
            }, stored: UnsafeRawBufferPointer(start: t.pointer, count: t.byteCount))
        }.sorted { llamaCppOrder($0.name, $1.name) }
    }

    /// llama.cpp's tensor order (its model loader's `weights_map`): by layer number (tensors outside `blk.N.`
    /// first), then by name. The quantiser's per-layer counters follow this order.
    public static func llamaCppOrder(_ a: String, _ b: String) -> Bool {
        let la = layer(of: a) ?? -1, lb = layer(of: b) ?? -1
        return la != lb ? la < lb : a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    /// N of a `blk.N.` tensor name.
    public static func layer(of name: String) -> Int? {
        guard name.hasPrefix("blk.") else { return nil }
        let rest = name.utf8.dropFirst(4)
        let digits = rest.prefix { $0 >= 0x30 && $0 <= 0x39 }
        return digits.isEmpty ? nil : Int(String(decoding: digits, as: UTF8.self))
    }

    /// Writes a GGUF file: `metadata`, then each tensor encoded into its `types` entry (copied when that is its
    /// stored type; otherwise its f32 values encoded, NaN and infinity refused). `progress` is told of each tensor.
    /// With `trimUnitDims`, trailing dims of 1 are dropped, as llama.cpp's quantiser writes them (`ggml_n_dims`);
    /// its converter keeps them.
    public static func write(metadata: [(key: String, value: GGUFValue)], tensors: [GGUFSourceTensor],
                             types: [GGUFTensorType], to path: String, trimUnitDims: Bool = false,
                             progress: ((Int, GGUFSourceTensor, GGUFTensorType) -> Void)? = nil) throws {
        precondition(types.count == tensors.count)
        var writer = GGUFWriter()
        for (k, v) in metadata { writer.set(k, v) }
        for (i, (t, type)) in zip(tensors, types).enumerated() {
            let block = type.block
            guard let cols = t.dims.first, cols % block.elements == 0 else {
                throw FormatError.badTensor(path: path, tensor: t.name, reason: "rows of \(t.dims.first ?? 0) values are not whole \(type) blocks of \(block.elements)")
            }
            let dims = trimUnitDims ? Array(t.dims.prefix((t.dims.lastIndex { $0 != 1 } ?? 0) + 1)) : t.dims
            writer.tensors.append(.init(name: t.name, dims: dims, type: type, byteCount: t.elementCount / block.elements * block.bytes) { out in
                progress?(i, t, type)
                if type == t.type, let stored = t.stored, stored.count == out.count {
                    out.copyMemory(from: stored)
                    return
                }
                let values = try t.floats()
                guard values.count == t.elementCount else {
                    throw FormatError.badTensor(path: path, tensor: t.name, reason: "\(values.count) values for dims \(t.dims)")
                }
                if let bad = values.firstIndex(where: { !$0.isFinite }) {
                    throw FormatError.badTensor(path: path, tensor: t.name, reason: "value \(bad) is \(values[bad]); only finite values can be written")
                }
                try values.withUnsafeBufferPointer { try encode($0, as: type, into: out) }
            })
        }
        try writer.write(to: path)
    }

    /// f32 values in a GGUF type's encoding.
    public static func encode(_ values: UnsafeBufferPointer<Float>, as type: GGUFTensorType, into out: UnsafeMutableRawBufferPointer) throws {
        switch type {
        case .f32: try FloatEncoding.encode(values, as: .f32, into: out)
        case .f16: try FloatEncoding.encode(values, as: .f16, into: out)
        case .bf16: try FloatEncoding.encode(values, as: .bf16, into: out)
        case let .quantized(q):
            let rows = values.count / q.blockElements
            // Rows of blocks are independent: quantise in parallel chunks of blocks.
            let chunks = max(1, min(rows / 64, 64))
            let per = (rows + chunks - 1) / chunks
            nonisolated(unsafe) let src = values.baseAddress!, dst = out.baseAddress!
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let lo = c * per, hi = min(rows, lo + per)
                if lo < hi {
                    q.quantize(src + lo * q.blockElements, into: dst + lo * q.blockBytes, count: (hi - lo) * q.blockElements)
                }
            }
        }
    }

    // MARK: - Helpers

    /// `(layer-and-projection key, expert)` of a per-expert HF matrix: `model.layers.3.mlp.experts.7.up_proj.weight`
    /// (Mixtral: `block_sparse_moe.experts.7.w3.weight`) → ("model.layers.3.mlp.experts.up_proj", 7).
    static func expertKey(_ name: String) -> (String, Int)? {
        var parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard let i = parts.firstIndex(of: "experts"), i + 3 == parts.count - 1 || i + 2 == parts.count - 1,
              parts.last == "weight", let e = Int(parts[i + 1]) else { return nil }
        parts.remove(at: i + 1)
        parts.removeLast()
        var key = parts.joined(separator: ".")
        for (from, to) in [("block_sparse_moe.", "mlp."), (".w1", ".gate_proj"), (".w3", ".up_proj"), (".w2", ".down_proj")] {
            key = key.replacingOccurrences(of: from, with: to)
        }
        return (key, e)
    }

    private static func sourceType(_ t: TensorData) throws -> GGUFTensorType {
        if let q = t.quant { return .quantized(q) }
        switch t.dtype {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        default: throw FormatError.unsupportedDType(tensor: t.name, dtype: t.dtype.rawValue)
        }
    }

    /// llama.cpp's `permute` of q/k rows for the `llama` architecture (the inverse of `GGUFCheckpoint`'s): within
    /// each head, HF row j·(headDim/2) + i becomes row 2i + j.
    static func permuteRows(_ values: [Float], rows: Int, heads: Int, name: String) throws -> [Float] {
        guard heads > 0, rows % (2 * heads) == 0, values.count % rows == 0 else {
            throw FormatError.badTensor(path: "", tensor: name, reason: "\(rows) rows do not split into \(heads) heads")
        }
        let cols = values.count / rows, headDim = rows / heads
        var out = [Float](repeating: 0, count: values.count)
        for h in 0..<heads {
            for i in 0..<(headDim / 2) {
                for j in 0..<2 {
                    let dst = h * headDim + 2 * i + j, src = h * headDim + j * (headDim / 2) + i
                    for k in 0..<cols { out[dst * cols + k] = values[src * cols + k] }
                }
            }
        }
        return out
    }

    /// Llama 3 RoPE scaling as llama.cpp's converter stores it: one divisor per rotary frequency, in f32 arithmetic
    /// as the converter's torch code computes it (torch divides a scalar by a tensor through the reciprocal).
    static func llama3Factors(_ c: ModelConfig) throws -> [Float] {
        let r = c.rope
        let factor = Float(r.factor ?? 8), original = Float(r.originalMaxPositionEmbeddings ?? 8192)
        let low = r.lowFreqFactor ?? 1, high = r.highFreqFactor ?? 4
        let dims = c.headDim
        let lowWavelength = Float(Double(original) / low), highWavelength = Float(Double(original) / high)
        return stride(from: 0, to: dims, by: 2).map { i -> Float in
            let freq = 1 / powf(Float(r.theta), Float(i) / Float(dims))
            let wavelength = Float(2 * Double.pi) * (1 / freq)
            if wavelength < highWavelength { return 1 }
            if wavelength > lowWavelength { return factor }
            let smooth = (original * (1 / wavelength) - Float(low)) / Float(high - low)
            return 1 / ((1 - smooth) / factor + smooth)
        }
    }
}
