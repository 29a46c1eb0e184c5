import Foundation
import MoEFormats
import MoEKernels
import MoEModel

extension TrainableModel {
    /// HF-style initialisation (`_init_weights`): every weight matrix ~ N(0, initializer_range²), norms 1,
    /// biases (and the expert selection bias) 0. Deterministic for a seed.
    public func initialize(seed: UInt64) {
        for t in store.tensors { initialize(tensor: t, seed: seed &+ UInt64(t.offset)) }
    }

    /// HF's initialisation of one tensor.
    func initialize(tensor t: ParameterStore.Tensor, seed: UInt64) {
        let std: Float
        if case let .number(r)? = config.raw["initializer_range"] { std = Float(r) } else { std = 0.02 }
        var rng = SplitMix64(seed: seed)
        let p = store.values! + t.offset
        if t.name.hasSuffix("linear_attn.norm.weight") {
            p.update(repeating: 1, count: t.count)
        } else if t.name.hasSuffix("norm.weight") {
            // Zero-centred norms (scale 1 + w) start at 0, as transformers initialises them.
            p.update(repeating: (layouts.first?.normOffset ?? 0) == 0 ? 1 : 0, count: t.count)
        } else if t.name.hasSuffix(".A_log") {
            // A ~ U(0.01, 16), as transformers' Gated DeltaNet; dt_bias 1.
            for i in 0..<t.count { p[i] = Foundation.log(0.01 + 15.99 * Float(Double(rng.next() >> 11) / Double(1 << 53))) }
        } else if t.name.hasSuffix(".dt_bias") {
            p.update(repeating: 1, count: t.count)
        } else if (t.shape.count == 2 || t.name.hasSuffix("conv1d.weight")) && !t.frozen {
            for i in 0..<t.count { p[i] = std * rng.nextGaussian() }
        } else {
            p.update(repeating: 0, count: t.count)
        }
    }

    /// Loads a Hugging Face checkpoint directory (config.json + safetensors, any float dtype) for training.
    /// `head` nil takes the checkpoint's (a `score.weight` makes a reward model); `.score` on a language
    /// model's checkpoint starts a reward model from it (the score head initialised as HF does).
    /// `mtpDepth` nil keeps the checkpoint's multi-token-prediction module (if it has one); 1 adds one where it
    /// has none (initialised as HF does), 0 leaves it out.
    public static func load(directory: String, head: Head? = nil, selectionBias: Bool = false, mtpDepth: Int? = nil,
                            threads: Int = WorkerPool.defaultThreadCount) throws -> TrainableModel {
        let config = try ModelConfig(directory: directory)
        // As the engine reads it: gpt-oss's hub experts (fused, transposed or MXFP4) shown stacked per projection.
        let checkpoint = try ArchitectureRegistry.architecture(for: config.modelType).weights(try Checkpoint(directory: directory), config)
        // A checkpoint that carries the expert bias keeps it even if not asked for.
        let hasBias = checkpoint.tensorNames.contains { $0.hasSuffix("e_score_correction_bias") }
        let model = try TrainableModel(config: config, head: head ?? (checkpoint.contains("score.weight") ? .score : .languageModel),
                                       selectionBias: selectionBias || hasBias,
                                       mtpDepth: mtpDepth ?? MultiTokenPrediction.storedDepth(config, has: checkpoint.contains),
                                       threads: threads, has: checkpoint.contains)
        let w = model.store.values!
        for t in model.store.tensors {
            if t.frozen && !checkpoint.contains(t.name) { continue }   // a bias added now starts at zero
            let added = t.name == "score.weight" || model.mtp.map { t.name.hasPrefix($0.prefix + ".") } ?? false
            if added && !checkpoint.contains(t.name) {
                model.initialize(tensor: t, seed: 0x5C0E &+ UInt64(t.offset))
                continue
            }
            let values = try Self.floats(t, in: checkpoint)
            (w + t.offset).update(from: values, count: t.count)
        }
        return model
    }

    /// A parameter's values from the checkpoint: its own tensor, or expert E's slice of an experts tensor stacked per
    /// projection (`{experts}.gate_proj` [E, rows, cols] for `{experts}.E.gate_proj.weight`, `{experts}.gate_proj_bias`
    /// [E, rows] for its `.bias`), dequantised when stored in a block format (gpt-oss's MXFP4 experts train from
    /// their dequantised values).
    static func floats(_ t: ParameterStore.Tensor, in checkpoint: any TensorStore) throws -> [Float] {
        if checkpoint.contains(t.name) { return try FloatEncoding.floats(checkpoint.tensor(t.name, shape: t.shape)) }
        let parts = t.name.split(separator: ".").map(String.init)
        if parts.count >= 4, let e = Int(parts[parts.count - 3]), parts[parts.count - 4] == "experts" {
            let experts = parts[..<(parts.count - 3)].joined(separator: ".")
            let projection = parts[parts.count - 2], kind = parts[parts.count - 1]
            let stacked = kind == "bias" ? "\(experts).\(projection)_bias" : "\(experts).\(projection)"
            if checkpoint.contains(stacked) {
                let data = try checkpoint.tensor(stacked)
                guard data.shape.count == t.shape.count + 1, Array(data.shape.dropFirst()) == t.shape, e < data.shape[0] else {
                    throw FormatError.shapeMismatch(tensor: stacked, expected: [e + 1] + t.shape, found: data.shape)
                }
                let rowBytes = data.byteCount / data.shape[0]
                let slab = TensorData(name: t.name, dtype: data.dtype, shape: t.shape, pointer: data.pointer + e * rowBytes,
                                      byteCount: rowBytes, owner: data.owner, quant: data.quant)
                return try FloatEncoding.floats(slab)
            }
        }
        throw FormatError.missingTensor(tensor: t.name, directory: checkpoint.source)
    }

    /// The model's tensors as a Hugging Face checkpoint holds them: the parameters under their own names (as
    /// offsets into `store.values`), except those the hub keeps otherwise (gpt-oss's fused experts: `hub`, with
    /// MXFP4 blocks when `mxfp4Experts`), and the multi-token-prediction module's copies of the shared embedding
    /// and head, stored again under its own names as DeepSeek-V3's checkpoints do.
    func hubLayout(mxfp4Experts: Bool = false) throws -> (parameters: [(name: String, offset: Int, shape: [Int])], hub: [HubTensor]) {
        let w = store.values!
        let copies = mtp.map { m in [("\(m.prefix).embed_tokens.weight", embedding), ("\(m.prefix).shared_head.head.weight", lmHead)] } ?? []
        let hub = try ArchitectureRegistry.architecture(for: config.modelType)
            .hubTensors(names: store.tensors.map(\.name), values: { UnsafePointer(w + self.store.tensor($0)!.offset) }, config, mxfp4: mxfp4Experts)
        if mxfp4Experts && !hub.tensors.contains(where: { $0.bytes != nil }) {
            throw ModelError.unsupported("MXFP4 experts are saved for gpt-oss only (this model is \(config.modelType))")
        }
        let parameters = store.tensors.filter { !hub.replaced.contains($0.name) }.map { (name: $0.name, offset: $0.offset, shape: $0.shape) }
            + copies.map { name, offset in (name: name, offset: offset, shape: [vocab, hidden]) }
        return (parameters, hub.tensors)
    }

    /// The model as the inference engine runs it, over the parameters in memory (no file written): what GRPO's
    /// and PPO's rollouts sample from. Its matrices read the parameters where they are, its norms and biases
    /// are copies: make a new one after the weights change.
    public func inferenceModel(threads: Int? = nil) throws -> Transformer {
        guard head == .languageModel else { throw TrainingError.badArgument("a reward model does not generate text") }
        var saved = savedConfig()
        saved.raw["quantization_config"] = nil   // (f32 here, whatever the checkpoint trained from held)
        return try Transformer(config: saved, generation: GenerationConfig(from: config), store: try ParameterTensors(self),
                               threads: threads ?? pool.threads)
    }

    /// Writes the model as a Hugging Face directory: config.json, model.safetensors (f32 by default, names
    /// and shapes as `save_pretrained` writes them) and generation_config.json; files are replaced atomically.
    /// `mxfp4Experts`: gpt-oss's experts as MXFP4 blocks and scales (as its hub checkpoints), the rest in `dtype`.
    public func save(to directory: String, dtype: DType = .f32, mxfp4Experts: Bool = false) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let w = store.values!
        let layout = try hubLayout(mxfp4Experts: mxfp4Experts)
        let entries = layout.parameters.map { name, offset, shape in
            SafeTensorsWriter.Entry(name: name, dtype: dtype, shape: shape) { dst in
                try FloatEncoding.encode(UnsafeBufferPointer(start: w + offset, count: shape.reduce(1, *)), as: dtype, into: dst)
            }
        } + layout.hub.map { t in
            if let bytes = t.bytes {
                return SafeTensorsWriter.Entry(name: t.name, dtype: .u8, shape: t.shape) { dst in dst.copyBytes(from: bytes) }
            }
            return SafeTensorsWriter.Entry.floats(t.name, shape: t.shape, values: t.values, as: dtype)
        }
        try SafeTensorsWriter.write(entries, to: "\(directory)/model.safetensors")
        var saved = savedConfig()
        if mxfp4Experts {
            saved.raw["quantization_config"] = .object(["quant_method": .string("mxfp4"), "modules_to_not_convert": .array(
                ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"].map { .string($0) })])
        } else {
            saved.raw["quantization_config"] = nil   // (trained from MXFP4 experts, saved in `dtype`)
        }
        try AtomicFile.write(try saved.jsonData(), to: "\(directory)/config.json")
        var generation: [String: Any] = ["_from_model_config": true]
        if let bos = config.bosTokenId { generation["bos_token_id"] = bos }
        if let eos = config.eosTokenIds.first { generation["eos_token_id"] = config.eosTokenIds.count == 1 ? eos : config.eosTokenIds }
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: generation, options: [.prettyPrinted, .sortedKeys]),
                             to: "\(directory)/generation_config.json")
    }

    /// The config as saved: a reward model names the sequence-classification class and its one label, so that
    /// `AutoModelForSequenceClassification` loads it.
    func savedConfig() -> ModelConfig {
        var c = config
        if mtp != nil { c.raw["num_nextn_predict_layers"] = .number(Double(mtpDepth)) }
        guard head == .score else { return c }
        if case let .array(names)? = c.raw["architectures"] {
            c.raw["architectures"] = .array(names.map { name in
                guard case let .string(s) = name else { return name }
                return .string(s.replacingOccurrences(of: "ForCausalLM", with: "ForSequenceClassification"))
            })
        }
        c.raw["id2label"] = .object(["0": .string("LABEL_0")])
        c.raw["label2id"] = .object(["LABEL_0": .number(0)])
        return c
    }
}

/// A trained model's tensors as a `TensorStore` under their Hugging Face names (`TrainableModel.hubLayout`): the
/// parameters read in place (f32), the hub's replacements held here. Keeps the model alive while it is used.
final class ParameterTensors: TensorStore, @unchecked Sendable {
    let model: TrainableModel
    let tensors: [String: TensorData]
    /// The hub tensors' values, owned here.
    private let owned: [UnsafeMutableBufferPointer<Float>]

    init(_ model: TrainableModel) throws {
        self.model = model
        let layout = try model.hubLayout()
        let w = model.store.values!
        var tensors: [String: TensorData] = [:]
        for p in layout.parameters {
            let count = p.shape.reduce(1, *)
            tensors[p.name] = TensorData(name: p.name, dtype: .f32, shape: p.shape, pointer: UnsafeRawPointer(w + p.offset),
                                         byteCount: count * MemoryLayout<Float>.size, owner: model)
        }
        var owned: [UnsafeMutableBufferPointer<Float>] = []
        for t in layout.hub {
            let copy = UnsafeMutableBufferPointer<Float>.allocate(capacity: t.values.count)
            _ = copy.initialize(from: t.values)
            owned.append(copy)
            tensors[t.name] = TensorData(name: t.name, dtype: .f32, shape: t.shape, pointer: UnsafeRawPointer(copy.baseAddress!),
                                         byteCount: t.values.count * MemoryLayout<Float>.size, owner: model)
        }
        self.tensors = tensors
        self.owned = owned
    }

    deinit { for b in owned { b.deallocate() } }

    var source: String { "(\(model.config.modelType) in training)" }
    var tensorNames: [String] { tensors.keys.sorted() }
    var fileCount: Int { 0 }
    var byteCount: Int { tensors.values.reduce(0) { $0 + $1.byteCount } }
    func contains(_ name: String) -> Bool { tensors[name] != nil }
    func tensor(_ name: String) throws -> TensorData {
        guard let t = tensors[name] else { throw FormatError.missingTensor(tensor: name, directory: source) }
        return t
    }
}
