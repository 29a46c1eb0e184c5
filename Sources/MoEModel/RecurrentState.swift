/// The fixed-size state a sequence keeps for each linear-attention (Gated DeltaNet) layer, beside its KV cache:
/// the convolution's last inputs and one key × value matrix per value head. Unlike keys and values it cannot be
/// cut back to an earlier position: it is reset, copied whole, or restored from a snapshot.
public final class RecurrentState: @unchecked Sendable {
    /// Layers holding state, and the floats of each.
    public let layers: Int
    public let layout: LinearAttentionLayout
    let storage: UnsafeMutablePointer<Float>

    public init(layers: Int, layout: LinearAttentionLayout) {
        self.layers = layers
        self.layout = layout
        storage = .allocate(capacity: max(layers * layout.stateFloats, 1))
        storage.initialize(repeating: 0, count: max(layers * layout.stateFloats, 1))
    }

    deinit { storage.deallocate() }

    /// Bytes of state per sequence (all layers).
    public var byteCount: Int { layers * layout.stateFloats * MemoryLayout<Float>.size }

    /// Layer `layer`'s convolution window [convChannels, convKernel − 1].
    @inline(__always) func convWindow(layer: Int) -> UnsafeMutablePointer<Float> { storage + layer * layout.stateFloats }

    /// Layer `layer`'s matrices [valueHeads, keyDim, valueDim].
    @inline(__always) func matrices(layer: Int) -> UnsafeMutablePointer<Float> {
        storage + layer * layout.stateFloats + (layout.convKernel - 1) * layout.convChannels
    }

    /// The state before any token.
    public func reset() { storage.update(repeating: 0, count: layers * layout.stateFloats) }

    /// Takes `other`'s state (the same shape).
    public func copy(from other: RecurrentState) {
        precondition(other.layers == layers && other.layout == layout, "recurrent states of different shapes")
        storage.update(from: other.storage, count: layers * layout.stateFloats)
    }

    /// A copy of the whole state (a snapshot to restore with `copy(from:)`).
    public func snapshot() -> RecurrentState {
        let s = RecurrentState(layers: layers, layout: layout)
        s.copy(from: self)
        return s
    }
}
