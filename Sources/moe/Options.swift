import ArgumentParser
import Foundation
import MoEKernels
import MoEModel

/// `--model DIR --threads N`, shared by the commands that load a model.
struct ModelOptions: ParsableArguments {
    @Option(help: "A Hugging Face model directory (config.json + safetensors).")
    var model: String

    @Option(help: "Worker threads for the kernels (default: the number of cores).")
    var threads: Int = WorkerPool.defaultThreadCount

    func load() throws -> Transformer {
        guard threads > 0 else { throw ValidationError("--threads must be at least 1") }
        return try Transformer(directory: model, threads: threads)
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
