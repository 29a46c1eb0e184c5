import ArgumentParser
import Foundation
import MoETokenizer

/// `moe tokenizer …`: tokenizer tools.
struct TokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Tokenizer tools: train a byte-level BPE tokenizer.",
        subcommands: [TokenizerTrain.self])
}

/// `moe tokenizer train --input FILE… --vocab-size N --out DIR`: trains a byte-level BPE tokenizer
/// (Qwen2-style pre-tokenizer) and writes tokenizer.json + tokenizer_config.json.
struct TokenizerTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a byte-level BPE tokenizer on text files, as Hugging Face tokenizers' BpeTrainer does.",
        discussion: """
            Reads the UTF-8 files line by line, cuts out the special tokens, normalizes to NFC, splits with \
            Qwen2's pre-tokenizer pattern and learns merges on the bytes (all 256 bytes are the base \
            vocabulary): the most frequent pair first, ties to the pair of older tokens, as HF's trainer. \
            Writes OUT/tokenizer.json (loads with HF tokenizers and `moe tokenize`) and \
            OUT/tokenizer_config.json (bos/eos/pad = <|endoftext|>). The vocabulary size counts the special \
            tokens, whose ids follow the BPE tokens.
            """)

    @Option(name: .customLong("input"), parsing: .upToNextOption, help: "Text files to train on (UTF-8).")
    var inputs: [String] = []

    @Option(help: "Vocabulary size, special tokens included (at least 256 + the number of special tokens).")
    var vocabSize: Int

    @Option(help: "Output directory (created if missing).")
    var out: String

    @Option(help: "Merge only pairs seen at least this many times.")
    var minFrequency: Int = 2

    @Option(help: "Comma-separated special tokens.")
    var specialTokens: String = "<|endoftext|>,<|im_start|>,<|im_end|>"

    @Option(help: "Pre-tokenizer Split pattern (default: Qwen2's).")
    var pattern: String = BPETrainer.qwen2Pattern

    @Option(help: "model_max_length of tokenizer_config.json.")
    var modelMaxLength: Int = 32768

    @Flag(help: "No progress bar.")
    var quiet = false

    func validate() throws {
        if inputs.isEmpty { throw ValidationError("give at least one --input FILE") }
        if minFrequency < 0 { throw ValidationError("--min-frequency must not be negative") }
    }

    func run() throws {
        let specials = specialTokens.split(separator: ",", omittingEmptySubsequences: true).map(String.init)
        var trainer = BPETrainer(vocabSize: vocabSize, specialTokens: specials, pattern: pattern, minFrequency: minFrequency)
        trainer.modelMaxLength = modelMaxLength
        let start = Date()
        // A TokenizerError names the file or setting at fault; ArgumentParser prints it and exits with status 1.
        try trainer.validate()
        var reading: ProgressBar?
        var merging: ProgressBar?
        let trained = try trainer.train(
            files: inputs,
            progress: { done, total in
                // Drawn on a terminal, or into a log for inputs large enough to take a while.
                guard !quiet, ProgressBar.stderrIsTerminal || total >= 32 << 20 else { return }
                if reading == nil { reading = ProgressBar(label: "reading", unit: .bytes) }
                reading?.update(done: done, total: total)
                if done >= total { reading?.finish() }
            },
            mergeProgress: { done, total in
                guard !quiet, reading != nil else { return }
                if merging == nil { merging = ProgressBar(label: "merges", unit: .items) }
                merging?.update(done: done, total: total)
            })
        merging?.finish()
        try trained.write(to: out)
        let seconds = Date().timeIntervalSince(start)
        let note = trained.vocabSize < vocabSize ? " (stopped early: no other pair is seen \(minFrequency) times)" : ""
        print("""
            wrote \((out as NSString).appendingPathComponent("tokenizer.json")): vocabulary \(trained.vocabSize)\(note), \
            \(trained.merges.count) merges, \(trained.wordCount) distinct words, \(String(format: "%.2f", seconds)) s
            """)
    }
}
