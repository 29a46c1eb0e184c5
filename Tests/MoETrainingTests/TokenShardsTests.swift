import Foundation
import Testing
@testable import MoETraining

@Suite struct TokenShardsTests {
    /// A fresh temporary directory per test.
    func scratch() throws -> String {
        let dir = NSTemporaryDirectory() + "moe-shards-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A shard holding 0, 1, 2, … so every window's content is predictable from its start.
    func countingShard(_ n: Int, in dir: String) throws -> TokenShard {
        let path = dir + "/count.bin"
        try TokenShardFile.write(tokens: (0..<n).map { UInt32($0) }, vocabSize: max(n, 2), to: path)
        return try TokenShard(path: path)
    }

    func batches(_ sampler: inout BatchSampler, _ shard: TokenShard, _ n: Int) -> [[Int32]] {
        let size = sampler.batchSize * sampler.seqLen
        var x = [Int32](repeating: 0, count: size), y = x
        return (0..<n).map { _ in
            sampler.nextBatch(from: shard, inputs: &x, targets: &y)
            return x + y
        }
    }

    @Test(arguments: [(1000, 2), (65536, 2), (65537, 4), (200_000, 4)])
    func shardRoundTrip(vocab: Int, width: Int) throws {
        let path = try scratch() + "/s.bin"
        let tokens: [UInt32] = [0, 1, 7, UInt32(vocab - 1), 42, UInt32(vocab / 2)]
        try TokenShardFile.write(tokens: tokens, vocabSize: vocab, to: path)
        let shard = try TokenShard(path: path)
        #expect(shard.width == width && shard.count == tokens.count)
        #expect((0..<shard.count).map { shard[$0] } == tokens)
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int
        #expect(size == 24 + tokens.count * width)
        #expect(try FileManager.default.contentsOfDirectory(atPath: (path as NSString).deletingLastPathComponent) == ["s.bin"])
    }

    @Test func truncatedOrForeignShardIsRejected() throws {
        let path = try scratch() + "/s.bin"
        try TokenShardFile.write(tokens: [1, 2, 3, 4], vocabSize: 10, to: path)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.dropLast().write(to: URL(fileURLWithPath: path))
        #expect { try TokenShard(path: path) } throws: { "\($0)".contains("truncated") && "\($0)".contains(path) }
        try bytes.prefix(10).write(to: URL(fileURLWithPath: path))
        #expect { try TokenShard(path: path) } throws: { "\($0)".contains("header") }
        bytes[0] = UInt8(ascii: "X")
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect { try TokenShard(path: path) } throws: { "\($0)".contains("magic") }
        #expect { try TokenShard(path: path + ".missing") } throws: { "\($0)".contains("not found") }
        #expect { try TokenShardFile.write(tokens: [10], vocabSize: 10, to: path) } throws: { "\($0)".contains("token id 10") }
    }

    @Test func documentsFromJSONLAndPlainText() throws {
        let dir = try scratch()
        try Data("{\"text\": \"a\"}\n\n  \n{\"text\": \"b\\nc\", \"id\": 3}\r\n".utf8).write(to: URL(fileURLWithPath: dir + "/d.jsonl"))
        #expect(try TrainingText.documents(path: dir + "/d.jsonl") == ["a", "b\nc"])
        try Data("one\n{not json}\n".utf8).write(to: URL(fileURLWithPath: dir + "/d.txt"))
        #expect(try TrainingText.documents(path: dir + "/d.txt") == ["one\n{not json}\n"])
        try Data([0x61, 0xFF]).write(to: URL(fileURLWithPath: dir + "/bad.txt"))
        #expect { try TrainingText.documents(path: dir + "/bad.txt") } throws: { "\($0)".contains("bad.txt") && "\($0)".contains("UTF-8") }
        #expect { try TrainingText.documents(path: dir + "/none.txt") } throws: { "\($0)".contains("not found") }
    }

    @Test(arguments: ["{\"text\": \"a\"}\n\n{\"text\": oops}\n", "{\"text\": \"a\"}\n\n[1]\n", "{\"text\": \"a\"}\n\n{\"body\": \"x\"}\n", "{\"text\": \"a\"}\n\n{\"text\": 5}\n"])
    func malformedJSONLNamesFileAndLine(content: String) throws {
        let path = try scratch() + "/corpus.jsonl"
        try Data(content.utf8).write(to: URL(fileURLWithPath: path))
        #expect { try TrainingText.documents(path: path) } throws: { "\($0)".hasPrefix(path + ":3: ") }
    }

    @Test func emptyCorpusIsAnError() throws {
        let dir = try scratch()
        try Data("\n\n".utf8).write(to: URL(fileURLWithPath: dir + "/e.jsonl"))
        #expect { try TrainingText.documents(path: dir + "/e.jsonl") } throws: { "\($0)" == "no tokens in \(dir)/e.jsonl" }
        #expect { try TokenizedCorpus.build(documents: ["", ""], encode: { _ in [] }, eosToken: 0, vocabSize: 5,
                                            validationFraction: 0.1, shardDirectory: dir + "/shards", progress: nil) }
            throws: { "\($0)".hasPrefix("no tokens in") }
    }

    @Test func corpusHoldsOutWholeDocumentsAndReloads() throws {
        let dir = try scratch()
        let docs = (0..<10).map { String(repeating: "x", count: $0 + 1) }
        let encode: (String) -> [Int] = { s in [s.count] }  // one token per document: its length
        var calls = 0
        let built = try TokenizedCorpus.build(documents: docs, encode: encode, eosToken: 0, vocabSize: 100, validationFraction: 0.2,
                                              shardDirectory: dir, progress: { done, total in calls += 1; #expect(total == 10 && done == calls) })
        #expect(calls == 10)
        // k = 5: documents 4 and 9 (lengths 5 and 10) are validation, each followed by EOS.
        #expect((0..<built.validation.count).map { built.validation[$0] } == [5, 0, 10, 0])
        #expect((0..<built.train.count).map { built.train[$0] } == [1, 0, 2, 0, 3, 0, 4, 0, 6, 0, 7, 0, 8, 0, 9, 0])
        let fingerprint = TokenizedCorpus.Fingerprint(documents: docs, vocabSize: 100, eosToken: 0, validationFraction: 0.2)
        let loaded = try #require(try TokenizedCorpus.load(shardDirectory: dir, expecting: fingerprint))
        #expect(loaded.train.count == 16 && loaded.validation.count == 4)
        #expect(try TokenizedCorpus.load(shardDirectory: dir, expecting: .init(documents: docs + ["y"], vocabSize: 100, eosToken: 0, validationFraction: 0.2)) == nil)
        #expect(try TokenizedCorpus.load(shardDirectory: try scratch()) == nil)
        try TokenShardFile.write(tokens: [1, 0, 2, 0, 3, 0, 4, 0, 6, 0, 7, 0, 8, 0, 9, 1], vocabSize: 100, to: dir + "/train.bin")
        #expect { try TokenizedCorpus.load(shardDirectory: dir) } throws: { "\($0)".contains("manifest") }
    }

    @Test func singleDocumentIsSplitByTokens() throws {
        let built = try TokenizedCorpus.build(documents: ["abcdefghi"], encode: { $0.unicodeScalars.map { Int($0.value) } }, eosToken: 1,
                                              vocabSize: 256, validationFraction: 0.2, shardDirectory: try scratch(), progress: nil)
        #expect(built.train.count == 8 && built.validation.count == 2)  // 10 tokens with EOS, cut at 8
        #expect(built.validation[1] == 1)
    }

    @Test func samplerIsDeterministicAndVisitsEveryWindowOncePerEpoch() throws {
        let shard = try countingShard(1001, in: try scratch())
        var a = try BatchSampler(tokenCount: shard.count, seqLen: 10, batchSize: 4, seed: 7)
        var b = try BatchSampler(tokenCount: shard.count, seqLen: 10, batchSize: 4, seed: 7)
        var c = try BatchSampler(tokenCount: shard.count, seqLen: 10, batchSize: 4, seed: 8)
        #expect(a.windowCount == 100)
        let first = batches(&a, shard, 50)  // 200 windows: exactly two epochs
        #expect(first == batches(&b, shard, 50))
        #expect(first != batches(&c, shard, 50))
        #expect(a.epoch == 2 && a.position == 0 && a.consumedWindows == 200)
        for epoch in 0..<2 {
            var starts: [Int32] = []
            for batch in first[(epoch * 25)..<(epoch * 25 + 25)] {
                for row in 0..<4 {
                    let x = batch[(row * 10)..<(row * 10 + 10)], y = batch[(40 + row * 10)..<(40 + row * 10 + 10)]
                    #expect(x.first! % 10 == 0 && Array(x.dropFirst()) == Array(y.dropLast()) && y.last! == x.last! + 1)
                    starts.append(x.first! / 10)
                }
            }
            #expect(starts.sorted() == (0..<100).map { Int32($0) })
            #expect(starts != (0..<100).map { Int32($0) })
        }
        #expect(first[0..<25] != first[25..<50])  // reshuffled each epoch
    }

    @Test func samplerResumesFromEncodedState() throws {
        let shard = try countingShard(5000, in: try scratch())
        var uninterrupted = try BatchSampler(tokenCount: shard.count, seqLen: 16, batchSize: 3, seed: 123)
        let expected = batches(&uninterrupted, shard, 250)
        var first = try BatchSampler(tokenCount: shard.count, seqLen: 16, batchSize: 3, seed: 123)
        let before = batches(&first, shard, 137)  // mid-epoch, in the second epoch (312 windows per epoch)
        #expect(first.epoch == 1 && first.position == 99)
        let state = try JSONEncoder().encode(first)
        var resumed = try JSONDecoder().decode(BatchSampler.self, from: state)
        #expect(resumed.consumedWindows == 411)
        #expect(before + batches(&resumed, shard, 113) == expected)
    }

    @Test func tooShortDataAndValidationBatches() throws {
        let shard = try countingShard(26, in: try scratch())
        #expect(try BatchSampler(tokenCount: 26, seqLen: 25, batchSize: 1, seed: 0).windowCount == 1)
        #expect { try BatchSampler(tokenCount: 26, seqLen: 26, batchSize: 1, seed: 0) } throws: { "\($0)".contains("too long") }
        let v = BatchSampler.validationBatches(shard: shard, seqLen: 4, batchSize: 4, maxBatches: 10)
        #expect(v.count == 2 && v[0].inputs.count == 16 && v[1].inputs.count == 8)  // 6 windows: 4 + 2
        #expect(v[0].inputs[0..<4] == [0, 1, 2, 3] && v[0].targets[0..<4] == [1, 2, 3, 4] && v[1].inputs[4..<8] == [20, 21, 22, 23])
        #expect(BatchSampler.validationBatches(shard: shard, seqLen: 4, batchSize: 4, maxBatches: 1).count == 1)
        #expect(BatchSampler.validationBatches(shard: shard, seqLen: 26, batchSize: 4, maxBatches: 10).isEmpty)
    }
}
