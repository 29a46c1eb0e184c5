import Foundation

/// One batch for the training loop: the padded token rows with their targets, and any per-row values the
/// objective needs (DPO: the reference model's log-probs of each row).
public struct TrainingBatch: Sendable {
    public var tokens: PaddedBatch
    public var rowValues: [Double] = []
    /// Per-position values in the batch's layout (GRPO: the sampling policy's and the reference's log-probs).
    public var positionValues: [String: [Float]] = [:]
    /// Figures about how the batch was made (a rollout's sampling speed), logged with the step that first uses it.
    public var metrics: [String: Double] = [:]
    public init(_ tokens: PaddedBatch, rowValues: [Double] = [], positionValues: [String: [Float]] = [:]) {
        self.tokens = tokens; self.rowValues = rowValues; self.positionValues = positionValues
    }
}

/// Where the training loop's batches come from: token-shard windows (pre-training), rendered chat examples
/// (SFT), … Its position is saved in checkpoints so a resumed run sees the same batches.
public protocol BatchSource {
    /// Rows per batch and the longest row, for the memory estimate and the tokens/s figure.
    var batchSize: Int { get }
    var seqLen: Int { get }
    mutating func next() throws -> TrainingBatch
    /// Moves past the batch `next` would return, for a batch another MPI rank trains on: the position ends where
    /// `next` leaves it, with as little work as that allows (the default makes the batch).
    mutating func skip() throws
    /// Fixed validation batches (empty when there is no validation data).
    func validation(maxBatches: Int) -> [TrainingBatch]
    func savedState() throws -> Data
    /// Restores a position saved by `savedState`; throws `TrainingError.resume` when it belongs to other data.
    mutating func restore(_ state: Data) throws
}

extension BatchSource {
    public mutating func skip() throws { _ = try next() }
}

/// Pre-training batches: shuffled packed windows of the training shard, the validation shard's first windows.
public struct ShardBatches: BatchSource {
    let train: TokenShard, validationShard: TokenShard
    var sampler: BatchSampler
    public var batchSize: Int { sampler.batchSize }
    public var seqLen: Int { sampler.seqLen }

    public init(train: TokenShard, validation: TokenShard, batchSize: Int, seqLen: Int, seed: UInt64) throws {
        self.train = train; validationShard = validation
        sampler = try BatchSampler(tokenCount: train.count, seqLen: seqLen, batchSize: batchSize, seed: seed)
    }

    public mutating func next() throws -> TrainingBatch {
        var inputs = [Int32](repeating: 0, count: batchSize * seqLen), targets = inputs
        inputs.withUnsafeMutableBufferPointer { i in
            targets.withUnsafeMutableBufferPointer { t in sampler.nextBatch(from: train, inputs: i.baseAddress!, targets: t.baseAddress!) }
        }
        return TrainingBatch(PaddedBatch(rows: batchSize, seqLen: seqLen, inputs: inputs, targets: targets))
    }

    public func validation(maxBatches: Int) -> [TrainingBatch] {
        BatchSampler.validationBatches(shard: validationShard, seqLen: seqLen, batchSize: batchSize, maxBatches: maxBatches).map {
            TrainingBatch(PaddedBatch(rows: $0.inputs.count / seqLen, seqLen: seqLen, inputs: $0.inputs, targets: $0.targets))
        }
    }

    public func savedState() throws -> Data { try JSONEncoder().encode(sampler) }

    public mutating func restore(_ state: Data) throws {
        let saved = try JSONDecoder().decode(BatchSampler.self, from: state)
        guard saved.tokenCount == train.count else {
            throw TrainingError.resume("the training data changed (\(train.count) tokens now, \(saved.tokenCount) in the checkpoint)")
        }
        guard saved.batchSize == batchSize, saved.seqLen == seqLen else {
            throw TrainingError.resume("batch size and sequence length must match the checkpoint's (\(saved.batchSize) × \(saved.seqLen))")
        }
        sampler = saved
    }
}

/// SFT batches: whole examples (one per row, right-padded to the batch's longest, so no attention crosses
/// examples), in a seeded shuffled order reshuffled every epoch; validation = the held-out examples in order.
public struct ExampleBatches: BatchSource {
    let examples: [SFTExample], held: [SFTExample]
    let pad: Int, seed: UInt64
    public let batchSize: Int, seqLen: Int
    struct Position: Codable, EpochPosition {
        var epoch = 0
        var index = 0
        /// Training examples, to tell on resume whether they are the same.
        var count: Int
    }
    var position: Position

    /// `examples` longer than `seqLen` tokens must have been cut or dropped by the caller.
    public init(train: [SFTExample], validation: [SFTExample], batchSize: Int, pad: Int, seed: UInt64) throws {
        guard !train.isEmpty else { throw TrainingError.badArgument("no training examples") }
        examples = train; held = validation; self.batchSize = batchSize; self.pad = pad; self.seed = seed
        seqLen = (train + validation).map(\.ids.count).max()!
        position = Position(count: train.count)
    }

    /// 0..<count in the seeded Fisher–Yates order of `epoch`.
    static func shuffled(_ count: Int, seed: UInt64, epoch: Int) -> [Int] {
        var rng = SplitMix64(seed: seed, stream: UInt64(epoch))
        var o = Array(0..<count)
        for i in stride(from: o.count - 1, to: 0, by: -1) { o.swapAt(i, rng.int(i + 1)) }
        return o
    }

    public mutating func next() throws -> TrainingBatch {
        try ExampleBatches.batch(position.take(batchSize, seed: seed).map { examples[$0] }, pad: pad)
    }

    static func batch(_ picked: [SFTExample], pad: Int) throws -> TrainingBatch {
        TrainingBatch(try SFTData.batch(picked, pad: pad))
    }

    public func validation(maxBatches: Int) -> [TrainingBatch] {
        stride(from: 0, to: min(held.count, maxBatches * batchSize), by: batchSize).compactMap {
            try? ExampleBatches.batch(Array(held[$0..<min($0 + batchSize, held.count)]), pad: pad)
        }
    }

    public func savedState() throws -> Data { try JSONEncoder().encode(position) }

    public mutating func restore(_ state: Data) throws {
        let saved = try JSONDecoder().decode(Position.self, from: state)
        guard saved.count == examples.count else {
            throw TrainingError.resume("the training examples changed (\(examples.count) now, \(saved.count) in the checkpoint)")
        }
        position = saved
    }
}

/// Where a batch source stands in its items' seeded order, epoch after epoch (saved in checkpoints).
protocol EpochPosition {
    var epoch: Int { get set }
    var index: Int { get set }
    /// The number of items.
    var count: Int { get }
}

extension EpochPosition {
    /// The next `n` item indices, in `ExampleBatches.shuffled` order, a new epoch's order after the last item.
    mutating func take(_ n: Int, seed: UInt64) -> [Int] {
        var order = ExampleBatches.shuffled(count, seed: seed, epoch: epoch), picked: [Int] = []
        while picked.count < n {
            if index == count { epoch += 1; index = 0; order = ExampleBatches.shuffled(count, seed: seed, epoch: epoch) }
            picked.append(order[index])
            index += 1
        }
        return picked
    }
}

/// Every k-th item held out for validation (k = 1/fraction, at least 2; none when the fraction is 0), the
/// rest for training — deterministic, and spread over the whole data.
public func splitForValidation<T>(_ items: [T], fraction: Double) -> (train: [T], validation: [T]) {
    let k = fraction > 0 ? max(2, Int((1 / fraction).rounded())) : Int.max
    var train: [T] = [], validation: [T] = []
    for (i, item) in items.enumerated() { if (i + 1) % k == 0 { validation.append(item) } else { train.append(item) } }
    return (train, validation)
}
