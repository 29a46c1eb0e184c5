import ArgumentParser
import Foundation
import MoEModel

/// `moe inspect`: what a model is and what it costs to run.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model: architecture, layers, experts, parameters (total and active per token), bytes read per token, memory.")

    @OptionGroup var options: ModelOptions

    func run() throws {
        let model = try options.load()
        let c = model.config
        let s = ModelSummary(model)
        func count(_ n: Int) -> String {
            n >= 1_000_000_000 ? String(format: "%.2fB", Double(n) / 1e9)
                : n >= 1_000_000 ? String(format: "%.2fM", Double(n) / 1e6)
                : n >= 1_000 ? String(format: "%.1fK", Double(n) / 1e3) : "\(n)"
        }
        func bytes(_ n: Int) -> String {
            n >= 1 << 30 ? String(format: "%.2f GiB", Double(n) / Double(1 << 30))
                : n >= 1 << 20 ? String(format: "%.1f MiB", Double(n) / Double(1 << 20))
                : String(format: "%.1f KiB", Double(n) / 1024)
        }
        let dtypes = Set(model.checkpoint.tensorNames.compactMap { try? model.checkpoint.tensor($0).typeName }).sorted()
        print("model:            \(model.directory)")
        print("architecture:     \(c.modelType)")
        print("weights:          \(dtypes.joined(separator: ", ")) in \(model.checkpoint.fileCount) file(s)")
        let deltaNets = model.recurrentShape?.layers ?? 0
        print("layers:           \(c.numHiddenLayers) (\(s.moeLayers) MoE, \(s.denseLayers) dense"
              + (deltaNets > 0 ? "; \(deltaNets) Gated DeltaNet, \(c.numHiddenLayers - deltaNets) gated attention)" : ")"))
        if case let .latent(a)? = model.layers.first?.attention {
            let l = a.layout
            print("hidden:           \(c.hiddenSize); \(c.numAttentionHeads) heads of multi-head latent attention: latent \(l.kvLoraRank), "
                  + "rope key \(l.ropeDim), nope \(l.nopeDim), value \(l.valueDim)"
                  + (l.qLoraRank.map { ", q low-rank \($0)" } ?? ""))
        } else {
            print("hidden:           \(c.hiddenSize); heads \(c.numAttentionHeads) / kv heads \(c.numKeyValueHeads), head_dim \(c.headDim)")
        }
        let firstMoE = model.layers.lazy.compactMap { layer -> MoEBlock? in
            if case let .moe(block) = layer.feedForward { return block } else { return nil }
        }.first
        if let block = firstMoE, let expert = block.experts.first {
            let r = block.router.layout
            var line = "experts:          \(block.experts.count), top-\(block.topK), width \(expert.width); \(r.scoring.rawValue) router"
            if block.router.selectionBias != nil { line += " + selection bias" }
            if r.groups > 1 { line += ", best \(r.groupsChosen) of \(r.groups) groups" }
            if r.scale != 1 { line += ", weights × \(r.scale)" }
            if let shared = block.sharedExpert {
                line += ", shared expert width \(shared.width)\(block.sharedExpertGate == nil ? "" : " (gated)")"
            }
            print(line)
        }
        print("vocabulary:       \(c.vocabSize)\(c.tieWordEmbeddings ? " (tied embeddings)" : "")")
        if model.mtp != nil {
            print("multi-token pred: a module of depth 1 (layer \(c.numHiddenLayers)): `--speculative mtp` drafts with it")
        }
        print("context:          \(model.contextLength); rope \(c.rope.type), theta \(c.rope.theta)")
        print("parameters:       \(count(s.totalParameters)) total, \(count(s.activeParameters)) active per token")
        print("bytes per token:  \(bytes(s.bytesPerToken)) of weights read per decoded token")
        let kvFloats = model.kvShape.keyWidth + model.kvShape.valueWidth
        print("KV cache:         \(bytes(model.kvBytesPerToken)) per token (\(kvFloats) f32 values per layer"
              + (model.kvShape.valueWidth == 0 ? ": latent + rope key)" : ": keys + values)")
              + (model.recurrentShape == nil ? "" : " in \(model.kvLayers) attention layers"))
        if let r = model.recurrentShape {
            var parts: [String] = []
            if let l = r.layout {
                parts.append("\(r.layers) Gated DeltaNet layers: conv window \(l.convKernel - 1)×\(l.convChannels) + \(l.valueHeads) heads × \(l.keyDim)×\(l.valueDim) f32")
            }
            if r.windowLayers > 0 {
                parts.append("\(r.windowLayers) sliding-window layers: a ring of \(r.window) positions × \(r.windowWidth) keys + values f32")
            }
            print("recurrent state:  \(bytes(model.recurrentStateBytes)) per sequence, whatever its length (\(parts.joined(separator: "; ")))")
        }
        print("memory:           \(bytes(s.weightBytes)) weights + \(bytes(s.kvCacheBytes)) KV cache (full context, f32) ≈ \(bytes(s.memoryNeeded(model))) with activations")
    }
}
