import Foundation
import MoEKernels

/// Writes `.safetensors` files that `transformers` and the `safetensors` library load.
///
/// Each tensor fills its own bytes through a closure, so a large model is streamed to disk tensor by tensor
/// instead of being copied whole into memory. The file is written beside its destination and renamed into
/// place, so a reader (or a crash) never sees half a file.
///
/// ```swift
/// try SafeTensorsWriter.write([.init(name: "w", dtype: .f32, shape: [2, 3]) { buf in … }], to: "model.safetensors")
/// ```
public enum SafeTensorsWriter {
    public struct Entry {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        /// Fills exactly `shape.product × dtype.byteSize` bytes.
        public let fill: (UnsafeMutableRawBufferPointer) throws -> Void

        public init(name: String, dtype: DType, shape: [Int], fill: @escaping (UnsafeMutableRawBufferPointer) throws -> Void) {
            self.name = name; self.dtype = dtype; self.shape = shape; self.fill = fill
        }

        /// An entry copying `values` (f32) as the given float dtype.
        public static func floats(_ name: String, shape: [Int], values: [Float], as dtype: DType = .f32) -> Entry {
            precondition(values.count == shape.reduce(1, *), "\(name): \(values.count) values for shape \(shape)")
            return Entry(name: name, dtype: dtype, shape: shape) { buf in
                try values.withUnsafeBufferPointer { try FloatEncoding.encode($0, as: dtype, into: buf) }
            }
        }

        var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }
    }

    public static func write(_ entries: [Entry], metadata: [String: String] = ["format": "pt"], to path: String) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for e in entries {
            guard header[e.name] == nil else { throw FormatError.badTensor(path: path, tensor: e.name, reason: "written twice") }
            header[e.name] = ["dtype": e.dtype.rawValue, "shape": e.shape, "data_offsets": [offset, offset + e.byteCount]] as [String: Any]
            offset += e.byteCount
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does.
        while (8 + json.count) % 8 != 0 { json.append(0x20) }

        try AtomicFile.write(to: path) { handle in
            var length = UInt64(json.count).littleEndian
            try handle.write(contentsOf: Data(bytes: &length, count: 8))
            try handle.write(contentsOf: json)
            for e in entries {
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(e.byteCount, 1), alignment: 64)
                defer { buffer.deallocate() }
                let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<e.byteCount])
                try e.fill(slice)
                try handle.write(contentsOf: Data(bytesNoCopy: slice.baseAddress ?? buffer.baseAddress!, count: e.byteCount, deallocator: .none))
            }
        }
    }
}

/// Writes a file through a temporary sibling, fsyncs it, renames it over the destination, then fsyncs the
/// directory so that the rename itself survives a crash or power loss.
public enum AtomicFile {
    public static func write(to path: String, _ body: (FileHandle) throws -> Void) throws {
        let tmp = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: tmp, contents: nil) else {
            throw FormatError.unreadable(path: tmp, reason: "cannot create file")
        }
        do {
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp))
            try body(handle)
            try handle.synchronize()
            try handle.close()
            if rename(tmp, path) != 0 { throw FormatError.unreadable(path: path, reason: "rename failed: \(String(cString: strerror(errno)))") }
        } catch {
            unlink(tmp)
            throw error
        }
        try syncDirectory((path as NSString).deletingLastPathComponent)
    }

    /// fsync(2) of a directory: makes the entries created, renamed or removed in it durable.
    public static func syncDirectory(_ path: String) throws {
        let fd = open(path.isEmpty ? "." : path, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { throw FormatError.unreadable(path: path, reason: "cannot open the directory to sync it: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw FormatError.unreadable(path: path, reason: "fsync failed: \(String(cString: strerror(errno)))") }
    }

    public static func write(_ data: Data, to path: String) throws {
        try write(to: path) { try $0.write(contentsOf: data) }
    }
}

/// f32 ↔ f16/bf16 for writing checkpoints (not a hot path; the kernels have their own widening).
public enum FloatEncoding {
    public static func encode(_ src: UnsafeBufferPointer<Float>, as dtype: DType, into dst: UnsafeMutableRawBufferPointer) throws {
        switch dtype {
        case .f32:
            dst.copyMemory(from: UnsafeRawBufferPointer(src))
        case .bf16:
            let out = dst.bindMemory(to: UInt16.self)
            for i in 0..<src.count { out[i] = bf16Bits(src[i]) }
        case .f16:
            let out = dst.bindMemory(to: UInt16.self)
            for i in 0..<src.count { out[i] = Float16(src[i]).bitPattern }
        default:
            throw FormatError.unsupportedDType(tensor: "(writer)", dtype: dtype.rawValue)
        }
    }

    /// Round to nearest even, as torch's `.to(torch.bfloat16)`.
    public static func bf16Bits(_ x: Float) -> UInt16 {
        let u = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: u >> 16) | 0x40 }
        let rounding = 0x7FFF + ((u >> 16) & 1)
        return UInt16(truncatingIfNeeded: (u &+ rounding) >> 16)
    }

    /// Reads any float tensor as f32 values (for small tensors: norms, biases, tests).
    public static func floats(_ t: TensorData) throws -> [Float] {
        let n = t.elementCount
        if let q = t.quant {
            guard n % q.blockElements == 0 else { throw FormatError.badTensor(path: "", tensor: t.name, reason: "not whole \(q) blocks") }
            return [Float](unsafeUninitializedCapacity: n) { buf, count in
                q.dequantize(t.pointer, into: buf.baseAddress!, count: n)
                count = n
            }
        }
        switch t.dtype {
        case .f32:
            return Array(UnsafeBufferPointer(start: t.pointer.assumingMemoryBound(to: Float.self), count: n))
        case .bf16:
            let p = t.pointer.assumingMemoryBound(to: UInt16.self)
            return (0..<n).map { Float(bitPattern: UInt32(p[$0]) << 16) }
        case .f16:
            let p = t.pointer.assumingMemoryBound(to: UInt16.self)
            return (0..<n).map { Float(Float16(bitPattern: p[$0])) }
        default:
            throw FormatError.unsupportedDType(tensor: t.name, dtype: t.dtype.rawValue)
        }
    }
}
