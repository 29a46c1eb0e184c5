import ArgumentParser
import Foundation
import MoEServing

/// `moe usage`: what the server's ledger says each API key used.
struct UsageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usage",
        abstract: "Requests, tokens and cost per API key, from the server's usage ledger.",
        discussion: """
            Keys are shown by the first 12 hex digits of their SHA-256 hash (the ledger never stores keys); \
            "open" is a server without keys. The ledger is only read, so this is safe while the server runs.
            """)

    @Option(help: "The usage ledger the server writes: a SQLite file or a postgres:// URL.")
    var ledger: String = UsageLedger.defaultPath

    @Option(help: "Only this API key (the key itself; it is hashed as the server does).")
    var key: String?

    @Option(help: "Only requests at or after this time: YYYY-MM-DD (midnight UTC) or an ISO-8601 date-time.")
    var since: String?

    func validate() throws {
        if let since, UsageLedger.parseDate(since) == nil {
            throw ValidationError("--since \(since): not a date; use YYYY-MM-DD or an ISO-8601 date-time such as 2025-06-01T14:00:00Z")
        }
    }

    func run() async throws {
        let usage = try await Ledgers.open(ledger, readOnly: true)
            .summary(keyHash: key.map(APIKeys.hash(of:)), since: since.flatMap(UsageLedger.parseDate))
        print(Self.table(usage))
    }

    /// One line per key and a total line, columns right-aligned under their headers.
    static func table(_ rows: [KeyUsage]) -> String {
        let headers = ["key", "requests", "prompt tokens", "cached tokens", "completion tokens", "cost (USD)"]
        func cells(_ usage: KeyUsage) -> [String] {
            [String(usage.keyHash.prefix(12)), "\(usage.requests)", "\(usage.promptTokens)", "\(usage.cachedTokens)",
             "\(usage.completionTokens)", String(format: "%.6f", usage.costUSD)]
        }
        let lines = [headers] + rows.map(cells) + [cells(KeyUsage.total(rows))]
        let widths = headers.indices.map { column in lines.map { $0[column].count }.max() ?? 0 }
        return lines.map { line in
            line.enumerated().map { column, cell in
                let pad = String(repeating: " ", count: widths[column] - cell.count)
                return column == 0 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
