import ArgumentParser
import Foundation
import MoETraining

/// `--lora-rank R [--lora-alpha A] [--lora-targets …]`, shared by `moe sft` and `moe dpo`.
struct LoRAOptions: ParsableArguments {
    @Option(help: "Train LoRA adapters of this rank instead of all weights; OUT then holds PEFT's adapter_config.json and adapter_model.safetensors (merge with `moe lora merge`).")
    var loraRank: Int?
    @Option(help: "LoRA α (PEFT's lora_alpha): the adapters' update is scaled by α/rank.") var loraAlpha: Double = 8
    @Option(help: "Weights LoRA adapts: module names or name suffixes, comma-separated (attention's by default).")
    var loraTargets: String = LoRASettings.defaultTargets.joined(separator: ",")

    func validate() throws {
        if let r = loraRank, r <= 0 { throw ValidationError("--lora-rank must be positive (got \(r))") }
        if !(loraAlpha > 0 && loraAlpha.isFinite) { throw ValidationError("--lora-alpha must be positive") }
    }

    /// The adapters for `model` (nil without --lora-rank), with a line on stderr saying what is trained.
    func adapters(for model: TrainableModel, base: String, seed: UInt64) throws -> LoRAAdapters? {
        guard let rank = loraRank else { return nil }
        let targets = loraTargets.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let lora = try LoRAAdapters(model: model, settings: LoRASettings(rank: rank, alpha: loraAlpha, targets: targets, seed: seed),
                                    baseModel: base)
        printError(String(format: "LoRA: rank %d, α %g on %d weights: %d trainable parameters (%.2f%% of %d)", rank, loraAlpha,
                          lora.modules.count, lora.parameterCount, 100 * Double(lora.parameterCount) / Double(model.store.parameterCount),
                          model.store.parameterCount))
        return lora
    }
}

/// `moe lora merge`.
struct LoRACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lora",
        abstract: "LoRA adapters (PEFT's layout): merge one into its base model.",
        subcommands: [LoRAMerge.self])
}

struct LoRAMerge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge a LoRA adapter into its base model: W = W + (lora_alpha/r)·B·A, written as a full Hugging Face directory.",
        discussion: """
            --adapter: a directory with adapter_config.json and adapter_model.safetensors, as `moe sft/dpo --lora-rank` \
            or PEFT's save_pretrained write them (plain LoRA: no DoRA, rsLoRA or per-module ranks). Every adapter tensor \
            must fit a weight of --model. OUT receives config.json, model.safetensors (f32), generation_config.json and \
            the base's tokenizer files.
            """)

    @Option(help: "The base model (a Hugging Face directory).") var model: String
    @Option(help: "The adapter directory.") var adapter: String
    @Option(help: "Output directory.") var out: String
    @Option(help: "Worker threads (default: the number of cores).") var threads: Int?

    func run() throws {
        let merged = try LoRAAdapters.merge(base: model, adapter: adapter, out: out,
                                            threads: threads ?? ProcessInfo.processInfo.activeProcessorCount)
        print("merged \(adapter) into \(model) (\(merged.store.parameterCount) parameters); wrote \(out)")
    }
}
