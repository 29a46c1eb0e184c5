import Foundation
import Testing
@testable import MoEFormats

/// A fresh temporary directory per test.
func temporaryDirectory() throws -> String {
    let dir = NSTemporaryDirectory() + "moe-tests-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Writes a raw safetensors file from a header dictionary and a data blob.
func writeRaw(_ path: String, header: [String: Any], data: [UInt8]) throws {
    let json = try JSONSerialization.data(withJSONObject: header)
    var bytes = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) }
    bytes += json
    bytes += data
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

@Suite struct SafeTensorsTests {
    /// A file, or a GGUF checkpoint, is freed (its mapping unmapped) once nothing holds it, while a tensor taken
    /// from it keeps its bytes readable on its own: the tensors own the mapping, not the file that holds them
    /// (a cycle the parser fuzzer's leak check found: every model ever loaded stayed mapped).
    @Test func filesAreFreedAndTensorsOutliveThem() throws {
        let dir = try temporaryDirectory()
        let path = dir + "/model.safetensors"
        try SafeTensorsWriter.write([.floats("a", shape: [3], values: [1, 2, 3])], to: path)
        weak var file: SafeTensorsFile?
        var tensor: TensorData?
        do {
            let f = try SafeTensorsFile(path: path)
            file = f
            tensor = f.tensors["a"]
        }
        #expect(file == nil)
        #expect(try FloatEncoding.floats(#require(tensor)) == [1, 2, 3])
        weak var checkpoint: GGUFCheckpoint?
        var embedding: TensorData?
        do {
            let c = try GGUFCheckpoint(path: GGUFFixtures.root + "/arch/llama.gguf")
            checkpoint = c
            embedding = try c.tensor("model.layers.0.self_attn.q_proj.weight")   // a reordered copy
        }
        #expect(checkpoint == nil)
        #expect(try #require(embedding).byteCount > 0)
        _ = try FloatEncoding.floats(#require(embedding))
    }

    @Test func roundTripKeepsDTypesAndValues() throws {
        let dir = try temporaryDirectory()
        let path = dir + "/model.safetensors"
        let values: [Float] = [1, -2.5, 3.25, 0.1, 1e-3, -7]
        try SafeTensorsWriter.write([
            .floats("a", shape: [2, 3], values: values),
            .floats("b", shape: [6], values: values, as: .bf16),
            .floats("c", shape: [3, 2], values: values, as: .f16),
        ], to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.metadata["format"] == "pt")
        #expect(file.tensors["a"]?.dtype == .f32 && file.tensors["a"]?.shape == [2, 3])
        #expect(file.tensors["b"]?.dtype == .bf16 && file.tensors["b"]?.byteCount == 12)   // stays 2 bytes per value
        #expect(try FloatEncoding.floats(file.tensors["a"]!) == values)
        let bf = try FloatEncoding.floats(file.tensors["b"]!)
        let half = try FloatEncoding.floats(file.tensors["c"]!)
        for i in values.indices {
            #expect(abs(bf[i] - values[i]) <= abs(values[i]) / 128)
            #expect(abs(half[i] - values[i]) <= abs(values[i]) / 1000 + 1e-6)
        }
        // The header is padded so that the data is 8-byte aligned, as the reference writer does.
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = raw.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        #expect((8 + Int(n)) % 8 == 0)
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp-\(getpid())"))
    }

    @Test func bf16RoundsToNearestEven() {
        #expect(FloatEncoding.bf16Bits(1.0) == 0x3F80)
        #expect(FloatEncoding.bf16Bits(Float(bitPattern: 0x3F80_8000)) == 0x3F80)   // tie → even
        #expect(FloatEncoding.bf16Bits(Float(bitPattern: 0x3F81_8000)) == 0x3F82)   // tie → even (up)
        #expect(FloatEncoding.bf16Bits(Float(bitPattern: 0x3F80_8001)) == 0x3F81)
        #expect(Float(bitPattern: UInt32(FloatEncoding.bf16Bits(.nan)) << 16).isNaN)
    }

    @Test func truncatedFileIsAClearError() throws {
        let dir = try temporaryDirectory()
        let path = dir + "/model.safetensors"
        try SafeTensorsWriter.write([.floats("w", shape: [4, 4], values: .init(repeating: 1, count: 16))], to: path)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count - 10).write(to: URL(fileURLWithPath: path))
        #expect { try SafeTensorsFile(path: path) } throws: { error in
            guard case FormatError.truncated(let p, _) = error else { return false }
            return p == path && "\(error)".contains("'w'")
        }
        try data.prefix(5).write(to: URL(fileURLWithPath: path))
        #expect(throws: FormatError.self) { try SafeTensorsFile(path: path) }
        try Data().write(to: URL(fileURLWithPath: path))
        #expect(throws: FormatError.self) { try SafeTensorsFile(path: path) }
    }

    @Test func headerLengthBeyondTheFileIsAnError() throws {
        let path = try temporaryDirectory() + "/x.safetensors"
        var bytes = withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { Array($0) }
        bytes += Array("{}".utf8)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect { try SafeTensorsFile(path: path) } throws: { "\($0)".contains(path) }
    }

    @Test func offsetsThatLieAreRejected() throws {
        let path = try temporaryDirectory() + "/x.safetensors"
        // Offsets span 8 bytes but the shape needs 16.
        try writeRaw(path, header: ["w": ["dtype": "F32", "shape": [2, 2], "data_offsets": [0, 8]]], data: .init(repeating: 0, count: 16))
        #expect { try SafeTensorsFile(path: path) } throws: { error in
            guard case FormatError.badTensor(_, let tensor, _) = error else { return false }
            return tensor == "w"
        }
        // Offsets past the end of the data.
        try writeRaw(path, header: ["w": ["dtype": "F32", "shape": [4], "data_offsets": [8, 24]]], data: .init(repeating: 0, count: 16))
        #expect { try SafeTensorsFile(path: path) } throws: { "\($0)".contains("'w'") }
        // Reversed offsets, unknown dtype, not JSON.
        try writeRaw(path, header: ["w": ["dtype": "F32", "shape": [1], "data_offsets": [4, 0]]], data: .init(repeating: 0, count: 8))
        #expect(throws: FormatError.self) { try SafeTensorsFile(path: path) }
        try writeRaw(path, header: ["w": ["dtype": "Q9", "shape": [1], "data_offsets": [0, 4]]], data: .init(repeating: 0, count: 4))
        #expect { try SafeTensorsFile(path: path) } throws: { "\($0)".contains("Q9") }
        var bytes = withUnsafeBytes(of: UInt64(5).littleEndian) { Array($0) }
        bytes += Array("{nope".utf8)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect { try SafeTensorsFile(path: path) } throws: { error in
            guard case FormatError.corruptHeader = error else { return false }
            return true
        }
    }

    @Test func missingFileIsUnreadable() {
        #expect { try SafeTensorsFile(path: "/nonexistent/model.safetensors") } throws: { "\($0)".contains("/nonexistent/model.safetensors") }
    }
}

@Suite struct CheckpointTests {
    @Test func shardedCheckpointResolvesThroughTheIndex() throws {
        let dir = try temporaryDirectory()
        try SafeTensorsWriter.write([.floats("a", shape: [2], values: [1, 2])], to: dir + "/model-00001-of-00002.safetensors")
        try SafeTensorsWriter.write([.floats("b", shape: [3], values: [3, 4, 5])], to: dir + "/model-00002-of-00002.safetensors")
        let index = #"{"metadata": {"total_size": 20}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#
        try Data(index.utf8).write(to: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))
        let c = try Checkpoint(directory: dir)
        #expect(c.files.count == 2)
        #expect(try FloatEncoding.floats(c.tensor("b")) == [3, 4, 5])
        #expect(try FloatEncoding.floats(c.tensor("a", shape: [2])) == [1, 2])
    }

    @Test func missingTensorAndWrongShapeNameTheTensor() throws {
        let dir = try temporaryDirectory()
        try SafeTensorsWriter.write([.floats("a", shape: [2, 2], values: [1, 2, 3, 4])], to: dir + "/model.safetensors")
        let c = try Checkpoint(directory: dir)
        #expect(throws: FormatError.missingTensor(tensor: "nope", directory: dir)) { try c.tensor("nope") }
        #expect(throws: FormatError.shapeMismatch(tensor: "a", expected: [4], found: [2, 2])) { try c.tensor("a", shape: [4]) }
    }

    @Test func indexNamingAnAbsentTensorOrShardIsAnError() throws {
        let dir = try temporaryDirectory()
        try SafeTensorsWriter.write([.floats("a", shape: [1], values: [1])], to: dir + "/s1.safetensors")
        try Data(#"{"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}}"#.utf8).write(to: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))
        #expect { try Checkpoint(directory: dir) } throws: { "\($0)".contains("'b'") }
        try Data(#"{"weight_map": {"a": "s2.safetensors"}}"#.utf8).write(to: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))
        #expect { try Checkpoint(directory: dir) } throws: { "\($0)".contains("s2.safetensors") }
    }

    @Test func emptyDirectoryHasNoCheckpoint() throws {
        let dir = try temporaryDirectory()
        #expect(throws: FormatError.noCheckpoint(directory: dir)) { try Checkpoint(directory: dir) }
    }
}
