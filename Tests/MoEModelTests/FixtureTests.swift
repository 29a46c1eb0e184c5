import Foundation
import Testing
import MoEFormats
@testable import MoEModel

/// The reference fixtures made by scripts/make_fixtures.py with transformers + torch.
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/models").path
    static let cases = ["qwen2_moe", "qwen2_moe_step2", "qwen3_moe", "qwen3_moe_bf16", "mixtral", "olmoe",
                        "qwen2", "qwen2_window", "qwen3", "llama",
                        "deepseek_v2_lite", "deepseek_v2_group", "deepseek_v3", "deepseek_v3_plain", "glm4_moe",
                        "qwen3_next", "qwen3_5_moe", "gpt_oss", "gpt_oss_mxfp4"]

    struct Expected: Decodable {
        struct Greedy: Decodable { let prompt: [Int]; let max_new_tokens: Int; let ids: [Int] }
        let model_type: String
        let tokens: [Int]
        let logits: [[Float]]
        let greedy: Greedy
    }

    static func directory(_ name: String) -> String { root + "/" + name }

    static func expected(_ name: String) throws -> Expected {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: directory(name) + "/expected.json")))
    }

    /// A copy of a fixture in a temporary directory, to break it on purpose.
    static func copy(_ name: String) throws -> String {
        let dir = NSTemporaryDirectory() + "moe-fixture-" + UUID().uuidString
        try FileManager.default.copyItem(atPath: directory(name), toPath: dir)
        return dir
    }
}

func maxAbsDifference(_ a: UnsafeBufferPointer<Float>, _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var m: Float = 0
    for i in 0..<b.count { m = max(m, abs(a[i] - b[i])) }
    return m
}

/// The references are f32 math: models run with 16-bit activation rounding, which quantised weights (the MXFP4
/// fixture's experts) take to about 1e-5 of f32 (float weights ignore it).
@Suite struct FixtureTests {
    @Test(arguments: Fixtures.cases)
    func logitsMatchTransformers(_ name: String) throws {
        let e = try Fixtures.expected(name)
        for threads in [1, 2] {
            let model = try Transformer(directory: Fixtures.directory(name), threads: threads, activations: .int16)
            #expect(model.config.modelType == e.model_type)
            let logits = try model.forward(e.tokens, cache: model.makeCache(), logitsFor: .all)
            let diff = maxAbsDifference(UnsafeBufferPointer(logits), e.logits.flatMap { $0 })
            #expect(diff <= 1e-4, "\(name), \(threads) threads: max |Δlogit| = \(diff)")
        }
    }

    @Test(arguments: Fixtures.cases)
    func decodingWithTheCacheEqualsRecomputing(_ name: String) throws {
        let e = try Fixtures.expected(name)
        let model = try Transformer(directory: Fixtures.directory(name), threads: 2, activations: .int16)
        let vocab = model.config.vocabSize
        // A DeltaNet L2-normalises its keys: a small key's rounding (GEMM vs GEMV sums) grows with it.
        let tolerance: Float = model.recurrentShape == nil ? 1e-5 : 5e-5
        let full = Array(try model.forward(e.tokens, cache: model.makeCache(), logitsFor: .all))
        // Prefill a prefix, then one token at a time.
        let cache = model.makeCache()
        let split = 3
        let prefix = Array(try model.forward(Array(e.tokens[..<split]), cache: cache, logitsFor: .all))
        #expect(prefix.withUnsafeBufferPointer { maxAbsDifference($0, Array(full[..<(split * vocab)])) } <= tolerance)
        for t in split..<e.tokens.count {
            let step = try model.forward([e.tokens[t]], cache: cache, logitsFor: .last)
            let diff = maxAbsDifference(UnsafeBufferPointer(step), Array(full[(t * vocab)..<((t + 1) * vocab)]))
            #expect(diff <= tolerance, "\(name) position \(t): \(diff)")
        }
        #expect(cache.count == e.tokens.count)
    }

    /// Latent attention's two ways agree: long prefill chunks (decompressed keys and values, here the second one
    /// after a cached prefix) give the logits of decoding the same tokens one by one in latent space.
    @Test(arguments: ["deepseek_v3", "deepseek_v2_group", "deepseek_v2_lite"])
    func latentPrefillEqualsDecodeSteps(_ name: String) throws {
        let model = try Transformer(directory: Fixtures.directory(name), threads: 2, activations: .int16)
        guard case let .latent(attention) = model.layers[0].attention else { Issue.record("not latent attention"); return }
        let vocab = model.config.vocabSize, n = 30
        #expect(attention.decompresses(tokens: n) && !attention.decompresses(tokens: 1))
        let tokens = (0..<(2 * n)).map { 4 + ($0 * 37 + 11) % (vocab - 4) }
        let cache = model.makeCache(capacity: 2 * n)
        var prefill = Array(try model.forward(Array(tokens[..<n]), cache: cache, logitsFor: .all))
        prefill += Array(try model.forward(Array(tokens[n...]), cache: cache, logitsFor: .all))
        let stepCache = model.makeCache(capacity: 2 * n)
        for (t, token) in tokens.enumerated() {
            let step = try model.forward([token], cache: stepCache, logitsFor: .last)
            let diff = maxAbsDifference(UnsafeBufferPointer(step), Array(prefill[(t * vocab)..<((t + 1) * vocab)]))
            #expect(diff <= 1e-4, "\(name) position \(t): \(diff)")
        }
    }

    /// A DeltaNet's two forms agree: prefill in chunks (70 tokens, then 80 more after them: chunk boundaries that
    /// do not line up with the sequence's) gives the logits of running the same tokens one at a time (the recurrent
    /// decode form).
    @Test(arguments: ["qwen3_next", "qwen3_5_moe"])
    func chunkedPrefillEqualsRecurrentSteps(_ name: String) throws {
        let model = try Transformer(directory: Fixtures.directory(name), threads: 2, activations: .int16)
        let vocab = model.config.vocabSize
        let tokens = (0..<150).map { 4 + ($0 * 37 + 11) % (vocab - 4) }
        let cache = model.makeCache(capacity: 150)
        var prefill = Array(try model.forward(Array(tokens[..<70]), cache: cache, logitsFor: .all))
        prefill += Array(try model.forward(Array(tokens[70...]), cache: cache, logitsFor: .all))
        let stepCache = model.makeCache(capacity: 150)
        for (t, token) in tokens.enumerated() {
            let step = try model.forward([token], cache: stepCache, logitsFor: .last)
            let diff = maxAbsDifference(UnsafeBufferPointer(step), Array(prefill[(t * vocab)..<((t + 1) * vocab)]))
            #expect(diff <= 1e-4, "\(name) position \(t): \(diff)")
        }
    }

    /// A sliding-window layer's ring and its prefill agree: chunks of several lengths — shorter and longer than the
    /// window (6), starting inside and past it, one more block of 128 queries — give the logits of one token at a time.
    /// Without `layer_types` (configs older than transformers 5), Qwen2's windows follow `max_window_layers`.
    @Test func qwenWindowsWithoutLayerTypes() throws {
        let e = try Fixtures.expected("qwen2_window")
        let dir = try Fixtures.copy("qwen2_window")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/config.json"
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        json["layer_types"] = nil
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
        let model = try Transformer(directory: dir, threads: 2)
        #expect(model.recurrentShape?.windowLayers == 2)
        let logits = try model.forward(e.tokens, cache: model.makeCache(), logitsFor: .all)
        #expect(maxAbsDifference(UnsafeBufferPointer(logits), e.logits.flatMap { $0 }) <= 1e-4)
        // A window larger than the context is refused, naming both.
        json["sliding_window"] = 100_000
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
        #expect(throws: (any Error).self) { try Transformer(directory: dir) }
    }

    @Test(arguments: ["gpt_oss", "gpt_oss_mxfp4"])
    func slidingWindowChunksEqualSteps(_ name: String) throws {
        let model = try Transformer(directory: Fixtures.directory(name), threads: 2, activations: .int16)
        let vocab = model.config.vocabSize
        let tokens = (0..<200).map { 4 + ($0 * 37 + 11) % (vocab - 4) }
        let cache = model.makeCache(capacity: 200)
        var chunked: [Float] = [], at = 0
        for n in [4, 1, 9, 3, 2, 150, 31] {
            chunked += Array(try model.forward(Array(tokens[at..<(at + n)]), cache: cache, logitsFor: .all))
            at += n
        }
        #expect(at == tokens.count)
        let stepCache = model.makeCache(capacity: 200)
        for (t, token) in tokens.enumerated() {
            let step = try model.forward([token], cache: stepCache, logitsFor: .last)
            let diff = maxAbsDifference(UnsafeBufferPointer(step), Array(chunked[(t * vocab)..<((t + 1) * vocab)]))
            #expect(diff <= 1e-4, "\(name) position \(t): \(diff)")
        }
        // The ring's memory does not grow with the sequence: a fixed state, and KV pages only for the full layers.
        #expect(model.recurrentShape?.windowLayers == 2 && model.recurrentShape?.window == 6)
        #expect(model.kvLayers == 2)
    }

    @Test(arguments: Fixtures.cases)
    func greedyGenerationEqualsHFGenerate(_ name: String) throws {
        let e = try Fixtures.expected(name)
        let model = try Transformer(directory: Fixtures.directory(name), threads: 2, activations: .int16)
        let result = try model.generate(prompt: e.greedy.prompt, maxTokens: e.greedy.max_new_tokens, sampling: .greedy)
        #expect(result.tokens == e.greedy.ids)
        #expect(result.finishReason == (e.greedy.ids.count < e.greedy.max_new_tokens ? .stop : .length))
    }

    @Test func seededSamplingIsReproducible() throws {
        let model = try Transformer(directory: Fixtures.directory("qwen3_moe"), threads: 2)
        var p = SamplingParameters(temperature: 1.0, topK: 0, seed: 1234)
        let a = try model.generate(prompt: [1, 2, 3], maxTokens: 12, sampling: p, stopTokens: [])
        let b = try model.generate(prompt: [1, 2, 3], maxTokens: 12, sampling: p, stopTokens: [])
        #expect(a.tokens == b.tokens && a.tokens.count == 12)
        p.seed = 99
        let c = try model.generate(prompt: [1, 2, 3], maxTokens: 12, sampling: p, stopTokens: [])
        #expect(c.tokens != a.tokens)
    }
}

@Suite struct BadModelTests {
    @Test func unknownModelTypeIsNamed() throws {
        let dir = try Fixtures.copy("qwen2")
        var config = try String(contentsOfFile: dir + "/config.json", encoding: .utf8)
        config = config.replacingOccurrences(of: "\"qwen2\"", with: "\"gpt_neox\"")
        try config.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        #expect { try Transformer(directory: dir) } throws: { error in
            guard case ModelError.unknownArchitecture(let t, let known) = error else { return false }
            return t == "gpt_neox" && known.contains("qwen3_moe")
        }
    }

    @Test func missingTensorIsNamed() throws {
        let dir = try Fixtures.copy("qwen3_moe")
        let c = try Checkpoint(directory: dir)
        let keep = c.tensorNames.filter { $0 != "model.layers.1.mlp.experts.3.up_proj.weight" }
        let entries = try keep.map { name -> SafeTensorsWriter.Entry in
            let t = try c.tensor(name)
            let bytes = Array(UnsafeRawBufferPointer(start: t.pointer, count: t.byteCount))
            return .init(name: name, dtype: t.dtype, shape: t.shape) { buffer in bytes.withUnsafeBytes { buffer.copyMemory(from: $0) } }
        }
        try SafeTensorsWriter.write(entries, to: dir + "/model.safetensors")
        #expect(throws: FormatError.missingTensor(tensor: "model.layers.1.mlp.experts.3.up_proj.weight", directory: dir)) {
            try Transformer(directory: dir)
        }
    }

    /// MXFP4 blocks whose scales do not match them (a group missing, or the wrong type) are an error naming the tensor.
    @Test(arguments: ["shape", "dtype"])
    func mismatchedMXFP4ScalesAreNamed(_ broken: String) throws {
        let dir = try Fixtures.copy("gpt_oss_mxfp4")
        let c = try Checkpoint(directory: dir)
        let target = "model.layers.1.mlp.experts.down_proj_scales"
        let entries = try c.tensorNames.map { name -> SafeTensorsWriter.Entry in
            let t = try c.tensor(name)
            var shape = t.shape, dtype = t.dtype, count = t.byteCount
            if name == target {
                if broken == "shape" { shape[2] -= 1; count = shape.reduce(1, *) } else { dtype = .i8 }
            }
            let bytes = Array(UnsafeRawBufferPointer(start: t.pointer, count: count))
            return .init(name: name, dtype: dtype, shape: shape) { buffer in bytes.withUnsafeBytes { buffer.copyMemory(from: $0) } }
        }
        try SafeTensorsWriter.write(entries, to: dir + "/model.safetensors")
        #expect { try Transformer(directory: dir) } throws: { error in "\(error)".contains("down_proj") }
    }

    @Test func wrongShapeIsNamed() throws {
        let dir = try Fixtures.copy("llama")
        var config = try String(contentsOfFile: dir + "/config.json", encoding: .utf8)
        config = config.replacingOccurrences(of: "\"intermediate_size\": 64", with: "\"intermediate_size\": 48")
        try config.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        #expect { try Transformer(directory: dir) } throws: { error in
            guard case FormatError.shapeMismatch(let name, let expected, let found) = error else { return false }
            return name.hasSuffix("mlp.gate_proj.weight") && expected == [48, 32] && found == [64, 32]
        }
    }

    /// DeepSeek settings that cannot be routed or attended are refused with the offending key named.
    @Test(arguments: [
        ("topk_group", 5, "topk_group"),                // more groups kept than there are
        ("n_group", 3, "n_group"),                      // 16 experts do not split into 3 groups
        ("num_experts_per_tok", 9, "num_experts_per_tok"), // 2 kept groups of 4 hold only 8 experts
        ("num_key_value_heads", 2, "num_key_value_heads"),
        ("qk_rope_head_dim", 3, "qk_rope_head_dim"),
        ("kv_lora_rank", 20, "kv_a_proj_with_mqa"),     // the checkpoint's shapes disagree: the tensor is named
    ])
    func inconsistentDeepSeekSettingsAreNamed(_ key: String, _ value: Int, _ named: String) throws {
        let dir = try Fixtures.copy("deepseek_v3")
        let path = dir + "/config.json"
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        config[key] = value
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: path))
        #expect { try Transformer(directory: dir) } throws: { error in "\(error)".contains(named) }
    }

    /// Gated DeltaNet settings that do not fit the checkpoint, or that the engine does not run, are refused with
    /// the key or tensor named; so is a checkpoint missing one of the layer's state parameters.
    @Test(arguments: [
        ("linear_num_value_heads", 3, "linear_num_value_heads"),  // not a multiple of the 2 key heads
        ("linear_num_key_heads", 4, "in_proj_qkvz"),              // the checkpoint's shapes disagree
        ("linear_conv_kernel_dim", 64, "linear_conv_kernel_dim"),
        ("linear_key_head_dim", 0, "linear_key_head_dim"),
        ("full_attention_interval", 0, "layer_types"),            // (layer_types given: the list is checked instead)
    ])
    func inconsistentDeltaNetSettingsAreNamed(_ key: String, _ value: Int, _ named: String) throws {
        let dir = try Fixtures.copy("qwen3_next")
        let path = dir + "/config.json"
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        config[key] = value
        if key == "full_attention_interval" { config["layer_types"] = ["linear_attention"] }
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: path))
        #expect { try Transformer(directory: dir) } throws: { error in "\(error)".contains(named) }
    }

    @Test(arguments: ["A_log", "dt_bias", "conv1d.weight", "norm.weight"])
    func missingDeltaNetParameterIsNamed(_ parameter: String) throws {
        let dir = try Fixtures.copy("qwen3_5_moe")
        let c = try Checkpoint(directory: dir)
        let missing = "model.layers.1.linear_attn.\(parameter)"
        let entries = try c.tensorNames.filter { $0 != missing }.map { name -> SafeTensorsWriter.Entry in
            let t = try c.tensor(name)
            let bytes = Array(UnsafeRawBufferPointer(start: t.pointer, count: t.byteCount))
            return .init(name: name, dtype: t.dtype, shape: t.shape) { buffer in bytes.withUnsafeBytes { buffer.copyMemory(from: $0) } }
        }
        try SafeTensorsWriter.write(entries, to: dir + "/model.safetensors")
        #expect(throws: FormatError.missingTensor(tensor: missing, directory: dir)) { try Transformer(directory: dir) }
    }

    /// A multimodal Qwen3.5 checkpoint keeps its language model under model.language_model.* beside a vision
    /// tower: the text model loads from it and gives the same logits.
    @Test func multimodalCheckpointLoadsItsLanguageModel() throws {
        let dir = try Fixtures.copy("qwen3_5_moe")
        let c = try Checkpoint(directory: dir)
        var entries = try c.tensorNames.map { name -> SafeTensorsWriter.Entry in
            let t = try c.tensor(name)
            let bytes = Array(UnsafeRawBufferPointer(start: t.pointer, count: t.byteCount))
            let renamed = name.hasPrefix("model.") ? "model.language_model." + name.dropFirst(6) : name
            return .init(name: renamed, dtype: t.dtype, shape: t.shape) { buffer in bytes.withUnsafeBytes { buffer.copyMemory(from: $0) } }
        }
        entries.append(.init(name: "model.visual.patch_embed.proj.weight", dtype: .f32, shape: [2, 2]) { $0.initializeMemory(as: UInt8.self, repeating: 0) })
        try SafeTensorsWriter.write(entries, to: dir + "/model.safetensors")
        let path = dir + "/config.json"
        let text = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        let wrapper: [String: Any] = ["model_type": "qwen3_5_moe", "text_config": text, "vision_config": ["depth": 1]]
        try JSONSerialization.data(withJSONObject: wrapper).write(to: URL(fileURLWithPath: path))
        let e = try Fixtures.expected("qwen3_5_moe")
        let model = try Transformer(directory: dir, threads: 1)
        let logits = try model.forward(e.tokens, cache: model.makeCache(), logitsFor: .all)
        #expect(maxAbsDifference(UnsafeBufferPointer(logits), e.logits.flatMap { $0 }) <= 1e-4)
    }

    @Test func unsupportedRopeTypeIsRefused() throws {
        var p = RopeParameters()
        p.type = "longrope"
        #expect { try RotaryEmbedding(p, headDim: 16, maxPositionEmbeddings: 128) } throws: { "\($0)".contains("longrope") }
    }

    @Test func promptLongerThanTheContextIsAnError() throws {
        let model = try Transformer(directory: Fixtures.directory("qwen2"))
        let cache = model.makeCache(capacity: 4)
        #expect(throws: ModelError.contextOverflow(tokens: 5, context: 4)) { try model.forward([1, 2, 3, 4, 5], cache: cache) }
        #expect(throws: ModelError.self) { try model.generate(prompt: [1, 2, 3, 4], maxTokens: 2, sampling: .greedy, cache: cache) }
        #expect(throws: ModelError.self) { try model.forward([100_000], cache: model.makeCache()) }
    }
}

@Suite struct FusedExpertsTests {
    /// transformers 5 keeps experts fused in memory (`experts.gate_up_proj` [E, 2I, H], `experts.down_proj`
    /// [E, H, I]); a checkpoint saved in that layout must give the same logits as the per-expert one.
    @Test func fusedExpertLayoutGivesTheSameLogits() throws {
        let name = "qwen3_moe"
        let e = try Fixtures.expected(name)
        let dir = try Fixtures.copy(name)
        let c = try Checkpoint(directory: dir)
        let config = try ModelConfig(directory: dir)
        let experts = config.numExperts
        func bytes(_ n: String) throws -> [UInt8] {
            let t = try c.tensor(n)
            return Array(UnsafeRawBufferPointer(start: t.pointer, count: t.byteCount))
        }
        var entries: [SafeTensorsWriter.Entry] = []
        var fusedLayers = Set<String>()
        for n in c.tensorNames {
            if let r = n.range(of: ".mlp.experts.") {
                fusedLayers.insert(String(n[..<r.lowerBound]))
                continue
            }
            let t = try c.tensor(n), data = try bytes(n)
            entries.append(.init(name: n, dtype: t.dtype, shape: t.shape) { buffer in data.withUnsafeBytes { buffer.copyMemory(from: $0) } })
        }
        #expect(!fusedLayers.isEmpty)
        for layer in fusedLayers.sorted() {
            var gateUp: [UInt8] = [], down: [UInt8] = []
            var shape: (i: Int, h: Int, dtype: DType) = (0, 0, .f32)
            for x in 0..<experts {
                let p = "\(layer).mlp.experts.\(x)"
                gateUp += try bytes("\(p).gate_proj.weight") + bytes("\(p).up_proj.weight")
                down += try bytes("\(p).down_proj.weight")
                let g = try c.tensor("\(p).gate_proj.weight")
                shape = (g.shape[0], g.shape[1], g.dtype)
            }
            let (i, h, dtype) = shape
            let gu = gateUp, dn = down
            entries.append(.init(name: "\(layer).mlp.experts.gate_up_proj", dtype: dtype, shape: [experts, 2 * i, h]) {
                buffer in gu.withUnsafeBytes { buffer.copyMemory(from: $0) } })
            entries.append(.init(name: "\(layer).mlp.experts.down_proj", dtype: dtype, shape: [experts, h, i]) {
                buffer in dn.withUnsafeBytes { buffer.copyMemory(from: $0) } })
        }
        try SafeTensorsWriter.write(entries, to: dir + "/model.safetensors")
        let fused = try Transformer(directory: dir, threads: 2)
        let logits = try fused.forward(e.tokens, cache: fused.makeCache(), logitsFor: .all)
        #expect(maxAbsDifference(UnsafeBufferPointer(logits), e.logits.flatMap { $0 }) <= 1e-4)
    }
}
