import Foundation

/// Where a server records every request it answered, and what `moe usage` reads: a SQLite file (`UsageLedger`,
/// the default, one server) or a PostgreSQL database (`PostgresLedger`, any number of replicas).
///
///     let ledger = try await Ledgers.open("postgres://moe:secret@db:5432/moe")
///     try await ledger.record(entry)               // committed before the response's last byte
///     let quota = ledger.dailyQuota(tokens: 1_000_000)
public protocol UsageStore: Sendable {
    /// Appends `entry` and returns its id once the row is committed.
    @discardableResult func record(_ entry: UsageRecord) async throws -> Int64
    /// Per key (ordered by hash): requests, tokens and cost at or after `since`; one key if `keyHash` is given.
    func summary(keyHash: String?, since: Date?) async throws -> [KeyUsage]
    /// The rows themselves, oldest first.
    func records(keyHash: String?, since: Date?) async throws -> [UsageRecord]
    /// The daily token quota (nil: none) kept with this ledger: in the process for SQLite, in the database for
    /// PostgreSQL (so replicas share it).
    func dailyQuota(tokens: Int?) -> any DailyQuota
}

/// A daily token quota per key (prompt + completion tokens, per UTC day). A request holds its worst case
/// before it runs and releases it with what it used once its ledger row is committed, so concurrent requests
/// cannot overshoot the quota together.
public protocol DailyQuota: Sendable {
    /// Tokens per key per UTC day; nil: unlimited.
    var dailyTokens: Int? { get }
    /// Tokens `keyHash` may still hold today (nil when unlimited).
    func tokensLeft(keyHash: String) async throws -> Int?
    /// Holds `tokens` for a request of `keyHash`, or throws `QuotaExceeded` and holds nothing.
    func hold(keyHash: String, tokens: Int) async throws -> QuotaHold
    /// Ends a hold, counting `used` tokens: record the request's row first; `recorded` false when that failed (the
    /// tokens must still count).
    func release(_ hold: QuotaHold, used: Int, recorded: Bool) async
}

/// Tokens held against a key's quota by one request.
public struct QuotaHold: Sendable, Equatable {
    public let keyHash: String
    public let tokens: Int
    /// The database's row for the hold (PostgreSQL), nil for one kept in memory.
    let id: Int64?
}

/// Opens the ledger a `--ledger` argument names: a `postgres://` or `postgresql://` URL, else a SQLite file path.
public enum Ledgers {
    public static func open(_ location: String, readOnly: Bool = false) async throws -> any UsageStore {
        PostgresLedger.isURL(location) ? try await PostgresLedger(url: location, readOnly: readOnly)
            : try UsageLedger(path: location, readOnly: readOnly)
    }

    /// `location` fit for logs: a URL's password (between the user's `:` and the last `@`, read as text, so that
    /// a password with unescaped `#`, `/` or `@` is hidden too) replaced by `***`.
    public static func describe(_ location: String) -> String {
        guard PostgresLedger.isURL(location), let scheme = location.range(of: "://"),
              let at = location.range(of: "@", options: .backwards), scheme.upperBound <= at.lowerBound,
              let colon = location[scheme.upperBound ..< at.lowerBound].firstIndex(of: ":") else { return location }
        return String(location[...colon]) + "***" + String(location[at.lowerBound...])
    }
}

extension UsageLedger: UsageStore {
    public func dailyQuota(tokens: Int?) -> any DailyQuota { QuotaTracker(ledger: self, dailyTokens: tokens) }
}

extension QuotaTracker: DailyQuota {
    public func tokensLeft(keyHash: String) async throws -> Int? { try remaining(keyHash: keyHash) }

    public func hold(keyHash: String, tokens: Int) async throws -> QuotaHold {
        try reserve(keyHash: keyHash, tokens: tokens)
        return QuotaHold(keyHash: keyHash, tokens: tokens, id: nil)
    }

    /// In memory the used tokens count whether or not the row was written.
    public func release(_ hold: QuotaHold, used: Int, recorded: Bool) async { settle(keyHash: hold.keyHash, reserved: hold.tokens, used: used) }
}
