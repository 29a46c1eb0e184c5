import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// A `moe serve` (or `moe demo --serve`) process on a free port, stopped with SIGTERM.
final class ServerProcess {
    let process = Process()
    let port: Int
    let errorLog: String

    init(_ arguments: [String], timeout: Double = 300) throws {
        errorLog = NSTemporaryDirectory() + "moe-serve-\(UUID().uuidString).log"
        _ = FileManager.default.createFile(atPath: errorLog, contents: nil)
        process.executableURL = URL(fileURLWithPath: CLI.executable)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle(forWritingAtPath: errorLog)
        try process.run()
        // The server prints "listening on http://HOST:PORT" once it accepts connections.
        var text = ""
        let deadline = Date().addingTimeInterval(timeout)
        var found: Int?
        while found == nil, Date() < deadline, process.isRunning {
            let data = out.fileHandleForReading.availableData
            if data.isEmpty { Thread.sleep(forTimeInterval: 0.05); continue }
            text += String(decoding: data, as: UTF8.self)
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("listening on http://") }),
               let port = line.split(separator: ":").last.flatMap({ Int($0) }) {
                found = port
            }
        }
        guard let found else {
            process.terminate()
            throw ServeTestError("the server did not start: \((try? String(contentsOfFile: errorLog, encoding: .utf8)) ?? "")\n\(text.suffix(2000))")
        }
        port = found
        // Keep draining stdout so the server never blocks on a full pipe.
        out.fileHandleForReading.readabilityHandler = { _ = $0.availableData }
    }

    var stderr: String { (try? String(contentsOfFile: errorLog, encoding: .utf8)) ?? "" }

    /// SIGTERM, then the exit status (0 after a graceful shutdown).
    func stop() -> Int32 {
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }

    func get(_ path: String, key: String? = nil) async throws -> (status: Int, body: [String: Any]) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        if let key { request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as! HTTPURLResponse).statusCode, (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:])
    }
}

struct ServeTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

@Suite(.serialized) struct ServeCLITests {
    func temporaryDirectory() -> String {
        let dir = NSTemporaryDirectory() + "moe-serve-e2e-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// `moe serve` on the quick demo's model, checked by the official `openai` Python client (when
    /// MOE_TEST_PYTHON names a python with `openai`, as CI's .ci/run sets it): chat, completions, streaming,
    /// usage, errors, a disconnect, 8 concurrent streams and the ledger rows; then `moe usage` sums the ledger.
    @Test func serveAnswersTheOpenAIClientAndBillsEveryRequest() async throws {
        let dir = temporaryDirectory()
        let demo = try CLI.run(["demo", "--quick", "--quiet", "--out", dir])
        #expect(demo.status == 0, "\(demo.stderr)")
        try "# test keys\nsk-e2e-one\nsk-e2e-two\n".write(toFile: dir + "/keys", atomically: true, encoding: .utf8)
        let ledger = dir + "/ledger.sqlite"
        let server = try ServerProcess(["serve", "--model", dir + "/grpo", "--port", "0", "--api-keys", dir + "/keys",
                                        "--ledger", ledger, "--price-input", "2", "--price-output", "6", "--parallel", "4",
                                        "--threads", "2"])
        #expect(server.stderr.contains("ledger: \(ledger)"))
        let models = try await server.get("/v1/models", key: "sk-e2e-two")
        #expect(models.status == 200 && (models.body["data"] as? [[String: Any]])?.first?["id"] as? String == "grpo")
        #expect(try await server.get("/v1/models").status == 401)
        #expect(try await server.get("/health").status == 200)

        var ranClient = false
        if let python = ProcessInfo.processInfo.environment["MOE_TEST_PYTHON"], !python.isEmpty {
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("scripts/openai_e2e.py").path
            let p = Process()
            p.executableURL = URL(fileURLWithPath: python)
            p.arguments = [script, "--base-url", "http://127.0.0.1:\(server.port)/v1", "--model", "grpo", "--key", "sk-e2e-one",
                           "--ledger", ledger, "--price-input", "2", "--price-output", "6", "--concurrency", "8"]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = out
            try p.run()
            let log = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "openai_e2e.py failed:\n\(log)\nserver:\n\(server.stderr.suffix(3000))")
            #expect(log.contains("all checks passed"))
            ranClient = true
        }
        #expect(server.stop() == 0, "graceful shutdown: \(server.stderr.suffix(2000))")

        let usage = try CLI.run(["usage", "--ledger", ledger, "--key", "sk-e2e-one"])
        #expect(usage.status == 0, "\(usage.stderr)")
        if ranClient {
            let total = usage.stdout.split(separator: "\n").last?.split(separator: " ") ?? []
            #expect(total.first == "total" && (Int(total[1]) ?? 0) >= 16, "\(usage.stdout)")
        }
    }

    /// `moe demo --serve` ends by serving the model it trained; SIGTERM stops it cleanly.
    @Test func demoServeServesTheFinalModel() async throws {
        let dir = temporaryDirectory()
        let server = try ServerProcess(["demo", "--quick", "--quiet", "--out", dir, "--serve", "--port", "0"])
        let models = try await server.get("/v1/models")
        #expect((models.body["data"] as? [[String: Any]])?.first?["id"] as? String == "grpo")
        #expect(server.stop() == 0, "\(server.stderr.suffix(2000))")
        #expect(FileManager.default.fileExists(atPath: dir + "/ledger.sqlite"))
    }
}
