import Foundation
import Logging
import PostgresNIO

/// The usage ledger in PostgreSQL, for many `moe serve` replicas behind one bill
/// (`--ledger postgres://user:password@host:5432/database`, or `?host=/var/run/postgresql` for a Unix socket).
/// The same `requests` table as the SQLite ledger (`created_at` a `timestamptz`), a row committed before the
/// response's last byte; and the daily quotas held in the database (`PostgresQuota`), so that replicas share them.
public final class PostgresLedger: UsageStore {
    let client: PostgresClient
    private let runner: Task<Void, Never>
    let logger = Logger(label: "moe.ledger.postgres", factory: { _ in SwiftLogNoOpLogHandler() })
    /// The URL, password hidden.
    public let location: String

    public static func isURL(_ text: String) -> Bool { text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") }

    /// Connects, and creates the tables if they are missing (`readOnly`: requires them). Replicas starting together
    /// create them once (under an advisory lock).
    public init(url: String, readOnly: Bool = false) async throws {
        location = Ledgers.describe(url)
        let configuration = try Self.configuration(url)
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        runner = Task { await client.run() }
        do {
            // The pool retries a server that does not answer: a first query with a deadline says so instead.
            let logger = self.logger, location = self.location
            let hasTable = try await Self.withDeadline(seconds: 10, "no connection in 10 s: is the server running, and are the user, password and database right?") {
                let rows = try await client.query("SELECT to_regclass('requests') IS NOT NULL", logger: logger)
                for try await exists in rows.decode(Bool.self) { return exists }
                throw LedgerError.cannotOpen(path: location, reason: "no answer to a first query")
            }
            if readOnly && !hasTable { throw LedgerError.notALedger(path: location) }
            if !readOnly { try await createTables() }
        } catch let error as LedgerError {
            runner.cancel(); throw error
        } catch {
            runner.cancel(); throw LedgerError.cannotOpen(path: location, reason: "\(error)")
        }
    }

    deinit { runner.cancel() }

    /// `body`'s result, or `reason` as an error once `seconds` have passed (`body` is cancelled).
    private static func withDeadline<T: Sendable>(seconds: Double, _ reason: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask { try await Task.sleep(for: .seconds(seconds)); return nil }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else { throw DeadlineExceeded(reason: reason) }
            return value
        }
    }

    private struct DeadlineExceeded: Error, CustomStringConvertible { let reason: String; var description: String { reason } }

    /// Host and port, or a Unix socket (`?host=/dir`, as libpq), user, password and database from the URL.
    static func configuration(_ url: String) throws -> PostgresClient.Configuration {
        guard let parts = URLComponents(string: url), let user = parts.user, !user.isEmpty,
              parts.host.map({ !$0.isEmpty }) == true || parts.queryItems?.contains(where: { $0.name == "host" }) == true else {
            throw LedgerError.cannotOpen(path: Ledgers.describe(url), reason: "expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
        }
        let database = parts.path.hasPrefix("/") && parts.path.count > 1 ? String(parts.path.dropFirst()) : nil
        var configuration: PostgresClient.Configuration
        if let socketDirectory = parts.queryItems?.first(where: { $0.name == "host" })?.value, socketDirectory.hasPrefix("/") {
            configuration = .init(unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(parts.port ?? 5432)", username: user,
                                  password: parts.password, database: database)
        } else {
            // TLS with the server's certificate verified (system roots, host name) when the server offers it
            // (`prefer`, the default) or always (`require`, `verify-full`); `disable`: none.
            let mode = parts.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "prefer"
            let tls: PostgresClient.Configuration.TLS
            switch mode {
            case "disable": tls = .disable
            case "prefer": tls = .prefer(.makeClientConfiguration())
            case "require", "verify-full": tls = .require(.makeClientConfiguration())
            default:
                throw LedgerError.cannotOpen(path: Ledgers.describe(url), reason: "sslmode=\(mode): use disable, prefer, require or verify-full (the last two verify the certificate)")
            }
            configuration = .init(host: parts.host ?? "localhost", port: parts.port ?? 5432, username: user, password: parts.password,
                                  database: database, tls: tls)
        }
        configuration.options.maximumConnections = 8
        return configuration
    }

    private func createTables() async throws {
        try await client.withTransaction(logger: logger) { c in
            try await c.query("SELECT pg_advisory_xact_lock(72657175)", logger: logger)   // one creator at a time
            try await c.query("""
                CREATE TABLE IF NOT EXISTS requests (
                    id BIGSERIAL PRIMARY KEY,
                    created_at TIMESTAMPTZ NOT NULL,
                    key_hash TEXT NOT NULL,
                    model TEXT NOT NULL,
                    endpoint TEXT NOT NULL,
                    prompt_tokens BIGINT NOT NULL,
                    cached_tokens BIGINT NOT NULL DEFAULT 0,
                    completion_tokens BIGINT NOT NULL,
                    latency_ms DOUBLE PRECISION NOT NULL,
                    time_to_first_token_ms DOUBLE PRECISION,
                    finish_reason TEXT NOT NULL,
                    cost_usd DOUBLE PRECISION NOT NULL,
                    status INTEGER NOT NULL,
                    request_id TEXT,
                    "user" TEXT)
                """, logger: logger)
            try await c.query("CREATE INDEX IF NOT EXISTS requests_by_key_and_time ON requests (key_hash, created_at)", logger: logger)
            // One row per key and day: a hold locks it, so the replicas' holds of one key take turns.
            try await c.query("CREATE TABLE IF NOT EXISTS quota_days (key_hash TEXT NOT NULL, day TIMESTAMPTZ NOT NULL, PRIMARY KEY (key_hash, day))",
                              logger: logger)
            try await c.query("""
                CREATE TABLE IF NOT EXISTS quota_holds (
                    id BIGSERIAL PRIMARY KEY, key_hash TEXT NOT NULL, tokens BIGINT NOT NULL, expires_at TIMESTAMPTZ NOT NULL)
                """, logger: logger)
            try await c.query("CREATE INDEX IF NOT EXISTS quota_holds_by_key ON quota_holds (key_hash)", logger: logger)
        }
    }

    @discardableResult
    public func record(_ e: UsageRecord) async throws -> Int64 {
        let rows = try await client.query("""
            INSERT INTO requests (created_at, key_hash, model, endpoint, prompt_tokens, cached_tokens, completion_tokens, latency_ms,
                                  time_to_first_token_ms, finish_reason, cost_usd, status, request_id, "user")
            VALUES (\(e.createdAt), \(e.keyHash), \(e.model), \(e.endpoint.rawValue), \(e.promptTokens), \(e.cachedTokens),
                    \(e.completionTokens), \(e.latencyMs), \(e.timeToFirstTokenMs), \(e.finishReason.rawValue), \(e.costUSD),
                    \(e.status), \(e.requestID), \(e.user))
            RETURNING id
            """, logger: logger)
        for try await id in rows.decode(Int64.self) { return id }
        throw LedgerError.cannotOpen(path: location, reason: "INSERT returned no id")
    }

    public func summary(keyHash: String? = nil, since: Date? = nil) async throws -> [KeyUsage] {
        let rows = try await client.query("""
            SELECT key_hash, COUNT(*), SUM(prompt_tokens)::BIGINT, SUM(cached_tokens)::BIGINT, SUM(completion_tokens)::BIGINT,
                   SUM(cost_usd)::DOUBLE PRECISION
            FROM requests WHERE (\(keyHash)::TEXT IS NULL OR key_hash = \(keyHash)) AND (\(since)::TIMESTAMPTZ IS NULL OR created_at >= \(since))
            GROUP BY key_hash ORDER BY key_hash
            """, logger: logger)
        var usage: [KeyUsage] = []
        for try await (key, requests, prompt, cached, completion, cost) in rows.decode((String, Int, Int, Int, Int, Double).self) {
            usage.append(KeyUsage(keyHash: key, requests: requests, promptTokens: prompt, cachedTokens: cached,
                                  completionTokens: completion, costUSD: cost))
        }
        return usage
    }

    public func records(keyHash: String? = nil, since: Date? = nil) async throws -> [UsageRecord] {
        let rows = try await client.query("""
            SELECT id, created_at, key_hash, model, endpoint, prompt_tokens, cached_tokens, completion_tokens, latency_ms,
                   time_to_first_token_ms, finish_reason, cost_usd, status, request_id, "user"
            FROM requests WHERE (\(keyHash)::TEXT IS NULL OR key_hash = \(keyHash)) AND (\(since)::TIMESTAMPTZ IS NULL OR created_at >= \(since))
            ORDER BY id
            """, logger: logger)
        var records: [UsageRecord] = []
        for try await row in rows {
            let r = row.makeRandomAccess()
            let endpoint = try r[4].decode(String.self), finish = try r[10].decode(String.self)
            guard let endpoint = UsageRecord.Endpoint(rawValue: endpoint), let finish = UsageRecord.FinishReason(rawValue: finish) else {
                throw LedgerError.notALedger(path: location)
            }
            records.append(UsageRecord(
                id: try r[0].decode(Int64.self), createdAt: try r[1].decode(Date.self), keyHash: try r[2].decode(String.self),
                model: try r[3].decode(String.self), endpoint: endpoint, promptTokens: try r[5].decode(Int.self),
                cachedTokens: try r[6].decode(Int.self), completionTokens: try r[7].decode(Int.self), latencyMs: try r[8].decode(Double.self),
                timeToFirstTokenMs: try r[9].decode(Double?.self), finishReason: finish, costUSD: try r[11].decode(Double.self),
                status: try r[12].decode(Int.self), requestID: try r[13].decode(String?.self), user: try r[14].decode(String?.self)))
        }
        return records
    }

    public func dailyQuota(tokens: Int?) -> any DailyQuota { PostgresQuota(ledger: self, dailyTokens: tokens) }
}

/// Daily quotas kept in the ledger's database, so replicas share them. A hold is a row of `quota_holds`, made
/// in a transaction that first locks the key's row of `quota_days` (`SELECT … FOR UPDATE`): the holds of one key
/// take turns across replicas, each seeing the others' committed holds and requests, so two replicas cannot both
/// spend a key's last tokens. Released after the request's row is committed (for that moment both count: a key
/// is never undercounted). A replica killed mid-request leaves its holds behind: they lapse an hour after they were
/// made (by the database's clock), so a generation running longer than that stops being counted until it ends.
public final class PostgresQuota: DailyQuota {
    public let dailyTokens: Int?
    let ledger: PostgresLedger

    init(ledger: PostgresLedger, dailyTokens: Int?) { self.ledger = ledger; self.dailyTokens = dailyTokens }

    /// Tokens of today's requests and of live holds.
    private func spent(_ keyHash: String, day: Date, _ c: PostgresConnection) async throws -> (used: Int, held: Int) {
        let rows = try await c.query("""
            SELECT (SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0)::BIGINT FROM requests WHERE key_hash = \(keyHash) AND created_at >= \(day)),
                   (SELECT COALESCE(SUM(tokens), 0)::BIGINT FROM quota_holds WHERE key_hash = \(keyHash) AND expires_at > now())
            """, logger: ledger.logger)
        for try await (used, held) in rows.decode((Int, Int).self) { return (used, held) }
        return (0, 0)
    }

    public func tokensLeft(keyHash: String) async throws -> Int? {
        guard let limit = dailyTokens else { return nil }
        let (used, held) = try await ledger.client.withConnection { try await spent(keyHash, day: QuotaTracker.startOfDay(Date()), $0) }
        return max(0, limit - used - held)
    }

    public func hold(keyHash: String, tokens: Int) async throws -> QuotaHold {
        guard let limit = dailyTokens else { return QuotaHold(keyHash: keyHash, tokens: tokens, id: nil) }
        let day = QuotaTracker.startOfDay(Date()), logger = ledger.logger
        do {
          return try await ledger.client.withTransaction(logger: logger) { c in
            try await c.query("INSERT INTO quota_days (key_hash, day) VALUES (\(keyHash), \(day)) ON CONFLICT DO NOTHING", logger: logger)
            try await c.query("SELECT 1 FROM quota_days WHERE key_hash = \(keyHash) AND day = \(day) FOR UPDATE", logger: logger)
            // The key's lapsed holds and past days go, so its rows stay few.
            try await c.query("DELETE FROM quota_holds WHERE key_hash = \(keyHash) AND expires_at <= now()", logger: logger)
            try await c.query("DELETE FROM quota_days WHERE key_hash = \(keyHash) AND day < \(day)", logger: logger)
            let (used, held) = try await spent(keyHash, day: day, c)
            // Compared by subtraction: `tokens` comes from the client's max_tokens, and a sum could overflow.
            guard tokens <= limit - used - held else {
                throw QuotaExceeded(limit: limit, used: used, inFlight: held, requested: tokens, resetsAt: day.addingTimeInterval(QuotaTracker.secondsPerDay))
            }
            let rows = try await c.query(
                "INSERT INTO quota_holds (key_hash, tokens, expires_at) VALUES (\(keyHash), \(tokens), now() + interval '1 hour') RETURNING id",
                logger: logger)
            for try await id in rows.decode(Int64.self) { return QuotaHold(keyHash: keyHash, tokens: tokens, id: id) }
            throw LedgerError.cannotOpen(path: ledger.location, reason: "INSERT returned no id")
          }
        } catch let error as PostgresTransactionError {
            throw error.closureError ?? error   // QuotaExceeded, as the in-memory quota throws it
        }
    }

    /// Deletes the hold once the request's row counts its tokens; without the row (`recorded` false) the hold keeps
    /// counting until it lapses. A failed delete lapses with the hold's hour.
    public func release(_ hold: QuotaHold, used: Int, recorded: Bool) async {
        guard recorded, let id = hold.id else { return }
        _ = try? await ledger.client.query("DELETE FROM quota_holds WHERE id = \(id)", logger: ledger.logger)
    }
}
