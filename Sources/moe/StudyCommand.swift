import ArgumentParser
import Foundation
import MoEKernels
import MoETokenizer
import MoETraining

/// `moe study moe-vs-dense`: what a mixture of experts buys over a dense model, measured in minutes.
struct Study: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Studies that train models side by side and report what they show.",
        subcommands: [MoEVersusDense.self])

    struct MoEVersusDense: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "moe-vs-dense",
            abstract: "Pre-train a dense model, an MoE and a finer-grained MoE with the same active parameters for the same time each.",
            discussion: """
                On moe demo's corpus and tokenizer: a dense qwen3 whose MLP is as wide as the k experts a token uses, the \
                demo's qwen3_moe (8 experts, top-2) and a finer one (16 experts of half the width, top-4), each \
                pre-trained for --minutes with the same batches, schedule and seed. Prints the active parameters (within \
                5 % of each other), the table and a conclusion; writes OUT/study/study.json, OUT/study/study.svg \
                (validation loss against time and against tokens) and each model (OUT/study/dense, moe, fine-moe).
                """)

        @Option(help: "Output directory.") var out = "study-out"
        @Option(help: "Minutes of pre-training for each model.") var minutes: Double = 3
        @Option(help: "Worker threads (default: the number of cores).") var threads: Int?
        @Option(help: "Random seed.") var seed: UInt64 = 42
        @Flag(help: "A tiny corpus and models, a few steps each (tests).") var quick = false
        @Flag(help: "No progress bar.") var quiet = false

        func validate() throws { if !(minutes > 0) { throw ValidationError("--minutes must be positive") } }

        func run() throws {
            var options = DemoPipeline.Options(out: out)
            options.trainSeconds = minutes * 60
            options.pretrainSteps = nil
            options.quick = quick
            options.seed = seed
            if let threads { options.threads = max(1, threads) }
            let bar = ProgressBar(quiet: quiet)
            let report = try DemoPipeline(options: options, log: { printError($0) }, progress: { bar.show($0) }).runStudy()
            bar.finish()
            print(MoEDenseStudy.table(report), terminator: "")
            print("wrote \(out)/study/study.json and \(out)/study/study.svg")
        }
    }
}
