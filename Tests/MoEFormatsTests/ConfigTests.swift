import Foundation
import Testing
@testable import MoEFormats

@Suite struct ConfigTests {
    let base = #""model_type": "qwen3_moe", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2"#

    @Test func ropeParametersAndLegacyKeysGiveTheSameValue() throws {
        let modern = try ModelConfig(json: Data(("{" + base + #", "rope_parameters": {"rope_type": "yarn", "rope_theta": 5000.0, "factor": 4.0, "original_max_position_embeddings": 256}}"#).utf8))
        let legacy = try ModelConfig(json: Data(("{" + base + #", "rope_theta": 5000, "rope_scaling": {"type": "yarn", "factor": 4, "original_max_position_embeddings": 256}}"#).utf8))
        #expect(modern.rope == legacy.rope)
        #expect(modern.rope.type == "yarn" && modern.rope.theta == 5000 && modern.rope.factor == 4)
        let plain = try ModelConfig(json: Data(("{" + base + #", "rope_theta": 1e6, "rope_scaling": null}"#).utf8))
        #expect(plain.rope.type == "default" && plain.rope.theta == 1e6)
    }

    @Test func defaultsAndAliases() throws {
        let c = try ModelConfig(json: Data(("{" + base + #", "num_local_experts": 4, "num_experts_per_tok": 2, "eos_token_id": [3, 4], "head_dim": null}"#).utf8))
        #expect(c.numKeyValueHeads == 2 && c.headDim == 4 && c.numExperts == 4 && c.eosTokenIds == [3, 4])
        #expect(c.decoderSparseStep == 1 && c.mlpOnlyLayers.isEmpty && c.normTopKProb == nil && !c.tieWordEmbeddings)
    }

    /// A float written with a whole value stays a float when the config is written back (transformers' strict config
    /// classes refuse gpt-oss's `"swiglu_limit": 7` where a float is declared); ints stay ints.
    @Test func wholeFloatsAreWrittenBackAsFloats() throws {
        let c = try ModelConfig(json: Data(("{" + base + #", "swiglu_limit": 7.0, "swiglu_alpha": 1.702, "sliding_window": 128, "initializer_range": 0.02}"#).utf8))
        let text = String(decoding: try c.jsonData(), as: UTF8.self)
        #expect(text.contains("\"swiglu_limit\" : 7.0,") && text.contains("\"sliding_window\" : 128,") && text.contains("\"hidden_size\" : 8"))
        let again = try ModelConfig(json: try c.jsonData())
        #expect(again.raw == c.raw && again.wholeFloatKeys == ["swiglu_limit"])
    }

    @Test func unreadableConfigNamesTheFile() throws {
        let dir = NSTemporaryDirectory() + "moe-cfg-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        #expect { try ModelConfig(directory: dir) } throws: { "\($0)".contains(dir + "/config.json") }
        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        #expect { try ModelConfig(directory: dir) } throws: { "\($0)".contains("config.json") && "\($0)".contains("JSON") }
    }

    @Test func wrongTypesAndMissingKeysAreNamed() {
        #expect { try ModelConfig(json: Data(#"{"model_type": "llama"}"#.utf8)) } throws: { "\($0)".contains("vocab_size") }
        #expect { try ModelConfig(json: Data(("{" + base + #", "num_key_value_heads": "two"}"#).utf8)) } throws: { "\($0)".contains("num_key_value_heads") }
        #expect { try ModelConfig(json: Data(("{" + base + #", "num_key_value_heads": 3}"#).utf8)) } throws: { "\($0)".contains("multiple") }
        #expect { try ModelConfig(json: Data(("{" + base + #", "tie_word_embeddings": 1}"#).utf8)) } throws: { "\($0)".contains("tie_word_embeddings") }
        #expect { try ModelConfig(json: Data(("{" + base + #", "num_experts": 4, "num_experts_per_tok": 9}"#).utf8)) } throws: { "\($0)".contains("num_experts_per_tok") }
    }

    @Test func generationConfigReadsEOSListOrNumber() throws {
        let dir = NSTemporaryDirectory() + "moe-gen-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        #expect(try GenerationConfig(directory: dir) == GenerationConfig())
        try Data(#"{"eos_token_id": [151645, 151643], "do_sample": true, "temperature": 0.7, "top_p": 0.8, "top_k": 20}"#.utf8)
            .write(to: URL(fileURLWithPath: dir + "/generation_config.json"))
        let g = try GenerationConfig(directory: dir)
        #expect(g.eosTokenIds == [151645, 151643] && g.doSample == true && g.temperature == 0.7 && g.topK == 20)
        try Data(#"{"eos_token_id": 2}"#.utf8).write(to: URL(fileURLWithPath: dir + "/generation_config.json"))
        #expect(try GenerationConfig(directory: dir).eosTokenIds == [2])
    }
}
