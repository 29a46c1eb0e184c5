import Foundation

/// Sequences of different lengths, right-padded into one [rows × seqLen] batch, with the positions whose
/// next token an objective scores (its completion): the shared input of every post-training objective.
///
///     // prompt [1, 5, 6] + completion [7, 2]: log p(7 | 1 5 6) and log p(2 | 1 5 6 7) are scored
///     let batch = try PaddedBatch(sequences: [[1, 5, 6, 7, 2]], scoredFrom: [3], pad: 0)
public struct PaddedBatch: Sendable {
    public let rows: Int, seqLen: Int
    /// [rows × seqLen] token ids, `pad` after each sequence's end.
    public let inputs: [Int32]
    /// [rows × seqLen]: at position t, the token t + 1 when it is scored, else -100.
    public let targets: [Int32]
    /// [rows × seqLen]: real tokens (true) and padding (false), like HF's attention mask.
    public let attention: [Bool]
    public let lengths: [Int]

    /// `scoredFrom[i]`: the index in sequence i of its first scored token (the completion's start; 1 scores
    /// every token after the first).
    public init(sequences: [[Int]], scoredFrom: [Int], pad: Int) throws {
        guard !sequences.isEmpty, sequences.count == scoredFrom.count else {
            throw TrainingError.badArgument("a batch needs at least one sequence and one completion start per sequence")
        }
        let T = sequences.map(\.count).max()!
        rows = sequences.count; seqLen = T
        var inputs = [Int32](repeating: Int32(pad), count: rows * T)
        var targets = [Int32](repeating: -100, count: rows * T)
        var attention = [Bool](repeating: false, count: rows * T)
        for (r, s) in sequences.enumerated() {
            guard s.count >= 2, scoredFrom[r] >= 1, scoredFrom[r] < s.count else {
                throw TrainingError.badArgument("sequence \(r) has no token to score (length \(s.count), completion from \(scoredFrom[r]))")
            }
            for (t, id) in s.enumerated() { inputs[r * T + t] = Int32(id); attention[r * T + t] = true }
            for t in (scoredFrom[r] - 1)..<(s.count - 1) { targets[r * T + t] = Int32(s[t + 1]) }
        }
        self.inputs = inputs; self.targets = targets; self.attention = attention
        lengths = sequences.map(\.count)
    }

    /// Full windows of `seqLen` tokens (pre-training): no padding.
    public init(rows: Int, seqLen: Int, inputs: [Int32], targets: [Int32]) {
        self.rows = rows; self.seqLen = seqLen; self.inputs = inputs; self.targets = targets
        attention = [Bool](repeating: true, count: rows * seqLen)
        lengths = [Int](repeating: seqLen, count: rows)
    }

    /// Sequences with their own targets ([rows × seqLen], -100 where nothing is scored).
    public init(sequences: [[Int]], targets: [Int32], pad: Int) throws {
        guard !sequences.isEmpty else { throw TrainingError.badArgument("a batch needs at least one sequence") }
        let T = sequences.map(\.count).max()!
        guard targets.count == sequences.count * T else { throw TrainingError.badArgument("targets must be rows × longest sequence") }
        rows = sequences.count; seqLen = T
        var inputs = [Int32](repeating: Int32(pad), count: rows * T)
        var attention = [Bool](repeating: false, count: rows * T)
        for (r, s) in sequences.enumerated() {
            for (t, id) in s.enumerated() { inputs[r * T + t] = Int32(id); attention[r * T + t] = true }
        }
        self.inputs = inputs; self.targets = targets; self.attention = attention
        lengths = sequences.map(\.count)
    }
}

extension TrainableModel {
    /// log p(target) at every position of `batch` (0 where nothing is scored), keeping the activations for
    /// `backward(batch:logProbGradients:balance:)`. Padding is excluded from the router's balance statistics.
    /// `temperature`: log-probs under softmax(logits / T), the distribution tokens sampled at T came from.
    public func tokenLogProbs(_ batch: PaddedBatch, temperature: Float = 1) throws -> [Float] {
        try checkTargets(batch.targets, count: batch.targets.count)
        try forwardHidden(batch: batch.rows, seqLen: batch.seqLen, inputs: batch.inputs, balanceMask: batch.attention)
        return head(rows: batch.rows * batch.seqLen, targets: batch.targets, coefficients: nil, temperature: temperature)
    }

    /// `tokenLogProbs` and the entropy of the (temperature-scaled) next-token distribution at every position.
    public func tokenLogProbsAndEntropy(_ batch: PaddedBatch, temperature: Float = 1) throws -> (logProbs: [Float], entropy: [Float]) {
        try checkTargets(batch.targets, count: batch.targets.count)
        try forwardHidden(batch: batch.rows, seqLen: batch.seqLen, inputs: batch.inputs, balanceMask: batch.attention)
        var entropy = [Float](repeating: 0, count: batch.targets.count)
        let logp = entropy.withUnsafeMutableBufferPointer {
            head(rows: batch.rows * batch.seqLen, targets: batch.targets, coefficients: nil, temperature: temperature, entropy: $0.baseAddress!)
        }
        return (logp, entropy)
    }

    /// Per-sequence sums of `tokenLogProbs`.
    public static func sequenceSums(_ logp: [Float], _ batch: PaddedBatch) -> [Double] {
        (0..<batch.rows).map { r in
            (0..<batch.seqLen).reduce(0.0) { $0 + Double(logp[r * batch.seqLen + $1]) }
        }
    }

    /// Back-propagates an objective given d(objective)/d(log p) at each scored position, plus the balance
    /// losses of the last forward (× `scale`, for accumulation), adding to `store.grads`. Must follow
    /// `tokenLogProbs` on the same batch.
    public func backward(batch: PaddedBatch, logProbGradients: [Float], balance: BalanceLosses, scale: Float = 1,
                         temperature: Float = 1) throws {
        guard savedShape.map({ $0 == (batch.rows, batch.seqLen) }) ?? false, logProbGradients.count == batch.targets.count else {
            throw TrainingError.badArgument("backward(batch:) must follow tokenLogProbs on the same batch, with one gradient per position")
        }
        _ = head(rows: batch.rows * batch.seqLen, targets: batch.targets, coefficients: logProbGradients, temperature: temperature)
        backwardHidden(batch: batch.rows, seqLen: batch.seqLen, balance: balanceGradient(balance, scale: scale))
    }
}
