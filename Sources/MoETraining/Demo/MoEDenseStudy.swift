import Foundation
import MoEFormats
import MoEModel
import MoETokenizer

/// `moe study moe-vs-dense`: does a mixture of experts learn more per unit of compute than a dense model? On the
/// demo corpus, with one tokenizer and one token stream, three models with the same *active* parameters are each
/// pre-trained for the same wall-clock time: a dense model (its MLP as wide as the k experts a token uses), the
/// demo's MoE (8 experts, top-2), and a finer MoE (twice as many experts, half as wide, top-4: DeepSeekMoE's and
/// OLMoE's granularity). Validation loss against time and against tokens goes to one chart, the figures to
/// study.json. The conclusion is what the numbers say, whichever way.
public struct MoEDenseStudy {
    public struct Arm: Codable, Sendable {
        public var name: String
        public var experts: Int
        public var topK: Int
        /// Width of each expert (the MLP's, for the dense model).
        public var width: Int
        public var totalParameters: Int
        public var activeParameters: Int
        public var steps: Int
        public var tokens: Int
        public var seconds: Double
        public var finalValidationLoss: Double?
        /// Validation loss as training went: (seconds, tokens, loss).
        public var curve: [Point]
        public struct Point: Codable, Sendable { public var seconds: Double; public var tokens: Int; public var loss: Double }
        enum CodingKeys: String, CodingKey {
            case name, experts, width, steps, tokens, seconds, curve
            case topK = "top_k", totalParameters = "total_parameters", activeParameters = "active_parameters"
            case finalValidationLoss = "final_val_loss"
        }
    }

    public struct Report: Codable, Sendable {
        public var secondsPerModel: Double
        public var arms: [Arm]
        /// (largest − smallest) / smallest active parameter count.
        public var activeParameterSpread: Double
        public var conclusion: String
        enum CodingKeys: String, CodingKey {
            case arms, conclusion
            case secondsPerModel = "seconds_per_model", activeParameterSpread = "active_parameter_spread"
        }
    }

    /// The three configs, from the demo's MoE config: (name, config).
    static func arms(from moe: ModelConfig) throws -> [(name: String, config: ModelConfig)] {
        let base = moe.raw.mapValues(\.foundationObject)
        let k = moe.numExpertsPerToken, width = moe.moeIntermediateSize ?? moe.intermediateSize
        func config(_ overrides: [String: Any]) throws -> ModelConfig {
            try ModelConfig(json: JSONSerialization.data(withJSONObject: base.merging(overrides) { $1 }), path: "study config")
        }
        var dense = base
        for key in ["num_experts", "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob", "decoder_sparse_step",
                    "mlp_only_layers", "output_router_logits", "router_aux_loss_coef"] { dense[key] = nil }
        dense.merge(["model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "intermediate_size": k * width]) { $1 }
        return [
            ("dense", try ModelConfig(json: JSONSerialization.data(withJSONObject: dense), path: "study config")),
            ("moe \(moe.numExperts)×top-\(k)", moe),
            ("fine moe \(2 * moe.numExperts)×top-\(2 * k)", try config(["num_experts": 2 * moe.numExperts, "num_experts_per_tok": 2 * k,
                                                                     "moe_intermediate_size": width / 2])),
        ]
    }

    /// Parameters a token goes through (embedding table and LM head whole, as `ModelSummary` counts them).
    static func activeParameters(_ c: ModelConfig) -> Int {
        let h = c.hiddenSize, attention = h * c.numAttentionHeads * c.headDim * 2 + h * c.numKeyValueHeads * c.headDim * 2
            + 2 * c.headDim + 2 * h
        let mlp = c.isMoE ? h * c.numExperts + c.numExpertsPerToken * 3 * h * (c.moeIntermediateSize ?? 0) : 3 * h * c.intermediateSize
        return c.numHiddenLayers * (attention + mlp) + c.vocabSize * h * (c.tieWordEmbeddings ? 1 : 2) + h
    }

    /// Trains every arm on the demo pipeline's token shards (`pipeline` decides sizes, batch, schedule and time),
    /// writing each model to OUT/study/NAME and the chart and figures to OUT/study.
    static func run(_ pipeline: DemoPipeline, moe: ModelConfig, train: TokenShard, validation: TokenShard,
                    tokenizerDirectory: String) throws -> Report {
        let dir = "\(pipeline.options.out)/study"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let configs = try arms(from: moe)
        let active = configs.map { activeParameters($0.config) }
        let spread = Double(active.max()! - active.min()!) / Double(active.min()!)
        pipeline.log("study: " + zip(configs, active).map { "\($0.name) \($1) active" }.joined(separator: ", ")
                     + String(format: " parameters (within %.1f %%); %.0f s of training each", 100 * spread, pipeline.options.trainSeconds))
        var out: [Arm] = []
        for (name, config) in configs {
            let directory = "\(dir)/\(name.split(separator: " ").first == "fine" ? "fine-moe" : String(name.split(separator: " ")[0]))"
            try? FileManager.default.removeItem(atPath: directory)
            let (model, summary) = try pipeline.pretrainModel(config, train: train, validation: validation, out: directory,
                                                              tokenizerDirectory: tokenizerDirectory)
            let records = MetricsLog.read(path: "\(directory)/metrics.jsonl")
            let tokensPerStep = summary.steps > 0 ? summary.tokens / summary.steps : 0
            let curve = records.compactMap { r in r.validationLoss.map { Arm.Point(seconds: r.elapsed, tokens: r.step * tokensPerStep, loss: $0) } }
            out.append(Arm(name: name, experts: config.numExperts, topK: config.isMoE ? config.numExpertsPerToken : 1,
                           width: config.isMoE ? config.moeIntermediateSize ?? 0 : config.intermediateSize,
                           totalParameters: model.store.parameterCount, activeParameters: activeParameters(config), steps: summary.steps,
                           tokens: summary.tokens, seconds: summary.seconds, finalValidationLoss: summary.validationLoss, curve: curve))
        }
        let report = Report(secondsPerModel: pipeline.options.trainSeconds, arms: out, activeParameterSpread: spread,
                            conclusion: conclusion(out))
        pipeline.log("study: " + report.conclusion)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(report), to: "\(dir)/study.json")
        try SVGPlot.write(chart(out), to: "\(dir)/study.svg")
        return report
    }

    /// What the final losses say, in one sentence a reader can check against the chart.
    static func conclusion(_ arms: [Arm]) -> String {
        let finished = arms.compactMap { a in a.finalValidationLoss.map { (a, $0) } }
        guard let dense = finished.first(where: { $0.0.experts == 0 }), let best = finished.min(by: { $0.1 < $1.1 }) else {
            return "no validation loss to compare"
        }
        let others = finished.filter { $0.0.name != best.0.name }.map { String(format: "%@ %.3f", $0.0.name, $0.1) }.joined(separator: ", ")
        if best.0.name == dense.0.name {
            return String(format: "in equal time the dense model reached the lowest validation loss (%.3f; %@): at this size and budget the "
                          + "experts did not pay for their routing", best.1, others)
        }
        let tokensRatio = Double(best.0.tokens) / Double(max(dense.0.tokens, 1))
        return String(format: "in equal time %@ reached the lowest validation loss (%.3f; %@), %.2f× the dense model's tokens", best.0.name,
                      best.1, others, tokensRatio)
    }

    /// The report card's section.
    public static func table(_ r: Report) -> String {
        var s = String(format: "## MoE against dense, %.0f s of pre-training each (active parameters within %.1f %%)\n\n", r.secondsPerModel,
                       100 * r.activeParameterSpread)
        s += "| model | experts | top-k | width | active parameters | total parameters | steps | tokens | validation loss |\n"
        s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        for a in r.arms {
            s += "| \(a.name) | \(a.experts) | \(a.topK) | \(a.width) | \(a.activeParameters) | \(a.totalParameters) | \(a.steps) | \(a.tokens) | "
                + (a.finalValidationLoss.map { String(format: "%.3f", $0) } ?? "–") + " |\n"
        }
        return s + "\n" + r.conclusion + "\n"
    }

    /// Validation loss against seconds and against tokens, side by side in one SVG.
    static func chart(_ arms: [Arm]) -> String {
        let byTime = SVGPlot.lineChart(title: "Validation loss in equal time", xLabel: "seconds of training", yLabel: "validation loss",
                                       series: arms.map { a in PlotSeries(name: a.name, points: a.curve.map { ($0.seconds, $0.loss) }) })
        let byTokens = SVGPlot.lineChart(title: "… and per token seen", xLabel: "training tokens", yLabel: "validation loss",
                                         series: arms.map { a in PlotSeries(name: a.name, points: a.curve.map { (Double($0.tokens), $0.loss) }) })
        // Each chart is a whole <svg> 720 wide: nest them in one, the second moved right.
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1440\" height=\"420\" viewBox=\"0 0 1440 420\">\n"
            + byTime + byTokens.replacingOccurrences(of: "<svg ", with: "<svg x=\"720\" ", options: [], range: byTokens.range(of: "<svg ")) + "</svg>\n"
    }
}
