import Foundation

/// Shuffled fixed windows over a shard: window i is tokens [i·seqLen, i·seqLen + seqLen]; inputs are its first seqLen
/// tokens, targets its last seqLen. Documents are only EOS-separated, so a window may span two (as nanoGPT does).
/// ```
/// var sampler = try BatchSampler(tokenCount: shard.count, seqLen: 256, batchSize: 8, seed: 42)
/// sampler.nextBatch(from: shard, inputs: x, targets: y)   // x, y: 8 × 256 Int32 each
/// ```
/// Its Codable state (seed, epoch, position) recreates the same order, so a resumed run sees the same batches.
public struct BatchSampler: Codable, Sendable {
    public let tokenCount: Int
    public let seqLen: Int
    public let batchSize: Int
    public let seed: UInt64
    public private(set) var epoch = 0
    /// Windows already taken in the current epoch.
    public private(set) var position = 0
    // Derived from (seed, epoch), so not encoded: a permutation can be megabytes.
    private var order: [UInt32] = []
    private var orderEpoch = -1

    private enum CodingKeys: String, CodingKey { case tokenCount, seqLen, batchSize, seed, epoch, position }

    public var windowCount: Int { (tokenCount - 1) / seqLen }
    public var consumedWindows: Int { epoch * windowCount + position }

    public init(tokenCount: Int, seqLen: Int, batchSize: Int, seed: UInt64) throws {
        guard seqLen >= 1, batchSize >= 1 else { throw DataError.invalidArgument("seqLen and batchSize must be at least 1") }
        guard tokenCount >= seqLen + 1 else { throw DataError.sequenceTooLong(seqLen: seqLen, tokens: tokenCount) }
        guard (tokenCount - 1) / seqLen <= Int(UInt32.max) else { throw DataError.invalidArgument("too many windows") }
        (self.tokenCount, self.seqLen, self.batchSize, self.seed) = (tokenCount, seqLen, batchSize, seed)
    }

    /// Fills `inputs` and `targets` with batchSize × seqLen tokens each (row-major); a batch may straddle two epochs.
    public mutating func nextBatch(from shard: TokenShard, inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>) {
        precondition(shard.count == tokenCount, "sampler was made for \(tokenCount) tokens, shard \(shard.path) has \(shard.count)")
        for row in 0..<batchSize {
            if orderEpoch != epoch { order = Self.permutation(windowCount, seed: seed, epoch: epoch); orderEpoch = epoch }
            let start = Int(order[position]) * seqLen
            shard.copy(from: start, count: seqLen, to: inputs + row * seqLen)
            shard.copy(from: start + 1, count: seqLen, to: targets + row * seqLen)
            position += 1
            if position == windowCount { epoch += 1; position = 0 }
        }
    }

    /// Fisher–Yates with SplitMix64 seeded from (seed, epoch): each epoch's order is reproducible on its own.
    static func permutation(_ n: Int, seed: UInt64, epoch: Int) -> [UInt32] {
        var state = SplitMix64.mix(seed ^ SplitMix64.mix(UInt64(epoch) &+ 0x5EED))
        var p = (0..<n).map { UInt32($0) }
        for i in stride(from: n - 1, to: 0, by: -1) {
            state &+= SplitMix64.gamma
            let j = Int(UInt64(i + 1).multipliedFullWidth(by: SplitMix64.mix(state)).high)  // uniform in 0...i
            p.swapAt(i, j)
        }
        return p
    }

    /// The first windows in order (no shuffling), at most maxBatches batches. The last batch may hold fewer than
    /// batchSize rows (inputs.count / seqLen of them); empty when not even one window fits.
    public static func validationBatches(shard: TokenShard, seqLen: Int, batchSize: Int, maxBatches: Int) -> [(inputs: [Int32], targets: [Int32])] {
        guard seqLen >= 1, batchSize >= 1, shard.count > seqLen else { return [] }
        let windows = min((shard.count - 1) / seqLen, maxBatches * batchSize)
        return stride(from: 0, to: windows, by: batchSize).map { first in
            let rows = min(batchSize, windows - first)
            var x = [Int32](repeating: 0, count: rows * seqLen), y = x
            x.withUnsafeMutableBufferPointer { xb in
                y.withUnsafeMutableBufferPointer { yb in
                    for r in 0..<rows {
                        shard.copy(from: (first + r) * seqLen, count: seqLen, to: xb.baseAddress! + r * seqLen)
                        shard.copy(from: (first + r) * seqLen + 1, count: seqLen, to: yb.baseAddress! + r * seqLen)
                    }
                }
            }
            return (x, y)
        }
    }
}
