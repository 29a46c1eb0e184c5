import Foundation
import MoEKernels
#if canImport(Glibc)
import Glibc
#endif

/// Where one tensor lies in a checkpoint: its type and shape and a pointer into the memory-mapped file.
/// The pointer stays valid while `owner` (the mapped file) is alive.
public struct TensorData: @unchecked Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let pointer: UnsafeRawPointer
    public let byteCount: Int
    public let owner: AnyObject
    /// Set for GGUF tensors in a ggml block format: the data are rows of blocks of this type (`dtype` is then `.u8`).
    public let quant: QuantType?

    public init(name: String, dtype: DType, shape: [Int], pointer: UnsafeRawPointer, byteCount: Int, owner: AnyObject,
                quant: QuantType? = nil) {
        self.name = name; self.dtype = dtype; self.shape = shape; self.pointer = pointer
        self.byteCount = byteCount; self.owner = owner; self.quant = quant
    }

    public var elementCount: Int { shape.reduce(1, *) }
    /// The stored type's name: a safetensors dtype ("BF16") or a ggml block type ("Q4_K").
    public var typeName: String { quant?.description ?? dtype.rawValue }
}

/// One `.safetensors` file, memory-mapped read-only: weights keep their stored dtype and are paged in by
/// the OS on first use, so a bf16 checkpoint costs its file size, not twice that.
///
/// Format: 8-byte little-endian header length N, N bytes of JSON `{name: {dtype, shape, data_offsets}}`
/// (plus optional `__metadata__`), then the data; offsets are relative to the end of the header.
public final class SafeTensorsFile: @unchecked Sendable {
    public let path: String
    public let metadata: [String: String]
    public private(set) var tensors: [String: TensorData]

    public init(path: String) throws {
        self.path = path
        let (map, size) = try mapReadOnly(path, minimumSize: 8, tooShort: "shorter than the 8-byte header length")
        // The tensors own the mapping (not this file, which holds them: that would be a cycle, never freed).
        let mapping = FileMapping(base: map, size: size)
        let parsed = try Self.parse(base: UnsafeRawPointer(map), size: size, path: path)
        metadata = parsed.1
        tensors = [:]
        for (k, t) in parsed.0 {
            tensors[k] = TensorData(name: t.name, dtype: t.dtype, shape: t.shape, pointer: t.pointer, byteCount: t.byteCount, owner: mapping)
        }
    }
}

/// A read-only file mapping, unmapped when its last owner goes.
final class FileMapping: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let size: Int
    init(base: UnsafeMutableRawPointer, size: Int) { self.base = base; self.size = size }
    deinit { munmap(base, size) }
}

/// Maps the file at `path` read-only (private); an error names the file when it cannot be opened or mapped, or is
/// shorter than `minimumSize` bytes (`tooShort` says what the size falls short of).
func mapReadOnly(_ path: String, minimumSize: Int, tooShort: String) throws -> (UnsafeMutableRawPointer, Int) {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw FormatError.unreadable(path: path, reason: String(cString: strerror(errno))) }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw FormatError.unreadable(path: path, reason: String(cString: strerror(errno))) }
    let size = Int(st.st_size)
    guard size >= minimumSize else { throw FormatError.truncated(path: path, reason: "\(size) bytes, \(tooShort)") }
    guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
        throw FormatError.unreadable(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
    }
    return (map, size)
}

extension SafeTensorsFile {

    private final class Placeholder {}

    private static func parse(base: UnsafeRawPointer, size: Int, path: String) throws -> ([String: TensorData], [String: String]) {
        let claimed = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))
        guard let headerLength = Int(exactly: claimed), headerLength > 0, headerLength <= size - 8 else {
            throw FormatError.truncated(path: path, reason: "header claims \(claimed) bytes but the file has \(size - 8) after the length")
        }
        let headerBytes = Data(bytes: base + 8, count: headerLength)
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: headerBytes) } catch {
            throw FormatError.corruptHeader(path: path, reason: "header is not valid JSON")
        }
        guard let dict = json as? [String: Any] else { throw FormatError.corruptHeader(path: path, reason: "header is not a JSON object") }
        let dataStart = 8 + headerLength
        let dataSize = size - dataStart
        let placeholder = Placeholder()
        var tensors: [String: TensorData] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in dict {
            if name == "__metadata__" {
                if let m = value as? [String: Any] { for (k, v) in m { metadata[k] = "\(v)" } }
                continue
            }
            guard let entry = value as? [String: Any],
                  let dtypeName = entry["dtype"] as? String,
                  let shapeAny = entry["shape"] as? [Any],
                  let offsetsAny = entry["data_offsets"] as? [Any], offsetsAny.count == 2 else {
                throw FormatError.badTensor(path: path, tensor: name, reason: "entry lacks dtype, shape or data_offsets")
            }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw FormatError.badTensor(path: path, tensor: name, reason: "unknown dtype \(dtypeName)")
            }
            let shape = try shapeAny.map { v -> Int in
                guard let n = exactInteger(v), n >= 0 else {
                    throw FormatError.badTensor(path: path, tensor: name, reason: "bad shape \(shapeAny)")
                }
                return n
            }
            guard let begin = exactInteger(offsetsAny[0]), let end = exactInteger(offsetsAny[1]),
                  begin >= 0, end >= begin else {
                throw FormatError.badTensor(path: path, tensor: name, reason: "bad data_offsets \(offsetsAny)")
            }
            let (count, overflow) = shape.reduce((1, false)) { acc, d in
                let (p, o) = acc.0.multipliedReportingOverflow(by: d); return (p, acc.1 || o)
            }
            guard !overflow, count.multipliedReportingOverflow(by: dtype.byteSize).overflow == false,
                  end - begin == count * dtype.byteSize else {
                throw FormatError.badTensor(path: path, tensor: name,
                    reason: "data_offsets [\(begin), \(end)) hold \(end - begin) bytes, but shape \(shape) of \(dtypeName) needs \(count * dtype.byteSize)")
            }
            guard end <= dataSize else {
                throw FormatError.truncated(path: path, reason: "tensor '\(name)' ends at byte \(end) of the data, which has only \(dataSize)")
            }
            tensors[name] = TensorData(name: name, dtype: dtype, shape: shape, pointer: base + dataStart + begin,
                                       byteCount: end - begin, owner: placeholder)
        }
        return (tensors, metadata)
    }
}

/// A JSON number that is a whole number fitting Int; nil for 3.5, 1e300, strings (NSNumber's `intValue` would
/// truncate or wrap them into a plausible size).
func exactInteger(_ value: Any) -> Int? {
    guard let n = value as? NSNumber else { return nil }
    let d = n.doubleValue
    guard d.isFinite, d == d.rounded(.towardZero), abs(d) < 0x1p62 else { return nil }
    let i = n.int64Value
    return Double(i) == d ? Int(i) : nil
}
