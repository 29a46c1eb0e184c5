import Foundation
import Testing
@testable import MoEServing

/// A PostgreSQL server for the ledger tests: `MOE_TEST_POSTGRES` names its URL (CI's .ci/run starts Debian's
/// postgresql and sets it). Every test uses keys of its own, so runs share the database.
let postgresURL = ProcessInfo.processInfo.environment["MOE_TEST_POSTGRES"].flatMap { $0.isEmpty ? nil : $0 }

@Suite(.serialized) struct PostgresLedgerTests {
    func entry(_ key: String, prompt: Int, completion: Int, at date: Date = Date(), status: Int = 200) -> UsageRecord {
        UsageRecord(createdAt: date, keyHash: key, model: "m", endpoint: .chatCompletions, promptTokens: prompt, cachedTokens: prompt / 2,
                    completionTokens: completion, latencyMs: 12.5, timeToFirstTokenMs: completion > 0 ? 3.25 : nil,
                    finishReason: completion > 0 ? .stop : .error, costUSD: Double(prompt + completion) * 1e-6, status: status,
                    requestID: UUID().uuidString, user: completion > 0 ? "u1" : nil)
    }

    /// The same rows give the same summary and records as the SQLite ledger (ids and sub-millisecond times aside).
    @Test(.enabled(if: postgresURL != nil, "set MOE_TEST_POSTGRES to a PostgreSQL URL"))
    func rowsAndSummariesMatchTheSQLiteLedger() async throws {
        let postgres = try await Ledgers.open(postgresURL!)
        let sqlite = try UsageLedger(path: TestModel.ledgerPath())
        let keys = (0..<2).map { _ in "test-\(UUID().uuidString)" }
        let start = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 * 1000).rounded() / 1000)
        let entries = [entry(keys[0], prompt: 10, completion: 5, at: start), entry(keys[1], prompt: 7, completion: 0, status: 400),
                       entry(keys[0], prompt: 3, completion: 9, at: start.addingTimeInterval(1))]
        for e in entries {
            let id = try await postgres.record(e)
            #expect(id > 0)
            try await sqlite.record(e)
        }
        for key in keys {
            let a = try await postgres.summary(keyHash: key, since: nil), b = try sqlite.summary(keyHash: key, since: nil)
            #expect(a == b)
            let ra = try await postgres.records(keyHash: key, since: nil), rb = try sqlite.records(keyHash: key, since: nil)
            #expect(ra.count == rb.count)
            for (x, y) in zip(ra, rb) {
                var x = x, y = y
                #expect(abs(x.createdAt.timeIntervalSince(y.createdAt)) < 0.001)
                x.id = nil; y.id = nil; x.createdAt = y.createdAt
                #expect(x == y)
            }
        }
        let later = try await postgres.summary(keyHash: keys[0], since: start.addingTimeInterval(0.5))
        #expect(later.first?.requests == 1 && later.first?.totalTokens == 12)
    }

    /// Two replicas (two connection pools) holding one key's quota at once: the holds never add up to more than
    /// the quota; a release frees its tokens once the request's row counts them.
    @Test(.enabled(if: postgresURL != nil, "set MOE_TEST_POSTGRES to a PostgreSQL URL"))
    func holdsOfTwoReplicasNeverOverspendAKey() async throws {
        let replicas = [try await Ledgers.open(postgresURL!), try await Ledgers.open(postgresURL!)]
        let quotas = replicas.map { $0.dailyQuota(tokens: 1000) }
        let key = "test-\(UUID().uuidString)"
        let holds = await withTaskGroup(of: QuotaHold?.self) { group in
            for i in 0..<40 {
                let quota = quotas[i % 2]
                group.addTask { try? await quota.hold(keyHash: key, tokens: 100) }
            }
            return await group.reduce(into: [QuotaHold]()) { if let h = $1 { $0.append(h) } }
        }
        #expect(holds.count == 10)
        #expect(try await quotas[0].tokensLeft(keyHash: key) == 0)
        await #expect(throws: QuotaExceeded.self) { try await quotas[1].hold(keyHash: key, tokens: 1) }
        // One request ends having used 40 tokens: its row, then its release, leave 60 of its 100 free.
        try await replicas[0].record(entry(key, prompt: 30, completion: 10))
        await quotas[0].release(holds[0], used: 40, recorded: true)
        #expect(try await quotas[1].tokensLeft(keyHash: key) == 60)
        for h in holds.dropFirst() { await quotas[1].release(h, used: 0, recorded: true) }
        #expect(try await quotas[0].tokensLeft(keyHash: key) == 960)
    }

    /// What cannot be opened says why, with the password hidden.
    @Test func unreachableOrMalformedLedgersAreClearErrors() async throws {
        await #expect(throws: LedgerError.self) { try await Ledgers.open("postgres://nobody@") }
        do {
            _ = try await Ledgers.open("postgres://moe:secret@127.0.0.1:1/moe")
            Issue.record("opened a ledger on port 1")
        } catch let error as LedgerError {
            #expect("\(error)".contains("postgres://moe:***@127.0.0.1:1/moe") && !"\(error)".contains("secret"), "\(error)")
        }
        #expect(Ledgers.describe("postgresql://u:pw@h/db") == "postgresql://u:***@h/db")
        #expect(Ledgers.describe("moe-ledger.sqlite") == "moe-ledger.sqlite")
        #expect(Ledgers.describe("postgres://u:p#w/x@y@h/db") == "postgres://u:***@h/db")   // not a valid URL
        await #expect(throws: LedgerError.self) { try await Ledgers.open("postgres://u@h/db?sslmode=verify-ca") }
    }
}
