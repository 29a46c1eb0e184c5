/// Element type of a weight matrix as stored (weights stay in their checkpoint type in memory): a float type, or
/// rows of ggml blocks (`quantized`, from GGUF files).
public enum ElementType: Sendable, Equatable, CustomStringConvertible {
    case f32, f16, bf16
    case quantized(QuantType)

    /// Bytes per element of the float types (a quantised type has no whole number: use `bytes(_:)`).
    public var byteSize: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .quantized: preconditionFailure("ElementType.byteSize: a block type has no per-element size")
        }
    }

    /// Bytes of `count` consecutive elements (for a block type, `count` is a whole number of blocks).
    @inlinable public func bytes(_ count: Int) -> Int {
        switch self {
        case .f32: return count &* 4
        case .f16, .bf16: return count &* 2
        case let .quantized(q): return count / q.blockElements &* q.blockBytes
        }
    }

    public var description: String {
        switch self {
        case .f32: return "f32"
        case .f16: return "f16"
        case .bf16: return "bf16"
        case let .quantized(q): return q.description
        }
    }
}

/// The integer kernels of quantised matrices round the activations before multiplying: `.int8` is the fast path,
/// llama.cpp's accuracy (each activation off by up to 1/254 of the largest of its 32 or 256; about 1e-3 relative on a
/// dot product), `.int16` is twice the work per product and agrees with f32 math on the same weights to about 1e-5
/// (what `moe logits` uses). Types without 8-bit kernels run the 16-bit or f32 ones either way.
public enum ActivationRounding: String, Sendable, CaseIterable {
    case int8, int16
}

/// A row-major weight matrix in PyTorch `nn.Linear` layout: `rows` outputs × `cols` inputs, contiguous rows.
public struct WeightMatrix: @unchecked Sendable {
    public let base: UnsafeRawPointer
    public let rows: Int
    public let cols: Int
    public let type: ElementType
    /// How the activations multiplied with a quantised matrix are rounded (ignored for float types).
    public let activations: ActivationRounding

    public init(base: UnsafeRawPointer, rows: Int, cols: Int, type: ElementType, activations: ActivationRounding = .int16) {
        precondition(rows >= 0 && cols >= 0, "WeightMatrix: negative shape")
        if case let .quantized(q) = type {
            precondition(cols % q.blockElements == 0, "WeightMatrix: \(cols) columns are not whole \(q) blocks")
        }
        self.base = base
        self.rows = rows
        self.cols = cols
        self.type = type
        self.activations = activations
    }

    /// Bytes between consecutive rows.
    @inlinable public var rowBytes: Int { type.bytes(cols) }
}
