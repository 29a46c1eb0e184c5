import Foundation

/// A daily token quota per key (prompt + completion tokens, per UTC day), the same for every key.
///
/// A request reserves its worst case before it runs (prompt tokens + `max_tokens`) and settles with what
/// it used when it ends, so concurrent requests cannot overshoot the quota together. A key's usage for the
/// day is read from the ledger the first time the key is seen that day, so a restarted server still counts
/// what was used before the restart; after that it is kept in memory.
///
///     let quota = QuotaTracker(ledger: ledger, dailyTokens: 1_000_000)
///     try quota.reserve(keyHash: keyHash, tokens: promptTokens + maxTokens)  // throws QuotaExceeded → 429
///     defer { quota.settle(keyHash: keyHash, reserved: promptTokens + maxTokens, used: promptTokens + generated) }
///
/// Record the request in the ledger before settling it: a settle that comes first is harmless, but a key
/// first seen that day between the two would count the request twice (once from the ledger, once here).
public final class QuotaTracker: @unchecked Sendable {
    /// Tokens per key per UTC day; nil means unlimited (nothing is tracked or read).
    public let dailyTokens: Int?
    private let ledger: UsageLedger
    // Guards `days`; held across the one ledger read per key and day so two first requests cannot both
    // load (and then double) the same key.
    private let lock = NSLock()
    private var days: [String: Day] = [:]

    private struct Day {
        var start: Date
        var used: Int
        var reserved: Int
    }

    public init(ledger: UsageLedger, dailyTokens: Int?) {
        self.ledger = ledger
        self.dailyTokens = dailyTokens
    }

    /// Reserves `tokens` for a request by `keyHash` if the key's usage today plus its requests in flight
    /// leave room; otherwise throws `QuotaExceeded` and reserves nothing.
    ///
    /// - Throws: `QuotaExceeded`, or the ledger's error if today's usage cannot be read.
    public func reserve(keyHash: String, tokens: Int, now: Date = Date()) throws {
        guard let limit = dailyTokens else { return }
        try lock.withLock {
            var day = try today(keyHash, now)
            // Compared by subtraction: `tokens` comes from the client's max_tokens, and a sum could overflow.
            guard tokens <= limit - day.used - day.reserved else {
                throw QuotaExceeded(limit: limit, used: day.used, inFlight: day.reserved, requested: tokens,
                                    resetsAt: day.start.addingTimeInterval(Self.secondsPerDay))
            }
            day.reserved += tokens
            days[keyHash] = day
        }
    }

    /// Ends a request reserved with `reserve`: releases `reserved` and counts `used` (prompt + completion).
    public func settle(keyHash: String, reserved: Int, used: Int) {
        guard dailyTokens != nil else { return }
        lock.withLock {
            guard var day = days[keyHash] else { return }
            day.reserved = max(0, day.reserved - reserved)
            day.used += used
            days[keyHash] = day
        }
    }

    /// Tokens `keyHash` may still reserve today (nil when unlimited), for rate-limit headers.
    public func remaining(keyHash: String, now: Date = Date()) throws -> Int? {
        guard let limit = dailyTokens else { return nil }
        return try lock.withLock {
            let day = try today(keyHash, now)
            days[keyHash] = day
            return max(0, limit - day.used - day.reserved)
        }
    }

    /// The key's figures for the UTC day of `now`, read from the ledger on a new day. Requests still running
    /// keep their reservations into the new day: they will settle (and be recorded) in it. Call with `lock` held.
    private func today(_ keyHash: String, _ now: Date) throws -> Day {
        let start = Self.startOfDay(now)
        let known = days[keyHash]
        if let known, known.start == start { return known }
        return Day(start: start, used: try ledger.tokensUsed(keyHash: keyHash, since: start), reserved: known?.reserved ?? 0)
    }

    static let secondsPerDay: TimeInterval = 86_400

    /// Midnight UTC of `date`'s day. Unix time has no leap seconds, so UTC days are exactly 86,400 s.
    public static func startOfDay(_ date: Date) -> Date {
        Date(timeIntervalSince1970: (date.timeIntervalSince1970 / secondsPerDay).rounded(.down) * secondsPerDay)
    }
}

/// A request refused by `QuotaTracker.reserve`: what the key used, what was asked, and when the quota resets.
public struct QuotaExceeded: Error, CustomStringConvertible, Equatable {
    public var limit: Int
    /// Tokens of finished requests today.
    public var used: Int
    /// Tokens reserved by requests still running.
    public var inFlight: Int
    public var requested: Int
    /// The next midnight UTC.
    public var resetsAt: Date

    public var description: String {
        "daily token quota exceeded: \(used) used and \(inFlight) reserved of \(limit), \(requested) requested; "
            + "resets at \(resetsAt.ISO8601Format())"
    }
}
