import Foundation

/// What the training loop minimises on a batch. Each objective is a short type here; the loop (`Trainer`)
/// is shared: pre-training and SFT use `LanguageModeling`, then `DPOObjective`, `RewardObjective`, …
public protocol TrainingObjective: Sendable {
    /// Forward and backward on `batch`, adding gradients × `scale` (1/accumulation steps) to the model's.
    func step(_ model: TrainableModel, _ batch: TrainingBatch, balance: BalanceLosses, scale: Float) throws -> ObjectiveResult
    /// The same loss without gradients (validation).
    func evaluate(_ model: TrainableModel, _ batch: TrainingBatch, balance: BalanceLosses) throws -> ObjectiveResult
}

/// A batch's loss, its parts, how much it weighs in an average (target tokens, pairs), and the objective's own
/// metrics (DPO's reward accuracy and margin, …), logged beside the loss.
public struct ObjectiveResult: Sendable {
    public var loss: LossBreakdown
    public var weight: Double
    public var metrics: [String: Double] = [:]
    /// The loss validation reports: the total, except for language modelling, which reports cross-entropy
    /// alone (as nanoGPT and HF do).
    public var reported: Double

    public init(loss: LossBreakdown, weight: Double, metrics: [String: Double] = [:], reported: Double? = nil) {
        self.loss = loss; self.weight = weight; self.metrics = metrics; self.reported = reported ?? loss.total
    }
}

/// Next-token cross-entropy on the scored targets (pre-training, SFT) plus the balance losses.
public struct LanguageModeling: TrainingObjective {
    public init() {}

    public func step(_ model: TrainableModel, _ batch: TrainingBatch, balance: BalanceLosses, scale: Float) throws -> ObjectiveResult {
        let b = batch.tokens
        let l = try model.trainStep(batch: b.rows, seqLen: b.seqLen, inputs: b.inputs, targets: b.targets, balance: balance,
                                    gradientScale: scale, balanceMask: b.attention)
        return ObjectiveResult(loss: l, weight: Double(l.tokens), metrics: metrics(model, l), reported: l.crossEntropy)
    }

    public func evaluate(_ model: TrainableModel, _ batch: TrainingBatch, balance: BalanceLosses) throws -> ObjectiveResult {
        let b = batch.tokens
        let l = try model.evaluate(batch: b.rows, seqLen: b.seqLen, inputs: b.inputs, targets: b.targets, balance: balance,
                                   balanceMask: b.attention)
        return ObjectiveResult(loss: l, weight: Double(l.tokens), metrics: metrics(model, l), reported: l.crossEntropy)
    }

    /// The multi-token-prediction module's cross-entropy, where the model has one.
    private func metrics(_ model: TrainableModel, _ l: LossBreakdown) -> [String: Double] {
        model.mtpDepth > 0 ? ["mtp_ce": l.mtp] : [:]
    }
}
