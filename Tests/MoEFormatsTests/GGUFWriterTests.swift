import Foundation
import Testing
import MoEKernels
@testable import MoEFormats

/// `moe convert` / `moe quantize`'s library half against llama.cpp's own converter and quantiser (fixtures of
/// scripts/make_gguf_fixtures.py; the full comparison, every preset on every architecture plus llama.cpp running
/// the files, is scripts/check_gguf_writer.py).
@Suite struct GGUFWriterTests {
    static let models = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/models").path

    private func temporary(_ name: String) -> String {
        NSTemporaryDirectory() + "moe-gguf-writer-\(UUID().uuidString)-\(name).gguf"
    }

    /// The HF fixtures converted to f32 equal llama.cpp's `convert_hf_to_gguf.py` output (arch/*.gguf): every
    /// tensor (names, dims, types, bytes: experts stacked, llama q/k permuted, rope_freqs) and hyper-parameter.
    @Test(arguments: ["mixtral", "qwen2", "qwen3", "llama"])
    func convertEqualsLlamaCppConverter(_ name: String) throws {
        let out = temporary(name)
        defer { try? FileManager.default.removeItem(atPath: out) }
        var writer = GGUFModelWriter(model: "\(Self.models)/\(name)", preset: try #require(GGUFQuantMix.preset(named: "f32")))
        writer.asConverter = true
        _ = try writer.write(to: out)
        let ours = try GGUFFile(path: out), theirs = try GGUFFile(path: "\(GGUFFixtures.root)/arch/\(name).gguf")
        #expect(Set(ours.tensors.map(\.name)) == Set(theirs.tensors.map(\.name)))
        for t in theirs.tensors {
            let o = try #require(ours.tensor(t.name))
            #expect(o.dims == t.dims && o.type == t.type, "\(t.name): \(o.dims) \(o.type) vs \(t.dims) \(t.type)")
            #expect(o.byteCount == t.byteCount && memcmp(o.pointer, t.pointer, t.byteCount) == 0, "\(t.name) differs")
        }
        for (key, value) in theirs.metadata where !key.hasPrefix("tokenizer.") && !["general.name", "general.size_label"].contains(key) {
            #expect(ours[key] == value, "\(key): \(String(describing: ours[key])) vs llama.cpp \(value)")
        }
    }

    /// `moe quantize` on an f32 GGUF writes llama-quantize's file byte for byte: metadata, tensor order, each
    /// tensor's type under the preset's mix (8-expert and dense rules, fallbacks for 32-wide rows) and its blocks.
    @Test(arguments: [("qwen3_moe", "q4_k_m"), ("qwen3_moe", "q3_k_m"), ("qwen3_moe", "iq4_xs"), ("qwen3_moe", "mxfp4_moe"),
                      ("mixtral", "q4_k_m"), ("mixtral", "q2_k"), ("llama", "q5_k_m"), ("llama", "q6_k")])
    func quantizeEqualsLlamaQuantize(_ model: String, _ preset: String) throws {
        let out = temporary("\(model).\(preset)")
        defer { try? FileManager.default.removeItem(atPath: out) }
        _ = try GGUFModelWriter(model: "\(GGUFFixtures.root)/arch/\(model).gguf", preset: try #require(GGUFQuantMix.preset(named: preset)))
            .write(to: out)
        let ours = try Data(contentsOf: URL(fileURLWithPath: out))
        let theirs = try Data(contentsOf: URL(fileURLWithPath: "\(GGUFFixtures.root)/writer/\(model).\(preset).gguf"))
        #expect(ours == theirs, "\(model) \(preset): \(ours.count) bytes vs llama-quantize's \(theirs.count), first difference at \(zip(ours, theirs).enumerated().first { $1.0 != $1.1 }?.offset ?? min(ours.count, theirs.count))")
    }

    /// The type of every tensor of two 16-layer models (Qwen3-MoE with 8 experts; dense Llama with tied
    /// embeddings) under each preset is llama.cpp's (writer/mix.json): use_more_bits layers, 8-expert attention,
    /// tied output.
    @Test func presetMixesEqualLlamaCpp() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(GGUFFixtures.root)/writer/mix.json"))
        let cases = try #require(JSONSerialization.jsonObject(with: data) as? [String: [String: Any]])
        var compared = 0
        for (name, c) in cases.sorted(by: { $0.key < $1.key }) {
            let tensors = (c["tensors"] as! [[Any]]).map { ($0[0] as! String, $0[1] as! [Int]) }
                .sorted { GGUFExport.llamaCppOrder($0.0, $1.0) }
            let model = GGUFQuantMix.Model(architecture: c["architecture"] as! String, layers: c["layers"] as! Int,
                                           heads: c["heads"] as! Int, kvHeads: c["kv_heads"] as! Int, experts: c["experts"] as! Int)
            for (presetName, expected) in c["types"] as! [String: [String: String]] {
                let preset = try #require(GGUFQuantMix.preset(named: presetName))
                let types = try GGUFQuantMix(preset: preset).types(for: tensors.map { ($0.0, $0.1, GGUFTensorType.f32) }, model: model)
                for ((tensor, _), type) in zip(tensors, types) {
                    #expect(type.description == expected[tensor], "\(name) \(presetName) \(tensor): \(type) vs llama.cpp \(expected[tensor] ?? "?")")
                    compared += 1
                }
            }
        }
        #expect(compared > 1000)
    }

    @Test func refusesWhatLlamaCppRefuses() throws {
        let out = temporary("refused")
        defer { try? FileManager.default.removeItem(atPath: out) }
        // Re-quantising a quantised file.
        let q4 = "\(GGUFFixtures.root)/writer/llama.q6_k.gguf"
        #expect { _ = try GGUFModelWriter(model: q4, preset: GGUFQuantMix.preset(named: "q4_0")!).write(to: out) } throws: {
            "\($0)".contains("is already Q") && "\($0)".contains("re-quantising")
        }
        var allowed = GGUFModelWriter(model: q4, preset: GGUFQuantMix.preset(named: "q8_0")!)
        allowed.allowRequantize = true
        #expect(try allowed.write(to: out).types["Q8_0"] ?? 0 > 0)
        // NaN weights have no code.
        let nan = GGUFSourceTensor(name: "blk.0.attn_q.weight", dims: [32, 1], type: .f32, floats: { [Float](repeating: .nan, count: 32) }, stored: nil)
        #expect { try GGUFExport.write(metadata: [], tensors: [nan], types: [.quantized(.q8_0)], to: out) } throws: {
            "\($0)".contains("attn_q.weight") && "\($0)".contains("nan")
        }
        // Rows that are not whole blocks.
        let narrow = GGUFSourceTensor(name: "x.weight", dims: [48, 2], type: .f32, floats: { [Float](repeating: 1, count: 96) }, stored: nil)
        #expect { try GGUFExport.write(metadata: [], tensors: [narrow], types: [.quantized(.q4_K)], to: out) } throws: {
            "\($0)".contains("x.weight") && "\($0)".contains("Q4_K")
        }
        #expect(GGUFQuantMix.preset(named: "q4_k")?.name == "q4_k_m" && GGUFQuantMix.preset(named: "iq2_xxs") == nil)
    }
}
