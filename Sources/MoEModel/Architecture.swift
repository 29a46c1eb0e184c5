import MoEFormats
import MoEKernels

/// One supported architecture: which tensors a `config.json` of its `model_type` calls for, layer by layer.
/// The embedding (`model.embed_tokens`), final norm (`model.norm`) and LM head (`lm_head`, or the embedding
/// when tied) are common to all of them. Inference (`Transformer`) and training build their layers from the
/// same `LayerLayout`s, so an architecture is described once.
///
/// Adding an architecture is one new file with a type conforming to this, plus its line in `registry`.
public protocol Architecture: Sendable {
    static var modelType: String { get }
    /// The layers' layouts. `has` tells whether the checkpoint being read holds a tensor (to pick between
    /// naming variants); for a new model it answers false and the hub's names are chosen.
    static func layout(_ config: ModelConfig, has: (String) -> Bool) throws -> [LayerLayout]
    /// The config with this architecture's own defaults filled in where config.json leaves them out (as its
    /// transformers config class would), before anything reads it.
    static func withDefaults(_ config: ModelConfig) throws -> ModelConfig
    /// Other `model_type`s read as this one (a multimodal model's text config, say).
    static var aliases: [String] { get }
    /// The checkpoint's tensors as the layouts name and shape them, where the hub stores some otherwise (gpt-oss's
    /// fused, transposed or MXFP4 experts); by default the store itself.
    static func weights(_ store: any TensorStore, _ config: ModelConfig) throws -> any TensorStore
    /// The inverse of `weights` for a trained model's parameters (one tensor per expert and projection): the hub's
    /// tensors that replace some of them (`replaced`), so that transformers loads what training saves; `mxfp4`
    /// stores gpt-oss's experts as MXFP4 blocks and scales. By default none.
    static func hubTensors(names: [String], values: (String) -> UnsafePointer<Float>, _ config: ModelConfig, mxfp4: Bool)
        -> (replaced: Set<String>, tensors: [HubTensor])
}

/// A tensor as a checkpoint writer takes it: f32 values, or raw bytes of another dtype (MXFP4 blocks are U8).
public struct HubTensor: Sendable {
    public var name: String
    public var shape: [Int]
    public var values: [Float] = []
    public var bytes: [UInt8]? = nil

    public init(name: String, shape: [Int], values: [Float]) { self.name = name; self.shape = shape; self.values = values }
    public init(name: String, shape: [Int], bytes: [UInt8]) { self.name = name; self.shape = shape; self.bytes = bytes }
}

extension Architecture {
    public static func withDefaults(_ config: ModelConfig) throws -> ModelConfig { config }
    public static var aliases: [String] { [] }
    public static func weights(_ store: any TensorStore, _ config: ModelConfig) throws -> any TensorStore { store }
    public static func hubTensors(names: [String], values: (String) -> UnsafePointer<Float>, _ config: ModelConfig, mxfp4: Bool)
        -> (replaced: Set<String>, tensors: [HubTensor]) { ([], []) }
}

/// `model_type` → architecture.
public enum ArchitectureRegistry {
    public static let all: [any Architecture.Type] = [
        Qwen2MoE.self, Qwen3MoE.self, Mixtral.self, OLMoE.self, DeepseekV2.self, DeepseekV3.self, Glm4MoE.self,
        Qwen3Next.self, Qwen35MoE.self, GptOss.self, Qwen2.self, Qwen3.self, Llama.self,
    ]

    public static func architecture(for modelType: String) throws -> any Architecture.Type {
        guard let a = all.first(where: { $0.modelType == modelType || $0.aliases.contains(modelType) }) else {
            throw ModelError.unknownArchitecture(modelType, known: all.map { $0.modelType })
        }
        return a
    }
}

/// What one decoder layer holds and how it computes, in checkpoint names (`prefix` = `model.layers.N`):
/// `{prefix}.input_layernorm`, `{prefix}.self_attn.{q,k,v,o}_proj` (+ biases, q/k norms) — or latent
/// attention's projections when `latent` is set —, `{prefix}.post_attention_layernorm`, then the feed-forward part.
public struct LayerLayout: Sendable, Equatable {
    public var prefix: String
    public var qkvBias: Bool
    public var outputBias: Bool
    public var qkNorm: Attention.QKNorm
    /// OLMoE's `clip_qkv`: q, k, v clamped to ±clip after the projections (and norms).
    public var clip: Double?
    public var feedForward: FeedForwardLayout
    /// Multi-head latent attention (DeepSeek-V2/V3) in place of grouped-query attention; the fields above that
    /// describe q/k/v then do not apply.
    public var latent: LatentAttentionLayout? = nil
    /// A Gated DeltaNet (`{prefix}.linear_attn.*`, Qwen3-Next / Qwen3.5) in place of attention.
    public var linear: LinearAttentionLayout? = nil
    /// Attention's output gated per channel: q_proj gives each head's query and gate, output × sigmoid(gate).
    public var outputGate = false
    /// Added to every RMSNorm weight as read: 1 for zero-centred norms, stored as w − 1 (Qwen3-Next / 3.5).
    public var normOffset: Float = 0
    /// Attention sinks (`{prefix}.self_attn.sinks` [heads], gpt-oss): a learned logit per head in each softmax's
    /// denominator.
    public var sinks = false
    /// Sliding-window attention: each query sees its own position and the `window − 1` before it; the sequence
    /// keeps only the last `window` keys and values of this layer (a ring in its `RecurrentState`).
    public var window: Int? = nil

    public var attentionPrefix: String { linear == nil ? "\(prefix).self_attn" : "\(prefix).linear_attn" }
}

public enum FeedForwardLayout: Sendable, Equatable {
    /// A SwiGLU MLP: `{prefix}.gate_proj`, `up_proj`, `down_proj`.
    case dense(prefix: String, width: Int)
    case moe(MoELayout)
}

/// Multi-head latent attention's shapes (DeepSeek-V2/V3 `config.json` names): q through `q_proj`, or through
/// `q_a_proj` → RMSNorm → `q_b_proj` when `qLoraRank` is set; `kv_a_proj_with_mqa` gives the latent
/// (`kvLoraRank`, then RMSNorm) and one rotary key shared by all heads (`ropeDim`); `kv_b_proj` expands the latent
/// into each head's non-rotary key (`nopeDim`) and value (`valueDim`).
public struct LatentAttentionLayout: Sendable, Equatable {
    public var qLoraRank: Int?
    public var kvLoraRank: Int
    public var nopeDim: Int
    public var ropeDim: Int
    public var valueDim: Int
    /// Rotary pairs interleaved (2i, 2i+1) rather than split in halves.
    public var interleavedRope: Bool
    /// `attention_bias`: biases on q_a_proj, kv_a_proj_with_mqa and o_proj.
    public var bias: Bool
    /// The softmax scale: 1/√(nopeDim + ropeDim), times YaRN's mscale² where the config asks for it.
    public var softmaxScale: Double

    public init(qLoraRank: Int?, kvLoraRank: Int, nopeDim: Int, ropeDim: Int, valueDim: Int, interleavedRope: Bool,
                bias: Bool, softmaxScale: Double) {
        self.qLoraRank = qLoraRank; self.kvLoraRank = kvLoraRank; self.nopeDim = nopeDim; self.ropeDim = ropeDim
        self.valueDim = valueDim; self.interleavedRope = interleavedRope; self.bias = bias; self.softmaxScale = softmaxScale
    }

    /// Floats cached per position and layer: the latent and the rotary key.
    public var cachedWidth: Int { kvLoraRank + ropeDim }
}

/// How a router turns its logits into the chosen experts and their weights (see `ExpertRouter`).
public struct RouterLayout: Sendable, Equatable {
    public enum Scoring: String, Sendable { case softmax, sigmoid }
    /// How a group of experts is ranked: by its best score (DeepSeek-V2) or the sum of its two best (V3, GLM).
    public enum GroupScore: String, Sendable { case max, topTwoSum }
    public var scoring: Scoring = .softmax
    /// `{gate}.e_score_correction_bias` [experts]: added to the scores for choosing only (V3, GLM-4.5).
    public var selectionBias = false
    /// Experts split into `groups` equal groups, only the best `groupsChosen` of which may be chosen from.
    public var groups = 1
    public var groupsChosen = 1
    public var groupScore: GroupScore = .max
    /// `routed_scaling_factor`: multiplies the final weights.
    public var scale: Double = 1

    public init() {}

    /// Sets the choice scores of `experts` experts outside the `groupsChosen` best groups to 0 (transformers'
    /// masked_fill), groups ranked by their best score or the sum of their two best. `groupScores` holds `groups`
    /// floats of scratch. Inference (`ExpertRouter`) and training (`MoELayer`) both route through this.
    public func keepBestGroups(_ c: UnsafeMutablePointer<Float>, experts: Int, groupScores g: UnsafeMutablePointer<Float>) {
        let size = experts / groups
        for group in 0..<groups {
            let first = c + group * size
            var best = -Float.infinity, second = -Float.infinity
            for i in 0..<size {
                let v = first[i]
                if v > best { second = best; best = v } else if v > second { second = v }
            }
            g[group] = groupScore == .max ? best : best + second
        }
        // Pick the best groups one by one (a picked group's score drops to -infinity), then zero the rest.
        var kept: UInt64 = 0
        for _ in 0..<groupsChosen {
            var best = -1
            for group in 0..<groups where g[group] > -.infinity && (best < 0 || g[group] > g[best]) { best = group }
            if best < 0 { break }
            kept |= 1 << UInt64(best)
            g[best] = -.infinity
        }
        for group in 0..<groups where kept & (1 << UInt64(group)) == 0 {
            (c + group * size).update(repeating: 0, count: size)
        }
    }
}

/// A mixture-of-experts block: router `{prefix}.gate.weight` [experts, hidden], experts
/// `{prefix}.experts.E.{gate,up,down}` (names vary), optional shared expert: `{prefix}.shared_expert.*` with its
/// sigmoid gate `{prefix}.shared_expert_gate.weight` [1, hidden] (Qwen2-MoE), or `{prefix}.shared_experts.*`
/// added as it is (DeepSeek, GLM-4.5: `n_shared_experts` experts fused into one MLP).
public struct MoELayout: Sendable, Equatable {
    public var prefix: String
    public var experts: Int
    public var topK: Int
    public var width: Int
    public var normTopKProb: Bool
    public var expertNames: ExpertNames
    public var sharedWidth: Int?
    public var sharedGated = true
    public var router = RouterLayout()
    /// The router's module name: `{prefix}.gate` (most) or `{prefix}.router` (gpt-oss).
    public var routerModule = "gate"
    /// A bias on the router's logits (`{router}.bias`, gpt-oss).
    public var routerBias = false
    /// Biases on the experts' projections: `{experts}.{gate,up,down}_proj_bias` [experts, rows] (gpt-oss).
    public var expertBias = false
    public var activation: GatedActivation = .silu

    public struct ExpertNames: Sendable, Equatable {
        public var gate: String, up: String, down: String
        public static let swiGLU = ExpertNames(gate: "gate_proj", up: "up_proj", down: "down_proj")
        /// Mixtral's hub names.
        public static let w1w3w2 = ExpertNames(gate: "w1", up: "w3", down: "w2")
    }

    public var routerName: String { "\(prefix).\(routerModule).weight" }
    public var routerBiasName: String { "\(prefix).\(routerModule).bias" }
    public var selectionBiasName: String { "\(prefix).gate.e_score_correction_bias" }
    public func expertPrefix(_ e: Int) -> String { "\(prefix).experts.\(e)" }
    public var sharedPrefix: String { sharedGated ? "\(prefix).shared_expert" : "\(prefix).shared_experts" }
    public var sharedGateName: String { "\(prefix).shared_expert_gate.weight" }
}

extension Array where Element == LayerLayout {
    /// These layouts with layer i's attention window `windows[i]`.
    func withWindows(_ windows: [Int?]) -> [LayerLayout] {
        zip(self, windows).map { l, w in var l = l; l.window = w; return l }
    }
}

extension ModelConfig {
    /// Whether layer `i` is a mixture-of-experts layer (Qwen2-MoE / Qwen3-MoE rule):
    /// not in `mlp_only_layers`, experts exist, and `(i + 1) % decoder_sparse_step == 0`.
    public func isSparseLayer(_ i: Int) -> Bool {
        !mlpOnlyLayers.contains(i) && numExperts > 0 && (i + 1) % decoderSparseStep == 0
    }

    /// Each layer's attention window (nil: full attention) where `sliding_window` is set (and `enabled`, Qwen's
    /// `use_sliding_window`): the layers `layer_types` calls "sliding_attention", or without it those
    /// `defaultSliding` picks (as the architecture's transformers config fills `layer_types` in). `defaultWindow`:
    /// the window when config.json leaves `sliding_window` out.
    func slidingWindows(enabled: Bool = true, defaultWindow: Int? = nil, defaultSliding: (Int) -> Bool) throws -> [Int?] {
        let none = [Int?](repeating: nil, count: numHiddenLayers)
        let given: Int?
        if case .null? = raw["sliding_window"] { given = nil } else { given = try extraInt("sliding_window") ?? defaultWindow }
        guard enabled, let window = given else { return none }
        guard window >= 1 else { return none }   // (Qwen2-MoE writes 0 for "no window")
        guard window <= maxPositionEmbeddings else {
            throw FormatError.badConfig(path: "config.json", reason: "sliding_window \(window) is larger than the context (max_position_embeddings \(maxPositionEmbeddings))")
        }
        if let types = try layerTypes(["sliding_attention", "full_attention"]) { return types.map { $0 == "sliding_attention" ? window : nil } }
        return (0..<numHiddenLayers).map { defaultSliding($0) ? window : nil }
    }

    /// `layer_types`, when config.json has it: one of `allowed` per layer, else an error naming what is wrong.
    func layerTypes(_ allowed: [String]) throws -> [String]? {
        guard case let .array(items)? = raw["layer_types"] else { return nil }
        guard items.count == numHiddenLayers else {
            throw FormatError.badConfig(path: "config.json", reason: "layer_types lists \(items.count) layers, num_hidden_layers is \(numHiddenLayers)")
        }
        return try items.map {
            guard case let .string(type) = $0, allowed.contains(type) else {
                throw FormatError.badConfig(path: "config.json", reason: "layer_types: \($0) is none of \(allowed.map { "\"\($0)\"" }.joined(separator: ", "))")
            }
            return type
        }
    }

    /// Qwen's windows: `use_sliding_window` (default false) turns `sliding_window` on for the layers `layer_types`
    /// names, or without it those `defaultSliding(i, max_window_layers)` picks (default 28), as each Qwen config
    /// class fills `layer_types` in.
    func qwenSlidingWindows(_ defaultSliding: (Int, Int) -> Bool) throws -> [Int?] {
        let maxWindowLayers = try extraInt("max_window_layers") ?? 28
        return try slidingWindows(enabled: try extraBool("use_sliding_window") ?? false) { defaultSliding($0, maxWindowLayers) }
    }

    /// Refuses settings the engine does not implement, rather than running them wrongly.
    public func requireSupported() throws {
        if hiddenAct != "silu" { throw ModelError.unsupported("hidden_act '\(hiddenAct)' is not supported (only silu)") }
        if case .bool(true)? = raw["mlp_bias"] { throw ModelError.unsupported("mlp_bias: true is not supported") }
    }

    /// Layouts of `numHiddenLayers` layers with the given attention options; the feed-forward part is MoE
    /// where `isSparseLayer` says so (`moe(prefix, i)`), else a dense MLP of width `intermediate_size`.
    func layerLayouts(qkvBias: Bool, outputBias: Bool, qkNorm: Attention.QKNorm = .none, clip: Double? = nil,
                      moe: ((String) -> MoELayout)? = nil) -> [LayerLayout] {
        (0..<numHiddenLayers).map { i in
            let p = "model.layers.\(i)"
            let ff: FeedForwardLayout
            if let moe, isSparseLayer(i) { ff = .moe(moe(p)) } else { ff = .dense(prefix: "\(p).mlp", width: intermediateSize) }
            return LayerLayout(prefix: p, qkvBias: qkvBias, outputBias: outputBias, qkNorm: qkNorm, clip: clip, feedForward: ff)
        }
    }
}

/// A pre-norm transformer block: `h += attention(norm(h)); h += feedForward(norm(h))`.
public struct DecoderLayer: Sendable {
    public enum FeedForward: Sendable {
        case dense(MLP)
        case moe(MoEBlock)
    }

    public let inputNorm: [Float]
    public let attention: SelfAttention
    public let postAttentionNorm: [Float]
    public let feedForward: FeedForward

    public init(inputNorm: [Float], attention: SelfAttention, postAttentionNorm: [Float], feedForward: FeedForward) {
        self.inputNorm = inputNorm; self.attention = attention
        self.postAttentionNorm = postAttentionNorm; self.feedForward = feedForward
    }

    /// Reads the layer `layout` describes.
    public init(_ c: ModelConfig, _ w: WeightReader, layout l: LayerLayout) throws {
        let attention: SelfAttention
        if let linear = l.linear {
            attention = .linear(try GatedDeltaNet(c, w, prefix: l.attentionPrefix, layout: linear))
        } else if let latent = l.latent {
            attention = .latent(try LatentAttention(c, w, prefix: l.attentionPrefix, layout: latent))
        } else {
            attention = .grouped(try Attention(c, w, prefix: l.attentionPrefix, qkvBias: l.qkvBias, outputBias: l.outputBias,
                                               qkNorm: l.qkNorm, clip: l.clip, outputGate: l.outputGate, normOffset: l.normOffset,
                                               sinks: l.sinks, window: l.window))
        }
        let ff: FeedForward
        switch l.feedForward {
        case let .dense(prefix, width):
            ff = .dense(try MLP(w, prefix: prefix, hidden: c.hiddenSize, width: width))
        case let .moe(m):
            var shared: MLP?, sharedGate: [Float]?
            if let sharedWidth = m.sharedWidth {
                shared = try MLP(w, prefix: m.sharedPrefix, hidden: c.hiddenSize, width: sharedWidth)
                if m.sharedGated {
                    sharedGate = try FloatEncoding.floats(w.store.tensor(m.sharedGateName, shape: [1, c.hiddenSize]))
                }
            }
            let n = m.expertNames
            var experts = try MoEBlock.readExperts(w, prefix: "\(m.prefix).experts", count: m.experts, hidden: c.hiddenSize,
                                                   width: m.width, names: (n.gate, n.up, n.down))
            if m.expertBias {
                try MoEBlock.readExpertBiases(w, prefix: "\(m.prefix).experts", into: &experts, hidden: c.hiddenSize, width: m.width)
            }
            for e in experts.indices { experts[e].activation = m.activation }
            ff = .moe(MoEBlock(router: try ExpertRouter(w, layout: m, hidden: c.hiddenSize), experts: experts,
                               sharedExpert: shared, sharedExpertGate: sharedGate))
        }
        self.init(inputNorm: try w.norm("\(l.prefix).input_layernorm.weight", count: c.hiddenSize, offset: l.normOffset),
                  attention: attention,
                  postAttentionNorm: try w.norm("\(l.prefix).post_attention_layernorm.weight", count: c.hiddenSize, offset: l.normOffset),
                  feedForward: ff)
    }
}

/// A layer's token mixer: grouped-query attention (most architectures), multi-head latent attention (DeepSeek)
/// or a Gated DeltaNet (the linear-attention layers of Qwen3-Next / 3.5). `layer` indexes the pass's caches:
/// the KV layers for attention, the recurrent-state layers for a DeltaNet.
public enum SelfAttention: Sendable {
    case grouped(Attention)
    case latent(LatentAttention)
    case linear(GatedDeltaNet)

    func forward(_ x: UnsafePointer<Float>, _ layout: PassLayout, layer: Int, rope: RotaryEmbedding,
                 residual: UnsafeMutablePointer<Float>, hidden: Int, ws: Workspace, pool: WorkerPool) {
        switch self {
        case .grouped(let a): a.forward(x, layout, layer: layer, rope: rope, residual: residual, hidden: hidden, ws: ws, pool: pool)
        case .latent(let a): a.forward(x, layout, layer: layer, rope: rope, residual: residual, hidden: hidden, ws: ws, pool: pool)
        case .linear(let a): a.forward(x, layout, layer: layer, residual: residual, hidden: hidden, ws: ws, pool: pool)
        }
    }
}
