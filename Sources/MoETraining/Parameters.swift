import Foundation

/// Every trainable tensor of a model in one flat f32 buffer, with a gradient buffer of the same layout, so
/// the optimizer, gradient clipping and checkpointing each run one loop over all parameters.
///
///     let store = ParameterStore()
///     let w = store.add("model.norm.weight", shape: [256], decay: false)
///     store.allocate()
///     store.values(w)[0] = 1
public final class ParameterStore: @unchecked Sendable {
    /// One named tensor: where it lives in the flat buffers and whether weight decay applies to it.
    public struct Tensor: Sendable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public let count: Int
        public let decay: Bool
        /// Not learned by gradient (DeepSeek-V3's expert bias): excluded from the optimizer and clipping.
        public let frozen: Bool
    }

    public private(set) var tensors: [Tensor] = []
    private var index: [String: Int] = [:]
    public private(set) var count = 0
    public private(set) var values: UnsafeMutablePointer<Float>!
    public private(set) var grads: UnsafeMutablePointer<Float>!

    public init() {}

    deinit {
        values?.deallocate()
        grads?.deallocate()
    }

    /// Registers a tensor (before `allocate`) and returns its offset.
    @discardableResult
    public func add(_ name: String, shape: [Int], decay: Bool, frozen: Bool = false) -> Int {
        precondition(values == nil, "ParameterStore: add after allocate")
        precondition(index[name] == nil, "ParameterStore: \(name) registered twice")
        let n = shape.reduce(1, *)
        // Offsets rounded to 16 floats so every tensor starts on a 64-byte boundary.
        let offset = (count + 15) / 16 * 16
        index[name] = tensors.count
        tensors.append(Tensor(name: name, shape: shape, offset: offset, count: n, decay: decay, frozen: frozen))
        count = offset + n
        return offset
    }

    /// Allocates zeroed values and gradients.
    public func allocate() {
        values = .allocate(capacity: max(count, 1)); values.initialize(repeating: 0, count: max(count, 1))
        grads = .allocate(capacity: max(count, 1)); grads.initialize(repeating: 0, count: max(count, 1))
    }

    public func tensor(_ name: String) -> Tensor? { index[name].map { tensors[$0] } }

    /// Marks the tensors whose names satisfy `predicate` frozen: the optimizer and clipping leave them as they are.
    public func freeze(where predicate: (String) -> Bool) {
        tensors = tensors.map { t in
            predicate(t.name) ? Tensor(name: t.name, shape: t.shape, offset: t.offset, count: t.count, decay: t.decay, frozen: true) : t
        }
    }

    public func zeroGrads() { grads.update(repeating: 0, count: max(count, 1)) }

    /// The number of trainable scalars (frozen tensors excluded).
    public var parameterCount: Int { tensors.reduce(0) { $0 + ($1.frozen ? 0 : $1.count) } }
}
