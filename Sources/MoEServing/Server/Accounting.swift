import Foundation

/// Bills one request: the ledger row (committed before the response's last byte is sent), the quota, the
/// metrics, and the `usage` object of the response.
struct Accounting: Sendable {
    let server: ModelServer
    let keyHash: String
    let endpoint: UsageRecord.Endpoint
    /// Tokens held against the key's quota when the request was admitted.
    let hold: QuotaHold
    let start: ContinuousClock.Instant
    let promptTokens: Int
    /// Names the request in the log and in error messages.
    let requestID: String
    /// The request's `user` field, for the row.
    var user: String? = nil
    /// The request's expert budget and count, reported in `usage` (MoE models).
    var experts: ExpertUsage? = nil

    /// Writes the ledger row and returns the usage object. `status` 499: the client went away, and the row
    /// holds what was generated until then.
    func commit(_ results: [ChoiceRun.Result], status: Int) async throws -> [String: Any] {
        let completion = results.reduce(0) { $0 + $1.completionTokens }
        let cached = results.first?.cachedTokens ?? 0
        let latency = start.duration(to: .now)
        let firstToken = results.compactMap(\.firstTokenAt).min().map { start.duration(to: $0) }
        // One reason per row: a cut-short request is "cancelled"; with several choices, "length" if any ran out.
        let reasons = results.map { $0.finishReason ?? "cancelled" }
        let finish: UsageRecord.FinishReason = status == 499 || reasons.contains("cancelled") ? .cancelled
            : reasons.contains("length") ? .length : .stop
        let cost = server.pricing.cost(prompt: promptTokens, completion: completion)
        let record = UsageRecord(keyHash: keyHash, model: server.modelID, endpoint: endpoint, promptTokens: promptTokens,
                                 cachedTokens: cached, completionTokens: completion, latencyMs: milliseconds(latency),
                                 timeToFirstTokenMs: firstToken.map(milliseconds), finishReason: finish, costUSD: cost,
                                 status: status, requestID: requestID, user: user)
        // The row first, then the quota (the tracker reads a key's day from the ledger when it first sees it).
        var failure: Error?
        do { try await server.ledger.record(record) } catch { failure = error }
        await server.quota.release(hold, used: promptTokens + completion, recorded: failure == nil)
        if let failure {
            server.metrics.ledgerWriteFailed(failure, requestID: requestID)
            throw APIError.internal(requestID: requestID)
        }
        let m = server.metrics
        m.promptTokens.increment(by: Int64(promptTokens))
        m.cachedTokens.increment(by: Int64(cached))
        m.completionTokens.increment(by: Int64(completion))
        if let firstToken { m.timeToFirstToken.record(seconds(firstToken)) }
        for r in results where r.completionTokens > 1 {
            if let first = r.firstTokenAt {
                let decode = seconds(first.duration(to: .now))
                if decode > 0 { m.decodeRate.record(Double(r.completionTokens - 1) / decode) }
            }
        }
        var usage = ResponseShapes.usage(prompt: promptTokens, completion: completion, cached: cached)
        if let experts { usage.merge(experts.usageFields) { $1 } }
        return usage
    }
}

func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}

func milliseconds(_ d: Duration) -> Double { seconds(d) * 1000 }
