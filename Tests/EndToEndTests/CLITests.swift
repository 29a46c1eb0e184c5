import Foundation
import Testing

/// Runs the built `moe` executable, as outside scripts do.
enum CLI {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/models").path

    /// The `moe` binary beside the test bundle (SwiftPM puts products and tests in one folder).
    static let executable: String = {
        var dir = Bundle.main.bundleURL
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("moe").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("moe").path
    }()

    struct Result { let status: Int32; let stdout: String; let stderr: String }

    /// Runs `moe` with `arguments` (`environment`: variables added to this process's); `launcher` comes before it
    /// (`mpirun -np 2`).
    static func run(_ arguments: [String], environment: [String: String] = [:], launcher: [String] = []) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: launcher.first ?? executable)
        process.arguments = launcher.isEmpty ? arguments : Array(launcher.dropFirst()) + [executable] + arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }

    static func temporaryCopy(_ name: String) throws -> String {
        let dir = NSTemporaryDirectory() + "moe-e2e-" + UUID().uuidString
        try FileManager.default.copyItem(atPath: fixtures + "/" + name, toPath: dir)
        return dir
    }
}

@Suite struct CLITests {
    @Test func logitsPrintsOneRowPerPositionAsJSON() throws {
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: CLI.fixtures + "/mixtral/expected.json"))) as! [String: Any]
        let tokens = (expected["tokens"] as! [Int]).map(String.init).joined(separator: ",")
        let r = try CLI.run(["logits", "--model", CLI.fixtures + "/mixtral", "--tokens", tokens])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect(Array(json.keys) == ["logits"])
        let rows = json["logits"] as! [[Double]]
        let want = expected["logits"] as! [[Double]]
        #expect(rows.count == want.count && rows[0].count == 128)
        var diff = 0.0
        for (a, b) in zip(rows, want) { for (x, y) in zip(a, b) { diff = max(diff, abs(x - y)) } }
        #expect(diff <= 1e-4)
    }

    @Test func generatePrintsTheGreedyIds() throws {
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: CLI.fixtures + "/qwen3_moe/expected.json"))) as! [String: Any]
        let greedy = expected["greedy"] as! [String: Any]
        let prompt = (greedy["prompt"] as! [Int]).map(String.init).joined(separator: ",")
        let r = try CLI.run(["generate", "--model", CLI.fixtures + "/qwen3_moe", "--tokens", prompt,
                             "--max-tokens", "\(greedy["max_new_tokens"] as! Int)", "--temperature", "0"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == (greedy["ids"] as! [Int]).map(String.init).joined(separator: ","))
        #expect(r.stderr.contains("finish_reason: stop"))
    }

    @Test func seededSamplingIsReproducibleAcrossRuns() throws {
        let args = ["generate", "--model", CLI.fixtures + "/olmoe", "--tokens", "5,6,7", "--max-tokens", "10",
                    "--temperature", "0.9", "--top-p", "0.95", "--seed", "7"]
        let a = try CLI.run(args), b = try CLI.run(args)
        #expect(a.status == 0 && a.stdout == b.stdout && !a.stdout.isEmpty)
    }

    @Test func inspectReportsParametersAndExperts() throws {
        let r = try CLI.run(["inspect", "--model", CLI.fixtures + "/qwen2_moe"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("qwen2_moe") && r.stdout.contains("top-2") && r.stdout.contains("active per token"))
        #expect(r.stdout.contains("shared expert"))
    }

    @Test func badInputsExitNonZeroWithAMessage() throws {
        // Unreadable config.json.
        let broken = try CLI.temporaryCopy("qwen2")
        try Data("{".utf8).write(to: URL(fileURLWithPath: broken + "/config.json"))
        var r = try CLI.run(["logits", "--model", broken, "--tokens", "1,2"])
        #expect(r.status != 0 && r.stderr.contains("config.json"))
        // Truncated safetensors.
        let truncated = try CLI.temporaryCopy("qwen3")
        let data = try Data(contentsOf: URL(fileURLWithPath: truncated + "/model.safetensors"))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: truncated + "/model.safetensors"))
        r = try CLI.run(["generate", "--model", truncated, "--tokens", "1,2"])
        #expect(r.status != 0 && r.stderr.contains("model.safetensors") && r.stderr.contains("truncated"))
        // Unknown architecture.
        let unknown = try CLI.temporaryCopy("llama")
        let config = try String(contentsOfFile: unknown + "/config.json", encoding: .utf8)
            .replacingOccurrences(of: "\"llama\"", with: "\"mamba\"")
        try config.write(toFile: unknown + "/config.json", atomically: true, encoding: .utf8)
        r = try CLI.run(["inspect", "--model", unknown])
        #expect(r.status != 0 && r.stderr.contains("mamba"))
        // A prompt longer than the context, a bad token list, a missing directory.
        r = try CLI.run(["logits", "--model", CLI.fixtures + "/qwen2", "--tokens", "1,x"])
        #expect(r.status != 0 && r.stderr.contains("'x'"))
        r = try CLI.run(["logits", "--model", "/nonexistent/model", "--tokens", "1"])
        #expect(r.status != 0 && r.stderr.contains("/nonexistent/model"))
        r = try CLI.run(["logits", "--model", CLI.fixtures + "/qwen2", "--tokens", "1,999"])
        #expect(r.status != 0 && r.stderr.contains("999"))
    }

    @Test func promptLongerThanTheContextIsRefused() throws {
        let dir = try CLI.temporaryCopy("qwen2")
        let config = try String(contentsOfFile: dir + "/config.json", encoding: .utf8)
        let shortened = config.replacingOccurrences(of: #""max_position_embeddings": \d+"#, with: "\"max_position_embeddings\": 4",
                                                    options: .regularExpression)
        #expect(shortened != config)
        try shortened.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        let r = try CLI.run(["generate", "--model", dir, "--tokens", "1,2,3,4,5,6"])
        #expect(r.status != 0 && r.stderr.contains("context"))
    }
}

@Suite struct TokenizerCLITests {
    static let bytelevel = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer/bytelevel").path

    @Test func tokenizePrintsIdsAsJSONAndDetokenizeInverts() throws {
        let text = "Hello world, 你好! <|im_end|>"
        let r = try CLI.run(["tokenize", "--tokenizer", Self.bytelevel, text])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect(Array(json.keys) == ["ids"])
        let ids = json["ids"] as! [Int]
        let plain = try CLI.run(["tokenize", "--tokenizer", Self.bytelevel, "--no-special", text])
        let plainIds = (try JSONSerialization.jsonObject(with: Data(plain.stdout.utf8)) as! [String: Any])["ids"] as! [Int]
        #expect(ids.count == plainIds.count + 1)   // the post-processor appends <|endoftext|>
        let back = try CLI.run(["detokenize", "--tokenizer", Self.bytelevel, plainIds.map(String.init).joined(separator: ",")])
        #expect(back.status == 0 && back.stdout.trimmingCharacters(in: .newlines) == text)
    }

    /// `--json-schema` and `--grammar`: a random model's sampled text is valid by construction.
    @Test func generateFollowsAJSONSchemaOrAGrammar() throws {
        let dir = try CLI.temporaryCopy("qwen3_moe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(atPath: Self.bytelevel + "/" + name, toPath: dir + "/" + name)
        }
        let schema = dir + "/schema.json", grammar = dir + "/grammar.gbnf"
        try #"{"type": "object", "properties": {"a": {"enum": ["x", "y"]}, "n": {"type": "integer", "minimum": 1, "maximum": 9}}, "required": ["a", "n"]}"#
            .write(toFile: schema, atomically: true, encoding: .utf8)
        try #"root ::= "[" [0-9] ("," [0-9]){2} "]""#.write(toFile: grammar, atomically: true, encoding: .utf8)
        for seed in 0..<3 {
            let base = ["generate", "--model", dir, "--tokens", "72,73", "--max-tokens", "60", "--temperature", "1", "--seed", "\(seed)", "--ignore-eos"]
            let r = try CLI.run(base + ["--json-schema", schema])
            #expect(r.status == 0, "\(r.stderr)")
            let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            #expect(["x", "y"].contains(object?["a"] as? String ?? ""), "\(r.stdout)")
            #expect((object?["n"] as? Int).map { (1...9).contains($0) } == true, "\(r.stdout)")
            #expect(r.stderr.contains("finish_reason: stop"))
            let g = try CLI.run(base + ["--grammar", grammar, "--speculative", "lookup"])
            #expect(g.stdout.trimmingCharacters(in: .newlines).wholeMatch(of: /\[[0-9](,[0-9]){2}\]/) != nil, "\(g.stdout) \(g.stderr)")
        }
        try "root ::= nothing".write(toFile: grammar, atomically: true, encoding: .utf8)
        let bad = try CLI.run(["generate", "--model", dir, "--tokens", "72", "--grammar", grammar])
        #expect(bad.status != 0 && bad.stderr.contains("'nothing' is used"), "\(bad.stderr)")
    }

    @Test func promptWithoutATokenizerIsAClearError() throws {
        let r = try CLI.run(["generate", "--model", CLI.fixtures + "/qwen2", "--prompt", "hi"])
        #expect(r.status != 0 && r.stderr.contains("tokenizer.json"))
        let both = try CLI.run(["logits", "--model", CLI.fixtures + "/qwen2", "--prompt", "hi", "--tokens", "1"])
        #expect(both.status != 0 && both.stderr.contains("--tokens"))
    }
}

/// `moe convert` and `moe quantize` as outside scripts call them; with MOE_PEERS_PYTHON (a python with
/// llama-cpp-python, torch and transformers: ../shared/tools/peers-setup.sh), scripts/check_gguf_writer.py compares
/// every preset with llama.cpp's quantiser and converter and runs the files in llama.cpp.
@Suite struct GGUFWriterCLITests {
    static let gguf = URL(fileURLWithPath: CLI.fixtures).deletingLastPathComponent().appendingPathComponent("gguf").path

    @Test func quantizeWritesLlamaQuantizesFile() throws {
        let out = NSTemporaryDirectory() + "moe-e2e-\(UUID().uuidString).gguf"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let r = try CLI.run(["quantize", "--model", Self.gguf + "/arch/mixtral.gguf", "--type", "Q4_K_M", "--out", out])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("wrote \(out): ") && r.stdout.contains("bits per weight"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == Data(contentsOf: URL(fileURLWithPath: Self.gguf + "/writer/mixtral.q4_k_m.gguf")))
        let bad = try CLI.run(["quantize", "--model", Self.gguf + "/arch/mixtral.gguf", "--type", "iq2_xxs", "--out", out])
        #expect(bad.status != 0 && bad.stderr.contains("unknown --type 'iq2_xxs'"))
    }

    @Test func convertedModelRunsAsTheDirectory() throws {
        let out = NSTemporaryDirectory() + "moe-e2e-\(UUID().uuidString).gguf"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let r = try CLI.run(["convert", "--model", CLI.fixtures + "/qwen3_moe", "--type", "bf16", "--out", out])
        #expect(r.status == 0, "\(r.stderr)")
        let tokens = "1,5,17,42"
        let a = try CLI.run(["logits", "--model", CLI.fixtures + "/qwen3_moe", "--tokens", tokens])
        let b = try CLI.run(["logits", "--model", out, "--tokens", tokens])
        #expect(a.status == 0 && b.status == 0, "\(a.stderr) \(b.stderr)")
        let x = (try JSONSerialization.jsonObject(with: Data(a.stdout.utf8)) as! [String: [[Double]]])["logits"]!.joined()
        let y = (try JSONSerialization.jsonObject(with: Data(b.stdout.utf8)) as! [String: [[Double]]])["logits"]!.joined()
        // bf16 weights: close to the f32 directory's logits, not equal.
        #expect(x.count == y.count && zip(x, y).allSatisfy { abs($0 - $1) < 0.05 })
    }

    @Test func llamaCppAgreesWithEveryPreset() throws {
        guard let python = ProcessInfo.processInfo.environment["MOE_PEERS_PYTHON"], !python.isEmpty else { return }
        let script = URL(fileURLWithPath: CLI.fixtures).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/check_gguf_writer.py").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [script, CLI.executable]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(text.split(separator: "\n").filter { $0.hasPrefix("FAIL") }.joined(separator: "\n"))")
    }
}
