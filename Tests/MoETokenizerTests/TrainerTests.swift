import Foundation
import Testing
@testable import MoETokenizer

/// The byte-level BPE trainer (Sources/MoETokenizer/Training): vocabulary, merges, determinism, the files it
/// writes (loaded back with `Tokenizer`), and bad inputs.
@Suite struct TrainerTests {
    /// A few KB of English prose, numbers, Chinese and code, the same every time.
    static let corpus: String = {
        var rng = TrainerTestRNG(seed: 42)
        let english = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "then", "runs",
                       "into", "forest", "where", "it", "finds", "another", "friendly", "creature", "sleeping",
                       "under", "tree", "They", "The", "A", "house", "was", "is", "were", "there", "thinking"]
        let chinese = Array("我们今天的天气很好他说这个问题非常重要在中国人民大学学习了一年时间")
        var s = ""
        for _ in 0..<60 {
            for _ in 0..<Int(rng.next() % 12 + 4) { s += english[Int(rng.next() % UInt64(english.count))] + " " }
            s += ["it's", "we'll", "they're", "I'm"][Int(rng.next() % 4)]
            s += [". ", ", ", "! ", "? "][Int(rng.next() % 4)]
            if rng.next() % 4 == 0 { s += "\n" }
        }
        for i in 0..<40 { s += "Item \(i * 37 % 101): \(Double(i) * 3.25) units, total \(i * 1234 + 7)\n" }
        for _ in 0..<30 {
            for _ in 0..<Int(rng.next() % 16 + 4) { s.append(chinese[Int(rng.next() % UInt64(chinese.count))]) }
            s += ["，", "。", "！"][Int(rng.next() % 3)]
            if rng.next() % 3 == 0 { s += "\n" }
        }
        for i in 0..<15 {
            s += "func f\(i)(_ x: Int) -> Int {\n    let y = x * \(i) + 1\n    return y > 10 ? y : -y\n}\n\n"
        }
        s += "<|endoftext|>Café naïve e\u{301} 😀\t\r\n"
        return s
    }()

    static func tempDir(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-trainer-\(name)-\(getpid())").path
        try? FileManager.default.removeItem(atPath: dir)
        return dir
    }

    @Test func trainsTheAskedVocabularyWithMergesOfEarlierTokens() throws {
        #expect(Self.corpus.utf8.count > 3000)
        let trained = try BPETrainer(vocabSize: 400).train(texts: [Self.corpus])
        #expect(trained.vocabSize == 400)
        #expect(trained.tokens.count == 397)
        #expect(trained.specialTokens == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        #expect(trained.merges.count == 397 - 256)
        // The base vocabulary is GPT-2's byte alphabet in GPT-2's order.
        #expect(trained.tokens[0] == "!")
        #expect(trained.tokens[255] == "\u{143}")
        #expect(Set(trained.tokens.prefix(256)) == Set(ByteLevel.table.map { String($0) }))
        var ids: [String: Int] = [:]
        for (i, t) in trained.tokens.enumerated() {
            #expect(ids[t] == nil, "token \(t) twice")
            ids[t] = i
        }
        for (rank, m) in trained.merges.enumerated() {
            let merged = 256 + rank
            let a = try #require(ids[m.left]), b = try #require(ids[m.right])
            #expect(a < merged && b < merged, "merge \(rank) uses a later token")
            #expect(ids[m.left + m.right] == merged)
        }
        // Special tokens are cut out before counting: no merge of "<|endoftext|>"'s pieces.
        #expect(!trained.tokens.contains("<|"))
        #expect(trained.tokens.contains("Ġthe"))
    }

    @Test func isDeterministic() throws {
        let dirA = Self.tempDir("a"), dirB = Self.tempDir("b")
        defer { try? FileManager.default.removeItem(atPath: dirA); try? FileManager.default.removeItem(atPath: dirB) }
        let file = Self.tempDir("corpus") + ".txt"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try Self.corpus.write(toFile: file, atomically: true, encoding: .utf8)
        let a = try BPETrainer(vocabSize: 400).train(files: [file])
        let b = try BPETrainer(vocabSize: 400).train(texts: [Self.corpus])
        #expect(a == b)
        try a.write(to: dirA)
        try b.write(to: dirB)
        for name in ["tokenizer.json", "tokenizer_config.json"] {
            let x = try Data(contentsOf: URL(fileURLWithPath: dirA + "/" + name))
            let y = try Data(contentsOf: URL(fileURLWithPath: dirB + "/" + name))
            #expect(x == y, "\(name) differs")
        }
        // No temporary files left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dirA).sorted() == ["tokenizer.json", "tokenizer_config.json"])
    }

    /// HF's tie-break: equal counts go to the smaller pair of ids (GPT-2 byte order, then older merges).
    @Test func breaksTiesByPairOrderAsHF() {
        func id(_ c: Character) -> Int32 { MergeLearner.idOfByte[Int(c.asciiValue!)] }
        // "ab" and "cd" twice each, "ba" twice: (a,b) < (b,a) < (c,d) by id.
        var learner = MergeLearner(words: [Array("cd".utf8), Array("ab".utf8), Array("ba".utf8)], counts: [2, 2, 2])
        learner.learn(maxTokens: 259, minFrequency: 0)
        #expect(learner.merges.map { [$0.left, $0.right] } == [[id("a"), id("b")], [id("b"), id("a")], [id("c"), id("d")]])
        // A larger count wins over order; "aaaa" merges left to right, non-overlapping.
        learner = MergeLearner(words: [Array("ab".utf8), Array("aaaa".utf8)], counts: [2, 1])
        learner.learn(maxTokens: 258, minFrequency: 0)
        #expect(learner.merges.map { [$0.left, $0.right] } == [[id("a"), id("a")], [id("a"), id("b")]])
        #expect(learner.words[1] == [256, 256])
        // minFrequency stops the loop.
        learner = MergeLearner(words: [Array("ab".utf8), Array("cd".utf8)], counts: [3, 1])
        learner.learn(maxTokens: 300, minFrequency: 2)
        #expect(learner.tokens.count == 257)
    }

    /// The HF test of BpeTrainer (trainer.rs `test_train`), on bytes: "re", "are", "is".
    @Test func matchesHFTrainerTest() {
        let words = ["roses": 1, "are": 2, "red": 1, "voilets": 1, "blue": 1, "BERT": 1, "is": 2, "big": 1,
                     "and": 1, "so": 1, "GPT-2": 1].sorted { $0.key < $1.key }
        var learner = MergeLearner(words: words.map { Array($0.key.utf8) }, counts: words.map(\.value))
        learner.learn(maxTokens: 1000, minFrequency: 2)
        let made = learner.tokens.dropFirst(256).map { String(decoding: $0, as: UTF8.self) }
        #expect(made == ["re", "are", "is"])
    }

    @Test func writtenTokenizerLoadsAndRoundTrips() throws {
        let dir = Self.tempDir("load")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let trained = try BPETrainer(vocabSize: 400).train(texts: [Self.corpus])
        try trained.write(to: dir)
        let tok = try Tokenizer(directory: dir)
        #expect(tok.vocabSize == 400)
        #expect(tok.bosToken == "<|endoftext|>" && tok.eosToken == "<|endoftext|>" && tok.padToken == "<|endoftext|>")
        #expect(tok.id(forToken: "<|im_end|>") == 399)
        #expect(tok.isSpecial(397))
        for (i, t) in trained.tokens.enumerated() { #expect(tok.id(forToken: t) == i) }
        let texts = ["the quick brown fox jumps over the lazy dog", "Item 42: 1234 units", "我们今天的天气很好。",
                     "func f(_ x: Int) -> Int {\n    return x\n}\n", "<|im_start|>user\nhi<|im_end|>", "Zebra ζ 🦓 \u{0}"]
        for text in texts {
            let ids = tok.encode(text, addSpecialTokens: false)
            #expect(tok.decode(ids) == text)
            #expect(ids.allSatisfy { $0 >= 0 && $0 < 400 })
        }
        // Merges are used: common words are one token.
        let the = tok.encode(" the", addSpecialTokens: false)
        #expect(the == [try #require(tok.id(forToken: "Ġthe"))])
        #expect(tok.encode("<|im_start|>", addSpecialTokens: false) == [398])
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/tokenizer.json"))) as? [String: Any]
        let model = json?["model"] as? [String: Any]
        #expect(json?["version"] as? String == "1.0")
        #expect(model?["type"] as? String == "BPE")
        #expect((model?["merges"] as? [[String]])?.count == trained.merges.count)
    }

    @Test func rejectsBadInput() throws {
        #expect(throws: TokenizerError.self) { try BPETrainer(vocabSize: 258).train(texts: [Self.corpus]) }
        #expect(throws: TokenizerError.self) { try BPETrainer(vocabSize: 255, specialTokens: []).train(texts: ["abc"]) }
        #expect(throws: TokenizerError.self) { try BPETrainer(vocabSize: 400).train(texts: [""]) }
        #expect(throws: TokenizerError.self) { try BPETrainer(vocabSize: 400).train(texts: ["<|endoftext|><|im_end|>"]) }
        #expect(throws: TokenizerError.self) { try BPETrainer(vocabSize: 400, specialTokens: ["x", "x"]).train(texts: ["abc"]) }
        #expect(throws: TokenizerError.self) { try BPETrainer(vocabSize: 400, pattern: "(unclosed").train(texts: ["abc"]) }
        #expect(throws: TokenizerError.self) { try BPETrainer(vocabSize: 400).train(files: []) }
        #expect(throws: TokenizerError.self) { try BPETrainer(vocabSize: 400).train(files: ["/nonexistent/moe-corpus.txt"]) }
        let dir = Self.tempDir("bad")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let empty = dir + "/empty.txt", binary = dir + "/binary.bin"
        FileManager.default.createFile(atPath: empty, contents: Data())
        FileManager.default.createFile(atPath: binary, contents: Data([0x61, 0x62, 0xFF, 0xFE, 0x0A]))
        #expect(throws: TokenizerError.self) { try BPETrainer(vocabSize: 400).train(files: [empty]) }
        #expect(throws: TokenizerError.self) { try BPETrainer(vocabSize: 400).train(files: [binary]) }
        #expect(throws: TokenizerError.self) { try BPETrainer(vocabSize: 400).train(files: [dir]) }
        // 256 + specials is the least; it trains no merges.
        let least = try BPETrainer(vocabSize: 259).train(texts: ["hello hello"])
        #expect(least.vocabSize == 259 && least.merges.isEmpty)
    }

    @Test func reportsProgress() throws {
        let file = Self.tempDir("progress") + ".txt"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try Self.corpus.write(toFile: file, atomically: true, encoding: .utf8)
        var reads: [(Int, Int)] = []
        var merges: [(Int, Int)] = []
        _ = try BPETrainer(vocabSize: 300).train(files: [file], progress: { reads.append(($0, $1)) },
                                                 mergeProgress: { merges.append(($0, $1)) })
        let size = Self.corpus.utf8.count
        #expect(reads.first?.0 == 0 && reads.last?.0 == size && reads.last?.1 == size)
        #expect(merges.count == 41 && merges.last?.0 == 41 && merges.last?.1 == 41)
    }
}

/// A small deterministic random generator for test data.
struct TrainerTestRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
