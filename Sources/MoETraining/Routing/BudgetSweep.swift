import Foundation
import MoEFormats
import MoEModel
import MoETokenizer

/// What spending fewer experts costs (`moe eval --budget-sweep`): for each `ExpertBudget`, the model's next-token
/// distributions against the same model's at full budget over a text (KL divergence mean and 99th percentile,
/// top-1 agreement), its perplexity, a task's accuracy when given one, the experts it kept, and decode speed.
public enum BudgetSweep {
    public struct Row: Codable, Sendable {
        public var budget: String
        public var expertsPerToken: Int?
        public var threshold: Double?
        public var minExperts: Int?
        /// Experts kept per token and MoE layer, as counted over the text.
        public var meanExperts: Double
        public var klDivergence: Double
        public var klDivergenceP99: Double
        public var top1Agreement: Double
        public var perplexity: Double
        public var accuracy: Double?
        /// Decode (one token a pass, teacher-forced on the text), the median of the repetitions.
        public var decodeTokensPerSecond: Double
        /// Expert bytes read per decoded token, against the full top-k's.
        public var expertBytesRead: Double

        enum CodingKeys: String, CodingKey {
            case budget, threshold, accuracy, perplexity
            case expertsPerToken = "experts_per_token", minExperts = "min_experts", meanExperts = "mean_experts"
            case klDivergence = "kl_divergence", klDivergenceP99 = "kl_divergence_p99", top1Agreement = "top1_agreement"
            case decodeTokensPerSecond = "decode_tokens_per_second", expertBytesRead = "expert_bytes_read"
        }
    }

    /// The budgets a sweep tries: full, then K = k−1 … 1, then each threshold (keeping at least one expert).
    public static func budgets(topK: Int, thresholds: [Float]) -> [ExpertBudget] {
        [.full] + stride(from: topK - 1, through: 1, by: -1).map { ExpertBudget(expertsPerToken: $0) }
            + thresholds.map { ExpertBudget(threshold: $0) }
    }

    /// Runs every budget over `text` in non-overlapping windows (as `Evaluation.text`: each window's first token is
    /// context only); the full budget's distributions are the reference. `accuracy(budget)` scores a task with the
    /// budget set; `decodeTokens` tokens are decoded `repetitions` times per budget for the speed.
    public static func run(_ model: Transformer, tokenizer: Tokenizer, text: String, window: Int, budgets: [ExpertBudget],
                           decodeTokens: Int = 64, repetitions: Int = 3, accuracy: ((ExpertBudget) throws -> Double)? = nil,
                           progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> [Row] {
        guard model.expertsPerToken > 0 else { throw TrainingError.badArgument("a budget sweep needs a mixture-of-experts model") }
        for budget in budgets { try model.validateBudget(budget) }
        let ids = tokenizer.encode(text, addSpecialTokens: false)
        guard ids.count >= 2 else { throw TrainingError.badArgument("the text has fewer than two tokens") }
        let saved = (model.expertBudget, model.routingObserver)
        defer { (model.expertBudget, model.routingObserver) = saved }
        let vocab = model.config.vocabSize
        let w = max(2, min(window, model.contextLength))
        let cache = model.makeCache(capacity: max(w, min(decodeTokens + 1, model.contextLength)))
        let counters = budgets.map { _ in ExpertUsageCounter() }
        var comparisons = budgets.map { _ in Evaluation.DistributionComparison() }
        var nll = budgets.map { _ in 0.0 }
        var start = 0
        while start + 1 < ids.count {
            let chunk = Array(ids[start..<min(start + w, ids.count)])
            model.expertBudget = .full
            model.routingObserver = nil
            cache.reset()
            let full = try model.forward(chunk, cache: cache, logitsFor: .all)
            let reference = (0..<(chunk.count - 1)).map { Evaluation.logProbabilities(full[($0 * vocab)..<(($0 + 1) * vocab)]) }
            for (b, budget) in budgets.enumerated() {
                model.expertBudget = budget
                model.routingObserver = counters[b]
                cache.reset()
                let logits = try model.forward(chunk, cache: cache, logitsFor: .all)
                for t in 0..<(chunk.count - 1) {
                    let q = Evaluation.logProbabilities(logits[(t * vocab)..<((t + 1) * vocab)])
                    nll[b] -= q[chunk[t + 1]]
                    comparisons[b].add(reference: reference[t], model: q, next: chunk[t + 1])
                }
            }
            start += chunk.count - 1
            progress?(start + 1, ids.count + budgets.count)
        }

        // Decode speed and expert bytes on the same inputs (the text, teacher-forced). The repetitions go round the
        // budgets, so that a drift of the machine's speed meets every budget alike.
        let summary = ModelSummary(model)
        let steps = Array(ids.prefix(min(decodeTokens, model.contextLength - 1)))
        var rates = budgets.map { _ in [Double]() }
        let decodeCounters = budgets.map { _ in ExpertUsageCounter() }
        for _ in 0..<max(1, repetitions) {
            for (b, budget) in budgets.enumerated() {
                model.expertBudget = budget
                model.routingObserver = nil
                cache.reset()
                for t in steps.prefix(4) { try model.forward([t], cache: cache, logitsFor: .last) }   // warm-up
                cache.reset()
                decodeCounters[b].reset()
                model.routingObserver = decodeCounters[b]
                let clock = ContinuousClock.now
                for t in steps { try model.forward([t], cache: cache, logitsFor: .last) }
                let d = ContinuousClock.now - clock
                rates[b].append(Double(steps.count) / (Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18))
            }
        }
        model.routingObserver = nil
        var rows: [Row] = []
        for (b, budget) in budgets.enumerated() {
            model.expertBudget = budget
            let expertBytes = summary.expertBytesRead(expertsRun: decodeCounters[b].expertsRun, tokens: steps.count)
            let c = comparisons[b]
            rows.append(Row(budget: budget.description, expertsPerToken: budget.expertsPerToken,
                            threshold: budget.threshold.map { (Double($0) * 1e6).rounded() / 1e6 },
                            minExperts: budget.threshold == nil ? nil : budget.minExperts,
                            meanExperts: counters[b].meanExpertsPerToken, klDivergence: c.meanDivergence, klDivergenceP99: c.divergenceP99,
                            top1Agreement: c.top1Agreement, perplexity: exp(nll[b] / Double(max(c.count, 1))),
                            accuracy: try accuracy?(budget), decodeTokensPerSecond: rates[b].sorted()[rates[b].count / 2],
                            expertBytesRead: expertBytes / Double(max(summary.expertBytesPerToken, 1))))
            progress?(ids.count + b + 1, ids.count + budgets.count)
        }
        return rows
    }

    /// The rows as a Markdown table (the README's).
    public static func markdown(_ rows: [Row]) -> String {
        let hasAccuracy = rows.contains { $0.accuracy != nil }
        var out = "| budget | experts/token | KL mean | KL p99 | top-1 agree | perplexity |" + (hasAccuracy ? " accuracy |" : "")
            + " expert bytes | decode tok/s |\n"
        out += "|---|---|---|---|---|---|" + (hasAccuracy ? "---|" : "") + "---|---|\n"
        for r in rows {
            out += "| \(r.budget) | " + String(format: "%.2f | %.5f | %.4f | %.1f%% | %.3f |", r.meanExperts, r.klDivergence, r.klDivergenceP99,
                                                   100 * r.top1Agreement, r.perplexity)
            if hasAccuracy { out += r.accuracy.map { String(format: " %.1f%% |", 100 * $0) } ?? " |" }
            out += String(format: " %.0f%% | %.1f |\n", 100 * r.expertBytesRead, r.decodeTokensPerSecond)
        }
        return out
    }

    /// Two charts side by side in one SVG: KL divergence and decode speed against the experts kept per token.
    public static func plots(_ rows: [Row], model: String) -> (divergence: String, speed: String) {
        func series(_ y: (Row) -> Double) -> [PlotSeries] {
            let topK = rows.filter { $0.threshold == nil }, thresholds = rows.filter { $0.threshold != nil }
            return [PlotSeries(name: "top-K", points: topK.map { ($0.meanExperts, y($0)) }),
                    PlotSeries(name: "threshold", points: thresholds.map { ($0.meanExperts, y($0)) })].filter { !$0.points.isEmpty }
        }
        let divergence = SVGPlot.lineChart(title: "What fewer experts cost: \(model)", xLabel: "experts per token (mean)",
                                           yLabel: "KL divergence to the full model (nats, mean)",
                                           series: series { max($0.klDivergence, 1e-9) }, logY: true)
        let speed = SVGPlot.lineChart(title: "What fewer experts buy: \(model)", xLabel: "experts per token (mean)",
                                      yLabel: "decode tokens/s", series: series(\.decodeTokensPerSecond))
        return (divergence, speed)
    }
}
