import MoEKernels

/// The element type of a GGUF tensor that swift-moe reads: a float type, or one of ggml's block formats.
public enum GGUFTensorType: Sendable, Equatable, CustomStringConvertible {
    case f32, f16, bf16
    case quantized(QuantType)

    /// ggml's type id.
    public var id: UInt32 {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .bf16: return 30
        case let .quantized(q): return UInt32(q.rawValue)
        }
    }

    public init?(id: UInt32) {
        switch id {
        case 0: self = .f32
        case 1: self = .f16
        case 30: self = .bf16
        default:
            guard let q = QuantType(rawValue: Int(id)) else { return nil }
            self = .quantized(q)
        }
    }

    /// Values per block (1 for the float types) and bytes per block.
    public var block: (elements: Int, bytes: Int) {
        switch self {
        case .f32: return (1, 4)
        case .f16, .bf16: return (1, 2)
        case let .quantized(q): return (q.blockElements, q.blockBytes)
        }
    }

    /// ggml's name, e.g. "F16", "Q4_K".
    public var description: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case let .quantized(q): return q.description
        }
    }

    /// ggml's names of the types swift-moe does not read, for the error that refuses them.
    public static func ggmlName(id: UInt32) -> String {
        let names: [UInt32: String] = [
            9: "Q8_1", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 21: "IQ3_S", 22: "IQ2_S",
            24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0", 40: "NVFP4",
            41: "Q1_0",
        ]
        return GGUFTensorType(id: id)?.description ?? names[id] ?? "unknown type \(id)"
    }
}
