/// How many of its chosen experts a token may spend: fewer than the model was trained with, on purpose, for speed.
///
///     experts kept = the router's top-k (best first), cut to `expertsPerToken`, then — with a threshold T —
///                    the first `minExperts`, then each further one only while its weight ≥ T × the first one's
///                    (ik_llama.cpp's "smart expert reduction")
///
/// The kept weights carry the mass of the full top-k: they are scaled by Σ(all k weights) / Σ(kept weights).
/// For the routers that normalise their top-k (Mixtral, Qwen3-MoE, DeepSeek-V3…) that is exactly what the model
/// computes with `num_experts_per_tok` = K; for those that do not (Qwen2-MoE, OLMoE, DeepSeek-V2) it keeps the
/// size of the block's output, which the next layer's norm and residual were trained on — without it, a dropped
/// expert also shrinks what the kept ones add. A token that keeps all its experts is left bit for bit as it was,
/// and the experts nobody keeps are not run, so their weights are not read.
public struct ExpertBudget: Sendable, Hashable, CustomStringConvertible {
    /// At most this many experts a token (nil: the model's `num_experts_per_tok`).
    public var expertsPerToken: Int?
    /// Keep a further expert only while its weight ≥ threshold × the best one's (nil: no threshold).
    public var threshold: Float?
    /// With a threshold: the experts always kept.
    public var minExperts: Int

    public init(expertsPerToken: Int? = nil, threshold: Float? = nil, minExperts: Int = 1) {
        self.expertsPerToken = expertsPerToken; self.threshold = threshold; self.minExperts = minExperts
    }

    /// The model as trained.
    public static let full = ExpertBudget()

    public var isFull: Bool { expertsPerToken == nil && threshold == nil }

    /// Refuses budgets that cannot apply to a router choosing `topK` experts (the numbers named as a user gives them).
    public func validate(topK: Int) throws {
        if let k = expertsPerToken, !(1...max(topK, 1)).contains(k) {
            throw ModelError.badInput("experts per token must be between 1 and the model's \(topK) (got \(k))")
        }
        if let t = threshold, !(t >= 0 && t <= 1) {
            throw ModelError.badInput("the expert threshold must be between 0 and 1 (got \(t))")
        }
        guard minExperts >= 1 else { throw ModelError.badInput("the minimum number of experts must be at least 1 (got \(minExperts))") }
    }

    /// How many of the `k` weights (in the router's order of choice, best first) are kept.
    @inline(__always)
    func kept(_ weights: UnsafePointer<Float>, k: Int) -> Int {
        var n = min(expertsPerToken ?? k, k)
        if let threshold, n > minExperts {
            let floor = threshold * weights[0]
            var j = minExperts
            while j < n && weights[j] >= floor { j += 1 }
            n = j
        }
        return n
    }

    public var description: String {
        if isFull { return "full" }
        var parts: [String] = []
        if let expertsPerToken { parts.append("k=\(expertsPerToken)") }
        if let threshold { parts.append("t=\(threshold)" + (minExperts > 1 ? ",min=\(minExperts)" : "")) }
        return parts.joined(separator: " ")
    }
}

/// Listens to the router: after each MoE layer of a pass, the experts every row chose (−1 where a budget dropped one)
/// and their weights as applied, [tokens, k] row-major. The rows are the pass's, chunk after chunk.
public protocol RoutingObserver: AnyObject {
    func observe(layer: Int, tokens: Int, k: Int, chosen: UnsafeBufferPointer<Int32>, weights: UnsafeBufferPointer<Float>)
}

/// Counts what the routers spent: experts kept per token and layer, and the distinct experts each pass ran (whose
/// weights were read). For `moe bench infer`, `moe eval --budget-sweep` and the API's usage.
public final class ExpertUsageCounter: RoutingObserver {
    /// (token, MoE layer) pairs seen.
    public private(set) var tokenLayers = 0
    /// Experts kept over those pairs.
    public private(set) var expertsKept = 0
    /// Distinct experts run, summed over passes and MoE layers.
    public private(set) var expertsRun = 0
    private var ran: [Bool] = []

    public init() {}

    /// Experts a token kept per MoE layer, on average.
    public var meanExpertsPerToken: Double { tokenLayers == 0 ? 0 : Double(expertsKept) / Double(tokenLayers) }

    public func reset() { tokenLayers = 0; expertsKept = 0; expertsRun = 0 }

    public func observe(layer: Int, tokens: Int, k: Int, chosen: UnsafeBufferPointer<Int32>, weights: UnsafeBufferPointer<Float>) {
        tokenLayers += tokens
        for e in chosen where e >= 0 {
            expertsKept += 1
            if Int(e) >= ran.count { ran += Array(repeating: false, count: Int(e) + 1 - ran.count) }
            if !ran[Int(e)] { ran[Int(e)] = true; expertsRun += 1 }
        }
        for e in chosen where e >= 0 { ran[Int(e)] = false }
    }
}
