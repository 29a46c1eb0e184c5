import MoEFormats
import MoEKernels

/// Reads a model's tensors as the shapes a layer expects: matrices stay in their stored type (memory-mapped,
/// widened or dequantised by the kernels on the fly), small vectors (norms, biases) become f32 arrays.
/// Every mismatch is an error naming the tensor.
public struct WeightReader: @unchecked Sendable {
    public let store: any TensorStore
    /// How quantised matrices round their activations (`WeightMatrix.activations`).
    public let activations: ActivationRounding

    public init(_ store: any TensorStore, activations: ActivationRounding = .int8) {
        self.store = store
        self.activations = activations
    }

    public func has(_ name: String) -> Bool { store.contains(name) }

    /// A `rows × cols` matrix in `nn.Linear` layout (outputs × inputs); `shape`: the stored shape when it has
    /// more dimensions (rows are then the leading ones flattened).
    public func matrix(_ name: String, rows: Int, cols: Int, shape: [Int]? = nil) throws -> WeightMatrix {
        let t = try store.tensor(name, shape: shape ?? [rows, cols])
        return WeightMatrix(base: t.pointer, rows: rows, cols: cols, type: try Self.elementType(t), activations: activations)
    }

    /// Slab `index` of a stacked `[count, rows, cols]` tensor (fused experts), rows `rowOffset..<rowOffset+rows`.
    public func stackedMatrix(_ name: String, index: Int, shape: [Int], rowOffset: Int = 0, rows: Int) throws -> WeightMatrix {
        let t = try store.tensor(name, shape: shape)
        let type = try Self.elementType(t)
        let rowBytes = type.bytes(shape[2])
        return WeightMatrix(base: t.pointer + (index * shape[1] + rowOffset) * rowBytes, rows: rows, cols: shape[2], type: type,
                            activations: activations)
    }

    /// A vector of `count` values as f32.
    public func vector(_ name: String, count: Int) throws -> [Float] {
        try FloatEncoding.floats(store.tensor(name, shape: [count]))
    }

    /// A small tensor of `shape` as f32 values (row-major).
    public func vector(_ name: String, shape: [Int]) throws -> [Float] {
        try FloatEncoding.floats(store.tensor(name, shape: shape))
    }

    /// An RMSNorm weight of `count` values as f32, plus `offset` (1 for zero-centred norms stored as w − 1).
    public func norm(_ name: String, count: Int, offset: Float = 0) throws -> [Float] {
        let v = try vector(name, count: count)
        return offset == 0 ? v : v.map { $0 + offset }
    }

    static func elementType(_ t: TensorData) throws -> ElementType {
        if let q = t.quant { return .quantized(q) }
        switch t.dtype {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        default: throw FormatError.unsupportedDType(tensor: t.name, dtype: t.dtype.rawValue)
        }
    }
}
