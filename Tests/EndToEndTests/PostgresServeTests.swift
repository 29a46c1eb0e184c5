import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import MoEServing
import Testing

/// `MOE_TEST_POSTGRES`: a PostgreSQL URL (CI's .ci/run starts Debian's postgresql and sets it).
private let postgresURL = ProcessInfo.processInfo.environment["MOE_TEST_POSTGRES"].flatMap { $0.isEmpty ? nil : $0 }

/// Two `moe serve` replicas on one PostgreSQL ledger.
@Suite(.serialized) struct PostgresServeTests {
    /// A completion request to `server`: its status and X-Request-Id (nil when the connection failed).
    static func complete(port: Int, key: String, maxTokens: Int) async -> (status: Int, requestID: String?) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/v1/completions")!)
        request.httpMethod = "POST"
        request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(#"{"model": "model", "prompt": "The fox ran", "max_tokens": \#(maxTokens), "temperature": 0}"#.utf8)
        guard let (_, response) = try? await URLSession.shared.data(for: request), let http = response as? HTTPURLResponse else { return (0, nil) }
        return (http.statusCode, http.value(forHTTPHeaderField: "X-Request-Id"))
    }

    /// Under concurrent load on both replicas every request has exactly one row and the key's daily quota is
    /// never overspent by more than one request's hold; a replica killed mid-load loses no committed row.
    @Test(.enabled(if: postgresURL != nil, "set MOE_TEST_POSTGRES to a PostgreSQL URL"))
    func twoReplicasShareOneLedgerAndQuota() async throws {
        let dir = try TrainingCLITests().foxCorpus()
        let r = try CLI.run(["pretrain", "--config", "tiny", "--data", dir + "/data.txt", "--tokenizer", dir + "/tok", "--batch", "2",
                             "--seq-len", "32", "--steps", "1", "--out", dir + "/model", "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        let keys = ["sk-\(UUID().uuidString)", "sk-\(UUID().uuidString)"]   // fresh keys: nothing used today
        try (keys.joined(separator: "\n") + "\n").write(toFile: dir + "/keys", atomically: true, encoding: .utf8)
        let quota = 400, maxTokens = 16
        let arguments = ["serve", "--model", dir + "/model", "--port", "0", "--api-keys", dir + "/keys", "--ledger", postgresURL!,
                         "--daily-token-quota", "\(quota)", "--parallel", "2", "--threads", "1"]
        let replicas = [try ServerProcess(arguments), try ServerProcess(arguments)]
        #expect(replicas[0].stderr.contains("ledger: postgres://") && !replicas[0].stderr.contains(":moe@"), "the password is hidden")

        // 40 requests at once, alternating replicas, against a quota that covers about half of them.
        let ports = replicas.map(\.port)
        let results = await withTaskGroup(of: (status: Int, requestID: String?).self) { group in
            for i in 0..<40 { group.addTask { await Self.complete(port: ports[i % 2], key: keys[0], maxTokens: maxTokens) } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let ledger = try await Ledgers.open(postgresURL!)
        let rows = try await ledger.records(keyHash: APIKeys.hash(of: keys[0]), since: nil)
        #expect(results.allSatisfy { $0.status == 200 || $0.status == 429 }, "\(results.map(\.status))")
        #expect(results.contains { $0.status == 200 } && results.contains { $0.status == 429 }, "\(results.map(\.status))")
        #expect(rows.count == results.count, "one row per request")
        for result in results {
            #expect(rows.filter { $0.requestID == result.requestID }.count == 1, "request \(result.requestID ?? "?")")
        }
        let used = rows.reduce(0) { $0 + $1.promptTokens + $1.completionTokens }
        let largestHold = rows.map { $0.promptTokens + maxTokens }.max() ?? 0
        #expect(used <= quota + largestHold, "used \(used) of \(quota)")

        // Kill one replica (SIGKILL) once its first answer is in: every answer given in full has its row.
        let victim = replicas[1], victimPID = victim.process.processIdentifier
        let answered = await withTaskGroup(of: (status: Int, requestID: String?).self) { group in
            for _ in 0..<12 { group.addTask { await Self.complete(port: ports[1], key: keys[1], maxTokens: 48) } }
            var answered: [String] = []
            for await result in group {
                if result.status == 200, let id = result.requestID { answered.append(id) }
                kill(victimPID, SIGKILL)
            }
            return answered
        }
        victim.process.waitUntilExit()
        let kept = try await ledger.records(keyHash: APIKeys.hash(of: keys[1]), since: nil)
        #expect(!answered.isEmpty)
        for id in answered { #expect(kept.filter { $0.requestID == id }.count == 1, "answered request \(id) has its row") }
        #expect(replicas[0].stop() == 0, "\(replicas[0].stderr.suffix(2000))")

        let usage = try CLI.run(["usage", "--ledger", postgresURL!, "--key", keys[0]])
        #expect(usage.status == 0, "\(usage.stderr)")
        let total = usage.stdout.split(separator: "\n").last?.split(separator: " ") ?? []
        #expect(total.first == "total" && Int(total[1]) == rows.count, "\(usage.stdout)")
    }
}
