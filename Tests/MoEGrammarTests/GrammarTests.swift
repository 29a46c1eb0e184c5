import Testing
@testable import MoEGrammar

/// GBNF parsing, the matcher against hand-picked strings, and the token mask against a brute-force check.
@Suite struct GrammarTests {
    static func matches(_ grammar: Grammar, _ text: String) -> Bool {
        let m = GrammarMatcher(grammar)
        let s = m.step(m.start, Array(text.utf8))
        return s >= 0 && m.accepts(s)
    }

    /// Whether `text` can be continued into a sentence (the matcher has not rejected it yet).
    static func isPrefix(_ grammar: Grammar, _ text: String) -> Bool {
        let m = GrammarMatcher(grammar)
        return m.step(m.start, Array(text.utf8)) >= 0
    }

    @Test func literalsClassesGroupsAndRepetitions() throws {
        let g = try GBNF.parse(#"""
            root ::= greeting (", " name)* "!"? num{2,3} tail   # comment
            greeting ::= "hi" | "hello"
            name ::= [A-Z] [a-z]+
            num ::= [0-9]
            tail ::= ( "x"
                     | "yz" )?
            """#)
        for ok in ["hi12", "hello, Ann, Bo!123x", "hi, Zed99yz", "hello!007"] { #expect(Self.matches(g, ok), "\(ok)") }
        for bad in ["hi1", "hi1234", "hey12", "hi, ann12", "hi, A12", "hello12xyz", ""] { #expect(!Self.matches(g, bad), "\(bad)") }
        #expect(Self.isPrefix(g, "hello, Ann"))
        #expect(!Self.isPrefix(g, "hello, ann"))
    }

    @Test func escapesAnyCharAndUnicode() throws {
        let g = try GBNF.parse(#"""
            root ::= "\"" ([^"\\\n] | "\\" ["\\n])* "\"" . "\u00e9" [\u4e00-\u9fff]
            """#)
        #expect(Self.matches(g, #""a\"b\\c"xé你"#))
        #expect(!Self.matches(g, "\"a\nb\"xé你"))
        #expect(!Self.matches(g, #""ab"xe你"#))
        // A character split over two steps: its first byte keeps the state alive only if it can still match.
        let m = GrammarMatcher(try GBNF.parse(#"root ::= "é""#))
        let first = m.step(m.start, 0xC3)
        #expect(first >= 0 && !m.accepts(first))
        #expect(m.accepts(m.step(first, 0xA9)))
        #expect(m.step(first, 0xA8) < 0)
        #expect(m.step(m.start, 0xE4) < 0, "no three-byte character can match")
        // A lead byte whose characters all lie elsewhere (E0 starts U+0800…U+0FFF, F0 U+10000…): dead at once.
        let ascii = GrammarMatcher(try GBNF.parse(#"root ::= [a-z]"#))
        for lead: UInt8 in [0xC2, 0xE0, 0xF0, 0xF5, 0xC0, 0x80] { #expect(ascii.step(ascii.start, lead) < 0, "\(lead)") }
        let any = GrammarMatcher(try GBNF.parse(#"root ::= ."#))
        #expect(any.step(any.start, [0xE0, 0x80]) < 0, "overlong")
        #expect(any.step(any.start, [0xED, 0xA0]) < 0, "a surrogate")
        #expect(any.accepts(any.step(any.start, Array("你".utf8))))
    }

    @Test func rightRecursionKeepsTheStateFlat() throws {
        let g = try GBNF.parse(#"root ::= "[" [a-z]* "]""#)
        let m = GrammarMatcher(g)
        let a = m.step(m.start, Array("[abc".utf8))
        let b = m.step(a, Array("defghij".utf8))
        #expect(a == b, "text of any length inside the brackets is one state")
    }

    @Test func badGrammarsAreNamedErrors() {
        let cases: [(String, String)] = [
            ("root ::= foo", "'foo' is used"),
            ("root ::= \"abc", "unterminated string"),
            ("root ::= [a-", "unterminated character class"),
            ("root ::= root \"x\" | \"y\"", "left-recursive"),
            ("root ::= a\na ::= b? a \"x\"\nb ::= \"y\"", "left-recursive"),
            ("root ::= \"x\"{3,1}", "backwards"),
            ("root ::= \"x\"{5000}", "at most"),
            ("root ::= * \"x\"", "must follow"),
            ("root ::= \"x\"\nroot ::= \"y\"", "defined twice"),
            ("start ::= \"x\"", "no 'root' rule"),
            ("root ::= \"\\q\"", "unknown escape"),
        ]
        for (text, expected) in cases {
            do {
                _ = try GBNF.parse(text)
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.message.contains(expected), "\(text): \(error.message)")
                #expect(error.keyword == "grammar")
            }
        }
    }

    /// A vocabulary of single bytes, ASCII words and pieces of multi-byte characters (split as byte-level BPE splits them).
    static func vocabulary() -> [[UInt8]?] {
        var v: [[UInt8]?] = (0..<256).map { [UInt8($0)] }
        let words = ["{", "}", "\"", "\":", ", \"", "true", "false", "null", "na", "name", "ame", "\"name", "12", "3.5", "e1",
                     " ", "  ", "\n", "[", "]", "],", "é", "你好", "[\"", "\"]", "\\", "\\n", "\\u00", "abc", "ab", "a"]
        for w in words { v.append(Array(w.utf8)) }
        v.append(Array("你".utf8).prefix(2).map { $0 })   // the first two bytes of a three-byte character
        v.append([Array("你".utf8)[2]] + Array("好".utf8))  // its last byte, then a whole one
        v.append(nil)   // a special token
        v.append(nil)
        return v
    }

    /// The mask equals trying every token on its own, in states reached by random walks through allowed tokens.
    @Test(arguments: [
        "root ::= \"{\" space (\"\\\"name\\\"\" space \":\" space str (\",\" space \"\\\"n\\\"\" space \":\" space num)?)? \"}\"\n"
            + "space ::= \" \"?\nstr ::= \"\\\"\" [a-z\\u00e9\\u4e00-\\u9fff]* \"\\\"\"\nnum ::= \"-\"? [0-9]+ (\".\" [0-9]+)?",
        "root ::= \"[\" (str (\",\" \" \"? str)*)? \"]\"\nstr ::= \"\\\"\" ([^\"\\\\] | \"\\\\\" [\"\\\\n])* \"\\\"\"",
        "root ::= (\"true\" | \"false\" | \"null\" | num | \"\u{e9}\" | \"\u{4f60}\u{597d}\")+\nnum ::= \"-\"? [0-9]+ (\".\" [0-9]+)?",
    ])
    func maskEqualsBruteForce(_ text: String) throws {
        let grammar = try GBNF.parse(text)
        let trie = TokenTrie(tokenBytes: Self.vocabulary())
        let shared = GrammarVocabularyMatcher(grammar: grammar, trie: trie)
        let eos = trie.vocabSize - 1
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            let c = GrammarConstraint(shared, stopTokens: [eos])
            for _ in 0..<12 {
                let mask = shared.mask(c.state)
                for id in 0..<trie.vocabSize where id != eos {
                    let brute = trie.tokenBytes[id].map { !$0.isEmpty && shared.matcher.step(c.state, $0) >= 0 } ?? false
                    #expect(mask[id] == brute, "token \(id)")
                    #expect(c.allows(id) == brute)
                }
                var logits = [Float](repeating: 0, count: trie.vocabSize)
                c.apply(&logits, count: logits.count)
                #expect(logits[eos] == (c.accepts ? 0 : -.infinity))
                let allowed = (0..<trie.vocabSize).filter { logits[$0] == 0 && $0 != eos }
                guard let pick = allowed.randomElement(using: &rng) else { break }
                #expect(c.accept(pick))
            }
        }
    }
}
