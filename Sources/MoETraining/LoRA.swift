import Foundation
import MoEFormats
import MoEKernels

/// What a LoRA run trains: rank, α (the update is scaled by α/r, as PEFT's `lora_alpha`), and which weights.
public struct LoRASettings: Codable, Sendable, Equatable {
    public var rank: Int
    public var alpha: Double
    /// Module names or name suffixes, matched as PEFT matches `target_modules` (`q_proj` matches
    /// `model.layers.0.self_attn.q_proj`).
    public var targets: [String]
    /// Seed of lora_A's initialisation.
    public var seed: UInt64

    public static let defaultTargets = ["q_proj", "k_proj", "v_proj", "o_proj"]

    public init(rank: Int, alpha: Double = 8, targets: [String] = LoRASettings.defaultTargets, seed: UInt64 = 1234) {
        self.rank = rank; self.alpha = alpha; self.targets = targets; self.seed = seed
    }
}

/// LoRA adapters (Hu et al.; PEFT's layout) on some 2-D weights of a `TrainableModel`: for each targeted
/// W [out×in], lora_A [r×in] (PEFT's init: U(±1/√in)) and lora_B [out×r] (zeros), W = W₀ + (α/r)·B·A.
///
/// Trained by the exact merged-weight method: `apply` writes W₀ + s·B·A into the model before the forward
/// passes; the model's backward leaves dW in its gradients, from which `accumulateGradients` adds
/// dA = s·Bᵀ·dW and dB = s·dW·Aᵀ to the adapters' own store; the optimizer steps that store only, so the base
/// weights (W₀ and every untargeted tensor) never change.
///
///     let lora = try LoRAAdapters(model: model, settings: LoRASettings(rank: 8))
///     let trainer = try Trainer(model: model, settings: s, batches: b, stage: "sft", out: out, lora: lora)
public final class LoRAAdapters {
    /// One adapted weight.
    public struct Module: Sendable {
        /// The module path (`model.layers.0.self_attn.q_proj`); the weight is `<name>.weight`.
        public let name: String
        /// The weight's offset in the model's store, and its shape.
        let weight: Int, rows: Int, cols: Int
        /// lora_A and lora_B in the adapters' store.
        let a: Int, b: Int
        /// Offset of W₀ in `base`.
        let base: Int
    }

    public let settings: LoRASettings
    /// lora_A / lora_B under PEFT's saved names (`base_model.model.<module>.lora_A.weight`).
    public let store = ParameterStore()
    public let modules: [Module]
    /// The base model's directory, written as `base_model_name_or_path`.
    public var baseModel: String
    let taskType: String
    /// The targeted weights as they were (W₀).
    private var base: [Float]

    public var scale: Float { Float(settings.alpha / Double(settings.rank)) }
    /// The two files of a saved adapter (PEFT's names).
    public static let files = ["adapter_config.json", "adapter_model.safetensors"]

    /// Adapters on the weights of `model` that `settings.targets` name; lora_A random (seeded), lora_B zero, so
    /// the adapted model starts equal to the base. The model's targeted weights become W₀ + s·B·A from here on.
    public init(model: TrainableModel, settings: LoRASettings, baseModel: String = "") throws {
        guard settings.rank > 0 else { throw TrainingError.badArgument("--lora-rank must be positive (got \(settings.rank))") }
        guard settings.alpha > 0, settings.alpha.isFinite else {
            throw TrainingError.badArgument("--lora-alpha must be positive (got \(settings.alpha))")
        }
        guard !settings.targets.isEmpty else { throw TrainingError.badArgument("--lora-targets names no module") }
        self.settings = settings; self.baseModel = baseModel
        taskType = model.head == .score ? "SEQ_CLS" : "CAUSAL_LM"
        // Linear weights PEFT can wrap: 2-D, learned, not the embedding (PEFT's embedding LoRA is another
        // layout), not a routed expert (transformers fuses the experts into one parameter per layer) and not the
        // multi-token-prediction module (transformers has no such layer).
        let mtp = model.mtp.map { $0.prefix + "." }
        let candidates = model.store.tensors.filter {
            $0.shape.count == 2 && !$0.frozen && $0.name.hasSuffix(".weight") && $0.name != "model.embed_tokens.weight"
                && !$0.name.contains(".experts.") && !(mtp.map($0.name.hasPrefix) ?? false)
        }
        func module(_ t: ParameterStore.Tensor) -> String { String(t.name.dropLast(".weight".count)) }
        func matches(_ name: String, _ target: String) -> Bool { name == target || name.hasSuffix("." + target) }
        for target in settings.targets {
            guard !target.isEmpty, candidates.contains(where: { matches(module($0), target) }) else {
                let experts = model.store.tensors.contains { $0.name.contains(".experts.") && matches(module($0), target) }
                let known = Set(candidates.map { module($0).split(separator: ".").last.map(String.init) ?? "" }).sorted()
                throw TrainingError.badArgument(experts
                    ? "--lora-targets: '\(target)' names only routed experts' weights, which LoRA cannot target here (transformers fuses each layer's experts into one parameter); targets: \(known.joined(separator: ", "))"
                    : "--lora-targets: '\(target)' matches no weight of the model; targets: \(known.joined(separator: ", "))")
            }
        }
        let chosen = candidates.filter { t in settings.targets.contains { matches(module(t), $0) } }
        let r = settings.rank
        var layout: [(name: String, weight: Int, rows: Int, cols: Int, a: Int, b: Int, base: Int)] = []
        var baseCount = 0
        for t in chosen {
            let name = module(t), rows = t.shape[0], cols = t.shape[1]
            let a = store.add("base_model.model.\(name).lora_A.weight", shape: [r, cols], decay: true)
            let b = store.add("base_model.model.\(name).lora_B.weight", shape: [rows, r], decay: true)
            layout.append((name, t.offset, rows, cols, a, b, baseCount))
            baseCount += t.count
        }
        store.allocate()
        modules = layout.map { Module(name: $0.name, weight: $0.weight, rows: $0.rows, cols: $0.cols, a: $0.a, b: $0.b, base: $0.base) }
        base = [Float](repeating: 0, count: baseCount)
        let w = model.store.values!
        for m in modules { for i in 0..<(m.rows * m.cols) { base[m.base + i] = w[m.weight + i] } }
        // PEFT: kaiming_uniform_(a=√5) on lora_A, i.e. U(−1/√in, 1/√in); lora_B zeros.
        var rng = SplitMix64(seed: settings.seed)
        let v = store.values!
        for m in modules {
            let bound = 1 / Float(m.cols).squareRoot()
            for i in 0..<(r * m.cols) {
                let u = Float(Double(rng.next() >> 11) / Double(1 << 53))
                v[m.a + i] = (2 * u - 1) * bound
            }
        }
    }

    /// Trainable scalars (lora_A and lora_B).
    public var parameterCount: Int { store.parameterCount }

    /// Bytes the adapters add to a run: W₀, and values, gradients and two AdamW moments of the adapters.
    public var memoryBytes: Int { 4 * base.count + 16 * store.count }

    /// Writes W = W₀ + s·B·A into the model's targeted weights.
    public func apply(to model: TrainableModel) {
        let w = model.store.values!, v = store.values!
        base.withUnsafeBufferPointer { w0 in
            for m in modules {
                (w + m.weight).update(from: w0.baseAddress! + m.base, count: m.rows * m.cols)
                sgemmNN(m: m.rows, n: m.cols, k: settings.rank, alpha: scale, a: v + m.b, lda: settings.rank,
                        b: v + m.a, ldb: m.cols, c: w + m.weight, ldc: m.cols, accumulate: true, pool: nil)
            }
        }
    }

    /// Adds dA = s·Bᵀ·dW and dB = s·dW·Aᵀ to the adapters' gradients from the model's dW (after a backward
    /// through the weights `apply` wrote).
    public func accumulateGradients(from model: TrainableModel) {
        let g = model.store.grads!, v = store.values!, dv = store.grads!
        let r = settings.rank
        for m in modules {
            // dA [r×in] = s · Bᵀ [r×out] · dW [out×in]
            sgemmTN(m: r, n: m.cols, k: m.rows, alpha: scale, a: v + m.b, lda: r, b: g + m.weight, ldb: m.cols,
                    c: dv + m.a, ldc: m.cols, accumulate: true, pool: nil)
            // dB [out×r] = s · dW [out×in] · Aᵀ [in×r]
            sgemmNT(m: m.rows, n: r, k: m.cols, alpha: scale, a: g + m.weight, lda: m.cols, b: v + m.a, ldb: m.cols,
                    c: dv + m.b, ldc: r, accumulate: true, pool: nil)
        }
    }

    /// W₀ of every targeted weight, in `modules` order (for tests).
    func baseWeights() -> [Float] { base }

    // MARK: PEFT's files

    /// adapter_config.json as PEFT writes it (the keys PEFT reads; the rest take its defaults).
    public func config() -> [String: Any] {
        let names = Set(modules.map { $0.name.split(separator: ".").last.map(String.init) ?? $0.name })
        let targets = settings.targets.allSatisfy { !$0.contains(".") } ? Array(names).sorted() : settings.targets
        return ["peft_type": "LORA", "task_type": taskType, "r": settings.rank, "lora_alpha": settings.alpha,
                "lora_dropout": 0.0, "target_modules": targets, "bias": "none", "fan_in_fan_out": false,
                "base_model_name_or_path": baseModel, "inference_mode": true, "init_lora_weights": true,
                "use_rslora": false, "use_dora": false, "modules_to_save": NSNull(), "rank_pattern": [String: Any](),
                "alpha_pattern": [String: Any](), "layers_to_transform": NSNull(), "layers_pattern": NSNull(),
                "revision": NSNull()]
    }

    /// Writes adapter_config.json and adapter_model.safetensors (f32) into `directory`.
    public func save(to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let v = store.values!
        try SafeTensorsWriter.write(store.tensors.map { t in
            SafeTensorsWriter.Entry(name: t.name, dtype: .f32, shape: t.shape) { dst in
                try FloatEncoding.encode(UnsafeBufferPointer(start: v + t.offset, count: t.count), as: .f32, into: dst)
            }
        }, to: "\(directory)/adapter_model.safetensors")
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: config(), options: [.prettyPrinted, .sortedKeys]),
                             to: "\(directory)/adapter_config.json")
    }

    /// Reads lora_A / lora_B from a saved adapter whose rank and α are these adapters' (a checkpoint of the
    /// same run, or a PEFT adapter on the same base).
    public func load(from directory: String) throws {
        let saved = try LoRAAdapters.readConfig(directory)
        guard saved.rank == settings.rank, abs(saved.alpha - settings.alpha) < 1e-9 else {
            throw TrainingError.badArgument("\(directory): the adapter has rank \(saved.rank) and lora_alpha \(saved.alpha), not \(settings.rank) and \(settings.alpha)")
        }
        let file = try SafeTensorsFile(path: "\(directory)/adapter_model.safetensors")
        let names = Set(store.tensors.map(\.name))
        if let extra = file.tensors.keys.sorted().first(where: { !names.contains($0) }) {
            throw TrainingError.badArgument("\(directory): \(extra) adapts no weight these adapters have")
        }
        let v = store.values!
        for t in store.tensors {
            guard let data = file.tensors[t.name] else { throw TrainingError.badArgument("\(directory): adapter_model.safetensors lacks \(t.name)") }
            guard data.shape == t.shape else {
                throw TrainingError.badArgument("\(directory): \(t.name) is \(data.shape), expected \(t.shape)")
            }
            let values = try FloatEncoding.floats(data)
            (v + t.offset).update(from: values, count: t.count)
        }
    }

    /// The rank, α and targets of a saved adapter's adapter_config.json (only plain LoRA: no DoRA, no per-module
    /// ranks, no LoRA biases, no fan-in-fan-out weights).
    public static func readConfig(_ directory: String) throws -> LoRASettings {
        let path = "\(directory)/adapter_config.json"
        guard let data = FileManager.default.contents(atPath: path),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TrainingError.badArgument("\(path) is missing or not a JSON object")
        }
        guard (json["peft_type"] as? String) == "LORA" else {
            throw TrainingError.badArgument("\(path): peft_type is \(json["peft_type"] ?? "missing"), not LORA")
        }
        guard let rank = number(json["r"]), rank > 0, rank == rank.rounded() else { throw TrainingError.badArgument("\(path): r is missing or not a positive integer") }
        let r = Int(rank), alpha = number(json["lora_alpha"]) ?? 8
        for (key, what) in [("use_dora", "DoRA"), ("use_rslora", "rsLoRA"), ("fan_in_fan_out", "fan_in_fan_out")] where (json[key] as? Bool) == true {
            throw TrainingError.badArgument("\(path): \(what) adapters are not supported")
        }
        for key in ["rank_pattern", "alpha_pattern"] {
            if let p = json[key] as? [String: Any], !p.isEmpty { throw TrainingError.badArgument("\(path): per-module \(key) is not supported") }
        }
        if let bias = json["bias"] as? String, bias != "none" { throw TrainingError.badArgument("\(path): bias '\(bias)' is not supported (only none)") }
        let targets = (json["target_modules"] as? [String]) ?? []
        return LoRASettings(rank: r, alpha: alpha, targets: targets)
    }

    // MARK: Merging

    /// `moe lora merge`: the base model in `base` with the adapter in `adapter` merged (W = W₀ + s·B·A), written
    /// to `out` as a Hugging Face directory (config, model.safetensors, generation config, and the base's
    /// tokenizer files). Every adapter tensor must name a weight of the base with fitting shapes.
    @discardableResult
    public static func merge(base: String, adapter: String, out: String, threads: Int = WorkerPool.defaultThreadCount) throws -> TrainableModel {
        let model = try TrainableModel.load(directory: base, threads: threads)
        try merge(adapter: adapter, into: model)
        try model.save(to: out)
        for f in TrainingSetup.tokenizerFiles(base) {
            let dst = "\(out)/\((f as NSString).lastPathComponent)"
            try? FileManager.default.removeItem(atPath: dst)
            try FileManager.default.copyItem(atPath: f, toPath: dst)
        }
        return model
    }

    /// Merges the adapter in `adapter` into `model`'s weights.
    public static func merge(adapter: String, into model: TrainableModel) throws {
        let config = try readConfig(adapter)
        let path = "\(adapter)/adapter_model.safetensors"
        guard FileManager.default.fileExists(atPath: path) else { throw TrainingError.badArgument("\(path) is missing") }
        let file = try SafeTensorsFile(path: path)
        // Modules from the file's names (PEFT writes `base_model.model.<module>.lora_A.weight`).
        var modules: [String] = []
        for name in file.tensors.keys.sorted() {
            guard name.hasPrefix("base_model.model."), name.hasSuffix(".lora_A.weight") || name.hasSuffix(".lora_B.weight") else {
                throw TrainingError.badArgument("\(path): \(name) is not a LoRA tensor (base_model.model.<module>.lora_A/lora_B.weight)")
            }
            let module = String(name.dropFirst("base_model.model.".count).dropLast(".lora_A.weight".count))
            if name.hasSuffix(".lora_A.weight") { modules.append(module) }
            let other = "base_model.model.\(module)." + (name.hasSuffix(".lora_A.weight") ? "lora_B" : "lora_A") + ".weight"
            guard file.tensors[other] != nil else { throw TrainingError.badArgument("\(path): \(name) has no \(other)") }
        }
        guard !modules.isEmpty else { throw TrainingError.badArgument("\(path) holds no LoRA tensors") }
        let s = Float(config.alpha / Double(config.rank)), r = config.rank
        let w = model.store.values!
        for module in modules {
            let aName = "base_model.model.\(module).lora_A.weight", bName = "base_model.model.\(module).lora_B.weight"
            guard let t = model.store.tensor("\(module).weight"), t.shape.count == 2 else {
                throw TrainingError.badArgument("\(path): \(aName) adapts \(module).weight, which the base model does not have")
            }
            let a = file.tensors[aName]!, b = file.tensors[bName]!
            guard a.shape.count == 2, b.shape.count == 2, a.shape[0] == b.shape[1] else {
                throw TrainingError.badArgument("\(path): \(module): lora_A \(a.shape) and lora_B \(b.shape) do not fit together")
            }
            guard a.shape[0] == r else {
                throw TrainingError.badArgument("\(path): \(module): lora_A has rank \(a.shape[0]) but adapter_config.json says r = \(r)")
            }
            guard a.shape[1] == t.shape[1], b.shape[0] == t.shape[0] else {
                throw TrainingError.badArgument("\(path): \(module): lora_B·lora_A is [\(b.shape[0]), \(a.shape[1])] but the base's weight is \(t.shape)")
            }
            let av = try FloatEncoding.floats(a), bv = try FloatEncoding.floats(b)
            sgemmNN(m: t.shape[0], n: t.shape[1], k: r, alpha: s, a: bv, lda: r, b: av, ldb: t.shape[1],
                    c: w + t.offset, ldc: t.shape[1], accumulate: true, pool: nil)
        }
    }
}

/// A JSON number as JSONSerialization hands it over (Int, Double or NSNumber, by platform).
private func number(_ x: Any?) -> Double? {
    if let d = x as? Double { return d }
    if let i = x as? Int { return Double(i) }
    return (x as? NSNumber)?.doubleValue
}
