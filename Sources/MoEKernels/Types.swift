/// Element type of a weight matrix as stored (weights stay in their checkpoint dtype in memory).
public enum ElementType: Sendable {
    case f32, f16, bf16

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
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
        self.base = base
        self.rows = rows
        self.cols = cols
        self.type = type
    }

    /// Bytes between consecutive rows.
    @inlinable public var rowBytes: Int { cols &* type.byteSize }
}
