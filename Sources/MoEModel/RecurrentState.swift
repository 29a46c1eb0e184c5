/// The fixed-size state a sequence keeps beside its KV cache, whatever its length: for each linear-attention
/// (Gated DeltaNet) layer the convolution's last inputs and one key × value matrix per value head, and for each
/// sliding-window attention layer (gpt-oss) a ring of the last `window` positions' keys and values. Unlike the
/// KV cache's pages it cannot be cut back to an earlier position: it is reset, copied whole, or restored from a
/// snapshot.
public final class RecurrentState: @unchecked Sendable {
    public let shape: RecurrentShape
    let storage: UnsafeMutablePointer<Float>

    public init(_ shape: RecurrentShape) {
        self.shape = shape
        storage = .allocate(capacity: max(shape.floats, 1))
        storage.initialize(repeating: 0, count: max(shape.floats, 1))
    }

    deinit { storage.deallocate() }

    /// Bytes of state per sequence (all layers).
    public var byteCount: Int { shape.bytes }

    /// DeltaNet layer `layer`'s convolution window [convChannels, convKernel − 1].
    @inline(__always) func convWindow(layer: Int) -> UnsafeMutablePointer<Float> {
        storage + layer * shape.linearStateFloats
    }

    /// DeltaNet layer `layer`'s matrices [valueHeads, keyDim, valueDim].
    @inline(__always) func matrices(layer: Int) -> UnsafeMutablePointer<Float> {
        let l = shape.layout!
        return storage + layer * shape.linearStateFloats + (l.convKernel - 1) * l.convChannels
    }

    /// Sliding-window layer `layer`'s ring: keys [window, windowWidth], then values [window, windowWidth];
    /// position p sits in slot p % window.
    @inline(__always) func ring(layer: Int) -> (keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>) {
        let keys = storage + shape.layers * shape.linearStateFloats + layer * shape.ringFloats
        return (keys, keys + shape.window * shape.windowWidth)
    }

    /// The state before any token.
    public func reset() { storage.update(repeating: 0, count: shape.floats) }

    /// Takes `other`'s state (the same shape).
    public func copy(from other: RecurrentState) {
        precondition(other.shape == shape, "recurrent states of different shapes")
        storage.update(from: other.storage, count: shape.floats)
    }

    /// A copy of the whole state (a snapshot to restore with `copy(from:)`).
    public func snapshot() -> RecurrentState {
        let s = RecurrentState(shape)
        s.copy(from: self)
        return s
    }
}

/// What a sequence's `RecurrentState` holds: `layers` Gated DeltaNet layers of `layout`, and `windowLayers`
/// sliding-window attention rings of `window` positions × `windowWidth` floats of keys (and as many of values).
public struct RecurrentShape: Sendable, Equatable {
    public var layers: Int
    public var layout: LinearAttentionLayout?
    public var windowLayers: Int
    public var window: Int
    public var windowWidth: Int

    public init(layers: Int = 0, layout: LinearAttentionLayout? = nil, windowLayers: Int = 0, window: Int = 0, windowWidth: Int = 0) {
        self.layers = layout == nil ? 0 : layers; self.layout = layout
        self.windowLayers = window > 0 ? windowLayers : 0; self.window = window; self.windowWidth = windowWidth
    }

    /// Floats of one DeltaNet layer's state.
    var linearStateFloats: Int { layout?.stateFloats ?? 0 }
    /// Floats of one sliding-window layer's ring (keys and values).
    var ringFloats: Int { 2 * window * windowWidth }
    var floats: Int { layers * linearStateFloats + windowLayers * ringFloats }

    /// Bytes per sequence.
    public var bytes: Int { floats * MemoryLayout<Float>.size }
}
