import Foundation

/// Data parallelism over MPI. An optimizer step's global batch is its `accumulation` micro-batches; rank r of N
/// runs micro-batches r, r + N, … and passes over the others (`BatchSource.skip`: drawn without the work where it
/// can, so that every rank's batch source — data order, random state — stays where one process's would be). Gradients, losses, metrics and expert counts are summed
/// across ranks before the optimizer step, so every rank applies the same AdamW update and the run is the
/// one-process run with the same `accumulation`, up to float summation order: its checkpoints resume with any
/// N that divides `accumulation`. Rank 0 writes checkpoints, metrics and plots.
public struct DataParallel: Sendable {
    public let communicator: MPICommunicator
    public var rank: Int { communicator.rank }
    public var ranks: Int { communicator.size }
    /// Whether this rank writes the run's files.
    public var isWriter: Bool { rank == 0 }
    /// Whether the routed experts are split across the ranks (`ExpertSharding`) instead of replicated.
    public let expertParallel: Bool
    /// Whether each rank keeps the optimizer state of its share of the parameters only (`OptimizerSharding`, ZeRO-1).
    public let shardsOptimizer: Bool

    public init(_ communicator: MPICommunicator, expertParallel: Bool = false, shardsOptimizer: Bool = false) {
        self.communicator = communicator; self.expertParallel = expertParallel; self.shardsOptimizer = shardsOptimizer
    }

    /// The world communicator's data parallelism when this process runs under MPI (see `MPICommunicator.world`).
    public static func world(required: Bool) throws -> DataParallel? {
        try MPICommunicator.world(required: required).map { DataParallel($0) }
    }

    /// Whether this rank runs micro-batch `index` of a step.
    func runs(microBatch index: Int) -> Bool { index % ranks == rank }

    /// Whether micro-batch `index` is this rank's last of a step of `accumulation`.
    func isLast(microBatch index: Int, of accumulation: Int) -> Bool { index == accumulation - ranks + rank }

    /// Refuses a global batch the ranks cannot share evenly.
    func check(accumulation: Int) throws {
        guard accumulation % ranks == 0 else {
            throw TrainingError.badArgument("--accumulation \(accumulation) (micro-batches per step, the global batch) must be a multiple of the \(ranks) MPI ranks")
        }
    }

    /// Runs `body` on rank 0 first, then on the others (rank 0 writes what they then read, e.g. token shards).
    public func rankZeroFirst<T>(_ body: () throws -> T) throws -> T {
        if isWriter {
            let result = Result { try body() }
            try communicator.barrier()
            return try result.get()
        }
        try communicator.barrier()
        return try body()
    }

    /// Sums every rank's gradients (the same buffer layout on every rank).
    func sumGradients(_ store: ParameterStore) throws {
        try communicator.sumInPlace(store.grads, count: max(store.count, 1))
    }
}

/// A step's gradient all-reduce, bucketed by layer and started while the backward pass goes on: during the rank's
/// last micro-batch of a step, each transformer block's gradients are final once its backward is done, and their
/// sum is started then (`MPI_Iallreduce`), so it travels while the blocks below are differentiated; `finish`
/// starts what is left (embeddings, final norm, head, the multi-token-prediction module) and waits for all.
/// Only `reduced` (the whole store, or the part expert parallelism all-reduces) is summed. Every rank must start the
/// same buckets in the same order: objectives run one backward pass of the trained model per micro-batch.
public final class GradientBuckets {
    let communicator: MPICommunicator
    let reduced: [Range<Int>]
    private var started: [Range<Int>] = []
    private var requests: [UnsafeMutableRawPointer?] = []

    public init(_ communicator: MPICommunicator, reduced: [Range<Int>]) { self.communicator = communicator; self.reduced = reduced }

    /// Starts the sum of `range` (a block's parameters) where it overlaps `reduced`.
    public func start(_ range: Range<Int>, grads: UnsafeMutablePointer<Float>) {
        communicator.progress(&requests)
        for r in reduced where r.overlaps(range) {
            let piece = r.clamped(to: range)
            // Inside the backward pass, which does not throw: a failure ends the job rather than leave the ranks apart.
            do { try communicator.startSum(grads + piece.lowerBound, count: piece.count, requests: &requests) } catch {
                communicator.abort("gradient all-reduce: \(error)")
            }
            started.append(piece)
        }
    }

    /// Starts the rest of `reduced`, waits for every sum; returns the floats all-reduced.
    @discardableResult
    public func finish(grads: UnsafeMutablePointer<Float>) throws -> Int {
        defer { started = [] }
        let sorted = started.sorted { $0.lowerBound < $1.lowerBound }
        for r in reduced {
            var at = r.lowerBound
            for s in sorted where s.overlaps(r) {
                if s.lowerBound > at { try communicator.startSum(grads + at, count: s.lowerBound - at, requests: &requests) }
                at = max(at, s.upperBound)
            }
            if at < r.upperBound { try communicator.startSum(grads + at, count: r.upperBound - at, requests: &requests) }
        }
        try communicator.wait(&requests)
        return reduced.reduce(0) { $0 + $1.count }
    }
}
