import ArgumentParser
import Foundation
import MoETokenizer

/// `moe bench tokenize`: single-thread encode throughput and load time of our tokenizer, beside tiktoken and
/// HF `tokenizers` (run by scripts/tokenizer_peer.py in a Python that has them), with the count of ids that
/// differ from ours (must be 0).
struct BenchTokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Tokenizer encode MB/s and load time beside tiktoken and HF tokenizers.",
        discussion: """
            Encodes the whole --input text on one thread, --repeat times, and reports the best time (MB/s are \
            10^6 UTF-8 bytes per second). Ours: the tokenizer.json of --tokenizer, without post-processor tokens \
            (add_special_tokens=False), and, with --tiktoken, our tiktoken loader on that rank file. Peers: \
            scripts/tokenizer_peer.py runs tiktoken (`encode(text, allowed_special="all")`, one thread) on the \
            --tiktoken ranks with --pattern (default: the tokenizer.json's Split regex) and the tokenizer.json's \
            added tokens as specials, and HF tokenizers (`Tokenizer.from_file(...).encode(text)` on the whole \
            text, TOKENIZERS_PARALLELISM=false); their ids are compared with ours. The Python is --python \
            (default ~/.cache/moe-peers/bin/python); install the peers with \
            `python3 -m venv ~/.cache/moe-peers && ~/.cache/moe-peers/bin/pip install tiktoken tokenizers`.
            """)

    @Option(help: "A model directory with tokenizer.json, or a tokenizer.json file.")
    var tokenizer: String

    @Option(help: "A tiktoken rank file (\"base64-token rank\" lines) for tiktoken and our tiktoken loader.")
    var tiktoken: String?

    @Option(help: "The tiktoken split pattern (default: the Split regex of the tokenizer.json).")
    var pattern: String?

    @Option(help: "The UTF-8 text file to encode.")
    var input: String

    @Option(name: .customLong("repeat"), help: "Timed repetitions (the best is reported).")
    var repetitions: Int = 5

    @Option(help: "The Python that has tiktoken and tokenizers (default ~/.cache/moe-peers/bin/python).")
    var python: String?

    @Flag(help: "Measure ours only.")
    var noPeers = false

    func validate() throws {
        guard repetitions >= 1 else { throw ValidationError("--repeat must be at least 1") }
    }

    func run() throws {
        let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: input)), as: UTF8.self)
        let bytes = text.utf8.count
        let jsonPath = try tokenizerJSONPath()
        print("moe bench tokenize: \(input) (\(bytes) bytes), one thread, best of \(repetitions)")

        // Ours from tokenizer.json: the reference ids for the comparisons.
        var rows: [Row] = []
        let (loadTime, tok) = try best(min(repetitions, 3)) { try loadTokenizer(jsonPath) }
        let (encodeTime, ours) = best(repetitions) { tok.encode(text, addSpecialTokens: false) }
        rows.append(Row(name: "ours (tokenizer.json)", load: loadTime, encode: encodeTime, tokens: ours.count, differing: nil))

        if let tiktoken {
            guard let pattern = pattern ?? tok.preTokenizerPattern else {
                throw ValidationError("--tiktoken needs --pattern (the tokenizer.json has no Split regex)")
            }
            let specials = Dictionary(tok.addedTokens.map { ($0.content, $0.id) }, uniquingKeysWith: { a, _ in a })
            let (load, tt) = try best(min(repetitions, 3)) {
                try Tokenizer(tiktokenFile: tiktoken, pattern: pattern, specialTokens: specials)
            }
            let (encode, ids) = best(repetitions) { tt.encode(text, addSpecialTokens: false) }
            rows.append(Row(name: "ours (tiktoken file)", load: load, encode: encode, tokens: ids.count,
                            differing: differing(ours, ids)))
        }
        if !noPeers { rows += try peers(jsonPath: jsonPath, reference: ours) }

        let ourSpeed = Double(bytes) / rows[0].encode
        print(pad("engine", 30) + lpad("load s", 8) + lpad("encode s", 10) + lpad("MB/s", 8) + lpad("Mtok/s", 8)
              + lpad("tokens", 9) + lpad("ours ×", 8) + "  differing ids")
        for row in rows {
            let speed = Double(bytes) / row.encode
            print(pad(row.name, 30) + lpad(String(format: "%.3f", row.load), 8)
                  + lpad(String(format: "%.4f", row.encode), 10) + lpad(String(format: "%.2f", speed / 1e6), 8)
                  + lpad(String(format: "%.2f", Double(row.tokens) / row.encode / 1e6), 8) + lpad("\(row.tokens)", 9)
                  + lpad(String(format: "%.2f", ourSpeed / speed), 8)
                  + "  " + (row.differing.map { "differing ids: \($0)" } ?? "(reference)"))
        }
    }

    struct Row {
        var name: String
        var load: Double
        var encode: Double
        var tokens: Int
        var differing: Int?
    }

    /// The whole directory (tokenizer_config.json …) when --tokenizer is one, as `moe tokenize` loads it.
    private func loadTokenizer(_ jsonPath: String) throws -> Tokenizer {
        if jsonPath != tokenizer { return try Tokenizer(directory: tokenizer) }
        return try Tokenizer(tokenizerJSON: Data(contentsOf: URL(fileURLWithPath: jsonPath)), path: jsonPath)
    }

    private func tokenizerJSONPath() throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: tokenizer, isDirectory: &isDirectory) else {
            throw ValidationError("--tokenizer \(tokenizer): no such file or directory")
        }
        return isDirectory.boolValue ? URL(fileURLWithPath: tokenizer).appendingPathComponent("tokenizer.json").path : tokenizer
    }

    /// Runs scripts/tokenizer_peer.py; one row per engine it reports.
    private func peers(jsonPath: String, reference: [Int]) throws -> [Row] {
        let home = FileManager.default.homeDirectoryForCurrentUser.path
        let python = python ?? "\(home)/.cache/moe-peers/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            print("peers skipped: no Python at \(python); install them with `python3 -m venv ~/.cache/moe-peers && "
                  + "~/.cache/moe-peers/bin/pip install tiktoken tokenizers` (or pass --python)")
            return []
        }
        guard let script = peerScript() else {
            print("peers skipped: scripts/tokenizer_peer.py was not found (run from the repository root)")
            return []
        }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("moe-bench-tokenize-\(getpid())")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: out) }
        var arguments = [script, "--input", input, "--tokenizer-json", jsonPath, "--repeat", "\(repetitions)",
                         "--out", out.path]
        if let tiktoken { arguments += ["--tiktoken", tiktoken] }
        if let pattern { arguments += ["--pattern", pattern] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["TOKENIZERS_PARALLELISM"] = "false"
        environment["RAYON_NUM_THREADS"] = "1"
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        if process.terminationStatus != 0 { print("peers: \(script) exited with status \(process.terminationStatus)") }
        var rows: [Row] = []
        for line in String(decoding: output, as: UTF8.self).split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let engine = object["engine"] as? String else { continue }
            if let error = object["error"] as? String { print("peer \(engine): \(error)"); continue }
            guard let load = object["load_s"] as? Double, let encode = object["encode_s"] as? Double,
                  let path = object["ids"] as? String else { continue }
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            let ids = data.withUnsafeBytes { raw in raw.bindMemory(to: UInt32.self).map { Int(UInt32(littleEndian: $0)) } }
            let version = object["version"] as? String ?? "?"
            rows.append(Row(name: "\(engine) \(version)", load: load, encode: encode, tokens: ids.count,
                            differing: differing(reference, ids)))
        }
        return rows
    }

    /// scripts/tokenizer_peer.py under the current directory or a parent of the executable's folder.
    private func peerScript() -> String? {
        var candidates = [FileManager.default.currentDirectoryPath]
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            candidates.append(dir.path)
            dir = dir.deletingLastPathComponent()
        }
        return candidates.map { "\($0)/scripts/tokenizer_peer.py" }.first { FileManager.default.fileExists(atPath: $0) }
    }
}

/// Positions where the two id lists differ, counting every position one of them lacks.
private func differing(_ a: [Int], _ b: [Int]) -> Int {
    var n = abs(a.count - b.count)
    for i in 0..<min(a.count, b.count) where a[i] != b[i] { n += 1 }
    return n
}

/// The best (shortest) time of `n` runs of `body`, and the last result.
private func best<T>(_ n: Int, _ body: () throws -> T) rethrows -> (Double, T) {
    var bestTime = Double.infinity
    var result: T? = nil
    for _ in 0..<n {
        let start = DispatchTime.now().uptimeNanoseconds
        result = try body()
        bestTime = min(bestTime, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    return (bestTime, result!)
}

private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
private func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? " " + s : String(repeating: " ", count: n - s.count) + s }
