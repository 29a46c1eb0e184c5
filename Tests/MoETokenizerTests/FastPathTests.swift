import Foundation
import Testing
@testable import MoETokenizer

/// The byte-level fast path (ByteLevelBPE), its flat tables and the normalization shortcut give what the
/// general path gives.
@Suite struct FastPathTests {
    /// A tiny byte-level BPE tokenizer.json: every byte's alphabet scalar, a few merges, a Split regex.
    static func tokenizerJSON(ignoreMerges: Bool) -> Data {
        var vocab: [String] = (0..<256).map { String(ByteLevel.table[$0]) }
        let merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("Ġ", "w"), ("o", "r"), ("Ġw", "or"), ("hell", "o"),
                      ("Ã", "©")]
        for (a, b) in merges { vocab.append(a + b) }
        func quote(_ s: String) -> String {
            let data = try! JSONSerialization.data(withJSONObject: [s], options: [.fragmentsAllowed])
            return String(decoding: data, as: UTF8.self).dropFirst().dropLast().description
        }
        let vocabText = vocab.enumerated().map { "\(quote($1)): \($0)" }.joined(separator: ", ")
        let mergesText = merges.map { "[\(quote($0.0)), \(quote($0.1))]" }.joined(separator: ", ")
        let pattern = quote(#"(?i:'s|'t)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#)
        return Data("""
            {"added_tokens": [{"id": 300, "content": "<|end|>", "special": true, "normalized": false}],
             "normalizer": {"type": "NFC"},
             "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": \(pattern)}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]},
             "decoder": {"type": "ByteLevel"},
             "model": {"type": "BPE", "ignore_merges": \(ignoreMerges), "vocab": {\(vocabText)}, "merges": [\(mergesText)]}}
            """.utf8)
    }

    @Test(arguments: [false, true])
    func fastPathMatchesGeneralPath(ignoreMerges: Bool) throws {
        let tok = try Tokenizer(tokenizerJSON: Self.tokenizerJSON(ignoreMerges: ignoreMerges))
        #expect(tok.fast != nil)
        let texts = ["hello world", "hello<|end|>world  \n\n x", "café cafe\u{301} 東京 😀👍🏽 12 it's", " hellohello ", ""]
        for text in texts {
            var general: [Int] = []
            for raw in tok.added.split(text, normalized: false) {
                if let id = raw.id { general.append(id); continue }
                let normalized = tok.normalizer?.normalize(raw.text) ?? raw.text
                for p in tok.preTokenizer!.preTokenize([Piece(text: normalized, atStart: true)]) where !p.text.isEmpty {
                    general.append(contentsOf: tok.model.tokenize(p.text))
                }
            }
            #expect(tok.encode(text) == general, "\(text)")
            #expect(tok.decode(tok.encode(text)) == text.precomposedStringWithCanonicalMapping)
        }
    }

    @Test func quickNFCNeverSkipsANeededNormalization() {
        let samples = ["plain ascii", "café", "e\u{301}", "東京タワー", "か\u{3099}", "한국어", "\u{1100}\u{1161}",
                       "Ω", "\u{2126}", "\u{2329}", "❤️ 👨‍👩‍👧", "A\u{30A}", "\u{FB01}", "—“”"]
        for s in samples where isQuickNFC(s) {
            #expect(s.precomposedStringWithCanonicalMapping.utf8.elementsEqual(s.utf8), "\(s.unicodeScalars.map { $0.value })")
        }
        #expect(isQuickNFC("東京 ❤️ café —") && !isQuickNFC("e\u{301}") && !isQuickNFC("\u{2126}"))
    }

    @Test func byteSliceTableKeepsTheLastValueAndGrows() {
        var table = ByteSliceTable(capacity: 2)
        for i in 0..<1000 { table.insert(Array("key\(i)".utf8), Int32(i)) }
        table.insert(Array("key7".utf8), 70)
        #expect(table.count == 1000 && table.get(Array("key7".utf8)) == 70 && table.get(Array("key999".utf8)) == 999)
        #expect(table.get(Array("nope".utf8)) == nil && table.get([]) == nil)
        var pairs = PairTable(capacity: 10)
        pairs.insert(PairTable.key(1, 2), 42)
        #expect(pairs.get(PairTable.key(1, 2)) == 42 && pairs.get(PairTable.key(2, 1)) == PairTable.absent)
    }
}
