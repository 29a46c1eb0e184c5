import Foundation
import Prometheus

/// The server's Prometheus metrics (`GET /metrics`, text format 0.0.4).
///
///     moe_requests_total{endpoint="chat.completions",status="200"} 12
///     moe_time_to_first_token_seconds_bucket{le="0.1"} 9
final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let promptTokens: Counter
    let cachedTokens: Counter
    let completionTokens: Counter
    let timeToFirstToken: ValueHistogram
    let decodeRate: ValueHistogram
    let queueDepth: Gauge
    let batchSize: Gauge
    let meanBatchSize: Gauge
    let steps: Gauge
    let kvPages: Gauge
    let kvPagesFree: Gauge
    let preemptions: Gauge
    let draftTokens: Gauge
    let acceptedDraftTokens: Gauge
    let ledgerFailures: Counter

    init() {
        promptTokens = registry.makeCounter(descriptor: Self.name("prompt_tokens", "total", "Prompt tokens of answered requests."))
        cachedTokens = registry.makeCounter(descriptor: Self.name("cached_prompt_tokens", "total", "Prompt tokens whose KV cache was reused."))
        completionTokens = registry.makeCounter(descriptor: Self.name("completion_tokens", "total", "Generated tokens."))
        timeToFirstToken = registry.makeValueHistogram(
            descriptor: Self.name("time_to_first_token", "seconds", "From the request's arrival to its first generated token."),
            buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
        decodeRate = registry.makeValueHistogram(
            descriptor: Self.name("decode_tokens", "per_second", "Per request: generated tokens after the first over the time they took."),
            buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000])
        queueDepth = registry.makeGauge(descriptor: Self.name("queue_depth", "", "Requests waiting for a decoding slot."))
        batchSize = registry.makeGauge(descriptor: Self.name("batch_size", "", "Sequences in the current decode step."))
        meanBatchSize = registry.makeGauge(descriptor: Self.name("mean_batch_size", "", "Generated tokens per decode step since start."))
        steps = registry.makeGauge(descriptor: Self.name("decode_steps", "", "Batched decode steps since start."))
        kvPages = registry.makeGauge(descriptor: Self.name("kv_pages", "", "KV cache pages in the pool."))
        kvPagesFree = registry.makeGauge(descriptor: Self.name("kv_pages_free", "", "KV cache pages no sequence or cached prefix holds."))
        preemptions = registry.makeGauge(descriptor: Self.name("preemptions", "", "Sequences paused for want of KV pages since start (recomputed later)."))
        draftTokens = registry.makeGauge(descriptor: Self.name("draft_tokens", "", "Speculative draft tokens verified since start."))
        acceptedDraftTokens = registry.makeGauge(descriptor: Self.name("accepted_draft_tokens", "", "Speculative draft tokens kept since start."))
        ledgerFailures = registry.makeCounter(descriptor: Self.name("ledger_write_failures", "total",
                                                                    "Usage rows the ledger could not write (each also logged)."))
    }

    private let failureLock = NSLock()
    nonisolated(unsafe) private var failures = 0

    /// A usage row that could not be written: counted here (for `/health`) and in the Prometheus counter, and
    /// logged to standard error with the request's id.
    func ledgerWriteFailed(_ error: any Error, requestID: String) {
        failureLock.withLock { failures += 1 }
        ledgerFailures.increment()
        FileHandle.standardError.write(Data("error: request \(requestID): the usage ledger could not be written: \(error)\n".utf8))
    }

    var ledgerWriteFailures: Int { failureLock.withLock { failures } }

    /// `moe_<metric>_<unit>`.
    static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "moe", metricName: metric, unitName: unit, helpText: help)
    }

    func request(endpoint: String, status: Int) {
        registry.makeCounter(descriptor: Self.name("requests", "total", "Requests by endpoint and HTTP status."),
                             labels: [("endpoint", endpoint), ("status", String(status))]).increment()
    }

    /// The text exposition, with the engine's gauges read now.
    func render(engine: InferenceEngine.Snapshot) -> [UInt8] {
        queueDepth.set(Double(engine.waiting))
        batchSize.set(Double(engine.active))
        steps.set(Double(engine.steps))
        meanBatchSize.set(engine.steps > 0 ? Double(engine.generatedTokens) / Double(engine.steps) : 0)
        kvPages.set(Double(engine.kvPages))
        kvPagesFree.set(Double(engine.kvPagesFree))
        preemptions.set(Double(engine.preemptions))
        draftTokens.set(Double(engine.draftTokens))
        acceptedDraftTokens.set(Double(engine.acceptedDraftTokens))
        return registry.emitToBuffer()
    }
}
