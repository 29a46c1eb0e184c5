import Foundation
import MoEFormats
import MoEKernels

/// gpt-oss (`gpt_oss`): attention with biases and a learned sink logit per head, sliding-window (`sliding_window`,
/// 128) and full attention layers alternating (`layer_types`), yarn RoPE; every layer MoE: a router with a bias whose
/// top-k logits are softmaxed (the same weights as softmax → top-k → renormalise), experts with biases and the clamped
/// SwiGLU (`swiglu_alpha` 1.702, `swiglu_limit` 7). The hub's checkpoints keep the experts fused as transformers does
/// (`gate_up_proj` with gate and up columns interleaved) and in MXFP4 (`*_blocks` / `*_scales`); `GptOssExperts`
/// shows them as the engine reads experts.
enum GptOss: Architecture {
    static let modelType = "gpt_oss"

    static func layout(_ c: ModelConfig, has: (String) -> Bool) throws -> [LayerLayout] {
        let windows = try c.slidingWindows(defaultWindow: 128) { $0 % 2 == 0 }   // transformers: even layers slide
        let activation = GatedActivation.clampedSwiGLU(alpha: Float(try c.extraDouble("swiglu_alpha") ?? 1.702),
                                                       limit: Float(try c.extraDouble("swiglu_limit") ?? 7))
        let bias = c.attentionBias ?? true
        return (0..<c.numHiddenLayers).map { i in
            let p = "model.layers.\(i)"
            var m = MoELayout(prefix: "\(p).mlp", experts: c.numExperts, topK: c.numExpertsPerToken, width: c.intermediateSize,
                              normTopKProb: true, expertNames: .swiGLU)
            m.routerModule = has("\(p).mlp.gate.weight") ? "gate" : "router"
            m.routerBias = true
            m.expertBias = true
            m.activation = activation
            var l = LayerLayout(prefix: p, qkvBias: bias, outputBias: bias, qkNorm: .none, clip: nil, feedForward: .moe(m))
            l.sinks = true
            l.window = windows[i]
            return l
        }
    }

    static func weights(_ store: any TensorStore, _ c: ModelConfig) throws -> any TensorStore {
        let experts = "model.layers.0.mlp.experts.gate_up_proj"
        return store.contains(experts) || store.contains(experts + "_blocks") ? GptOssExperts(store, c) : store
    }

    /// Trained experts (`{experts}.E.{gate,up,down}_proj.{weight,bias}`) fused back as the hub keeps them:
    /// `gate_up_proj` [E, hidden, 2·width] with gate and up columns interleaved and `down_proj` [E, width, hidden]
    /// (transposed), or with `mxfp4` as `*_blocks` / `*_scales` in their [E, out, in] layout; biases
    /// `gate_up_proj_bias` [E, 2·width] (interleaved) and `down_proj_bias` [E, hidden].
    static func hubTensors(names: [String], values: (String) -> UnsafePointer<Float>, _ c: ModelConfig, mxfp4: Bool)
        -> (replaced: Set<String>, tensors: [HubTensor]) {
        let E = c.numExperts, H = c.hiddenSize, I = c.intermediateSize
        var replaced = Set<String>(), tensors: [HubTensor] = []
        for layer in 0..<c.numHiddenLayers {
            let p = "model.layers.\(layer).mlp.experts"
            guard names.contains("\(p).0.gate_proj.weight") else { continue }
            // [E, out, in] rows: gate_up's 2j = gate j, 2j + 1 = up j; down's as they are.
            var gateUp = [Float](repeating: 0, count: E * 2 * I * H), down = [Float](repeating: 0, count: E * H * I)
            var gateUpBias = [Float](repeating: 0, count: E * 2 * I), downBias = [Float](repeating: 0, count: E * H)
            for e in 0..<E {
                let g = values("\(p).\(e).gate_proj.weight"), u = values("\(p).\(e).up_proj.weight")
                let d = values("\(p).\(e).down_proj.weight")
                let gb = values("\(p).\(e).gate_proj.bias"), ub = values("\(p).\(e).up_proj.bias"), db = values("\(p).\(e).down_proj.bias")
                for j in 0..<I {
                    for i in 0..<H {
                        gateUp[(e * 2 * I + 2 * j) * H + i] = g[j * H + i]
                        gateUp[(e * 2 * I + 2 * j + 1) * H + i] = u[j * H + i]
                    }
                    gateUpBias[e * 2 * I + 2 * j] = gb[j]
                    gateUpBias[e * 2 * I + 2 * j + 1] = ub[j]
                }
                for i in 0..<(H * I) { down[e * H * I + i] = d[i] }
                for i in 0..<H { downBias[e * H + i] = db[i] }
                for part in ["gate_proj", "up_proj", "down_proj"] { replaced.formUnion(["\(p).\(e).\(part).weight", "\(p).\(e).\(part).bias"]) }
            }
            if mxfp4 {
                for (name, rows, cols, v) in [("gate_up_proj", 2 * I, H, gateUp), ("down_proj", H, I, down)] {
                    let groups = cols / 32
                    var blocks = [UInt8](repeating: 0, count: E * rows * groups * 16), scales = [UInt8](repeating: 0, count: E * rows * groups)
                    v.withUnsafeBufferPointer { src in
                        blocks.withUnsafeMutableBufferPointer { b in
                            scales.withUnsafeMutableBufferPointer { s in
                                for r in 0..<(E * rows) {
                                    quantizeMXFP4Row(src.baseAddress! + r * cols, count: cols, blocks: b.baseAddress! + r * groups * 16,
                                                     scales: s.baseAddress! + r * groups)
                                }
                            }
                        }
                    }
                    tensors.append(HubTensor(name: "\(p).\(name)_blocks", shape: [E, rows, groups, 16], bytes: blocks))
                    tensors.append(HubTensor(name: "\(p).\(name)_scales", shape: [E, rows, groups], bytes: scales))
                }
            } else {
                tensors.append(HubTensor(name: "\(p).gate_up_proj", shape: [E, H, 2 * I], values: transposed(gateUp, E, 2 * I, H)))
                tensors.append(HubTensor(name: "\(p).down_proj", shape: [E, I, H], values: transposed(down, E, H, I)))
            }
            tensors.append(HubTensor(name: "\(p).gate_up_proj_bias", shape: [E, 2 * I], values: gateUpBias))
            tensors.append(HubTensor(name: "\(p).down_proj_bias", shape: [E, H], values: downBias))
        }
        return (replaced, tensors)
    }

    /// Each of `count` [rows, cols] matrices transposed to [cols, rows].
    private static func transposed(_ v: [Float], _ count: Int, _ rows: Int, _ cols: Int) -> [Float] {
        var out = [Float](repeating: 0, count: v.count)
        for m in 0..<count { for r in 0..<rows { for c in 0..<cols { out[m * rows * cols + c * rows + r] = v[m * rows * cols + r * cols + c] } } }
        return out
    }
}

/// A gpt-oss checkpoint's experts as the engine reads experts (GGUF's layout): one stacked matrix per projection in
/// `nn.Linear` layout, `{experts}.gate_proj` / `up_proj` [E, width, hidden] and `down_proj` [E, hidden, width], with
/// biases `{experts}.gate_proj_bias` … [E, rows]. The hub stores `gate_up_proj` with gate and up interleaved
/// (columns 2j, 2j+1), as [E, in, out] in bf16 or as MXFP4 [E, out, in/32] blocks (which `repackMXFP4Row` turns
/// into ggml's block layout, the same 4.25 bits a weight: never widened). Each matrix is made once, on first use,
/// and the file's pages it came from are let go.
final class GptOssExperts: TensorStore, @unchecked Sendable {
    let base: any TensorStore
    let hidden: Int, width: Int, experts: Int
    private var made: [String: TensorData] = [:]
    private let lock = NSLock()

    /// Owns the rearranged copies.
    private final class Copies: @unchecked Sendable {
        var buffers: [UnsafeMutableRawPointer] = []
        deinit { for b in buffers { b.deallocate() } }
    }
    private let copies = Copies()

    init(_ base: any TensorStore, _ c: ModelConfig) {
        self.base = base
        hidden = c.hiddenSize; width = c.intermediateSize; experts = c.numExperts
    }

    var source: String { base.source }
    var fileCount: Int { base.fileCount }
    var byteCount: Int { base.byteCount }
    var tensorNames: [String] {
        var names: [String] = []
        for n in base.tensorNames {
            if let p = Self.expertsPrefix(n, "gate_up_proj") ?? Self.expertsPrefix(n, "gate_up_proj_blocks") {
                names += ["\(p).gate_proj", "\(p).up_proj"]
            } else if let p = Self.expertsPrefix(n, "gate_up_proj_bias") {
                names += ["\(p).gate_proj_bias", "\(p).up_proj_bias"]
            } else if let p = Self.expertsPrefix(n, "down_proj_blocks") {
                names.append("\(p).down_proj")
            } else if !n.hasSuffix("_scales") {
                names.append(n)
            }
        }
        return names.sorted()
    }

    /// `name` without `.experts.{suffix}` and with `.experts`, when it ends so.
    private static func expertsPrefix(_ name: String, _ suffix: String) -> String? {
        name.hasSuffix(".experts.\(suffix)") ? String(name.dropLast(suffix.count + 1)) : nil
    }

    func contains(_ name: String) -> Bool {
        if let (p, which) = split(name) {
            switch which {
            case "gate_proj", "up_proj": return base.contains("\(p).gate_up_proj") || base.contains("\(p).gate_up_proj_blocks")
            case "down_proj": return base.contains("\(p).down_proj") || base.contains("\(p).down_proj_blocks")
            case "gate_proj_bias", "up_proj_bias": return base.contains("\(p).gate_up_proj_bias")
            case "gate_up_proj", "gate_up_proj_bias": return false   // (shown split)
            default: if which.hasSuffix("_blocks") || which.hasSuffix("_scales") { return false }
            }
        }
        return base.contains(name)
    }

    private func split(_ name: String) -> (String, String)? {
        guard let r = name.range(of: ".experts.", options: .backwards) else { return nil }
        return (String(name[..<r.lowerBound]) + ".experts", String(name[r.upperBound...]))
    }

    func tensor(_ name: String) throws -> TensorData {
        guard let (p, which) = split(name),
              ["gate_proj", "up_proj", "down_proj", "gate_proj_bias", "up_proj_bias"].contains(which) else {
            return try base.tensor(name)
        }
        lock.lock(); defer { lock.unlock() }
        if let t = made[name] { return t }
        let t: TensorData
        switch which {
        case "gate_proj", "up_proj": t = try matrix(name, from: "\(p).gate_up_proj", rows: width, cols: hidden, pick: which == "gate_proj" ? 0 : 1)
        case "down_proj": t = try matrix(name, from: "\(p).down_proj", rows: hidden, cols: width, pick: nil)
        default: t = try bias(name, from: "\(p).gate_up_proj_bias", pick: which == "gate_proj_bias" ? 0 : 1)
        }
        made[name] = t
        return t
    }

    private func allocate(_ bytes: Int) -> UnsafeMutableRawPointer {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
        copies.buffers.append(p)
        return p
    }

    /// [E, rows, cols] in `nn.Linear` layout from `stored`: its rows 2j + pick (interleaved gate/up) or all of them
    /// (`pick` nil), from MXFP4 blocks or from a float tensor stored [E, cols, rows·(pick == nil ? 1 : 2)].
    private func matrix(_ name: String, from stored: String, rows: Int, cols: Int, pick: Int?) throws -> TensorData {
        let storedRows = pick == nil ? rows : 2 * rows
        let E = experts
        if base.contains(stored + "_blocks") {
            guard cols % 32 == 0 else { throw ModelError.badInput("\(stored)_blocks: MXFP4 rows of \(cols) values are not whole blocks of 32") }
            let groups = cols / 32
            let blocks = try base.tensor(stored + "_blocks", shape: [E, storedRows, groups, 16])
            let scales = try base.tensor(stored + "_scales")
            guard scales.shape == [E, storedRows, groups] else {
                throw ModelError.badInput("\(stored)_scales has shape \(scales.shape); its blocks \(blocks.shape) call for \([E, storedRows, groups])")
            }
            guard blocks.dtype == .u8, scales.dtype == .u8 else {
                throw ModelError.badInput("\(stored)_blocks / _scales must be U8 (found \(blocks.dtype.rawValue) / \(scales.dtype.rawValue))")
            }
            let rowBytes = groups * 17
            let out = allocate(E * rows * rowBytes)
            let b = blocks.pointer.assumingMemoryBound(to: UInt8.self), s = scales.pointer.assumingMemoryBound(to: UInt8.self)
            for e in 0..<E {
                for r in 0..<rows {
                    let source = e * storedRows + (pick.map { 2 * r + $0 } ?? r)
                    repackMXFP4Row(blocks: b + source * groups * 16, scales: s + source * groups, groups: groups,
                                   into: out + (e * rows + r) * rowBytes)
                }
            }
            base.releasePages(of: blocks)
            return TensorData(name: name, dtype: .u8, shape: [E, rows, cols], pointer: UnsafeRawPointer(out),
                              byteCount: E * rows * rowBytes, owner: copies, quant: .mxfp4)
        }
        let t = try base.tensor(stored, shape: [E, cols, storedRows])
        let size = t.dtype.byteSize
        guard [DType.f32, .f16, .bf16].contains(t.dtype) else {
            throw FormatError.unsupportedDType(tensor: stored, dtype: t.dtype.rawValue)
        }
        // A transposing copy in tiles of 64 × 64, so that both sides stay in cache.
        let out = allocate(E * rows * cols * size)
        for e in 0..<E {
            let src = t.pointer + e * cols * storedRows * size, dst = out + e * rows * cols * size
            for r0 in stride(from: 0, to: rows, by: 64) {
                for c0 in stride(from: 0, to: cols, by: 64) {
                    for r in r0..<min(r0 + 64, rows) {
                        let column = pick.map { 2 * r + $0 } ?? r
                        for c in c0..<min(c0 + 64, cols) {
                            (dst + (r * cols + c) * size).copyMemory(from: src + (c * storedRows + column) * size, byteCount: size)
                        }
                    }
                }
            }
        }
        base.releasePages(of: t)
        return TensorData(name: name, dtype: t.dtype, shape: [E, rows, cols], pointer: UnsafeRawPointer(out),
                          byteCount: E * rows * cols * size, owner: copies)
    }

    /// Every other column (2j + pick) of the interleaved [E, 2·width] gate/up bias, as f32 [E, width].
    private func bias(_ name: String, from stored: String, pick: Int) throws -> TensorData {
        let values = try FloatEncoding.floats(base.tensor(stored, shape: [experts, 2 * width]))
        let out = allocate(experts * width * 4).bindMemory(to: Float.self, capacity: experts * width)
        for e in 0..<experts { for j in 0..<width { out[e * width + j] = values[e * 2 * width + 2 * j + pick] } }
        return TensorData(name: name, dtype: .f32, shape: [experts, width], pointer: UnsafeRawPointer(out),
                          byteCount: experts * width * 4, owner: copies)
    }
}
