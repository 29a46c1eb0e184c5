import Foundation
import Testing
import MoEFormats
@testable import MoETokenizer

/// llama.cpp's own vocabulary tests: `ggml-vocab-*.gguf` with `.inp` (texts separated by `__ggml_vocab_test__`
/// lines) and `.out` (the ids, one line per text, that the Hugging Face tokenizer gives and llama.cpp must match),
/// from the llama-cpp-python sdist that .ci/run and scripts/make_chat_fixtures.py unpack (MOE_LLAMA_VOCAB_DIR: its
/// `vendor/llama.cpp/models`). Skipped without it.
@Suite struct GGUFVocabularyTests {
    static let directory = ProcessInfo.processInfo.environment["MOE_LLAMA_VOCAB_DIR"]
    /// `tokenizer.ggml.model` gpt2 (byte-level BPE).
    static let byteLevel = ["qwen2", "gpt-2", "llama-bpe", "qwen35", "mpt", "starcoder", "refact", "command-r", "deepseek-llm", "deepseek-coder", "falcon"]
    /// `tokenizer.ggml.model` llama (SentencePiece).
    static let sentencePiece = ["llama-spm", "phi-3"]

    /// The test texts of a vocabulary file and the ids expected for each.
    static func cases(_ base: String) throws -> [(text: String, ids: [Int])] {
        let separator = "\n__ggml_vocab_test__\n"
        let input = try String(contentsOfFile: base + ".inp", encoding: .utf8)
        let texts = input.components(separatedBy: separator).map {
            $0.hasSuffix("\n__ggml_vocab_test__") ? String($0.dropLast("\n__ggml_vocab_test__".count)) : $0
        }
        let lines = try String(contentsOfFile: base + ".out", encoding: .utf8).components(separatedBy: "\n")
        return zip(texts, lines).map { ($0, $1.split(separator: " ").compactMap { Int($0) }) }
    }

    @Test(arguments: byteLevel + sentencePiece)
    func idsEqualLlamaCpp(_ name: String) throws {
        guard let dir = Self.directory else { return }
        let base = "\(dir)/ggml-vocab-\(name).gguf"
        let tokenizer = try Tokenizer(gguf: GGUFFile(path: base))
        let cases = try Self.cases(base)
        for (i, (text, expected)) in cases.enumerated() {
            let ids = tokenizer.encode(text, addSpecialTokens: false)
            #expect(ids == expected, "\(name) text \(i) \(text.debugDescription): \(ids) vs llama.cpp \(expected)")
        }
        #expect(cases.count > 20)
    }

    /// Every test text comes back from its ids: byte-level tokens are bytes; SentencePiece's "▁" are spaces,
    /// `<0xXX>` tokens bytes, and the prefixed space is dropped.
    @Test(arguments: byteLevel + sentencePiece)
    func decodesToTheText(_ name: String) throws {
        guard let dir = Self.directory else { return }
        let base = "\(dir)/ggml-vocab-\(name).gguf"
        let tokenizer = try Tokenizer(gguf: GGUFFile(path: base))
        for (i, (text, ids)) in try Self.cases(base).enumerated() {
            #expect(tokenizer.decode(ids) == text, "\(name) text \(i) \(text.debugDescription)")
        }
    }

    @Test func sentencePieceAddsBosAsLlamaCpp() throws {
        guard let dir = Self.directory else { return }
        let tokenizer = try Tokenizer(gguf: GGUFFile(path: "\(dir)/ggml-vocab-llama-spm.gguf"))
        #expect(tokenizer.bosTokenId == 1)
        #expect(tokenizer.eosTokenIds == [2])
        let ids = tokenizer.encode("Hello world")
        #expect(ids.first == 1 && Array(ids.dropFirst()) == tokenizer.encode("Hello world", addSpecialTokens: false))
        #expect(tokenizer.decode(ids, skipSpecialTokens: true) == "Hello world")
    }

    /// Vocabularies whose tokenizer model or pre-tokenizer is not implemented fail at load, naming it, rather than
    /// giving other ids than llama.cpp.
    @Test(arguments: [("gemma-4", "'gemma4'"), ("bert-bge", "'bert'")])
    func unsupportedVocabulariesAreRefusedByName(_ name: String, _ mention: String) throws {
        guard let dir = Self.directory else { return }
        #expect { _ = try Tokenizer(gguf: GGUFFile(path: "\(dir)/ggml-vocab-\(name).gguf")) } throws: {
            "\($0)".contains(mention) && "\($0)".contains("not supported")
        }
    }

    /// Every vocabulary file there, with test texts or not, loads or is refused with a message; none crashes.
    @Test func everyVocabularyLoadsOrIsRefused() throws {
        guard let dir = Self.directory else { return }
        let names = try FileManager.default.contentsOfDirectory(atPath: dir)
            .filter { $0.hasPrefix("ggml-vocab-") && $0.hasSuffix(".gguf") }
        #expect(names.count > 10)
        for name in names {
            do {
                let tokenizer = try Tokenizer(gguf: GGUFFile(path: "\(dir)/\(name)"))
                let ids = tokenizer.encode("Hello world, ünïcödé 123!", addSpecialTokens: false)
                #expect(!ids.isEmpty, "\(name)")
            } catch {
                #expect("\(error)".contains("not supported"), "\(name): \(error)")
            }
        }
    }

    @Test func anUnknownPreTokenizerIsRefusedByName() throws {
        var writer = GGUFWriter()
        writer.set("tokenizer.ggml.model", .string("gpt2"))
        writer.set("tokenizer.ggml.pre", .string("made-up-pre"))
        writer.set("tokenizer.ggml.tokens", .array(.string, [.string("a")]))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("pre-\(UUID().uuidString).gguf").path
        try writer.write(to: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect { _ = try Tokenizer(gguf: GGUFFile(path: path)) } throws: {
            "\($0)".contains("pre-tokenizer 'made-up-pre' is not supported")
        }
    }
}

/// The SentencePiece path on a vocabulary small enough to follow by hand, written as a GGUF file.
@Suite struct SentencePieceGGUFTests {
    /// `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then `pieces` with their scores.
    static func tokenizer(_ pieces: [(String, Float)], addSpacePrefix: Bool? = nil,
                          scoreCount: Int? = nil) throws -> Tokenizer {
        var tokens = ["<unk>", "<s>", "</s>"]
        var types: [Int32] = [2, 3, 3]
        for byte in 0..<256 { tokens.append(String(format: "<0x%02X>", byte)); types.append(6) }
        tokens += pieces.map(\.0)
        types += pieces.map { _ in 1 }
        var scores = [Float](repeating: 0, count: 3 + 256) + pieces.map(\.1)
        if let scoreCount { scores = Array(scores.prefix(scoreCount)) }
        var writer = GGUFWriter()
        writer.set("general.architecture", .string("llama"))
        writer.set("tokenizer.ggml.model", .string("llama"))
        writer.set("tokenizer.ggml.tokens", .array(.string, tokens.map { .string($0) }))
        writer.set("tokenizer.ggml.scores", .array(.float32, scores.map { .float32($0) }))
        writer.set("tokenizer.ggml.token_type", .array(.int32, types.map { .int32($0) }))
        if let addSpacePrefix { writer.set("tokenizer.ggml.add_space_prefix", .bool(addSpacePrefix)) }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("spm-\(UUID().uuidString).gguf").path
        try writer.write(to: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try Tokenizer(gguf: GGUFFile(path: path))
    }

    /// The ids of `pieces` in a tokenizer's vocabulary.
    static func ids(_ tokenizer: Tokenizer, _ pieces: [String]) -> [Int] { pieces.map { tokenizer.id(forToken: $0)! } }

    @Test func theHighestScoringPairMergesFirst() throws {
        let abFirst = try Self.tokenizer([("▁", -1), ("a", -1), ("b", -1), ("c", -1), ("ab", -2), ("bc", -3), ("▁a", -4)])
        #expect(abFirst.encode("abc", addSpecialTokens: false) == Self.ids(abFirst, ["▁", "ab", "c"]))
        // With "bc" ahead of "ab", "a" is left to merge with the space.
        let bcFirst = try Self.tokenizer([("▁", -1), ("a", -1), ("b", -1), ("c", -1), ("ab", -3), ("bc", -2), ("▁a", -4)])
        #expect(bcFirst.encode("abc", addSpecialTokens: false) == Self.ids(bcFirst, ["▁a", "bc"]))
    }

    @Test func equalScoresMergeLeftmostFirst() throws {
        let tokenizer = try Self.tokenizer([("▁", -1), ("a", -1), ("aa", -2)])
        #expect(tokenizer.encode("aaa", addSpecialTokens: false) == Self.ids(tokenizer, ["▁", "aa", "a"]))
    }

    @Test func charactersOutsideTheVocabularyFallBackToBytes() throws {
        let tokenizer = try Self.tokenizer([("▁", -1), ("a", -1)])
        let ids = tokenizer.encode("aé\n", addSpecialTokens: false)
        #expect(ids == Self.ids(tokenizer, ["▁", "a", "<0xC3>", "<0xA9>", "<0x0A>"]))
        #expect(tokenizer.decode(ids) == "aé\n")
    }

    @Test func everyStretchBetweenSpecialTokensGetsTheSpacePrefix() throws {
        let tokenizer = try Self.tokenizer([("▁", -1), ("a", -1), ("b", -1), ("▁a", -2), ("▁b", -2)])
        #expect(tokenizer.encode("a b", addSpecialTokens: false) == Self.ids(tokenizer, ["▁a", "▁b"]))
        #expect(tokenizer.encode("a</s>b") == [1] + Self.ids(tokenizer, ["▁a", "</s>", "▁b"]))
        #expect(tokenizer.decode(tokenizer.encode(" a  b"), skipSpecialTokens: true) == " a  b")
        let unprefixed = try Self.tokenizer([("▁", -1), ("a", -1), ("b", -1), ("▁a", -2), ("▁b", -2)], addSpacePrefix: false)
        #expect(unprefixed.encode("a b", addSpecialTokens: false) == Self.ids(unprefixed, ["a", "▁b"]))
        #expect(unprefixed.decode(unprefixed.encode(" a b"), skipSpecialTokens: true) == " a b")
    }

    /// Streamed one id at a time, the text is the whole decode: the prefixed space is dropped once, and the bytes of
    /// "é" wait for each other.
    @Test func streamingDecodeMatchesTheWholeDecode() throws {
        let tokenizer = try Self.tokenizer([("▁", -1), ("a", -1), ("b", -1), ("▁a", -2), ("▁b", -2)])
        let ids = tokenizer.encode("a é  b")
        var stream = IncrementalDecoder(tokenizer: tokenizer, skipSpecialTokens: true)
        var text = ""
        for id in ids { text += stream.add(id) }
        text += stream.flush()
        #expect(text == "a é  b")
        #expect(tokenizer.decode(ids, skipSpecialTokens: true) == "a é  b")
    }

    @Test func aScoresArrayOfTheWrongLengthIsRefused() throws {
        #expect { _ = try Self.tokenizer([("▁", -1), ("a", -1)], scoreCount: 100) } throws: {
            "\($0)".contains("tokenizer.ggml.scores has 100 entries for 261 tokens")
        }
    }
}
