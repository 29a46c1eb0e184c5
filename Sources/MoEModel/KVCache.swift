/// Keys and values of every layer for the positions seen so far, preallocated for `capacity` positions.
/// Layout per layer: `[capacity, kvHeads · headDim]`, so one position's keys are one contiguous row.
public final class KVCache: @unchecked Sendable {
    public let layers: Int
    public let capacity: Int
    public let rowWidth: Int
    /// Number of positions already stored (the next token's position).
    public var count = 0
    let keys: UnsafeMutablePointer<Float>
    let values: UnsafeMutablePointer<Float>

    public init(layers: Int, capacity: Int, kvHeads: Int, headDim: Int) {
        self.layers = layers
        self.capacity = capacity
        rowWidth = kvHeads * headDim
        let total = layers * capacity * rowWidth
        keys = .allocate(capacity: max(total, 1))
        values = .allocate(capacity: max(total, 1))
    }

    deinit { keys.deallocate(); values.deallocate() }

    @inline(__always) func keys(layer: Int) -> UnsafeMutablePointer<Float> { keys + layer * capacity * rowWidth }
    @inline(__always) func values(layer: Int) -> UnsafeMutablePointer<Float> { values + layer * capacity * rowWidth }

    /// Forgets everything (the memory is kept).
    public func reset() { count = 0 }

    /// Keeps the first `n` positions (for reusing a shared prefix).
    public func truncate(to n: Int) { count = min(count, max(n, 0)) }

    /// Copies the first `n` positions of every layer from `other` and keeps exactly those (`count = n`): a
    /// sequence that starts with another's prefix skips recomputing it. The caches must have the same layers
    /// and row width (capacities may differ).
    ///
    /// ```swift
    /// try slot.copyPrefix(from: systemPromptCache, count: systemPromptCache.count)
    /// try model.forward(userTurn, cache: slot)    // continues after the shared prefix
    /// ```
    ///
    /// Throws `badInput` for a cache of another shape or `n` beyond what `other` holds, `contextOverflow` when
    /// `n` exceeds this cache's capacity.
    public func copyPrefix(from other: KVCache, count n: Int) throws {
        guard other.layers == layers, other.rowWidth == rowWidth else {
            throw ModelError.badInput("copyPrefix: caches of different shapes (\(other.layers) layers × \(other.rowWidth) "
                                      + "into \(layers) × \(rowWidth))")
        }
        guard n >= 0, n <= other.count else {
            throw ModelError.badInput("copyPrefix: \(n) positions asked for, the source holds \(other.count)")
        }
        guard n <= capacity else { throw ModelError.contextOverflow(tokens: n, context: capacity) }
        if other !== self {
            // Layer by layer: the rows of a layer are contiguous, but the layers sit `capacity` rows apart.
            for layer in 0..<layers {
                keys(layer: layer).update(from: other.keys(layer: layer), count: n * rowWidth)
                values(layer: layer).update(from: other.values(layer: layer), count: n * rowWidth)
            }
        }
        count = n
    }

    public var byteCount: Int { 2 * layers * capacity * rowWidth * MemoryLayout<Float>.size }
}
