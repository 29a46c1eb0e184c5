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

    public var byteCount: Int { 2 * layers * capacity * rowWidth * MemoryLayout<Float>.size }
}
