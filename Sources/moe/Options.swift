import ArgumentParser
import Foundation
import MoEKernels
import MoEModel
import MoETokenizer

/// `--model DIR --threads N`, shared by the commands that load a model.
struct ModelOptions: ParsableArguments {
    @Option(help: "A Hugging Face model directory (config.json + safetensors) or a GGUF file.")
    var model: String

    @Option(help: "Worker threads for the kernels (default: the number of cores).")
    var threads: Int = WorkerPool.defaultThreadCount

    @Option(help: "How quantised weights (Q4_0, Q2_K–Q6_K, IQ4_XS; Q8_0 in prefill only) round the activations they multiply: int8, the fast path at llama.cpp's accuracy, or int16, within about 1e-5 of f32 math (default: int8; int16 for moe logits).")
    var activations: ActivationRounding?

    func load(defaultActivations: ActivationRounding = .int8) throws -> Transformer {
        guard threads > 0 else { throw ValidationError("--threads must be at least 1") }
        return try Transformer(directory: model, threads: threads, activations: activations ?? defaultActivations)
    }
}

extension ActivationRounding: ExpressibleByArgument {}

/// The prompt of `moe generate` / `moe logits`: token ids, or text encoded with the model's tokenizer.
struct PromptOptions: ParsableArguments {
    @Option(help: "Prompt token ids, comma-separated, e.g. 1,2,3.")
    var tokens: String?

    @Option(help: "Prompt text, encoded with the model directory's tokenizer (as HF encode does, special tokens included).")
    var prompt: String?

    @Flag(help: "Send --prompt as a user message through the model's chat template (ChatML if it has none).")
    var chat = false

    @Option(help: "With --chat: a system message before the user's.")
    var system: String?

    @Option(help: "With --chat: low, medium or high, for templates that read it (gpt-oss's harmony).")
    var reasoningEffort: String?

    func validate() throws {
        if (tokens == nil) == (prompt == nil) { throw ValidationError("give exactly one of --tokens and --prompt") }
        if (chat || system != nil) && prompt == nil { throw ValidationError("--chat and --system need --prompt") }
        if let reasoningEffort {
            guard chat else { throw ValidationError("--reasoning-effort needs --chat") }
            guard ["low", "medium", "high"].contains(reasoningEffort) else { throw ValidationError("--reasoning-effort must be low, medium or high") }
        }
    }

    /// The prompt's ids, and the tokenizer when the model directory has one.
    func ids(modelDirectory: String) throws -> (ids: [Int], tokenizer: Tokenizer?) {
        let tokenizer = try Tokenizer.forModel(modelDirectory)
        if let tokens { return (try parseTokenList(tokens), tokenizer) }
        guard let tokenizer else {
            throw ValidationError("--prompt needs a tokenizer (tokenizer.json, or a GGUF file's) in \(modelDirectory); give --tokens instead")
        }
        var ids: [Int]
        if chat {
            let messages = (system.map { [ChatMessage(role: "system", content: $0)] } ?? [])
                + [ChatMessage(role: "user", content: prompt ?? "")]
            ids = try tokenizer.encodeChat(messages, extra: reasoningEffort.map { ["reasoning_effort": .string($0)] } ?? [:])
        } else {
            ids = tokenizer.encode(prompt ?? "")
        }
        guard !ids.isEmpty else { throw ValidationError("--prompt encodes to no tokens") }
        return (ids, tokenizer)
    }
}

/// Parses "1,2,3" (spaces allowed) into token ids.
func parseTokenList(_ text: String) throws -> [Int] {
    let parts = text.split(whereSeparator: { $0 == "," || $0 == " " })
    guard !parts.isEmpty else { throw ValidationError("--tokens is empty; give ids like 1,2,3") }
    return try parts.map { part in
        guard let id = Int(part), id >= 0 else { throw ValidationError("'\(part)' in --tokens is not a token id") }
        return id
    }
}

/// A float as JSON: shortest round-tripping form; non-finite values (not valid JSON numbers) as null.
func jsonNumber(_ x: Float) -> String { x.isFinite ? "\(x)" : "null" }

/// Writes to standard error (progress, timings), keeping standard output for results.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// `--experts-per-token K --expert-threshold T --min-experts N`: fewer experts per token than the model was trained
/// with, for speed (`ExpertBudget`), shared by generate, eval, bench infer and serve.
struct ExpertBudgetOptions: ParsableArguments {
    @Option(help: "Experts each token may use, at most the model's num_experts_per_tok (default: all of them). The kept experts' weights are rescaled to the mass of the full top-k.")
    var expertsPerToken: Int?

    @Option(help: "Keep an expert beyond the first --min-experts only while its routing weight is at least this fraction of the best one's (0–1; ik_llama.cpp's smart expert reduction).")
    var expertThreshold: Float?

    @Option(help: "With --expert-threshold: the experts every token keeps.")
    var minExperts: Int = 1

    var budget: ExpertBudget { ExpertBudget(expertsPerToken: expertsPerToken, threshold: expertThreshold, minExperts: minExperts) }

    func validate() throws {
        if let expertsPerToken, expertsPerToken < 1 { throw ValidationError("--experts-per-token must be at least 1") }
        if let expertThreshold, !(0...1).contains(expertThreshold) { throw ValidationError("--expert-threshold must be between 0 and 1") }
        if minExperts < 1 { throw ValidationError("--min-experts must be at least 1") }
        if minExperts != 1 && expertThreshold == nil { throw ValidationError("--min-experts needs --expert-threshold") }
    }

    /// Sets the budget on `model` (an error naming the model's limit when it cannot be spent).
    func apply(to model: Transformer) throws {
        do { try model.validateBudget(budget) } catch { throw ValidationError("\(error)") }
        model.expertBudget = budget
    }
}

/// The CPU's model name (/proc/cpuinfo), printed beside measured figures.
func cpuName() -> String {
    let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    return info.split(separator: "\n").first { $0.hasPrefix("model name") }.map { String($0.split(separator: ":").last ?? "").trimmingCharacters(in: .whitespaces) } ?? "unknown"
}
