import Foundation

/// ZeRO stage 1 (Rajbhandari et al., 2020) over MPI (`--shard-optimizer`): the store's flat parameter range is cut
/// into one contiguous share per rank; each rank keeps AdamW's moments for its share only (1/N of the optimizer's
/// memory) and applies the step there, after the gradients are summed as in plain data parallelism; then every
/// rank's updated share is gathered everywhere (`MPI_Allgatherv`), so all ranks hold the same weights — the ones
/// the unsharded run computes, element for element. Checkpoints gather the moments on rank 0, so they are whole
/// and resume with any N, sharded or not.
final class OptimizerSharding {
    let communicator: MPICommunicator
    /// Each rank's share of the flat store.
    let shares: [Range<Int>]
    let count: Int

    init(_ communicator: MPICommunicator, store: ParameterStore) throws {
        let count = max(store.count, 1), N = communicator.size
        guard count <= Int(Int32.max) else {
            throw TrainingError.badArgument("--shard-optimizer: \(count) parameters exceed MPI's 32-bit counts in one gather")
        }
        self.count = count
        shares = (0..<N).map { r in count * r / N ..< count * (r + 1) / N }
        self.communicator = communicator
    }

    /// This rank's share.
    var own: Range<Int> { shares[communicator.rank] }

    /// After every rank stepped its share of `values` (the weights): all shares everywhere.
    func gatherWeights(_ values: UnsafeMutablePointer<Float>) throws {
        try communicator.gatherInPlace(values, shares: shares)
    }

    /// The whole store's moments on rank 0, which writes them (nil elsewhere); every rank calls this.
    func gatherMoments(_ optimizer: AdamW) throws -> (m: [Float], v: [Float])? {
        let root = communicator.rank == 0
        var m = [Float](repeating: 0, count: root ? count : 0), v = m
        try m.withUnsafeMutableBufferPointer { mb in
            try v.withUnsafeMutableBufferPointer { vb in
                try communicator.gatherOnRankZero(optimizer.m, into: mb.baseAddress, shares: shares)
                try communicator.gatherOnRankZero(optimizer.v, into: vb.baseAddress, shares: shares)
            }
        }
        return root ? (m, v) : nil
    }
}
