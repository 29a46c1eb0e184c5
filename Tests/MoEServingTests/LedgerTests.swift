import Foundation
import GRDB
import Testing
@testable import MoEServing

/// A fresh path under the temporary directory; the ledger's -wal/-shm companions go with it on `remove`.
struct TemporaryFile {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("moe-ledger-test-\(UUID().uuidString)").path

    func write(_ text: String) throws { try text.write(toFile: path, atomically: true, encoding: .utf8) }

    func remove() {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
    }
}

/// 2025-06-01 plus `hours`, UTC.
func june1(hours: Double = 0) -> Date { Date(timeIntervalSince1970: 1_748_736_000 + hours * 3600) }

func entry(key: String = "k1", at date: Date = june1(hours: 9), prompt: Int = 100, cached: Int = 0, completion: Int = 20,
           cost: Double = 0.001, finish: UsageRecord.FinishReason = .stop, status: Int = 200) -> UsageRecord {
    UsageRecord(createdAt: date, keyHash: key, model: "tiny-moe", endpoint: .chatCompletions, promptTokens: prompt,
                cachedTokens: cached, completionTokens: completion, latencyMs: 123.5, timeToFirstTokenMs: 12.25,
                finishReason: finish, costUSD: cost, status: status)
}

/// The blocking `record`, which async code would not pick over the `async` one.
func recordBlocking(_ row: UsageRecord, in ledger: UsageLedger) throws -> Int64 { try ledger.record(row) }

@Suite struct SHA256Tests {
    @Test func fipsVectors() {
        #expect(SHA256.hex(of: "") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(of: "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(of: "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex(of: "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")
            == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        #expect(SHA256.hex(SHA256.digest(of: [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)))
            == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Lengths either side of the padding boundaries (55/56 bytes: one block or two), from Python's hashlib.
    @Test func paddingBoundaries() {
        let expected = [
            55: "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318",
            56: "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a",
            63: "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34",
            64: "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb",
            65: "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0",
            119: "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb",
            120: "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c",
        ]
        for (length, hex) in expected { #expect(SHA256.hex(of: String(repeating: "a", count: length)) == hex, "\(length) bytes") }
    }
}

@Suite struct APIKeysTests {
    @Test func keysFileSkipsCommentsAndBlanksAndTrims() throws {
        let file = TemporaryFile()
        defer { file.remove() }
        try file.write("# team A\n  sk-alpha  \n\n\t\r\nsk-beta\r\n# sk-commented\nsk-alpha\n")
        let keys = try APIKeys(contentsOfFile: file.path)
        #expect(keys.hashes == [APIKeys.hash(of: "sk-alpha"), APIKeys.hash(of: "sk-beta")])
        #expect(APIKeys.hash(of: "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func authorizeReturnsTheKeysHashOnlyForKnownKeys() {
        let keys = APIKeys(keys: ["sk-alpha", "sk-beta"])
        #expect(keys.authorize(bearer: "sk-beta") == APIKeys.hash(of: "sk-beta"))
        #expect(keys.authorize(bearer: "sk-alpha") == APIKeys.hash(of: "sk-alpha"))
        #expect(keys.authorize(bearer: "sk-gamma") == nil)
        #expect(keys.authorize(bearer: "sk-alph") == nil)
        #expect(keys.authorize(bearer: "") == nil)
        #expect(keys.authorize(bearer: nil) == nil)
        #expect(APIKeys.constantTimeEqual([1, 2, 3], [1, 2, 3]) && !APIKeys.constantTimeEqual([1, 2, 3], [1, 2, 4]))
    }

    @Test func missingOrKeylessFilesAreErrors() throws {
        let file = TemporaryFile()
        defer { file.remove() }
        #expect(throws: APIKeysError.missingFile(path: file.path)) { try APIKeys(contentsOfFile: file.path) }
        try file.write("")
        #expect(throws: APIKeysError.noKeys(path: file.path)) { try APIKeys(contentsOfFile: file.path) }
        try file.write("# only a comment\n\n   \n")
        #expect(throws: APIKeysError.noKeys(path: file.path)) { try APIKeys(contentsOfFile: file.path) }
    }
}

@Suite struct PricingTests {
    @Test func costIsPerMillionTokens() {
        let pricing = Pricing(inputPerMillion: 0.5, outputPerMillion: 1.5)
        #expect(abs(pricing.cost(prompt: 1_000, completion: 200) - 0.0008) < 1e-15)
        #expect(pricing.cost(prompt: 2_000_000, completion: 1_000_000) == 2.5)
        #expect(Pricing.free.cost(prompt: 123, completion: 456) == 0)
    }
}

@Suite struct UsageLedgerTests {
    @Test func recordsSurviveReopening() throws {
        let file = TemporaryFile()
        defer { file.remove() }
        let first = entry(prompt: 812, cached: 512, completion: 64, cost: 0.000502)
        do {
            let ledger = try UsageLedger(path: file.path)
            #expect(try ledger.record(first) == 1)
        }
        let ledger = try UsageLedger(path: file.path)
        #expect(try ledger.record(entry(finish: .cancelled, status: 499)) == 2)
        let rows = try ledger.records()
        var expected = first
        expected.id = 1
        #expect(rows.first == expected)
        #expect(rows.map(\.finishReason) == [.stop, .cancelled])
        #expect(rows[1].timeToFirstTokenMs == 12.25)
    }

    @Test func walModeIsOn() throws {
        let file = TemporaryFile()
        defer { file.remove() }
        let ledger = try UsageLedger(path: file.path)
        #expect(try ledger.database.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") } == "wal")
        #expect(try ledger.database.write { try Int.fetchOne($0, sql: "PRAGMA synchronous") } == 2)  // FULL
    }

    @Test func summaryGroupsByKeyAndFiltersByKeyAndDate() throws {
        let file = TemporaryFile()
        defer { file.remove() }
        let ledger = try UsageLedger(path: file.path)
        try ledger.record(entry(key: "a", at: june1(hours: 1), prompt: 10, cached: 4, completion: 1, cost: 0.25))
        try ledger.record(entry(key: "a", at: june1(hours: 30), prompt: 20, cached: 0, completion: 2, cost: 0.5))
        try ledger.record(entry(key: "b", at: june1(hours: 23.99), prompt: 30, cached: 8, completion: 3, cost: 1))

        #expect(try ledger.summary() == [
            KeyUsage(keyHash: "a", requests: 2, promptTokens: 30, cachedTokens: 4, completionTokens: 3, costUSD: 0.75),
            KeyUsage(keyHash: "b", requests: 1, promptTokens: 30, cachedTokens: 8, completionTokens: 3, costUSD: 1),
        ])
        #expect(try ledger.summary(keyHash: "b").map(\.keyHash) == ["b"])
        #expect(try ledger.summary(keyHash: "nobody").isEmpty)
        let june2 = try #require(UsageLedger.parseDate("2025-06-02"))
        #expect(try ledger.summary(since: june2) == [
            KeyUsage(keyHash: "a", requests: 1, promptTokens: 20, cachedTokens: 0, completionTokens: 2, costUSD: 0.5),
        ])
        #expect(try ledger.tokensUsed(keyHash: "a", since: june1()) == 33)
        #expect(try ledger.tokensUsed(keyHash: "a", since: june2) == 22)
        #expect(try ledger.tokensUsed(keyHash: "nobody", since: june1()) == 0)
        #expect(try ledger.records(keyHash: "a", since: june2).map(\.promptTokens) == [20])
        #expect(KeyUsage.total(try ledger.summary()).totalTokens == 66)
    }

    @Test func sinceAcceptsDatesAndDateTimesAndRejectsTypos() throws {
        #expect(UsageLedger.parseDate("2025-06-01") == june1())
        #expect(UsageLedger.parseDate("2025-06-01T09:30:00Z") == june1(hours: 9.5))
        #expect(UsageLedger.parseDate("2025-06-01T09:30:00+02:00") == june1(hours: 7.5))
        #expect(UsageLedger.parseDate("2025-06-01T09:30:00.250Z") == june1(hours: 9.5).addingTimeInterval(0.25))
        #expect(UsageLedger.parseDate("2025-06-01T09:30:00") == june1(hours: 9.5))
        #expect(UsageLedger.parseDate("2025-06-01 09:30:00") == june1(hours: 9.5))
        for bad in ["", "yesterday", "2025-02-30", "2025-13-01", "06/01/2025", "2025-06-01Tnoon"] {
            #expect(UsageLedger.parseDate(bad) == nil, "\(bad)")
        }
    }

    @Test func aFileThatIsNotALedgerIsAClearError() throws {
        let file = TemporaryFile()
        defer { file.remove() }
        try file.write(String(repeating: "this is not a database\n", count: 200))
        #expect(throws: LedgerError.notADatabase(path: file.path)) { try UsageLedger(path: file.path) }
        #expect(throws: LedgerError.notADatabase(path: file.path)) { try UsageLedger(path: file.path, readOnly: true) }
        #expect(try String(contentsOfFile: file.path, encoding: .utf8).hasPrefix("this is not"), "left untouched")

        let missing = TemporaryFile()
        #expect(throws: LedgerError.missing(path: missing.path)) { try UsageLedger(path: missing.path, readOnly: true) }
        #expect(!FileManager.default.fileExists(atPath: missing.path), "a read-only open creates nothing")
        #expect(throws: LedgerError.self) { try UsageLedger(path: missing.path + "/no/such/dir/ledger.sqlite") }
    }

    @Test func aLedgerWithDamagedPagesThrowsInsteadOfCrashing() throws {
        let file = TemporaryFile()
        defer { file.remove() }
        do {
            let ledger = try UsageLedger(path: file.path)
            for i in 0..<50 { try ledger.record(entry(prompt: i)) }
            try ledger.database.writeWithoutTransaction { _ = try $0.checkpoint(.truncate) }
        }
        // Keep SQLite's 100-byte header, scribble over the rest of the first pages.
        let handle = try #require(FileHandle(forUpdatingAtPath: file.path))
        try handle.seek(toOffset: 100)
        try handle.write(contentsOf: Data(repeating: 0xA5, count: 3 * 4096))
        try handle.close()
        #expect(throws: (any Error).self) { _ = try UsageLedger(path: file.path).summary() }
    }

    @Test func readOnlyRefusesAnotherSQLiteDatabase() throws {
        let file = TemporaryFile()
        defer { file.remove() }
        do {
            let ledger = try UsageLedger(path: file.path)
            try ledger.database.write { try $0.execute(sql: "DROP TABLE requests") }
        }
        #expect(throws: LedgerError.notALedger(path: file.path)) { try UsageLedger(path: file.path, readOnly: true) }
    }

    @Test func concurrentRecordsAllLand() async throws {
        let file = TemporaryFile()
        defer { file.remove() }
        let ledger = try UsageLedger(path: file.path)
        let ids = try await withThrowingTaskGroup(of: Int64.self) { group in
            for i in 0..<200 {
                group.addTask {
                    let row = entry(key: "k\(i % 7)", prompt: i, completion: 1)
                    return i.isMultiple(of: 2) ? try await ledger.record(row) : try recordBlocking(row, in: ledger)
                }
            }
            return try await group.reduce(into: Set<Int64>()) { $0.insert($1) }
        }
        #expect(ids == Set(1...200))
        let total = KeyUsage.total(try ledger.summary())
        #expect(total.requests == 200 && total.promptTokens == (0..<200).reduce(0, +) && total.completionTokens == 200)
    }

    @Test func aCancelledRequestIsStillRecorded() async throws {
        let file = TemporaryFile()
        defer { file.remove() }
        let ledger = try UsageLedger(path: file.path)
        let task = Task {
            while !Task.isCancelled { await Task.yield() }
            return try await ledger.record(entry(finish: .cancelled, status: 499))
        }
        task.cancel()
        #expect(try await task.value == 1)
        #expect(try ledger.records().map(\.finishReason) == [.cancelled])
    }
}

@Suite struct QuotaTrackerTests {
    let noon = june1(hours: 12)

    @Test func reservationsCountInFlightAndSettledTokens() throws {
        let file = TemporaryFile()
        defer { file.remove() }
        let quota = QuotaTracker(ledger: try UsageLedger(path: file.path), dailyTokens: 100)
        try quota.reserve(keyHash: "a", tokens: 60, now: noon)
        #expect(throws: QuotaExceeded.self) { try quota.reserve(keyHash: "a", tokens: 50, now: noon) }
        try quota.reserve(keyHash: "b", tokens: 100, now: noon)  // keys are separate
        quota.settle(keyHash: "a", reserved: 60, used: 30)
        try quota.reserve(keyHash: "a", tokens: 70, now: noon)
        #expect(try quota.remaining(keyHash: "a", now: noon) == 0)
        do {
            try quota.reserve(keyHash: "a", tokens: 1, now: noon)
            Issue.record("reserved past the quota")
        } catch let error as QuotaExceeded {
            #expect(error == QuotaExceeded(limit: 100, used: 30, inFlight: 70, requested: 1, resetsAt: june1(hours: 24)))
        }
        #expect(throws: QuotaExceeded.self) { try quota.reserve(keyHash: "b", tokens: Int.max, now: noon) }
        // A new UTC day starts from the ledger's (empty) count; the request still running keeps its reservation.
        #expect(try quota.remaining(keyHash: "a", now: june1(hours: 24)) == 30)
    }

    @Test func aRestartedTrackerCountsTodaysLedger() throws {
        let file = TemporaryFile()
        defer { file.remove() }
        do {
            let ledger = try UsageLedger(path: file.path)
            let quota = QuotaTracker(ledger: ledger, dailyTokens: 100)
            try quota.reserve(keyHash: "a", tokens: 90, now: noon)
            try ledger.record(entry(key: "a", at: noon, prompt: 50, completion: 20))
            quota.settle(keyHash: "a", reserved: 90, used: 70)
            try ledger.record(entry(key: "a", at: june1(hours: -1), prompt: 1000, completion: 0))  // yesterday
        }
        let quota = QuotaTracker(ledger: try UsageLedger(path: file.path), dailyTokens: 100)
        #expect(throws: QuotaExceeded.self) { try quota.reserve(keyHash: "a", tokens: 31, now: noon) }
        try quota.reserve(keyHash: "a", tokens: 30, now: noon)
        #expect(try quota.remaining(keyHash: "a", now: noon) == 0)
    }

    @Test func noQuotaMeansUnlimited() throws {
        let file = TemporaryFile()
        defer { file.remove() }
        let quota = QuotaTracker(ledger: try UsageLedger(path: file.path), dailyTokens: nil)
        try quota.reserve(keyHash: "a", tokens: Int.max / 2, now: noon)
        try quota.reserve(keyHash: "a", tokens: Int.max / 2, now: noon)
        quota.settle(keyHash: "a", reserved: 1, used: 1)
        #expect(try quota.remaining(keyHash: "a") == nil)
    }

    @Test func utcDaysStartAtMidnight() {
        #expect(QuotaTracker.startOfDay(june1(hours: 23.999)) == june1())
        #expect(QuotaTracker.startOfDay(june1(hours: 24)) == june1(hours: 24))
        #expect(QuotaTracker.startOfDay(june1(hours: -0.001)) == june1(hours: -24))
    }
}
