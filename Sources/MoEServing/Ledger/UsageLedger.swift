import Foundation
import GRDB

/// The server's record of every request, in a SQLite file (WAL mode, so `moe usage` and quota look-ups read
/// while the server writes). One row per request in table `requests`; `created_at` is UTC text
/// (`2025-06-01 14:03:07.512`), so "since a date" is a string comparison, also in the `sqlite3` shell:
/// `SELECT … FROM requests WHERE created_at >= '2025-06-01'`.
///
///     let ledger = try UsageLedger(path: UsageLedger.defaultPath)
///     try await ledger.record(entry)                     // committed before the response's last byte
///     let today = try ledger.tokensUsed(keyHash: keyHash, since: QuotaTracker.startOfDay(Date()))
///     for key in try ledger.summary(since: lastMonday) { print(key.keyHash, key.costUSD) }
public final class UsageLedger: Sendable {
    /// Where `moe serve` and `moe usage` look by default: in the working directory.
    public static let defaultPath = "moe-ledger.sqlite"
    /// The key hash recorded for requests to a server that has no API keys.
    public static let openKeyHash = "open"
    /// The key hash of a refused request that carried no valid key (its row records the 401).
    public static let unauthenticatedKeyHash = "unauthenticated"

    public let path: String
    /// The connections; internal so tests can run pragmas.
    let database: DatabasePool

    /// Opens the ledger at `path`, creating it (and its schema) if needed; existing rows are kept.
    /// `readOnly` (for reports) never creates or changes the file: a missing file, or a SQLite file without
    /// the `requests` table, is an error.
    ///
    /// - Throws: `LedgerError`, e.g. `.notADatabase` for a file that is not SQLite.
    public init(path: String, readOnly: Bool = false) throws {
        self.path = path
        if readOnly && !FileManager.default.fileExists(atPath: path) { throw LedgerError.missing(path: path) }
        var configuration = Configuration()
        configuration.readonly = readOnly
        // The server and `moe usage` may open the file at once: wait for a lock instead of failing.
        configuration.busyMode = .timeout(10)
        do {
            database = try DatabasePool(path: path, configuration: configuration)
            if readOnly {
                guard try database.read({ try $0.tableExists(UsageRecord.databaseTableName) }) else {
                    throw LedgerError.notALedger(path: path)
                }
            } else {
                try Self.migrator.migrate(database)
                // GRDB sets WAL's usual NORMAL, which may lose the last commits on power loss; FULL syncs each
                // commit, a millisecond beside a generation that takes seconds. One writer connection: set once.
                try database.writeWithoutTransaction { try $0.execute(sql: "PRAGMA synchronous = FULL") }
            }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_NOTADB || error.resultCode == .SQLITE_CORRUPT {
            throw LedgerError.notADatabase(path: path)
        } catch let error as DatabaseError {
            throw LedgerError.cannotOpen(path: path, reason: error.message ?? "\(error)")
        }
    }

    /// The schema, one migration per change; GRDB records which ran in `grdb_migrations`.
    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: requests") { db in
            try db.execute(sql: """
                CREATE TABLE requests (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    created_at TEXT NOT NULL,
                    key_hash TEXT NOT NULL,
                    model TEXT NOT NULL,
                    endpoint TEXT NOT NULL,
                    prompt_tokens INTEGER NOT NULL,
                    cached_tokens INTEGER NOT NULL DEFAULT 0,
                    completion_tokens INTEGER NOT NULL,
                    latency_ms REAL NOT NULL,
                    time_to_first_token_ms REAL,
                    finish_reason TEXT NOT NULL,
                    cost_usd REAL NOT NULL,
                    status INTEGER NOT NULL
                );
                CREATE INDEX requests_by_key_and_time ON requests (key_hash, created_at);
                """)
        }
        // Links a row to the response's X-Request-Id and the server's log lines.
        migrator.registerMigration("v2: request ids") { db in
            try db.execute(sql: "ALTER TABLE requests ADD COLUMN request_id TEXT")
        }
        // OpenAI's `user` field: the caller's own name for its end user.
        migrator.registerMigration("v3: end users") { db in
            try db.execute(sql: "ALTER TABLE requests ADD COLUMN user TEXT")
        }
        return migrator
    }

    // MARK: Writing

    /// Appends `entry` and returns its id once the transaction is committed (durable on disk).
    /// Blocks the calling thread for the write; from async code prefer the `async` variant.
    @discardableResult
    public func record(_ entry: UsageRecord) throws -> Int64 {
        try database.write { try Self.insert(entry, into: $0) }
    }

    /// Appends `entry` without blocking a thread, and returns its id once committed. Unlike GRDB's own
    /// async `write`, it still records when the calling task is cancelled: a client that hangs up is a
    /// request to account for, not a reason to lose its row.
    @discardableResult
    public func record(_ entry: UsageRecord) async throws -> Int64 {
        try await withCheckedThrowingContinuation { continuation in
            database.asyncWrite({ try Self.insert(entry, into: $0) }, completion: { _, result in
                continuation.resume(with: result)
            })
        }
    }

    private static func insert(_ entry: UsageRecord, into db: Database) throws -> Int64 {
        var row = entry
        row.id = nil
        try row.insert(db)
        return db.lastInsertedRowID
    }

    // MARK: Reading

    /// Prompt + completion tokens `keyHash` used at or after `since` (for daily quotas).
    public func tokensUsed(keyHash: String, since: Date) throws -> Int {
        let (filter, arguments) = Self.filter(keyHash: keyHash, since: since)
        return try database.read { db in
            try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM requests \(filter)",
                             arguments: arguments) ?? 0
        }
    }

    /// Per key (ordered by hash): requests, tokens and cost at or after `since`; one key if `keyHash` is given.
    public func summary(keyHash: String? = nil, since: Date? = nil) throws -> [KeyUsage] {
        let (filter, arguments) = Self.filter(keyHash: keyHash, since: since)
        let sql = """
            SELECT key_hash, COUNT(*) AS requests, SUM(prompt_tokens) AS prompt, SUM(cached_tokens) AS cached,
                   SUM(completion_tokens) AS completion, SUM(cost_usd) AS cost
            FROM requests \(filter) GROUP BY key_hash ORDER BY key_hash
            """
        return try database.read { db in
            try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                KeyUsage(keyHash: row["key_hash"], requests: row["requests"], promptTokens: row["prompt"],
                         cachedTokens: row["cached"], completionTokens: row["completion"], costUSD: row["cost"])
            }
        }
    }

    /// The rows themselves, oldest first.
    public func records(keyHash: String? = nil, since: Date? = nil) throws -> [UsageRecord] {
        let (filter, arguments) = Self.filter(keyHash: keyHash, since: since)
        return try database.read { db in
            try UsageRecord.fetchAll(db, sql: "SELECT * FROM requests \(filter) ORDER BY id", arguments: arguments)
        }
    }

    /// A WHERE clause for the optional key and start date. Dates bind in the stored text form, so the
    /// comparison is the index's order.
    private static func filter(keyHash: String?, since: Date?) -> (String, StatementArguments) {
        var conditions: [String] = []
        var arguments: StatementArguments = []
        if let keyHash { conditions.append("key_hash = ?"); arguments += [keyHash] }
        if let since { conditions.append("created_at >= ?"); arguments += [since] }
        return (conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND "), arguments)
    }

    // MARK: Dates

    /// A `--since` argument: `YYYY-MM-DD` (midnight UTC) or an ISO-8601 date-time (`2025-06-01T14:00:00Z`,
    /// an offset, fractional seconds; no zone means UTC); nil for anything else, impossible dates included.
    ///
    ///     UsageLedger.parseDate("2025-06-01")            // 2025-06-01 00:00:00 UTC
    ///     UsageLedger.parseDate("2025-06-01T09:30:00+02:00")  // 07:30 UTC
    ///     UsageLedger.parseDate("2025-06-01 09:30:00")        // 09:30 UTC (the ledger's own layout)
    public static func parseDate(_ text: String) -> Date? {
        var text = text.trimmingCharacters(in: .whitespaces)
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        // The formatter rolls impossible dates over (2025-02-30 → March 2): such input is a typo, so the date
        // part must read back unchanged.
        let day = String(text.prefix(10))
        formatter.formatOptions = [.withFullDate]
        guard let midnight = formatter.date(from: day), formatter.string(from: midnight) == day else { return nil }
        if text.count == 10 { return midnight }
        if text.dropFirst(10).first == " " { text = day + "T" + text.dropFirst(11) }  // SQLite's own layout
        let layouts: [ISO8601DateFormatter.Options] = [
            [.withInternetDateTime],
            [.withInternetDateTime, .withFractionalSeconds],
            [.withFullDate, .withTime, .withColonSeparatorInTime],
            [.withFullDate, .withTime, .withColonSeparatorInTime, .withFractionalSeconds],
        ]
        for layout in layouts {
            formatter.formatOptions = layout
            if let date = formatter.date(from: text) { return date }
        }
        return nil
    }
}

/// Why a ledger could not be opened.
public enum LedgerError: Error, CustomStringConvertible, Equatable {
    case missing(path: String)
    case notADatabase(path: String)
    case notALedger(path: String)
    case cannotOpen(path: String, reason: String)

    public var description: String {
        switch self {
        case let .missing(path): return "no usage ledger at \(path) (the server creates it on its first request)"
        case let .notADatabase(path): return "\(path) is not a usage ledger: not a SQLite database, or a corrupt one"
        case let .notALedger(path): return "\(path) is a SQLite database but not a usage ledger (it has no requests table)"
        case let .cannotOpen(path, reason): return "cannot open usage ledger \(path): \(reason)"
        }
    }
}
