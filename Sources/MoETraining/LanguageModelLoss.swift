import Foundation
import MoEKernels
import MoEModel

/// The balance losses of the MoE routers (all optional):
/// - `auxLossCoef`: Switch-style auxiliary loss as HF's `load_balancing_loss_func` computes it, pooled over
///   all MoE layers: `E · Σ_e f[e]·P[e]` with f the fraction of top-k choices and P the mean probability.
/// - `zLossCoef`: router z-loss, mean over layers and tokens of logsumexp(router logits)².
/// - `sequenceAuxLossCoef`: DeepSeek-V3's complementary sequence-wise balance loss (paper, eqs. 17–20), per
///   sequence and MoE layer `Σ_i f_i·P_i` with f_i = E/(k·T)·(tokens choosing expert i), P_i the mean over the
///   sequence's T tokens of the scores normalised to sum 1, averaged over sequences and layers.
public struct BalanceLosses: Sendable, Codable, Equatable {
    public var auxLossCoef: Double
    public var zLossCoef: Double
    public var sequenceAuxLossCoef: Double

    public init(auxLossCoef: Double = 0, zLossCoef: Double = 0, sequenceAuxLossCoef: Double = 0) {
        self.auxLossCoef = auxLossCoef; self.zLossCoef = zLossCoef; self.sequenceAuxLossCoef = sequenceAuxLossCoef
    }

    private enum CodingKeys: String, CodingKey { case auxLossCoef, zLossCoef, sequenceAuxLossCoef }

    /// Trainer states saved before the sequence-wise loss existed decode with it off.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        auxLossCoef = try c.decode(Double.self, forKey: .auxLossCoef)
        zLossCoef = try c.decode(Double.self, forKey: .zLossCoef)
        sequenceAuxLossCoef = try c.decodeIfPresent(Double.self, forKey: .sequenceAuxLossCoef) ?? 0
    }
}

/// One forward's loss, split into its parts.
public struct LossBreakdown: Sendable, Codable {
    /// Mean next-token cross-entropy over the target tokens.
    public var crossEntropy: Double
    /// The auxiliary load-balancing loss (unweighted; ≈ top-k when balanced), 0 for dense models.
    public var aux: Double
    /// The router z-loss (unweighted).
    public var z: Double
    /// crossEntropy + auxLossCoef·aux + zLossCoef·z (+ sequenceAuxLossCoef·sequenceAux).
    public var total: Double
    /// Target tokens counted (targets < 0 are ignored).
    public var tokens: Int
    /// The sequence-wise balance loss (unweighted), 0 when its coefficient is 0.
    public var sequenceAux: Double = 0
    /// The multi-token-prediction module's mean cross-entropy (token i+2), 0 without one; `total` adds it × λ.
    public var mtp: Double = 0
}

extension TrainableModel {
    /// Forward and backward for next-token cross-entropy plus the balance losses: `targets[i]` is the token
    /// that should follow `inputs[i]` (a negative target is ignored, like HF's -100). Gradients are *added*
    /// to `store.grads`, multiplied by `gradientScale` (1/accumulation steps when accumulating). `balanceMask`
    /// keeps padding out of the balance losses.
    public func trainStep(batch B: Int, seqLen T: Int, inputs: UnsafePointer<Int32>, targets: UnsafePointer<Int32>,
                          balance: BalanceLosses, gradientScale: Float = 1, balanceMask: [Bool]? = nil) throws -> LossBreakdown {
        try checkTargets(targets, count: B * T)
        try forwardHidden(batch: B, seqLen: T, inputs: inputs, balanceMask: balanceMask)
        mtp?.forward(self, batch: B, seqLen: T, inputs: inputs, targets: targets, balanceMask: balanceMask)
        let n = B * T
        let valid = (0..<n).reduce(0) { $0 + (targets[$1] >= 0 ? 1 : 0) }
        let c = valid > 0 ? -gradientScale / Float(valid) : 0
        let coefficients = (0..<n).map { targets[$0] >= 0 ? c : 0 }
        let logp = head(rows: n, targets: targets, coefficients: coefficients)
        var result = breakdown(logp: logp, targets: targets, rows: n, balance: balance)
        result.tokens = valid
        let balanceGradient = balanceGradient(balance, scale: gradientScale)
        if let mtp {
            result.mtp = mtp.loss(self, weight: Float(mtpLossWeight) * gradientScale, balance: balanceGradient).crossEntropy
            result.total += mtpLossWeight * result.mtp
        }
        backwardHidden(batch: B, seqLen: T, balance: balanceGradient, residualGradient: mtp?.residualGradient.pointer)
        return result
    }

    /// The same losses without gradients (validation).
    public func evaluate(batch B: Int, seqLen T: Int, inputs: UnsafePointer<Int32>, targets: UnsafePointer<Int32>,
                         balance: BalanceLosses, balanceMask: [Bool]? = nil) throws -> LossBreakdown {
        try checkTargets(targets, count: B * T)
        try forwardHidden(batch: B, seqLen: T, inputs: inputs, balanceMask: balanceMask)
        mtp?.forward(self, batch: B, seqLen: T, inputs: inputs, targets: targets, balanceMask: balanceMask)
        let logp = head(rows: B * T, targets: targets, coefficients: nil)
        var result = breakdown(logp: logp, targets: targets, rows: B * T, balance: balance)
        if let mtp {
            result.mtp = mtp.loss(self, weight: nil, balance: nil).crossEntropy
            result.total += mtpLossWeight * result.mtp
        }
        return result
    }

    private func breakdown(logp: [Float], targets: UnsafePointer<Int32>, rows n: Int, balance: BalanceLosses) -> LossBreakdown {
        var sum = 0.0, valid = 0
        for i in 0..<n where targets[i] >= 0 { sum -= Double(logp[i]); valid += 1 }
        let ce = valid > 0 ? sum / Double(valid) : 0
        let (aux, z) = routerLosses()
        let sequenceAux = sequenceBalanceLoss()
        return LossBreakdown(crossEntropy: ce, aux: aux, z: z,
                             total: ce + balance.auxLossCoef * aux + balance.zLossCoef * z + balance.sequenceAuxLossCoef * sequenceAux,
                             tokens: valid, sequenceAux: sequenceAux)
    }

    /// The aux and z losses of the last forward.
    func routerLosses() -> (aux: Double, z: Double) {
        guard stats.rows > 0 else { return (0, 0) }
        let rows = Double(stats.rows), E = Double(stats.experts)
        var aux = 0.0
        for e in 0..<stats.experts { aux += stats.counts[e] / rows * (stats.probabilitySums[e] / rows) }
        return (aux * E, stats.zSum / rows)
    }

    /// The sequence-wise balance loss of the last forward: the mean over (MoE layer, sequence) pairs.
    func sequenceBalanceLoss() -> Double {
        stats.sequences > 0 ? stats.sequenceSum / Double(stats.sequences) : 0
    }

    /// The balance losses' gradient terms for the routers, from the last forward's statistics.
    func balanceGradient(_ balance: BalanceLosses, scale: Float) -> BalanceGradient {
        let rows = Double(max(stats.rows, 1)), E = Double(stats.experts)
        let probability = (0..<stats.experts).map { e in
            Float(balance.auxLossCoef * E * (stats.counts[e] / rows) / rows) * scale
        }
        return BalanceGradient(probability: probability, zScale: Float(balance.zLossCoef / rows) * scale,
                               sequenceScale: Float(balance.sequenceAuxLossCoef / Double(max(stats.sequences, 1))) * scale)
    }

    /// The LM head over the final hidden states, in row chunks so the [rows × vocab] logits never exist at
    /// once: returns log p(target) per row (0 where target < 0). With `coefficients` (c_i = d loss / d log p_i)
    /// it also back-propagates in the same pass: d logits = c·(onehot − softmax), into the head's weight
    /// gradient and `dFinal` (the gradient of the final normalised hidden states). `temperature` divides the
    /// logits first (log-probs of tokens sampled at that temperature, as TRL computes them); `entropy`, when
    /// given, receives each row's entropy of that distribution. `input` and `inputGrad` replace the final hidden
    /// states and `dFinal` (the multi-token-prediction module's head).
    func head(rows n: Int, targets: UnsafePointer<Int32>, coefficients: [Float]?, temperature: Float = 1,
              entropy: UnsafeMutablePointer<Float>? = nil, input: UnsafePointer<Float>? = nil,
              inputGrad: UnsafeMutablePointer<Float>? = nil) -> [Float] {
        let w = store.values!, g = store.grads!, V = vocab, H = hidden
        let chunk = 256
        let logits = logitsChunk.reserve(chunk * V)
        let hf = input ?? UnsafePointer(finalNormed.pointer)
        let df = coefficients != nil ? inputGrad ?? dFinal.reserve(n * H) : nil
        let scaled = entropy != nil ? UnsafeMutablePointer<Float>.allocate(capacity: chunk * V) : nil
        defer { scaled?.deallocate() }
        var logp = [Float](repeating: 0, count: n)
        logp.withUnsafeMutableBufferPointer { lp in
            let logp = lp.baseAddress!
            var r0 = 0
            while r0 < n {
                let rows = min(chunk, n - r0)
                let x = hf + r0 * H
                linearForward(x, rows: rows, inputs: H, outputs: V, weight: w + lmHead, bias: nil, into: logits, pool: pool)
                forEachBlock(rows, pool: pool) { r in
                    let l = logits + r * V
                    let t = Int(targets[r0 + r])
                    if temperature != 1 { scale(l, count: V, by: 1 / temperature) }
                    if let scaled { (scaled + r * V).update(from: l, count: V) }
                    let target = t >= 0 ? l[t] : 0
                    // One exp per logit: l becomes e^(l − max), s their sum, p_j = e_j / s.
                    let m = maxElement(l, count: V)
                    let s = expShiftedSum(l, count: V, shift: m)
                    logp[r0 + r] = t >= 0 ? target - (m + logf(s)) : 0
                    // H = −Σ p_j log p_j = m + log s − Σ p_j·l_j
                    if let entropy, let scaled { entropy[r0 + r] = m + logf(s) - dot(l, scaled + r * V, count: V) / s }
                    if let coefficients {
                        // The 1/T of the scaled logits comes back in their gradient.
                        let c = coefficients[r0 + r] / temperature
                        // d/dlogit_j of c·log p_t = c·(1[j = t] − p_j)
                        scale(l, count: V, by: -c / s)
                        if t >= 0 { l[t] += c }
                    }
                }
                if let df {
                    linearBackward(logits, x: x, rows: rows, inputs: H, outputs: V, weight: w + lmHead, weightGrad: g + lmHead,
                                   biasGrad: nil, inputGrad: df + r0 * H, accumulateInput: false, pool: pool)
                }
                r0 += rows
            }
        }
        return logp
    }
}
