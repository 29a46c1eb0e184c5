import ArgumentParser
import Foundation
import MoEFormats
import MoETokenizer

/// `moe convert`: a Hugging Face model directory to one GGUF file (f32, f16 or bf16), with its tokenizer and chat
/// template, as llama.cpp's `convert_hf_to_gguf.py` writes it — so a model trained here runs in llama.cpp.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a Hugging Face model directory to a GGUF file (as convert_hf_to_gguf.py).")

    @Option(help: "Hugging Face model directory (config.json, *.safetensors, tokenizer.json).")
    var model: String
    @Option(help: "The GGUF file to write.")
    var out: String
    @Option(help: "Type of the matrices: f32, f16 or bf16 (norms, routers and biases stay f32).")
    var type: String = "f16"

    func run() throws {
        guard let preset = GGUFQuantMix.preset(named: type), [.f32, .f16, .bf16].contains(preset.base) else {
            throw ValidationError("--type must be f32, f16 or bf16 (for block types use `moe quantize`)")
        }
        var writer = GGUFModelWriter(model: model, preset: preset)
        writer.asConverter = true
        try writeGGUF(writer, to: out)
    }
}

/// `moe quantize`: a model (HF directory or GGUF file) to a quantised GGUF file with one of llama.cpp's presets,
/// bit for bit what `llama-quantize` writes from the same weights.
struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantise a model to GGUF with llama.cpp's presets (q8_0, q4_0, q4_k_m, q5_k_m, q6_k, iq4_xs, …).")

    @Option(help: "Hugging Face model directory or GGUF file (f32/f16/bf16).")
    var model: String
    @Option(help: "Preset: \(GGUFQuantMix.presets.map(\.name).joined(separator: ", ")) (q3_k, q4_k, q5_k: the _m presets).")
    var type: String
    @Option(help: "The GGUF file to write.")
    var out: String
    @Flag(help: "Every matrix in the preset's base type (llama-quantize --pure).")
    var pure = false
    @Flag(help: "Allow re-quantising tensors that are already in a block type (quality suffers).")
    var allowRequantize = false

    func run() throws {
        guard let preset = GGUFQuantMix.preset(named: type) else {
            throw ValidationError("unknown --type '\(type)'; one of \(GGUFQuantMix.presets.map(\.name).joined(separator: ", "))")
        }
        var writer = GGUFModelWriter(model: model, preset: preset)
        writer.pure = pure
        writer.allowRequantize = allowRequantize
        try writeGGUF(writer, to: out)
    }
}

/// What both commands do: write the file with a progress bar and a summary line.
func writeGGUF(_ writer: GGUFModelWriter, to out: String) throws {
    let start = Date()
    let bar = ProgressBar(label: writer.preset.name, unit: .items)
    let summary = try writer.write(to: out, tokenizer: { config in
        guard let tokenizer = try Tokenizer.forModel(writer.model) else {
            FileHandle.standardError.write(Data("warning: \(writer.model) has no tokenizer.json; the GGUF file carries no tokenizer\n".utf8))
            return nil
        }
        return try tokenizer.ggufMetadata(vocabularySize: config.vocabSize)
    }, progress: { bar.update(done: $0, total: $1) })
    bar.finish()
    print(String(format: "wrote %@: %.2f MB, %.2f bits per weight, %d tensors (%@) in %.1f s", out, Double(summary.bytes) / 1e6,
                 Double(summary.bytes) * 8 / Double(max(summary.weights, 1)), summary.tensors,
                 summary.types.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "),
                 Date().timeIntervalSince(start)))
}
