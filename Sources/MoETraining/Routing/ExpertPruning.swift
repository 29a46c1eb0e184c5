import Foundation
import MoEFormats
import MoEModel

/// Expert pruning (`moe prune`): each MoE layer keeps the experts that carry the most routing weight on calibration
/// text, and the checkpoint is written again without the others — their weights, and their rows of the router (and
/// of its biases) — with the expert count in config.json lowered. A token then chooses among the kept experts only;
/// where the dropped ones never received a token, nothing changes at all.
public enum ExpertPruning {
    public struct Plan: Codable, Sendable {
        /// The decoder layers that are MoE layers.
        public var layers: [Int]
        /// Per MoE layer: the experts kept (old ids, ascending: expert kept[i] becomes expert i).
        public var kept: [[Int]]
        /// Per MoE layer: the share of the calibration text's routing weight the kept experts carried.
        public var massKept: [Double]
        public var experts: Int
        enum CodingKeys: String, CodingKey { case layers, kept, experts; case massKept = "mass_kept" }
    }

    /// The `keep` experts of each layer with the most routing weight in `trace` (ties: more choices, then the lower id).
    public static func plan(_ trace: RoutingTrace, keep: Int) throws -> Plan {
        guard (1...trace.experts).contains(keep) else {
            throw TrainingError.badArgument("--keep must be between 1 and the \(trace.experts) experts a layer has (got \(keep))")
        }
        let L = trace.moeLayers.count, K = trace.topK
        var mass = [[Double]](repeating: .init(repeating: 0, count: trace.experts), count: L)
        var count = mass
        for t in 0..<trace.tokens {
            for l in 0..<L {
                for j in 0..<K {
                    let i = (t * L + l) * K + j, e = Int(trace.chosen[i])
                    if e >= 0 { mass[l][e] += Double(trace.weights[i]); count[l][e] += 1 }
                }
            }
        }
        var kept: [[Int]] = [], massKept: [Double] = []
        for l in 0..<L {
            let ranked = (0..<trace.experts).sorted { (mass[l][$0], count[l][$0], -$0) > (mass[l][$1], count[l][$1], -$1) }
            let chosen = Array(ranked.prefix(keep)).sorted()
            kept.append(chosen)
            let total = mass[l].reduce(0, +)
            massKept.append(total > 0 ? chosen.reduce(0) { $0 + mass[l][$1] } / total : 0)
        }
        return Plan(layers: trace.moeLayers, kept: kept, massKept: massKept, experts: trace.experts)
    }

    /// Writes the Hugging Face checkpoint in `directory` pruned by `plan` to `out`: model.safetensors, config.json,
    /// and the directory's other files (tokenizer, templates, generation config; not training's charts and logs).
    public static func write(directory: String, plan: Plan, to out: String) throws {
        guard !GGUFCheckpoint.isGGUF(directory) else {
            throw TrainingError.badArgument("moe prune writes Hugging Face checkpoints: give a model directory, not a GGUF file")
        }
        var config = try ModelConfig(directory: directory)
        guard config.raw["text_config"] == nil else {
            throw TrainingError.badArgument("\(directory) keeps its language model under text_config (a multimodal wrapper): not prunable yet")
        }
        let architecture = try ArchitectureRegistry.architecture(for: config.modelType)
        let typed = try architecture.withDefaults(config)
        let store = try Checkpoint(directory: directory)
        let view = LanguageModelView.unwrapping(store)
        let layouts = try architecture.layout(typed, has: view.contains)
        var moe: [Int: (layout: MoELayout, kept: [Int])] = [:]
        for (i, layer) in layouts.enumerated() {
            guard case .moe(let m) = layer.feedForward else { continue }
            guard let slot = plan.layers.firstIndex(of: i) else { throw TrainingError.badArgument("the plan has no experts for MoE layer \(i)") }
            guard m.router.groups == 1 else {
                throw TrainingError.badArgument("layer \(i) routes within \(m.router.groups) expert groups (n_group): pruning would break the groups")
            }
            guard m.experts == plan.experts else { throw TrainingError.badArgument("layer \(i) has \(m.experts) experts, the plan \(plan.experts)") }
            moe[i] = (m, plan.kept[slot])
        }
        guard !moe.isEmpty else { throw TrainingError.badArgument("\(directory) has no MoE layers to prune") }
        let keep = plan.kept.first?.count ?? 0

        var entries: [SafeTensorsWriter.Entry] = []
        for raw in store.tensorNames {
            let name = view === store ? raw : (raw.hasPrefix(LanguageModelView.prefix) ? "model." + raw.dropFirst(LanguageModelView.prefix.count) : raw)
            let tensor = try store.tensor(raw)
            // The layer a name belongs to: model.layers.N.… (layers past the last are a multi-token-prediction module:
            // dropped, since its experts are not planned).
            var layer: Int?
            if name.hasPrefix("model.layers."), let n = Int(name.dropFirst("model.layers.".count).prefix { $0.isNumber }) { layer = n }
            if let layer, layer >= typed.numHiddenLayers { continue }
            guard let layer, let (m, kept) = moe[layer] else { entries.append(copy(tensor, as: raw)); continue }
            if [m.routerName, m.routerBiasName, m.selectionBiasName].contains(name) {
                entries.append(try select(tensor, rows: kept, experts: m.experts, as: raw))
            } else if name.hasPrefix(m.prefix + ".experts.") {
                let rest = name.dropFirst((m.prefix + ".experts.").count)
                if let e = Int(rest.prefix { $0.isNumber }), rest.dropFirst(String(e).count).first == "." {
                    // One expert's own tensor: renumbered, or dropped.
                    guard let new = kept.firstIndex(of: e) else { continue }
                    let renamed = raw.dropLast(rest.count) + "\(new)" + rest.dropFirst(String(e).count)
                    entries.append(copy(tensor, as: String(renamed)))
                } else {
                    // Every expert stacked along the first dimension (fused, MXFP4 blocks and scales, biases).
                    entries.append(try select(tensor, rows: kept, experts: m.experts, as: raw))
                }
            } else {
                entries.append(copy(tensor, as: raw))
            }
        }

        for key in ["num_experts", "num_local_experts", "n_routed_experts"] where config.raw[key] != nil { config.raw[key] = .number(Double(keep)) }
        for key in ["num_experts_per_tok", "experts_per_token"] {
            if case .number(let k)? = config.raw[key], Int(k) > keep { config.raw[key] = .number(Double(keep)) }
        }
        if config.raw["num_nextn_predict_layers"] != nil { config.raw["num_nextn_predict_layers"] = .number(0) }

        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try SafeTensorsWriter.write(entries, to: (out as NSString).appendingPathComponent("model.safetensors"))
        try AtomicFile.write(try config.jsonData(), to: (out as NSString).appendingPathComponent("config.json"))
        for file in try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        where !file.hasSuffix(".safetensors") && file != "model.safetensors.index.json" && file != "config.json"
            && !["svg", "png", "html", "jsonl", "log"].contains((file as NSString).pathExtension) {   // (training's charts and logs)
            var isDirectory: ObjCBool = false
            let from = (directory as NSString).appendingPathComponent(file), to = (out as NSString).appendingPathComponent(file)
            guard FileManager.default.fileExists(atPath: from, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            if FileManager.default.fileExists(atPath: to) { try FileManager.default.removeItem(atPath: to) }
            try FileManager.default.copyItem(atPath: from, toPath: to)
        }
    }

    static func copy(_ t: TensorData, as name: String) -> SafeTensorsWriter.Entry {
        SafeTensorsWriter.Entry(name: name, dtype: t.dtype, shape: t.shape) { dst in
            dst.baseAddress!.copyMemory(from: t.pointer, byteCount: t.byteCount)
        }
    }

    /// The rows `rows` of a tensor whose first dimension is the `experts` experts.
    static func select(_ t: TensorData, rows: [Int], experts: Int, as name: String) throws -> SafeTensorsWriter.Entry {
        guard t.shape.first == experts, t.byteCount % experts == 0 else {
            throw TrainingError.badArgument("\(name) has shape \(t.shape): expected \(experts) experts along its first dimension")
        }
        let rowBytes = t.byteCount / experts
        return SafeTensorsWriter.Entry(name: name, dtype: t.dtype, shape: [rows.count] + t.shape.dropFirst()) { dst in
            for (i, r) in rows.enumerated() {
                (dst.baseAddress! + i * rowBytes).copyMemory(from: t.pointer + r * rowBytes, byteCount: rowBytes)
            }
        }
    }
}
