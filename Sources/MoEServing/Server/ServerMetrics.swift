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

    init() {
        promptTokens = registry.makeCounter(name: "moe_prompt_tokens_total", help: "Prompt tokens of answered requests.")
        cachedTokens = registry.makeCounter(name: "moe_cached_prompt_tokens_total", help: "Prompt tokens whose KV cache was reused.")
        completionTokens = registry.makeCounter(name: "moe_completion_tokens_total", help: "Generated tokens.")
        timeToFirstToken = registry.makeValueHistogram(
            name: "moe_time_to_first_token_seconds", buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
            help: "From the request's arrival to its first generated token.")
        decodeRate = registry.makeValueHistogram(
            name: "moe_decode_tokens_per_second", buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
            help: "Per request: generated tokens after the first over the time they took.")
        queueDepth = registry.makeGauge(name: "moe_queue_depth", help: "Requests waiting for a decoding slot.")
        batchSize = registry.makeGauge(name: "moe_batch_size", help: "Sequences in the current decode step.")
        meanBatchSize = registry.makeGauge(name: "moe_mean_batch_size", help: "Generated tokens per decode step since start.")
        steps = registry.makeGauge(name: "moe_decode_steps", help: "Batched decode steps since start.")
    }

    func request(endpoint: String, status: Int) {
        registry.makeCounter(name: "moe_requests_total", labels: [("endpoint", endpoint), ("status", String(status))],
                             help: "Requests by endpoint and HTTP status.").increment()
    }

    /// The text exposition, with the engine's gauges read now.
    func render(engine: InferenceEngine.Snapshot) -> [UInt8] {
        queueDepth.set(Double(engine.waiting))
        batchSize.set(Double(engine.active))
        steps.set(Double(engine.steps))
        meanBatchSize.set(engine.steps > 0 ? Double(engine.generatedTokens) / Double(engine.steps) : 0)
        return registry.emitToBuffer()
    }
}
