import Foundation
import MoEFormats
import MoEModel
import MoETokenizer
import MoETraining
@testable import MoEServing

/// A tiny random qwen3_moe (2 layers, 8 experts) with a byte-level BPE tokenizer trained on a few sentences
/// and a ChatML template: enough to exercise every endpoint in milliseconds. Made once per test process.
enum TestModel {
    static let directory: String = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-serving-model-\(getpid())/tiny-chat").path
        do {
            let texts = (0..<40).map { i in "The quick brown fox \(i) jumps over the lazy dog. Hello, world! Ünïcödé 你好 \(i * 7)." }
            try BPETrainer(vocabSize: 320).train(texts: texts).write(to: dir)
            let template = """
                {%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}\
                {%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}
                """
            try Data(template.utf8).write(to: URL(fileURLWithPath: "\(dir)/chat_template.jinja"))
            let tokenizer = try Tokenizer(directory: dir)
            let eos = tokenizer.id(forToken: "<|im_end|>")!
            let config = try ModelPreset.config("tiny", vocabSize: tokenizer.vocabSize, overrides: ["eos_token_id": eos])
            let model = try TrainableModel(config: config, threads: 1)
            model.initialize(seed: 7)
            try model.save(to: dir)
        } catch {
            fatalError("could not make the test model: \(error)")
        }
        return dir
    }()

    /// The same model under another name whose template offers tools and teaches Qwen's (Hermes') call syntax.
    static let toolDirectory: String = {
        let dir = URL(fileURLWithPath: directory).deletingLastPathComponent().appendingPathComponent("tiny-tools").path
        do {
            try? FileManager.default.removeItem(atPath: dir)
            try FileManager.default.copyItem(atPath: directory, toPath: dir)
            let template = #"""
                {%- if tools %}{{ '<|im_start|>system\n# Tools\n<tools>' }}{% for t in tools %}{{ t | tojson }}{% endfor %}\
                {{ '</tools>\nCall one as <tool_call>\n{"name": <name>, "arguments": <args>}\n</tool_call><|im_end|>\n' }}{% endif %}\
                {%- for m in messages %}{{ '<|im_start|>' + m.role + '\n' }}\
                {%- if m.tool_calls %}{% for c in m.tool_calls %}{{ '<tool_call>\n' }}{{ {'name': c.function.name, 'arguments': c.function.arguments} | tojson }}{{ '\n</tool_call>' }}{% endfor %}\
                {%- else %}{{ m.content }}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}\
                {%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
                """#
            try Data(template.utf8).write(to: URL(fileURLWithPath: "\(dir)/chat_template.jinja"))
            // Room for the tool definitions (this vocabulary spells JSON almost a byte a token).
            let configURL = URL(fileURLWithPath: "\(dir)/config.json")
            var config = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as! [String: Any]
            config["max_position_embeddings"] = 2048
            try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        } catch {
            fatalError("could not make the tool model: \(error)")
        }
        return dir
    }()

    static func transformer() throws -> Transformer { try Transformer(directory: directory, threads: 1) }
    static func tokenizer() throws -> Tokenizer { try Tokenizer(directory: directory) }

    /// A fresh ledger path.
    static func ledgerPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("moe-ledger-\(UUID().uuidString).sqlite").path
    }
}

/// Runs one of the repository's Python scripts (`scripts/NAME`) with `python`; its exit status and its output.
/// Waits on a thread of its own: a script that talks to an in-process server must not hold one of the few threads
/// of Swift's cooperative pool (two such tests at once on two cores would starve the server they call).
func runScript(_ python: String, _ name: String, _ arguments: [String]) async throws -> (status: Int32, log: String) {
    try await withCheckedThrowingContinuation { continuation in
        Thread {
            do { continuation.resume(returning: try runScriptWaiting(python, name, arguments)) } catch { continuation.resume(throwing: error) }
        }.start()
    }
}

private func runScriptWaiting(_ python: String, _ name: String, _ arguments: [String]) throws -> (status: Int32, log: String) {
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/" + name).path
    let p = Process()
    p.executableURL = URL(fileURLWithPath: python)
    p.arguments = [script] + arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let log = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    return (p.terminationStatus, log)
}
