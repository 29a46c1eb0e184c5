import Foundation

/// Errors of reading or writing checkpoint files. Every case names the file (and tensor) at fault, so a
/// user sees what to fix rather than a crash.
public enum FormatError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case truncated(path: String, reason: String)
    case corruptHeader(path: String, reason: String)
    case badTensor(path: String, tensor: String, reason: String)
    case missingTensor(tensor: String, directory: String)
    case shapeMismatch(tensor: String, expected: [Int], found: [Int])
    case unsupportedDType(tensor: String, dtype: String)
    case badConfig(path: String, reason: String)
    case noCheckpoint(directory: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "cannot read \(path): \(reason)"
        case let .truncated(path, reason): return "\(path) is truncated: \(reason)"
        case let .corruptHeader(path, reason): return "\(path) has a corrupt safetensors header: \(reason)"
        case let .badTensor(path, tensor, reason): return "\(path): tensor '\(tensor)': \(reason)"
        case let .missingTensor(tensor, directory): return "tensor '\(tensor)' is missing from the checkpoint in \(directory)"
        case let .shapeMismatch(tensor, expected, found):
            return "tensor '\(tensor)' has shape \(found), expected \(expected)"
        case let .unsupportedDType(tensor, dtype): return "tensor '\(tensor)' has dtype \(dtype), which is not supported here"
        case let .badConfig(path, reason): return "\(path): \(reason)"
        case let .noCheckpoint(directory):
            return "no model.safetensors or model.safetensors.index.json in \(directory)"
        }
    }
}
