import Foundation

/// Writes GGUF version 3 files that llama.cpp and gguf-py read: metadata in the given order, then tensor infos,
/// then each tensor's data at a multiple of the alignment. Tensor data is produced one tensor at a time while the
/// file is written (a model never sits in memory whole). Written atomically (a temporary file renamed over
/// `path`), so a killed write never leaves a half file under the name.
public struct GGUFWriter {
    public struct Tensor {
        public var name: String
        /// ggml dimensions: `dims[0]` varies fastest (a `rows × cols` matrix is `[cols, rows]`).
        public var dims: [Int]
        public var type: GGUFTensorType
        /// Encoded size: `dims.product / block.elements * block.bytes` bytes.
        public var byteCount: Int
        /// Fills the tensor's encoded bytes (a buffer of `byteCount`), when the data section is written.
        public var fill: (UnsafeMutableRawBufferPointer) throws -> Void

        public init(name: String, dims: [Int], type: GGUFTensorType, byteCount: Int,
                    fill: @escaping (UnsafeMutableRawBufferPointer) throws -> Void) {
            self.name = name; self.dims = dims; self.type = type; self.byteCount = byteCount; self.fill = fill
        }

        /// A tensor whose encoded bytes are at hand.
        public init(name: String, dims: [Int], type: GGUFTensorType, data: Data) {
            self.init(name: name, dims: dims, type: type, byteCount: data.count) { $0.copyBytes(from: data) }
        }
    }

    public var metadata: [(key: String, value: GGUFValue)] = []
    public var tensors: [Tensor] = []
    public var alignment = 32

    public init() {}

    public mutating func set(_ key: String, _ value: GGUFValue) {
        if let i = metadata.firstIndex(where: { $0.key == key }) { metadata[i].value = value } else { metadata.append((key, value)) }
    }

    /// The whole file's bytes.
    public func encoded() throws -> Data {
        var file = Data()
        try write { file.append(contentsOf: $0) }
        return file
    }

    /// Writes the file atomically.
    public func write(to path: String) throws {
        try AtomicFile.write(to: path) { handle in
            try write { try handle.write(contentsOf: Data($0)) }
        }
    }

    /// Produces the file in order through `sink`: the header, then each tensor's data as it is filled.
    private func write(_ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        var out = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func string(_ s: String) { u64(UInt64(s.utf8.count)); out.append(contentsOf: Array(s.utf8)) }
        func value(_ v: GGUFValue) {
            switch v {
            case let .uint8(x): out.append(x)
            case let .int8(x): out.append(UInt8(bitPattern: x))
            case let .uint16(x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case let .int16(x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case let .uint32(x): u32(x)
            case let .int32(x): u32(UInt32(bitPattern: x))
            case let .uint64(x): u64(x)
            case let .int64(x): u64(UInt64(bitPattern: x))
            case let .float32(x): u32(x.bitPattern)
            case let .float64(x): u64(x.bitPattern)
            case let .bool(x): out.append(x ? 1 : 0)
            case let .string(x): string(x)
            case let .array(type, items):
                u32(type.rawValue); u64(UInt64(items.count))
                for item in items { value(item) }
            }
        }
        var meta = metadata
        if alignment != 32 && !meta.contains(where: { $0.key == "general.alignment" }) {
            meta.append(("general.alignment", .uint32(UInt32(alignment))))
        }
        out.append(contentsOf: Array("GGUF".utf8))
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(meta.count))
        for (k, v) in meta {
            string(k); u32(v.type.rawValue); value(v)
        }
        var offset = 0
        for t in tensors {
            let block = t.type.block
            let count = t.dims.reduce(1, *)
            guard let cols = t.dims.first, cols % block.elements == 0, t.byteCount == count / block.elements * block.bytes else {
                throw FormatError.badTensor(path: "(GGUF writer)", tensor: t.name,
                                            reason: "\(t.byteCount) bytes do not hold dims \(t.dims) of \(t.type)")
            }
            string(t.name)
            u32(UInt32(t.dims.count))
            for d in t.dims { u64(UInt64(d)) }
            u32(t.type.id)
            u64(UInt64(offset))
            offset += (t.byteCount + alignment - 1) / alignment * alignment
        }
        var written = out.count
        func pad() throws {
            let zeros = [UInt8](repeating: 0, count: (alignment - written % alignment) % alignment)
            try zeros.withUnsafeBytes { try sink($0) }
            written += zeros.count
        }
        try out.withUnsafeBytes { try sink($0) }
        try pad()
        for t in tensors {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(t.byteCount, 1), alignment: 64)
            defer { buffer.deallocate() }
            let data = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<t.byteCount])
            try t.fill(data)
            try sink(UnsafeRawBufferPointer(data))
            written += t.byteCount
            try pad()
        }
    }
}
