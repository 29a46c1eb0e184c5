import Foundation
import Testing
@testable import MoETokenizer

/// Fixtures from scripts/make_tokenizer_fixtures.py (HF `tokenizers` + `tiktoken` outputs).
enum TokenizerFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer")

    static let corpus: JSONValue = {
        let path = root.appendingPathComponent("corpus.json").path
        return try! JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: path)), path: path)
    }()

    static var texts: [String] { corpus["texts"]!.array!.map { $0.string! } }

    static let variantNames = ["bytelevel", "sentencepiece", "bytelevel_ignore_merges", "sentencepiece_nofallback",
                               "sentencepiece_legacy"]

    /// A fixture tokenizer: a base directory, or a variant = base tokenizer.json with corpus.json's patch applied.
    static func tokenizer(_ name: String) throws -> Tokenizer {
        if name == "bytelevel" || name == "sentencepiece" {
            return try Tokenizer(directory: root.appendingPathComponent(name).path)
        }
        let variant = corpus["variants"]![name]!
        let base = variant["base"]!.string!
        let path = root.appendingPathComponent(base).appendingPathComponent("tokenizer.json").path
        var json = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: path)), path: path)
        for (key, value) in variant["patch"]!.object! {
            json = json.setting(key.split(separator: ".").map(String.init), to: value)
        }
        return try Tokenizer(json: json, path: "\(name) (patched \(path))")
    }

    static func tiktoken() throws -> Tokenizer {
        let tk = corpus["tiktoken"]!
        var specials: [String: Int] = [:]
        for (k, v) in tk["special_tokens"]!.object! { specials[k] = v.int! }
        return try Tokenizer(tiktokenFile: root.appendingPathComponent("tiktoken/ranks.tiktoken").path,
                             pattern: tk["pattern"]!.string!, specialTokens: specials)
    }
}

extension JSONValue {
    /// A copy with the member at `path` (object keys) replaced or added.
    func setting(_ path: [String], to value: JSONValue) -> JSONValue {
        guard let key = path.first, case var .object(members) = self else { return value }
        if let i = members.lastIndex(where: { $0.key == key }) {
            members[i].value = members[i].value.setting(Array(path.dropFirst()), to: value)
        } else {
            members.append((key, JSONValue.null.setting(Array(path.dropFirst()), to: value)))
        }
        return .object(members)
    }
}

private func ints(_ v: JSONValue?) -> [Int] { v?.array?.map { $0.int! } ?? [] }

private func show(_ s: String) -> String { s.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 ? String($0) : "\\u{\(String($0.value, radix: 16))}" }.joined() }

@Suite struct TokenizerCorpusTests {
    @Test(arguments: TokenizerFixtures.variantNames)
    func idsAndDecodesMatchHF(_ name: String) throws {
        let tok = try TokenizerFixtures.tokenizer(name)
        let expected = TokenizerFixtures.corpus["expected"]![name]!.array!
        for (i, text) in TokenizerFixtures.texts.enumerated() {
            let e = expected[i]
            #expect(tok.encode(text) == ints(e["ids"]), "\(name) #\(i) \(show(text))")
            #expect(tok.encode(text, addSpecialTokens: false) == ints(e["ids_no_special"]), "\(name) #\(i) \(show(text))")
            let ids = ints(e["ids"])
            #expect(tok.decode(ids) == e["decode"]!.string!, "\(name) #\(i) decode \(show(text))")
            #expect(tok.decode(ids, skipSpecialTokens: true) == e["decode_skip"]!.string!, "\(name) #\(i) decode skip \(show(text))")
        }
    }

    /// `encode(atMost:)` gives `encode`'s ids when there are at most that many, else nil — for every corpus text and
    /// every limit around its length; and it refuses a megabyte without a split (one pre-token) without merging it.
    @Test(arguments: TokenizerFixtures.variantNames + ["tiktoken"])
    func encodingStopsPastALimit(_ name: String) throws {
        let tok = name == "tiktoken" ? try TokenizerFixtures.tiktoken() : try TokenizerFixtures.tokenizer(name)
        for text in TokenizerFixtures.texts {
            let ids = tok.encode(text)
            for limit in Set([0, 1, ids.count / 2, ids.count - 1, ids.count, ids.count + 1]) where limit >= 0 {
                #expect(tok.encode(text, atMost: limit) == (ids.count <= limit ? ids : nil), "\(name) limit \(limit) \(show(text))")
            }
        }
        #expect(tok.encode(String(repeating: "a", count: 1_000_000), atMost: 4096) == nil)
        #expect(tok.encode("hello world", atMost: 4096) == tok.encode("hello world"))
    }

    @Test func tiktokenMatchesTiktoken() throws {
        let tok = try TokenizerFixtures.tiktoken()
        let expected = TokenizerFixtures.corpus["tiktoken"]!["expected"]!.array!
        for (i, text) in TokenizerFixtures.texts.enumerated() {
            let ids = tok.encode(text)
            #expect(ids == ints(expected[i]["ids"]), "tiktoken #\(i) \(show(text))")
            #expect(tok.decode(ints(expected[i]["ids"])) == expected[i]["decode"]!.string!, "tiktoken #\(i)")
            #expect(tok.decode(ids) == text, "tiktoken round trip #\(i)")
        }
    }

    @Test func byteLevelRoundTripsNFCText() throws {
        let tok = try TokenizerFixtures.tokenizer("bytelevel")
        let nfc = TokenizerFixtures.corpus["nfc"]!.array!.map { $0.string! }
        var checked = 0
        for (i, text) in TokenizerFixtures.texts.enumerated() where !nfc[i].utf8.contains("café".utf8) && !nfc[i].utf8.contains("<mask>".utf8) {
            // (The added token "café" decodes through the ByteLevel decoder as HF does, é not being UTF-8 there;
            // "<mask>" takes the spaces around it. Byte-wise tests: "<mask>\u{301}" does not contain the
            // Character sequence "<mask>".)
            #expect(tok.decode(tok.encode(text, addSpecialTokens: false)) == nfc[i], "#\(i) \(show(text))")
            checked += 1
        }
        #expect(checked > 30)
    }

    @Test(arguments: TokenizerFixtures.variantNames + ["tiktoken"])
    func incrementalDecodingMatchesFullDecode(_ name: String) throws {
        let tok = name == "tiktoken" ? try TokenizerFixtures.tiktoken() : try TokenizerFixtures.tokenizer(name)
        for text in TokenizerFixtures.texts {
            let ids = tok.encode(text)
            for skip in [false, true] {
                let full = tok.decode(ids, skipSpecialTokens: skip)
                var stream = IncrementalDecoder(tokenizer: tok, skipSpecialTokens: skip)
                var out = ""
                for id in ids {
                    let chunk = stream.add(id)
                    #expect(chunk.unicodeScalars.last != "\u{FFFD}" || full.contains("\u{FFFD}"),
                            "\(name): emitted a partial character for \(show(text))")
                    out += chunk
                    #expect(full.unicodeScalars.starts(with: out.unicodeScalars), "\(name): \(show(out)) is not a prefix of \(show(full))")
                }
                out += stream.flush()
                #expect(Array(out.unicodeScalars) == Array(full.unicodeScalars), "\(name) skip=\(skip): \(show(out)) vs \(show(full))")
            }
        }
    }

    @Test func incrementalDecoderHoldsBackSplitCharacters() throws {
        let tok = try TokenizerFixtures.tokenizer("sentencepiece")
        // "😀" is not in the vocabulary: four <0xNN> byte-fallback tokens.
        let ids = tok.encode("😀", addSpecialTokens: false)
        #expect(ids.count >= 4)
        var stream = IncrementalDecoder(tokenizer: tok)
        let chunks = ids.map { stream.add($0) } + [stream.flush()]
        #expect(chunks.joined() == "😀")
        #expect(chunks.filter { !$0.isEmpty } == ["😀"])
        // An unfinished character comes out as U+FFFD (one per byte, as HF's ByteFallback) only at flush.
        let bytes = ids.filter { tok.token(forId: $0)!.hasPrefix("<0x") }
        #expect(bytes.count == 4)
        var cut = IncrementalDecoder(tokenizer: tok)
        #expect(bytes.dropLast().map { cut.add($0) }.joined() == "")
        #expect(cut.flush() == "\u{FFFD}\u{FFFD}\u{FFFD}")
    }
}

@Suite struct TokenizerBehaviourTests {
    @Test func addedTokensAreMatchedBeforeBPE() throws {
        let tok = try TokenizerFixtures.tokenizer("bytelevel")
        let start = try #require(tok.id(forToken: "<|im_start|>"))
        let end = try #require(tok.id(forToken: "<|im_end|>"))
        let eot = try #require(tok.id(forToken: "<|endoftext|>"))
        let ids = tok.encode("<|im_start|>user\nhi<|im_end|>", addSpecialTokens: false)
        #expect(ids.first == start && ids.last == end)
        #expect(ids.filter { $0 == start || $0 == end }.count == 2)
        // The post-processor appends <|endoftext|>; decode keeps or skips the special ones.
        #expect(tok.encode("hi") == tok.encode("hi", addSpecialTokens: false) + [eot])
        #expect(tok.decode(ids, skipSpecialTokens: true) == "user\nhi")
        #expect(tok.decode(ids) == "<|im_start|>user\nhi<|im_end|>")
        let toolId = try #require(tok.id(forToken: "<tool>"))
        #expect(tok.isSpecial(start) && !tok.isSpecial(toolId))
        // lstrip/rstrip: <mask> takes the spaces around it.
        let mask = try #require(tok.id(forToken: "<mask>"))
        let m = tok.encode("a  <mask>  b", addSpecialTokens: false)
        #expect(m == tok.encode("a", addSpecialTokens: false) + [mask] + tok.encode("b", addSpecialTokens: false))
        // single_word: <tool> only between non-word characters.
        let tool = try #require(tok.id(forToken: "<tool>"))
        #expect(tok.encode("x <tool> y", addSpecialTokens: false).contains(tool))
        #expect(!tok.encode("x<tool>y", addSpecialTokens: false).contains(tool))
        // normalized: "café" is matched after NFC, also when written decomposed.
        let cafe = try #require(tok.id(forToken: "café"))
        #expect(tok.encode("cafe\u{301}", addSpecialTokens: false) == [cafe])
    }

    @Test func configFilesAreRead() throws {
        let bl = try TokenizerFixtures.tokenizer("bytelevel")
        #expect(bl.eosTokenIds == [bl.id(forToken: "<|im_end|>")!])
        #expect(bl.bosTokenId == nil)
        #expect(bl.padTokenId == bl.id(forToken: "<|endoftext|>"))
        #expect(bl.chatTemplate?.contains("<|im_start|>") == true)
        #expect(bl.vocabSize == 1003)
        let sp = try TokenizerFixtures.tokenizer("sentencepiece")
        #expect(sp.bosTokenId == 1 && sp.eosTokenIds == [2])
        #expect(sp.token(forId: 3) == "<0x00>" && sp.id(forToken: "<0xFF>") == 258)
        #expect(sp.chatTemplate == nil)
    }

    static let tinyModel = #"""
    {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "bc": 3, "ab": 4, "abc": 5},
               "merges": ["b c", "a b", "ab c"], "ignore_merges": IGNORE}}
    """#

    @Test func ignoreMergesAndNoDecoder() throws {
        // Checked against HF tokenizers 0.23: [0, 3] without ignore_merges, [5] with; no decoder joins with spaces.
        let plain = try Tokenizer(tokenizerJSON: Data(Self.tinyModel.replacingOccurrences(of: "IGNORE", with: "false").utf8))
        let ignore = try Tokenizer(tokenizerJSON: Data(Self.tinyModel.replacingOccurrences(of: "IGNORE", with: "true").utf8))
        #expect(plain.encode("abc") == [0, 3])
        #expect(ignore.encode("abc") == [5])
        #expect(plain.encode("abcabc") == [0, 3, 0, 3] && ignore.encode("abcabc") == [0, 3, 0, 3])
        #expect(plain.decode([0, 3, 5, 99]) == "a bc abc")
    }

    @Test func invalidUTF8DecodesWithReplacementCharacters() throws {
        let bl = try TokenizerFixtures.tokenizer("bytelevel")
        let e4 = try #require(bl.id(forToken: String(ByteLevel.scalar(for: 0xE4))))
        let b8 = try #require(bl.id(forToken: String(ByteLevel.scalar(for: 0xB8))))
        let a = try #require(bl.id(forToken: "a"))
        #expect(bl.decode([e4, b8]) == "\u{FFFD}")            // one U+FFFD per maximal invalid subpart, as HF
        #expect(bl.decode([e4, a, e4]) == "\u{FFFD}a\u{FFFD}")
        let sp = try TokenizerFixtures.tokenizer("sentencepiece")
        #expect(sp.decode([3 + 0xE4, 3 + 0xB8], skipSpecialTokens: true) == "\u{FFFD}\u{FFFD}")   // ByteFallback: one per byte
        let tk = try TokenizerFixtures.tiktoken()
        #expect(tk.decode([tk.id(forToken: String(ByteLevel.scalar(for: 0xFF)))!]) == "\u{FFFD}")
    }

    @Test func malformedJSONNamesTheFile() {
        do {
            _ = try Tokenizer(tokenizerJSON: Data(#"{"model": {"type": "BPE", "vocab": {"a": 0,}}"#.utf8), path: "/x/tokenizer.json")
            Issue.record("no error")
        } catch let TokenizerError.badFile(path, reason) {
            #expect(path == "/x/tokenizer.json")
            #expect(reason.contains("malformed JSON") && reason.contains("line 1"))
        } catch { Issue.record("unexpected \(error)") }
    }

    @Test func mergeNamingUnknownTokenIsAnError() {
        let json = #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"], ["a", "zz"]]}}"#
        do {
            _ = try Tokenizer(tokenizerJSON: Data(json.utf8), path: "t.json")
            Issue.record("no error")
        } catch let TokenizerError.badFile(path, reason) {
            #expect(path == "t.json")
            #expect(reason.contains("merge #1") && reason.contains("\"zz\""))
        } catch { Issue.record("unexpected \(error)") }
        let noMerged = #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}}"#
        #expect(throws: TokenizerError.self) { try Tokenizer(tokenizerJSON: Data(noMerged.utf8)) }
    }

    @Test func unsupportedModelTypeIsAnError() {
        let json = #"{"model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0}}}"#
        do {
            _ = try Tokenizer(tokenizerJSON: Data(json.utf8), path: "bert/tokenizer.json")
            Issue.record("no error")
        } catch let TokenizerError.unsupported(what) {
            #expect(what.contains("WordPiece") && what.contains("only BPE") && what.contains("bert/tokenizer.json"))
        } catch { Issue.record("unexpected \(error)") }
    }

    @Test func missingDirectoryIsAnError() {
        #expect(throws: TokenizerError.self) { try Tokenizer(directory: "/nonexistent/model") }
    }
}
