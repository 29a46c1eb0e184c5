import ArgumentParser

/// The `moe` command line: one file per subcommand.
@main
struct Moe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moe",
        abstract: "swift-moe: mixture-of-experts language models in Swift.",
        subcommands: [Demo.self, Generate.self, Logits.self, Inspect.self, Convert.self, Quantize.self, Tokenize.self, Detokenize.self, Pretrain.self, SFT.self, DPOCommand.self, RewardCommand.self, GRPOCommand.self, PPOCommand.self, LoRACommand.self, Eval.self, Serve.self, UsageCommand.self, Route.self, Prune.self, Study.self, TokenizerCommand.self, Bench.self])
}

/// `moe bench …`: benchmarks (never tests) that print figures beside a peer's.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks: kernels and inference, beside their peers.",
        subcommands: [BenchInfer.self, BenchTrain.self, BenchMakeModel.self, BenchGEMM.self, BenchTokenize.self, BenchGrammar.self, BenchRollouts.self])
}
