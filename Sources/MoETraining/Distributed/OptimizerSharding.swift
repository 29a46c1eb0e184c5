import Foundation

/// ZeRO stage 1 (Rajbhandari et al., 2020) over MPI (`--shard-optimizer`): the store's flat parameter range is cut
/// into one contiguous share per rank; each rank keeps AdamW's moments for its share only (1/N of the optimizer's
/// memory) and applies the step there, after the gradients are summed as in plain data parallelism; then every
/// rank's updated share is gathered everywhere (`MPI_Allgatherv`), so all ranks hold the same weights — the ones
/// the unsharded run computes, element for element. Checkpoints gather the moments too, so they are whole and
/// resume with any N, sharded or not.
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

    /// The whole store's moments (every rank calls this; the writer saves them).
    func gatherMoments(_ optimizer: AdamW) throws -> (m: [Float], v: [Float]) {
        var m = [Float](repeating: 0, count: count), v = m
        try m.withUnsafeMutableBufferPointer { mb in
            try v.withUnsafeMutableBufferPointer { vb in
                optimizer.copyMoments(into: mb.baseAddress!, vb.baseAddress!, count: count)
                try communicator.gatherInPlace(mb.baseAddress!, shares: shares)
                try communicator.gatherInPlace(vb.baseAddress!, shares: shares)
            }
        }
        return (m, v)
    }
}
