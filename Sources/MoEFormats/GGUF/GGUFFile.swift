import Foundation
import MoEKernels
#if canImport(Glibc)
import Glibc
#endif

/// One tensor of a GGUF file: name, ggml dimensions (`dims[0]` varies fastest: a matrix of `rows × cols` has
/// dims `[cols, rows]`), type and where its data lies in the mapped file.
public struct GGUFTensorInfo: @unchecked Sendable {
    public let name: String
    public let dims: [Int]
    public let type: GGUFTensorType
    /// Offset from the start of the data section.
    public let offset: Int
    public let byteCount: Int
    public let pointer: UnsafeRawPointer

    public var elementCount: Int { dims.reduce(1, *) }
    /// The shape in row-major (PyTorch) order: `dims` reversed.
    public var shape: [Int] { dims.reversed() }
}

/// A GGUF file (versions 2 and 3), memory-mapped read-only: its metadata and tensor infos are parsed, the
/// tensor data stays in the mapping and is paged in on first use.
///
/// Format (little-endian): magic "GGUF", version u32, tensor count u64, metadata count u64; metadata as
/// (string key, u32 type, value); tensor infos as (string name, u32 dims, u64 × dims, u32 ggml type, u64 offset);
/// padding to `general.alignment` (default 32); the data, each tensor at its offset (a multiple of the alignment).
/// Strings are a u64 length and UTF-8 bytes; arrays a u32 element type, a u64 count and the elements.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: Int
    /// Metadata in file order.
    public let metadata: [(key: String, value: GGUFValue)]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    private let index: [String: Int]
    private let tensorIndex: [String: Int]
    private let base: UnsafeMutableRawPointer?
    private let mappedSize: Int

    public init(path: String) throws {
        self.path = path
        let (map, size) = try mapReadOnly(path, minimumSize: 24, tooShort: "shorter than a GGUF header")
        do {
            var reader = GGUFReader(base: UnsafeRawPointer(map), size: size, path: path)
            let parsed = try reader.parse()
            version = parsed.version
            metadata = parsed.metadata
            tensors = parsed.tensors
            alignment = parsed.alignment
        } catch {
            munmap(map, size)
            throw error
        }
        base = map
        mappedSize = size
        var index: [String: Int] = [:]
        for (i, kv) in metadata.enumerated() { index[kv.key] = i }
        self.index = index
        var tensorIndex: [String: Int] = [:]
        for (i, t) in tensors.enumerated() {
            guard tensorIndex.updateValue(i, forKey: t.name) == nil else {
                munmap(map, size)
                throw FormatError.badTensor(path: path, tensor: t.name, reason: "appears twice in the tensor list")
            }
        }
        self.tensorIndex = tensorIndex
    }

    deinit { if let base { munmap(base, mappedSize) } }

    /// The metadata value of `key`, if present.
    public subscript(key: String) -> GGUFValue? { index[key].map { metadata[$0].value } }

    public func tensor(_ name: String) -> GGUFTensorInfo? { tensorIndex[name].map { tensors[$0] } }

    /// The value of `key` as an Int, nil when absent; an error when present with a non-integer type.
    public func int(_ key: String) throws -> Int? {
        guard let v = self[key] else { return nil }
        guard let i = v.int else { throw wrongType(key, v, expected: "an integer") }
        return i
    }

    public func double(_ key: String) throws -> Double? {
        guard let v = self[key] else { return nil }
        guard let d = v.double else { throw wrongType(key, v, expected: "a number") }
        return d
    }

    public func bool(_ key: String) throws -> Bool? {
        guard let v = self[key] else { return nil }
        guard let b = v.bool else { throw wrongType(key, v, expected: "a bool") }
        return b
    }

    public func string(_ key: String) throws -> String? {
        guard let v = self[key] else { return nil }
        guard let s = v.string else { throw wrongType(key, v, expected: "a string") }
        return s
    }

    /// An array of `key`, each element read by `element` (nil → the element has the wrong type).
    public func array<T>(_ key: String, _ element: (GGUFValue) -> T?, expected: String) throws -> [T]? {
        guard let v = self[key] else { return nil }
        guard let a = v.array else { throw wrongType(key, v, expected: "an array of \(expected)") }
        var out: [T] = []
        out.reserveCapacity(a.count)
        for (i, e) in a.enumerated() {
            guard let x = element(e) else {
                throw FormatError.badConfig(path: path, reason: "metadata '\(key)'[\(i)] is \(e.type), expected \(expected)")
            }
            out.append(x)
        }
        return out
    }

    /// An integer that must be present.
    public func requireInt(_ key: String) throws -> Int {
        guard let v = try int(key) else { throw FormatError.badConfig(path: path, reason: "metadata '\(key)' is missing") }
        return v
    }

    func wrongType(_ key: String, _ v: GGUFValue, expected: String) -> FormatError {
        FormatError.badConfig(path: path, reason: "metadata '\(key)' is \(v.type), expected \(expected)")
    }
}

/// A bounds-checked cursor over the mapped bytes: every read that would pass the end is a `truncated` error.
struct GGUFReader {
    let base: UnsafeRawPointer
    let size: Int
    let path: String
    var offset = 0

    mutating func bytes(_ n: Int, _ what: @autoclosure () -> String) throws -> UnsafeRawPointer {
        guard n >= 0, n <= size - offset else {
            throw FormatError.truncated(path: path, reason: "the file ends inside \(what()) (byte \(offset), \(n) more needed)")
        }
        defer { offset += n }
        return base + offset
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
        T(littleEndian: try bytes(MemoryLayout<T>.size, what()).loadUnaligned(as: T.self))
    }

    mutating func string(_ what: @autoclosure () -> String) throws -> String {
        let n = try read(UInt64.self, what())
        guard n <= UInt64(size - offset) else {
            throw FormatError.truncated(path: path, reason: "\(what()) claims \(n) bytes but the file has \(size - offset) left")
        }
        let p = try bytes(Int(n), what())
        return String(decoding: UnsafeRawBufferPointer(start: p, count: Int(n)), as: UTF8.self)
    }

    mutating func valueType(_ what: @autoclosure () -> String) throws -> GGUFValueType {
        let raw = try read(UInt32.self, what())
        guard let t = GGUFValueType(rawValue: raw) else {
            throw FormatError.corruptHeader(path: path, reason: "\(what()) has unknown value type \(raw)")
        }
        return t
    }

    mutating func value(_ type: GGUFValueType, _ key: String, depth: Int = 0) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try read(UInt8.self, "metadata '\(key)'"))
        case .int8: return .int8(try read(Int8.self, "metadata '\(key)'"))
        case .uint16: return .uint16(try read(UInt16.self, "metadata '\(key)'"))
        case .int16: return .int16(try read(Int16.self, "metadata '\(key)'"))
        case .uint32: return .uint32(try read(UInt32.self, "metadata '\(key)'"))
        case .int32: return .int32(try read(Int32.self, "metadata '\(key)'"))
        case .uint64: return .uint64(try read(UInt64.self, "metadata '\(key)'"))
        case .int64: return .int64(try read(Int64.self, "metadata '\(key)'"))
        case .float32: return .float32(Float(bitPattern: try read(UInt32.self, "metadata '\(key)'")))
        case .float64: return .float64(Double(bitPattern: try read(UInt64.self, "metadata '\(key)'")))
        case .bool:
            let b = try read(UInt8.self, "metadata '\(key)'")
            guard b <= 1 else { throw FormatError.corruptHeader(path: path, reason: "metadata '\(key)' is a bool of value \(b)") }
            return .bool(b == 1)
        case .string: return .string(try string("metadata '\(key)'"))
        case .array:
            guard depth == 0 else {
                throw FormatError.corruptHeader(path: path, reason: "metadata '\(key)' nests arrays, which GGUF readers do not accept")
            }
            let elementType = try valueType("metadata '\(key)' (array element type)")
            let count = try read(UInt64.self, "metadata '\(key)' (array length)")
            // Every element takes at least one byte: a count beyond the bytes left is corrupt, not a huge allocation.
            guard count <= UInt64(size - offset) else {
                throw FormatError.truncated(path: path, reason: "metadata '\(key)' claims \(count) elements but the file has \(size - offset) bytes left")
            }
            var items: [GGUFValue] = []
            items.reserveCapacity(Int(count))
            for _ in 0..<Int(count) { items.append(try value(elementType, key, depth: depth + 1)) }
            return .array(elementType, items)
        }
    }

    mutating func parse() throws -> (version: Int, metadata: [(key: String, value: GGUFValue)], tensors: [GGUFTensorInfo], alignment: Int) {
        let magic = try bytes(4, "the magic")
        guard magic.load(as: UInt8.self) == 0x47, (magic + 1).load(as: UInt8.self) == 0x47,
              (magic + 2).load(as: UInt8.self) == 0x55, (magic + 3).load(as: UInt8.self) == 0x46 else {
            throw FormatError.corruptHeader(path: path, reason: "not a GGUF file (the first four bytes are not \"GGUF\")")
        }
        let version = try read(UInt32.self, "the version")
        guard version == 2 || version == 3 else {
            if version == 1 { throw FormatError.corruptHeader(path: path, reason: "GGUF version 1 is not supported (only 2 and 3); re-convert the model") }
            if version & 0xFFFF == 0 {
                throw FormatError.corruptHeader(path: path, reason: "GGUF version \(version.byteSwapped) in big-endian byte order is not supported")
            }
            throw FormatError.corruptHeader(path: path, reason: "unknown GGUF version \(version) (only 2 and 3 are supported)")
        }
        let tensorCount = try read(UInt64.self, "the tensor count")
        let kvCount = try read(UInt64.self, "the metadata count")
        // Each entry takes more than 8 bytes, so counts past the file size are corrupt.
        guard tensorCount <= UInt64(size), kvCount <= UInt64(size) else {
            throw FormatError.corruptHeader(path: path, reason: "claims \(tensorCount) tensors and \(kvCount) metadata entries in \(size) bytes")
        }
        var metadata: [(key: String, value: GGUFValue)] = []
        metadata.reserveCapacity(Int(kvCount))
        for i in 0..<Int(kvCount) {
            let key = try string("metadata key \(i)")
            let type = try valueType("metadata '\(key)'")
            metadata.append((key, try value(type, key)))
        }
        var alignment = 32
        if let entry = metadata.first(where: { $0.key == "general.alignment" }) {
            guard case let .uint32(a) = entry.value else {
                throw FormatError.badConfig(path: path, reason: "metadata 'general.alignment' is \(entry.value.type), expected uint32")
            }
            guard a > 0, a & (a - 1) == 0 else {
                throw FormatError.badConfig(path: path, reason: "metadata 'general.alignment' is \(a), not a power of two")
            }
            alignment = Int(a)
        }
        struct Pending { let name: String; let dims: [Int]; let type: GGUFTensorType; let offset: Int; let bytes: Int }
        var pending: [Pending] = []
        pending.reserveCapacity(Int(tensorCount))
        for i in 0..<Int(tensorCount) {
            let name = try string("tensor info \(i)")
            let nDims = try read(UInt32.self, "tensor '\(name)'")
            guard (1...4).contains(nDims) else {
                throw FormatError.badTensor(path: path, tensor: name, reason: "has \(nDims) dimensions (GGUF allows 1 to 4)")
            }
            var dims: [Int] = []
            for _ in 0..<Int(nDims) {
                let d = try read(UInt64.self, "tensor '\(name)'")
                guard d <= UInt64(Int32.max) else { throw FormatError.badTensor(path: path, tensor: name, reason: "dimension \(d) is too large") }
                dims.append(Int(d))
            }
            let typeID = try read(UInt32.self, "tensor '\(name)'")
            let offset = try read(UInt64.self, "tensor '\(name)'")
            guard let type = GGUFTensorType(id: typeID) else {
                throw FormatError.unsupportedDType(tensor: name, dtype: "\(GGUFTensorType.ggmlName(id: typeID)) (GGUF type \(typeID))")
            }
            let (count, overflow) = dims.reduce((1, false)) { acc, d in
                let (p, o) = acc.0.multipliedReportingOverflow(by: d); return (p, acc.1 || o)
            }
            let block = type.block
            guard !overflow, count <= Int(Int32.max) * 64 else {
                throw FormatError.badTensor(path: path, tensor: name, reason: "dimensions \(dims) are too large")
            }
            guard dims[0] % block.elements == 0 else {
                throw FormatError.badTensor(path: path, tensor: name,
                    reason: "rows of \(dims[0]) values are not a whole number of \(type) blocks of \(block.elements)")
            }
            guard offset <= UInt64(size), Int(offset) % alignment == 0 else {
                throw FormatError.badTensor(path: path, tensor: name, reason: "data offset \(offset) is not a multiple of the alignment \(alignment)")
            }
            pending.append(Pending(name: name, dims: dims, type: type, offset: Int(offset), bytes: count / block.elements * block.bytes))
        }
        let dataStart = (offset + alignment - 1) / alignment * alignment
        let dataSize = max(0, size - dataStart)
        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(pending.count)
        for t in pending {
            guard t.offset + t.bytes <= dataSize else {
                throw FormatError.truncated(path: path,
                    reason: "tensor '\(t.name)' (\(t.bytes) bytes at data offset \(t.offset)) lies past the end of the data (\(dataSize) bytes)")
            }
            tensors.append(GGUFTensorInfo(name: t.name, dims: t.dims, type: t.type, offset: t.offset, byteCount: t.bytes,
                                          pointer: base + dataStart + t.offset))
        }
        return (Int(version), metadata, tensors, alignment)
    }
}
