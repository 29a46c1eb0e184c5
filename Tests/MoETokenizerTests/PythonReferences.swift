import Foundation

/// Reference data made by one of the repo's Python scripts with the reference libraries (HF tokenizers,
/// tiktoken, transformers) in the test venv that `scripts/setup-test-deps.sh` makes:
/// - the directory named by `environmentVariable`, when set (CI: .ci/run makes it first);
/// - else the script runs with `${MOE_TEST_VENV:-~/.cache/moe-test-venv}/bin/python` into
///   `$TMPDIR/<name>-<FNV-1a of the script and inputs>`, reused while that exists;
/// - else the tests that need it are skipped (a line says why) — except with `CI` set, where they fail.
struct PythonReferences: Sendable {
    let name: String
    let environmentVariable: String
    let script: URL
    /// Further files whose content the references depend on (corpora).
    var inputs: [URL] = []
    /// A file whose presence marks a finished directory.
    let marker: String

    static var environment: [String: String] { ProcessInfo.processInfo.environment }

    static var python: String {
        let venv = environment["MOE_TEST_VENV"].flatMap { $0.isEmpty ? nil : $0 }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/moe-test-venv").path
        return URL(fileURLWithPath: venv).appendingPathComponent("bin/python").path
    }

    private var given: String? { Self.environment[environmentVariable].flatMap { $0.isEmpty ? nil : $0 } }

    /// Whether the tests run: references given, a python to make them, or CI (where a missing setup fails).
    var enabled: Bool {
        if given != nil || FileManager.default.isExecutableFile(atPath: Self.python) { return true }
        if Self.environment["CI"] != nil { return true }
        print("\(name): skipped: \(environmentVariable) is unset and there is no \(Self.python) "
              + "(make it with `bash scripts/setup-test-deps.sh`)")
        return false
    }

    /// The references' directory, made now if need be.
    func directory() -> Result<URL, ReferenceError> {
        if let given { return .success(URL(fileURLWithPath: given)) }
        let python = Self.python
        guard FileManager.default.isExecutableFile(atPath: python) else {
            return .failure(ReferenceError("\(environmentVariable) is unset and there is no \(python) "
                                           + "(make it with `bash scripts/setup-test-deps.sh`)"))
        }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for url in [script] + inputs {
            guard let data = try? Data(contentsOf: url) else { return .failure(ReferenceError("cannot read \(url.path)")) }
            for byte in data { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        }
        let tmp = FileManager.default.temporaryDirectory
        let dir = tmp.appendingPathComponent("\(name)-\(String(hash, radix: 16))")
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent(marker).path) {
            print("\(name): reusing \(dir.path)")
            return .success(dir)
        }
        let work = tmp.appendingPathComponent("\(name)-\(String(hash, radix: 16)).tmp-\(getpid())")
        try? FileManager.default.removeItem(at: work)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script.path, work.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return .failure(ReferenceError("cannot run \(python): \(error)")) }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            try? FileManager.default.removeItem(at: work)
            return .failure(ReferenceError("\(python) \(script.path) failed (status \(process.terminationStatus)):\n\(output)"))
        }
        print("\(name): made \(dir.path):\n\(output)")
        if (try? FileManager.default.moveItem(at: work, to: dir)) == nil {   // another process was first
            try? FileManager.default.removeItem(at: work)
        }
        return .success(dir)
    }
}

struct ReferenceError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
