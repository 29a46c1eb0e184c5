import Foundation
import MoEServing
import Testing

/// `moe usage` over a ledger written as the server writes it.
@Suite struct UsageCLITests {
    func ledgerPath() -> String { NSTemporaryDirectory() + "moe-e2e-ledger-" + UUID().uuidString + ".sqlite" }

    func row(_ key: String, at date: String, prompt: Int, cached: Int, completion: Int, cost: Double) -> UsageRecord {
        UsageRecord(createdAt: UsageLedger.parseDate(date)!, keyHash: APIKeys.hash(of: key), model: "tiny",
                    endpoint: .chatCompletions, promptTokens: prompt, cachedTokens: cached, completionTokens: completion,
                    latencyMs: 10, finishReason: .stop, costUSD: cost, status: 200)
    }

    /// The table's lines, each split into its cells.
    func cells(_ stdout: String) -> [[String]] {
        stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
    }

    @Test func usagePrintsOneLinePerKeyAndATotal() throws {
        let path = ledgerPath()
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let ledger = try UsageLedger(path: path)
        try ledger.record(row("sk-alpha", at: "2025-06-01T10:00:00Z", prompt: 100, cached: 40, completion: 10, cost: 0.0001))
        try ledger.record(row("sk-alpha", at: "2025-06-03T10:00:00Z", prompt: 200, cached: 0, completion: 20, cost: 0.0002))
        try ledger.record(row("sk-beta", at: "2025-06-02T10:00:00Z", prompt: 1000, cached: 500, completion: 300, cost: 0.00125))
        let alpha = String(APIKeys.hash(of: "sk-alpha").prefix(12)), beta = String(APIKeys.hash(of: "sk-beta").prefix(12))
        let (first, second) = alpha < beta ? (alpha, beta) : (beta, alpha)

        let all = try CLI.run(["usage", "--ledger", path])
        #expect(all.status == 0, "\(all.stderr)")
        let lines = cells(all.stdout)
        #expect(lines.first?.first == "key" && all.stdout.contains("completion tokens") && all.stdout.contains("cost (USD)"))
        #expect(lines.dropFirst().map { $0[0] } == [first, second, "total"])
        #expect(lines.contains([alpha, "2", "300", "40", "30", "0.000300"]))
        #expect(lines.contains([beta, "1", "1000", "500", "300", "0.001250"]))
        #expect(lines.last == ["total", "3", "1300", "540", "330", "0.001550"])

        let one = try CLI.run(["usage", "--ledger", path, "--key", "sk-alpha", "--since", "2025-06-02"])
        #expect(one.status == 0, "\(one.stderr)")
        #expect(cells(one.stdout).dropFirst() == [[alpha, "1", "200", "0", "20", "0.000200"], ["total", "1", "200", "0", "20", "0.000200"]])

        let later = try CLI.run(["usage", "--ledger", path, "--since", "2025-06-03T10:00:01Z"])
        #expect(cells(later.stdout).dropFirst() == [["total", "0", "0", "0", "0", "0.000000"]])
    }

    @Test func badDatesAndMissingLedgersAreClearErrors() throws {
        let path = ledgerPath()
        let missing = try CLI.run(["usage", "--ledger", path])
        #expect(missing.status != 0 && missing.stderr.contains("no usage ledger at \(path)"), "\(missing.stderr)")
        #expect(!FileManager.default.fileExists(atPath: path))

        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        _ = try UsageLedger(path: path)
        let bad = try CLI.run(["usage", "--ledger", path, "--since", "2025-02-30"])
        #expect(bad.status != 0 && bad.stderr.contains("--since 2025-02-30: not a date"), "\(bad.stderr)")
    }
}
