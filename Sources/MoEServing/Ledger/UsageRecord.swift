import Foundation
import GRDB

/// One request the server answered (or failed or was cancelled on), as a row of the ledger's `requests`
/// table. Token counts follow OpenAI's `usage`: `cachedTokens` is the part of `promptTokens` served from
/// the prompt cache, not an addition to it.
///
///     let entry = UsageRecord(keyHash: keyHash, model: "qwen3-moe", endpoint: .chatCompletions,
///                             promptTokens: 812, cachedTokens: 512, completionTokens: 64,
///                             latencyMs: 950, timeToFirstTokenMs: 120, finishReason: .stop,
///                             costUSD: pricing.cost(prompt: 812, completion: 64), status: 200)
///     try await ledger.record(entry)
public struct UsageRecord: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
    public enum Endpoint: String, Sendable, Codable {
        case chatCompletions = "chat.completions"
        case completions
        case responses
    }

    public enum FinishReason: String, Sendable, Codable {
        case stop, length, cancelled, error
    }

    public static let databaseTableName = "requests"

    /// Assigned by the ledger (nil until recorded).
    public var id: Int64?
    /// Stored in UTC as `YYYY-MM-DD HH:MM:SS.SSS` (millisecond precision).
    public var createdAt: Date
    /// `APIKeys.hash(of:)` of the caller's key, or `UsageLedger.openKeyHash` on a server without keys.
    public var keyHash: String
    public var model: String
    public var endpoint: Endpoint
    public var promptTokens: Int
    public var cachedTokens: Int
    public var completionTokens: Int
    public var latencyMs: Double
    /// nil when no token was generated (errors, zero `max_tokens`).
    public var timeToFirstTokenMs: Double?
    public var finishReason: FinishReason
    public var costUSD: Double
    /// The HTTP status sent.
    public var status: Int
    /// The response's `X-Request-Id` (nil in rows written before ids were recorded).
    public var requestID: String?
    /// The request's `user` field (OpenAI: an id for the caller's end user), when it sent one.
    public var user: String?

    public init(id: Int64? = nil, createdAt: Date = Date(), keyHash: String, model: String, endpoint: Endpoint,
                promptTokens: Int, cachedTokens: Int = 0, completionTokens: Int, latencyMs: Double,
                timeToFirstTokenMs: Double? = nil, finishReason: FinishReason, costUSD: Double, status: Int,
                requestID: String? = nil, user: String? = nil) {
        self.id = id
        self.createdAt = createdAt
        self.keyHash = keyHash
        self.model = model
        self.endpoint = endpoint
        self.promptTokens = promptTokens
        self.cachedTokens = cachedTokens
        self.completionTokens = completionTokens
        self.latencyMs = latencyMs
        self.timeToFirstTokenMs = timeToFirstTokenMs
        self.finishReason = finishReason
        self.costUSD = costUSD
        self.status = status
        self.requestID = requestID
        self.user = user
    }

    enum CodingKeys: String, CodingKey {
        case id, model, endpoint, status, user
        case createdAt = "created_at", keyHash = "key_hash"
        case promptTokens = "prompt_tokens", cachedTokens = "cached_tokens", completionTokens = "completion_tokens"
        case latencyMs = "latency_ms", timeToFirstTokenMs = "time_to_first_token_ms"
        case finishReason = "finish_reason", costUSD = "cost_usd", requestID = "request_id"
    }
}

/// One key's totals over a period, as `UsageLedger.summary` returns them.
public struct KeyUsage: Sendable, Equatable {
    public var keyHash: String
    public var requests: Int
    public var promptTokens: Int
    public var cachedTokens: Int
    public var completionTokens: Int
    public var costUSD: Double

    public init(keyHash: String, requests: Int = 0, promptTokens: Int = 0, cachedTokens: Int = 0,
                completionTokens: Int = 0, costUSD: Double = 0) {
        self.keyHash = keyHash
        self.requests = requests
        self.promptTokens = promptTokens
        self.cachedTokens = cachedTokens
        self.completionTokens = completionTokens
        self.costUSD = costUSD
    }

    /// Prompt + completion tokens: what daily quotas count.
    public var totalTokens: Int { promptTokens + completionTokens }

    /// The sum of `rows` under `keyHash` (e.g. a report's total line).
    public static func total(_ rows: [KeyUsage], keyHash: String = "total") -> KeyUsage {
        rows.reduce(into: KeyUsage(keyHash: keyHash)) { sum, row in
            sum.requests += row.requests
            sum.promptTokens += row.promptTokens
            sum.cachedTokens += row.cachedTokens
            sum.completionTokens += row.completionTokens
            sum.costUSD += row.costUSD
        }
    }
}
