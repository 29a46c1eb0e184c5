import ArgumentParser
import Foundation
import MoETokenizer
import MoETraining

/// `moe sft --model DIR --data chat.jsonl --out DIR`: supervised fine-tuning on conversations.
struct SFT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sft",
        abstract: "Supervised fine-tuning on chat conversations (loss on the assistant's tokens only).",
        discussion: """
            --data is JSONL, one {"messages": [{"role": "system"|"user"|"assistant", "content": …}]} per line. Each \
            conversation is rendered with the model's chat template (ChatML when it has none); the loss covers \
            each assistant message's content and the end-of-turn token after it, found in the rendered text (so \
            templates that rewrite earlier turns, as Qwen3's does with reasoning, still work). One conversation per \
            row, padded: no attention across examples. Conversations longer than --seq-len are left out (counted). \
            OUT receives the model (a Hugging Face directory), checkpoints, metrics.jsonl and loss.svg as \
            `moe pretrain` writes them. The MoE balance losses stay on. With --lora-rank only LoRA adapters are \
            trained (the base weights stay as they are) and OUT holds the adapter in PEFT's layout instead of the model.
            """)

    @Option(help: "The model to fine-tune (a Hugging Face directory with tokenizer.json).") var model: String
    @Option(help: "Conversations, JSONL.") var data: String
    @Option(help: "Output directory.") var out: String
    @OptionGroup var training: TrainingOptions
    @OptionGroup var mtp: MTPOptions
    @OptionGroup var lora: LoRAOptions
    @OptionGroup var runOptions: RunOptions

    func run() throws {
        signal(SIGXFSZ, SIG_IGN)
        try TrainingSetup.prepareOutput(out)
        let tokenizer = try Tokenizer(directory: model)
        let template = try tokenizer.chatTemplateOrChatML()
        // LoRA keeps the base weights frozen, a multi-token-prediction module's among them: it cannot add one.
        if lora.loraRank != nil && (mtp.mtpDepth ?? 0) > 0 {
            throw ValidationError("--mtp-depth 1 adds a module to train, which LoRA would keep frozen: leave one out")
        }
        let trainable = try TrainableModel.load(directory: model, mtpDepth: mtp.mtpDepth, threads: runOptions.threadCount)
        var kept: [SFTExample] = [], tooLong = 0
        for conversation in try SFTData.conversations(path: data) {
            let e = try SFTData.example(conversation, tokenizer: tokenizer, template: template)
            if e.ids.count > training.seqLen || e.ids.count > trainable.config.maxPositionEmbeddings { tooLong += 1 } else { kept.append(e) }
        }
        if tooLong > 0 { printError("left out \(tooLong) conversations longer than --seq-len \(training.seqLen) tokens") }
        let (train, held) = splitForValidation(kept, fraction: training.valFraction)
        let pad = try tokenizer.padTokenId ?? TrainingSetup.eosToken(tokenizer)
        let batches = try ExampleBatches(train: train, validation: held, batchSize: training.batch, pad: pad, seed: training.seed)
        let epoch = (train.count + training.batch - 1) / training.batch
        var settings = try training.settings(defaultSteps: epoch, defaultLearningRate: 1e-4)
        settings.mtpLossWeight = mtp.mtpLossWeight
        let trainer = try Trainer(model: trainable, settings: settings, batches: batches, stage: "sft", out: out,
                                  extraFiles: TrainingSetup.tokenizerFiles(model),
                                  lora: try lora.adapters(for: trainable, base: model, seed: training.seed),
                                  dataParallel: try runOptions.dataParallel())
        let summary = try runTraining(trainer, resume: runOptions.resume, quiet: runOptions.quiet,
                              "sft: \(train.count) training and \(held.count) validation conversations, \(settings.steps) steps of \(training.batch)")
        guard trainer.isWriter else { return }
        print(String(format: "fine-tuned %d steps: loss %.4f, validation loss %@; wrote %@", summary.steps, summary.trainLoss,
                     summary.validationLoss.map { String(format: "%.4f", $0) } ?? "n/a", out))
    }
}
