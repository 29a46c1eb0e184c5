import MoEFormats
import MoEKernels

/// Reads a checkpoint's tensors as the shapes a layer expects: matrices stay in their stored dtype
/// (memory-mapped, widened by the kernels on the fly), small vectors (norms, biases) become f32 arrays.
/// Every mismatch is an error naming the tensor.
public struct WeightReader: @unchecked Sendable {
    public let checkpoint: Checkpoint

    public init(_ checkpoint: Checkpoint) { self.checkpoint = checkpoint }

    public func has(_ name: String) -> Bool { checkpoint.contains(name) }

    /// A `rows × cols` matrix in `nn.Linear` layout (outputs × inputs).
    public func matrix(_ name: String, rows: Int, cols: Int) throws -> WeightMatrix {
        let t = try checkpoint.tensor(name, shape: [rows, cols])
        return WeightMatrix(base: t.pointer, rows: rows, cols: cols, type: try Self.elementType(t))
    }

    /// Slab `index` of a stacked `[count, rows, cols]` tensor (fused experts), rows `rowOffset..<rowOffset+rows`.
    public func stackedMatrix(_ name: String, index: Int, shape: [Int], rowOffset: Int = 0, rows: Int) throws -> WeightMatrix {
        let t = try checkpoint.tensor(name, shape: shape)
        let type = try Self.elementType(t)
        let slab = shape[1] * shape[2] * type.byteSize
        return WeightMatrix(base: t.pointer + index * slab + rowOffset * shape[2] * type.byteSize,
                            rows: rows, cols: shape[2], type: type)
    }

    /// A vector of `count` values as f32.
    public func vector(_ name: String, count: Int) throws -> [Float] {
        try FloatEncoding.floats(checkpoint.tensor(name, shape: [count]))
    }

    static func elementType(_ t: TensorData) throws -> ElementType {
        switch t.dtype {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        default: throw FormatError.unsupportedDType(tensor: t.name, dtype: t.dtype.rawValue)
        }
    }
}
