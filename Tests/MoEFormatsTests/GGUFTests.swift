import Foundation
import Testing
import MoEKernels
@testable import MoEFormats

/// The GGUF fixtures made by scripts/make_gguf_fixtures.py with llama.cpp's tools and gguf-py.
enum GGUFFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/gguf").path
}

/// A small valid GGUF: two metadata values, an f32 vector and a Q8_0 matrix.
private func sampleWriter() -> GGUFWriter {
    var w = GGUFWriter()
    w.set("general.architecture", .string("qwen3"))
    w.set("test.list", .array(.int32, [.int32(1), .int32(-2)]))
    let vector = Data((0..<4).flatMap { withUnsafeBytes(of: Float($0).bitPattern.littleEndian, Array.init) })
    w.tensors.append(.init(name: "norm.weight", dims: [4], type: .f32, data: vector))
    w.tensors.append(.init(name: "q.weight", dims: [32, 2], type: .quantized(.q8_0), data: Data(repeating: 0, count: 68)))
    return w
}

private func write(_ data: Data) throws -> String {
    let path = NSTemporaryDirectory() + "moe-gguf-" + UUID().uuidString + ".gguf"
    try data.write(to: URL(fileURLWithPath: path))
    return path
}

private func expectError(_ data: Data, _ fragments: String...) throws {
    let path = try write(data)
    defer { try? FileManager.default.removeItem(atPath: path) }
    #expect { _ = try GGUFFile(path: path) } throws: { error in
        let text = "\(error)"
        return fragments.allSatisfy { text.contains($0) }
    }
}

@Suite struct GGUFTests {
    @Test func dequantisationEqualsGGUFPyBitForBit() throws {
        let file = try GGUFFile(path: GGUFFixtures.root + "/blocks.gguf")
        var checked = 0
        for q in QuantType.allCases {
            let t = try #require(file.tensor(q.description), "blocks.gguf lacks \(q)")
            let e = try #require(file.tensor(q.description + ".expected"))
            #expect(t.type == .quantized(q) && t.dims == e.dims)
            var out = [Float](repeating: .nan, count: t.elementCount)
            q.dequantize(t.pointer, into: &out, count: t.elementCount)
            let expected = UnsafeBufferPointer(start: e.pointer.assumingMemoryBound(to: Float.self), count: e.elementCount)
            let mismatches = (0..<out.count).filter { out[$0].bitPattern != expected[$0].bitPattern }
            #expect(mismatches.isEmpty, "\(q): \(mismatches.count) values differ, first at \(mismatches.first ?? -1): \(mismatches.first.map { "\(out[$0]) vs \(expected[$0])" } ?? "")")
            checked += 1
        }
        #expect(checked == QuantType.allCases.count)
    }

    /// quantize.gguf: f32 rows (typical, outliers, one-signed, tiny, huge, constant, zero, zero groups…) and
    /// llama.cpp's `ggml_quantize_chunk` blocks of them for every type.
    @Test(arguments: QuantType.allCases)
    func quantisationEqualsLlamaCppBitForBit(_ q: QuantType) throws {
        let file = try GGUFFile(path: GGUFFixtures.root + "/quantize.gguf")
        let input = try #require(file.tensor("input"))
        let expected = try #require(file.tensor(q.description), "quantize.gguf lacks \(q)")
        let rows = input.dims[1], n = input.dims[0]
        let rowBytes = try #require(q.rowBytes(n))
        #expect(expected.byteCount == rows * rowBytes)
        var out = [UInt8](repeating: 0xAA, count: rows * rowBytes)
        let x = input.pointer.assumingMemoryBound(to: Float.self)
        out.withUnsafeMutableBytes { q.quantize(x, into: $0.baseAddress!, count: rows * n) }
        let reference = UnsafeRawBufferPointer(start: expected.pointer, count: expected.byteCount)
        let badBlocks = Set((0..<out.count).filter { out[$0] != reference[$0] }.map { $0 / q.blockBytes })
        #expect(badBlocks.isEmpty, "\(q): \(badBlocks.count) of \(out.count / q.blockBytes) blocks differ, e.g. block \(badBlocks.min() ?? -1) (row \((badBlocks.min() ?? 0) / (rowBytes / q.blockBytes)))")
    }

    @Test func writesAndReadsBack() throws {
        let path = try write(try sampleWriter().encoded())
        let f = try GGUFFile(path: path)
        #expect(f.version == 3 && f.alignment == 32)
        #expect(try f.string("general.architecture") == "qwen3")
        #expect(try f.array("test.list", { $0.int }, expected: "integers") == [1, -2])
        let q = try #require(f.tensor("q.weight"))
        #expect(q.shape == [2, 32] && q.type == .quantized(.q8_0) && q.byteCount == 68 && q.offset % 32 == 0)
        let n = try #require(f.tensor("norm.weight"))
        #expect(UnsafeBufferPointer(start: n.pointer.assumingMemoryBound(to: Float.self), count: 4).elementsEqual([0, 1, 2, 3]))
    }

    @Test func wrongMagicAndVersionsAreRefused() throws {
        var data = try sampleWriter().encoded()
        data[0] = UInt8(ascii: "X")
        try expectError(data, "not a GGUF file")
        data = try sampleWriter().encoded()
        data[4] = 1
        try expectError(data, "version 1")
        data[4] = 9
        try expectError(data, "unknown GGUF version 9")
    }

    @Test func truncatedFilesNameWhatIsCutOff() throws {
        let data = try sampleWriter().encoded()
        // Inside the metadata, inside the tensor infos, inside the data.
        try expectError(data.prefix(40), "truncated")
        try expectError(data.prefix(130), "truncated")
        try expectError(data.prefix(data.count - 40), "q.weight", "past the end")   // the last 28 bytes are padding
    }

    @Test func badTensorsAreNamed() throws {
        // A misaligned data offset.
        var w = sampleWriter()
        var data = try w.encoded()
        let infoStart: Int = try #require(fieldOffset(of: "q.weight", in: data))
        let offsetField = infoStart + 40   // name length, name, dimension count, two dimensions, type
        data.replaceSubrange(offsetField..<(offsetField + 8), with: withUnsafeBytes(of: UInt64(33).littleEndian, Array.init))
        try expectError(data, "q.weight", "alignment")
        // An unknown type id, and a known type swift-moe does not read.
        data = try w.encoded()
        let typeField = offsetField - 4
        data.replaceSubrange(typeField..<(typeField + 4), with: withUnsafeBytes(of: UInt32(99).littleEndian, Array.init))
        try expectError(data, "q.weight", "unknown type 99")
        data.replaceSubrange(typeField..<(typeField + 4), with: withUnsafeBytes(of: UInt32(16).littleEndian, Array.init))
        try expectError(data, "q.weight", "IQ2_XXS")
        // Rows that are not whole blocks.
        w.tensors[1] = .init(name: "q.weight", dims: [16, 2], type: .quantized(.q8_0), data: Data(count: 34))
        #expect(throws: FormatError.self) { try w.encoded() }
    }

    @Test func metadataOfTheWrongTypeIsNamed() throws {
        var w = sampleWriter()
        w.set("general.alignment", .string("32"))
        try expectError(try w.encoded(), "general.alignment", "string", "uint32")
        w = sampleWriter()
        w.set("qwen3.block_count", .string("two"))
        let path = try write(try w.encoded())
        let f = try GGUFFile(path: path)
        #expect { _ = try f.int("qwen3.block_count") } throws: { "\($0)".contains("qwen3.block_count") && "\($0)".contains("string") }
    }

    @Test func unknownArchitectureAndMissingSplitPart() throws {
        var w = sampleWriter()
        w.set("general.architecture", .string("mamba"))
        let path = try write(try w.encoded())
        #expect { _ = try GGUFCheckpoint(path: path) } throws: { "\($0)".contains("mamba") && "\($0)".contains("qwen3moe") }
        w.set("general.architecture", .string("qwen3"))
        w.set("split.no", .uint16(0))
        w.set("split.count", .uint16(2))
        let dir = NSTemporaryDirectory() + "moe-split-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let first = dir + "/m-00001-of-00002.gguf"
        try w.write(to: first)
        #expect { _ = try GGUFCheckpoint(path: first) } throws: { "\($0)".contains("m-00002-of-00002.gguf") && "\($0)".contains("missing") }
    }

    /// Byte offset of a tensor info's name string length field.
    private func fieldOffset(of name: String, in data: Data) -> Int? {
        let needle = Data(name.utf8)
        guard let r = data.range(of: needle) else { return nil }
        return r.lowerBound - 8
    }
}
