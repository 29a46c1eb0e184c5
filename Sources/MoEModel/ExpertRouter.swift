import Foundation
import MoEFormats
import MoEKernels

/// The router of a mixture-of-experts block: which k experts each token goes to, and with what weights.
///
///     logits = gate(x)                                   (Linear hidden → experts, f32)
///     s = softmax(logits)  or  sigmoid(logits)           (`layout.scoring`)
///     c = s + e_score_correction_bias                    (V3, GLM-4.5: the bias only steers the choice)
///     groups: keep the best `groupsChosen` of `groups` groups, ranked by max(c) or the sum of the two best c;
///             c of the other groups' experts becomes 0 (as transformers' masked_fill)
///     idx = topk(c, k);  w = s[idx]
///     w /= Σw (+1e-20) if normTopKProb;  w *= routed_scaling_factor
///
/// Qwen-MoE, Mixtral and OLMoE are the plain case: softmax, no bias, one group, scale 1.
public struct ExpertRouter: @unchecked Sendable {
    public let weight: WeightMatrix
    public let topK: Int
    public let normTopKProb: Bool
    public let layout: RouterLayout
    /// `e_score_correction_bias` [experts], when the layout has one.
    public let selectionBias: [Float]?
    /// A bias added to the logits (gpt-oss), or nil.
    public var bias: [Float]? = nil

    public var experts: Int { weight.rows }

    public init(weight: WeightMatrix, topK: Int, normTopKProb: Bool, layout: RouterLayout = RouterLayout(),
                selectionBias: [Float]? = nil) {
        self.weight = weight; self.topK = topK; self.normTopKProb = normTopKProb; self.layout = layout
        self.selectionBias = selectionBias
    }

    /// Reads `{prefix}.gate.weight` (and the selection bias) of the block `m` describes.
    init(_ w: WeightReader, layout m: MoELayout, hidden: Int) throws {
        try Self.validate(m)
        self.init(weight: try w.matrix(m.routerName, rows: m.experts, cols: hidden), topK: m.topK, normTopKProb: m.normTopKProb,
                  layout: m.router,
                  selectionBias: m.router.selectionBias ? try w.vector(m.selectionBiasName, count: m.experts) : nil)
        if m.routerBias { bias = try w.vector(m.routerBiasName, count: m.experts) }
    }

    /// Refuses group settings that cannot be routed (the config's numbers, named).
    public static func validate(_ m: MoELayout) throws {
        let r = m.router
        guard (1...64).contains(r.groups), m.experts % r.groups == 0 else {
            throw ModelError.badInput("n_group (\(r.groups)) must divide the \(m.experts) routed experts into equal groups (at most 64)")
        }
        guard (1...r.groups).contains(r.groupsChosen) else {
            throw ModelError.badInput("topk_group (\(r.groupsChosen)) must be between 1 and n_group (\(r.groups))")
        }
        guard m.topK <= r.groupsChosen * (m.experts / r.groups) else {
            throw ModelError.badInput("num_experts_per_tok (\(m.topK)) exceeds the \(r.groupsChosen * (m.experts / r.groups)) experts "
                                      + "of the topk_group (\(r.groupsChosen)) groups a token may use")
        }
        if r.groupScore == .topTwoSum && r.groups > 1 && m.experts / r.groups < 2 {
            throw ModelError.badInput("groups ranked by their two best experts need at least two experts a group")
        }
    }

    /// Chooses experts for T tokens from their logits [T, experts] (overwritten: they become the scores), then
    /// groups the (token, choice) entries by expert (a counting sort) in `routing`. With `routing.budgets` (one per
    /// token), the entries a token's budget drops get expert −1 and weight 0 and join no group.
    func route(_ logits: UnsafeMutablePointer<Float>, tokens T: Int, routing: inout Routing) {
        let count = experts, k = topK
        if routing.chosen.count < T * k {
            routing.chosen = .init(repeating: 0, count: T * k)
            routing.weights = .init(repeating: 0, count: T * k)
            routing.order = .init(repeating: 0, count: T * k)
        }
        if routing.offsets.count != count + 1 { routing.offsets = .init(repeating: 0, count: count + 1) }
        if routing.choice.count != count { routing.choice = .init(repeating: 0, count: count) }
        if routing.groupScores.count != layout.groups { routing.groupScores = .init(repeating: 0, count: layout.groups) }
        for e in 0...count { routing.offsets[e] = 0 }
        routing.entries = 0
        let scale = Float(layout.scale)
        if routing.topScores.count < k { routing.topScores = .init(repeating: 0, count: k); routing.topExperts = .init(repeating: 0, count: k) }
        // Moved out for the loop (and back after): no second reference, so no copy on write.
        var topScores = routing.topScores, topExperts = routing.topExperts
        routing.topScores = []; routing.topExperts = []
        defer { routing.topScores = topScores; routing.topExperts = topExperts }
        topScores.withUnsafeMutableBufferPointer { topScores in topExperts.withUnsafeMutableBufferPointer { topExperts in
        for t in 0..<T {
            let s = logits + t * count
            switch layout.scoring {
            case .softmax: softmax(s, count: count)
            case .sigmoid: for e in 0..<count { s[e] = 1 / (1 + expf(-s[e])) }
            }
            routing.choice.withUnsafeMutableBufferPointer { c in
                c.baseAddress!.update(from: s, count: count)
                if let bias = selectionBias { for e in 0..<count { c[e] += bias[e] } }
                if layout.groups > 1 {
                    routing.groupScores.withUnsafeMutableBufferPointer { g in
                        layout.keepBestGroups(c.baseAddress!, experts: count, groupScores: g.baseAddress!)
                    }
                }
                let chosen = topExperts.baseAddress!
                selectTopK(c.baseAddress!, count: count, k: k, indices: chosen, values: topScores.baseAddress!)
                var sum: Float = 0
                for j in 0..<k {
                    let e = Int(chosen[j])
                    routing.chosen[t * k + j] = Int32(e)
                    routing.weights[t * k + j] = s[e]
                    sum += s[e]
                }
                // A budget keeps the first n; the kept carry the mass of all k (`ExpertBudget`).
                let n = routing.budgets.isEmpty ? k : routing.weights.withUnsafeBufferPointer { routing.budgets[t].kept($0.baseAddress! + t * k, k: k) }
                var keptSum = sum, carry: Float = 1
                if n < k {
                    keptSum = 0
                    for j in 0..<n { keptSum += routing.weights[t * k + j] }
                    if !normTopKProb && keptSum > 0 { carry = sum / keptSum }
                    for j in n..<k { routing.chosen[t * k + j] = -1; routing.weights[t * k + j] = 0 }
                }
                for j in 0..<n {
                    var weight = routing.weights[t * k + j]
                    if normTopKProb { weight /= keptSum + 1e-20 } else if n < k { weight *= carry }
                    routing.weights[t * k + j] = weight * scale
                }
                routing.entries += n
            }
            for j in 0..<k where routing.chosen[t * k + j] >= 0 { routing.offsets[Int(routing.chosen[t * k + j]) + 1] += 1 }
        }
        } }
        routing.hit.removeAll(keepingCapacity: true)
        for e in 0..<count {
            if routing.offsets[e + 1] > 0 { routing.hit.append(e) }
            routing.offsets[e + 1] += routing.offsets[e]
        }
        // Place each entry at its expert's next free slot (offsets[e] advances, then is restored).
        for entry in 0..<(T * k) where routing.chosen[entry] >= 0 {
            let e = Int(routing.chosen[entry])
            routing.order[routing.offsets[e]] = Int32(entry)
            routing.offsets[e] += 1
        }
        for e in stride(from: count, to: 0, by: -1) { routing.offsets[e] = routing.offsets[e - 1] }
        routing.offsets[0] = 0
    }
}

/// The indices of the `k` largest of `count` scores, best first, in one pass: a short sorted list that most scores
/// fall below the last of and pass by — O(count), not O(count × k) (Qwen3-Next routes 512 experts top-10). Equal
/// scores keep the lower index first (as a scan for the maximum, and torch.topk on CPU); NaN counts as −∞.
/// `values` receives the chosen scores (k floats of scratch).
public func selectTopK(_ scores: UnsafePointer<Float>, count: Int, k: Int, indices: UnsafeMutablePointer<Int32>,
                       values best: UnsafeMutablePointer<Float>) {
    var filled = 0
    for e in 0..<count {
        let v = scores[e].isNaN ? -Float.infinity : scores[e]
        guard filled < k || v > best[k - 1] else { continue }
        var at = min(filled, k - 1)
        while at > 0 && !(best[at - 1] >= v) { at -= 1 }
        if at < filled {   // the worse ones move down one (the last falls off when the list is full)
            let move = min(filled, k - 1) - at
            (best + at + 1).update(from: best + at, count: move)
            (indices + at + 1).update(from: indices + at, count: move)
        }
        best[at] = v
        indices[at] = Int32(e)
        filled = min(filled + 1, k)
    }
}
