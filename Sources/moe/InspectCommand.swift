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
        print("layers:           \(c.numHiddenLayers) (\(s.moeLayers) MoE, \(s.denseLayers) dense)")
        print("hidden:           \(c.hiddenSize); heads \(c.numAttentionHeads) / kv heads \(c.numKeyValueHeads), head_dim \(c.headDim)")
        if c.isMoE {
            let width = c.moeIntermediateSize ?? c.intermediateSize
            var line = "experts:          \(c.numExperts), top-\(c.numExpertsPerToken), width \(width)"
            if let shared = c.sharedExpertIntermediateSize, shared > 0 { line += ", shared expert width \(shared)" }
            print(line)
        }
        print("vocabulary:       \(c.vocabSize)\(c.tieWordEmbeddings ? " (tied embeddings)" : "")")
        print("context:          \(model.contextLength); rope \(c.rope.type), theta \(c.rope.theta)")
        print("parameters:       \(count(s.totalParameters)) total, \(count(s.activeParameters)) active per token")
        print("bytes per token:  \(bytes(s.bytesPerToken)) of weights read per decoded token")
        print("memory:           \(bytes(s.weightBytes)) weights + \(bytes(s.kvCacheBytes)) KV cache (full context, f32) ≈ \(bytes(s.memoryNeeded(model))) with activations")
    }
}
