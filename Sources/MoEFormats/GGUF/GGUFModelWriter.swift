import Foundation

/// Writes a model (HF directory or GGUF file) as a GGUF file in one of llama.cpp's presets: what `moe convert`
/// (`convert_hf_to_gguf.py --outtype f32|f16|bf16`) and `moe quantize` (`llama-quantize`) do. An HF model first takes
/// the converter's types (norms, routers and biases f32), as llama.cpp quantises the converter's file; a GGUF model's
/// metadata is kept, with `general.file_type` and `general.quantization_version` set again (moved to the end, as
/// llama.cpp's quantiser does), so that a quantised file is byte for byte `llama-quantize`'s.
public struct GGUFModelWriter {
    public let model: String
    public let preset: GGUFQuantMix.Preset
    /// Tensor dims as the converter writes them (trailing 1s kept) rather than as the quantiser does.
    public var asConverter = false
    public var pure = false
    public var allowRequantize = false

    public init(model: String, preset: GGUFQuantMix.Preset) {
        self.model = model; self.preset = preset
    }

    public struct Summary {
        public let tensors: Int
        public let weights: Int
        public let bytes: Int
        /// Tensors per type name, e.g. ["Q4_K": 120, "Q6_K": 13, "F32": 49].
        public let types: [String: Int]
    }

    /// Writes `out`. `tokenizer` gives an HF model's `tokenizer.*` metadata (nil: none); `progress` is told how
    /// many of all the weights are written.
    public func write(to out: String, tokenizer: (ModelConfig) throws -> [(key: String, value: GGUFValue)]? = { _ in nil },
                      progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> Summary {
        var metadata: [(key: String, value: GGUFValue)]
        let tensors: [GGUFSourceTensor]
        let facts: GGUFQuantMix.Model
        let fromHF = !GGUFCheckpoint.isGGUF(model)
        if fromHF {
            let c = try ModelConfig(directory: model)
            metadata = try GGUFExport.metadata(config: c, name: URL(fileURLWithPath: model).standardizedFileURL.lastPathComponent)
            metadata += try tokenizer(c) ?? []
            tensors = try GGUFExport.tensors(of: Checkpoint(directory: model), config: c)
            facts = .init(architecture: try GGUFExport.architecture(of: c), layers: c.numHiddenLayers,
                          heads: c.numAttentionHeads, kvHeads: c.numKeyValueHeads, experts: c.numExperts)
        } else {
            let source = try GGUFCheckpoint(path: model)
            let c = source.config
            metadata = source.metadata.metadata.filter { !$0.key.hasPrefix("split.") }
            tensors = GGUFExport.tensors(of: source)
            facts = .init(architecture: source.architecture, layers: c.numHiddenLayers, heads: c.numAttentionHeads,
                          kvHeads: c.numKeyValueHeads, experts: c.numExperts)
        }
        // As llama.cpp's quantiser: a key set again moves to the end.
        for (key, value) in [("general.quantization_version", GGUFValue.uint32(2)),
                             ("general.file_type", .uint32(UInt32(preset.fileType)))] {
            metadata.removeAll { $0.key == key }
            metadata.append((key, value))
        }
        let current = tensors.map { (name: $0.name, dims: $0.dims, type: fromHF ? GGUFTensorType.f32 : $0.type) }
        var types = try GGUFQuantMix(preset: preset, pure: pure).types(for: current, model: facts)
        for (i, t) in tensors.enumerated() {
            if fromHF && Self.convertsAsFloat32(t) { types[i] = .f32 }
            if case .quantized = t.type, types[i] != t.type, !allowRequantize {
                throw FormatError.badTensor(path: model, tensor: t.name, reason: "is already \(t.type); re-quantising it to \(types[i]) loses quality (allow re-quantising to do it anyway)")
            }
        }
        let total = tensors.reduce(0) { $0 + $1.elementCount }
        var done = 0
        try GGUFExport.write(metadata: metadata, tensors: tensors, types: types, to: out, trimUnitDims: !asConverter) { _, t, _ in
            progress?(done, total)
            done += t.elementCount
        }
        progress?(total, total)
        var counts: [String: Int] = [:]
        for t in types { counts[t.description, default: 0] += 1 }
        let bytes = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? 0
        return Summary(tensors: tensors.count, weights: total, bytes: bytes, types: counts)
    }

    /// The converter keeps these f32 whatever the output type: vectors, norms, routers, biases.
    static func convertsAsFloat32(_ t: GGUFSourceTensor) -> Bool {
        t.dims.count <= 1 || t.name.hasSuffix("_norm.weight") || t.name.contains("ffn_gate_inp") || !t.name.hasSuffix(".weight")
    }
}
