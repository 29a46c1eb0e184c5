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

/// A row-major weight matrix in PyTorch `nn.Linear` layout: `rows` outputs × `cols` inputs, contiguous rows.
public struct WeightMatrix: @unchecked Sendable {
    public let base: UnsafeRawPointer
    public let rows: Int
    public let cols: Int
    public let type: ElementType

    public init(base: UnsafeRawPointer, rows: Int, cols: Int, type: ElementType) {
        precondition(rows >= 0 && cols >= 0, "WeightMatrix: negative shape")
        if case let .quantized(q) = type {
            precondition(cols % q.blockElements == 0, "WeightMatrix: \(cols) columns are not whole \(q) blocks")
        }
        self.base = base
        self.rows = rows
        self.cols = cols
        self.type = type
    }

    /// Bytes between consecutive rows.
    @inlinable public var rowBytes: Int { type.bytes(cols) }
}
