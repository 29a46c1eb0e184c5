import Foundation
import Testing
@testable import MoETokenizer

/// Reference matches written by scripts/make_regex_fixtures.py from HF tokenizers (Oniguruma) and Python's regex.
private struct RegexFixture: Decodable {
    struct Case: Decodable {
        let text: String
        let expected: [String]
        let hf: [String]?
        let regex: [String]?
    }

    struct Pattern: Decodable {
        let name: String
        let pattern: String
        let reference: String
        let cases: [Case]
    }

    let tokenizers: String
    let patterns: [Pattern]

    static func load() throws -> RegexFixture {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../Fixtures/tokenizer/regex.json").standardizedFileURL
        return try JSONDecoder().decode(RegexFixture.self, from: Data(contentsOf: url))
    }
}

/// The non-empty matched pieces (HF's Split drops empty matches; the fixture lists none).
private func pieces(_ pattern: some TextPattern, _ text: String) -> [String] {
    pattern.matches(in: text).filter { !$0.isEmpty }.map { String(text[$0]) }
}

/// Matches as scalar offsets.
private func spans(_ pattern: String, _ text: String, options: UnicodeRegex.Options = .init()) throws -> [[Int]] {
    let regex = try UnicodeRegex(pattern, options: options)
    let scalars = text.unicodeScalars
    return regex.matches(in: text).map {
        [scalars.distance(from: scalars.startIndex, to: $0.lowerBound),
         scalars.distance(from: scalars.startIndex, to: $0.upperBound)]
    }
}

private let qwen2 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
private let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

@Suite struct RegexTests {
    @Test func fixtureMatchesReference() throws {
        let fixture = try RegexFixture.load()
        #expect(fixture.patterns.count >= 20)
        var checked = 0
        for p in fixture.patterns {
            let regex = try UnicodeRegex(p.pattern)
            for c in p.cases {
                let got = pieces(regex, c.text)
                #expect(got == c.expected, "\(p.name) on \(c.text.debugDescription)")
                checked += 1
            }
        }
        #expect(checked > 500)
    }

    /// With Oniguruma's own options, tiktoken patterns give what HF tokenizers gives for them (cl100k's
    /// `\p{N}{1,3}+` is `(?:\p{N}{1,3})+` there).
    @Test func onigurumaOptionsMatchHF() throws {
        let fixture = try RegexFixture.load()
        var checked = 0
        for p in fixture.patterns where p.reference == "regex" {
            let regex = try UnicodeRegex(p.pattern, options: .oniguruma)
            for c in p.cases {
                #expect(pieces(regex, c.text) == (c.hf ?? c.expected), "\(p.name) on \(c.text.debugDescription)")
                checked += 1
            }
        }
        #expect(checked > 0)
    }

    @Test func textAnchorsOption() throws {
        #expect(try spans(#"\s+$"#, "a  \nb  ") == [[1, 3], [5, 7]])
        #expect(try spans(#"\s+$"#, "a  \nb  ", options: .fancyRegex) == [[5, 7]])
        #expect(try spans(#"^a"#, "a\na") == [[0, 1], [2, 3]])
        #expect(try spans(#"^a"#, "a\na", options: .fancyRegex) == [[0, 1]])
        #expect(try spans(#"\p{N}{1,3}+"#, "1234567") == [[0, 3], [3, 6], [6, 7]])
        #expect(try spans(#"\p{N}{1,3}+"#, "1234567", options: .oniguruma) == [[0, 7]])
    }

    /// Same ranges as the ICU-based matcher on a real text (where their \s definitions agree: ASCII text; and no
    /// CRLF: ICUPattern drops matches that end between "\r" and "\n", as `Range(NSRange, in:)` gives nil there).
    @Test func agreesWithICU() throws {
        var text = "Hello world! It's 2024, isn't it?\n\n  Indented\tline  \n"
        for i in 0..<500 {
            text += "FIRST CITIZEN:\nWe are accounted poor citizens, the patricians good \(i * 37).\n\nWhat's this?  Don't!\t(\(i)) --\n"
        }
        for p in [qwen2, gpt2] {
            #expect(try UnicodeRegex(p).matches(in: text) == ICUPattern(p).matches(in: text))
        }
    }

    @Test func scalarsNotGraphemes() throws {
        let regex = try UnicodeRegex(#"\p{L}+|\p{M}|\S"#)
        // "é" decomposed: the combining mark is its own \p{M} scalar.
        let text = "e\u{301}x"
        #expect(pieces(regex, text) == ["e", "\u{301}", "x"])
        let ranges = regex.matches(in: text)
        #expect(ranges.count == 3)
        #expect(Array(text.unicodeScalars[ranges[1]]) == ["\u{301}"])
        // Emoji ZWJ sequence: one piece per scalar for a pattern that matches one scalar.
        #expect(pieces(try UnicodeRegex("."), "👨‍👩").count == 3)
    }

    @Test func caseInsensitive() throws {
        let regex = try UnicodeRegex(#"(?i:'s|'ll|k)|."#)
        #expect(pieces(regex, "'S'Ll'ſ\u{212A}") == ["'S", "'Ll", "'ſ", "\u{212A}"])
        let inline = try UnicodeRegex(#"a(?i)b|c"#)
        #expect(pieces(inline, "aBC") == ["aB", "C"])
        #expect(pieces(try UnicodeRegex(#"(?i:[a-c]+)"#), "xAbCz") == ["AbC"])
    }

    @Test func quantifiers() throws {
        #expect(try spans(#"a{2}"#, "aaaaa") == [[0, 2], [2, 4]])
        #expect(try spans(#"a{2,}"#, "aaaaa a") == [[0, 5]])
        #expect(try spans(#"a{,2}b"#, "aaab") == [[1, 4]])
        #expect(try spans(#"a+?"#, "aaa") == [[0, 1], [1, 2], [2, 3]])
        #expect(try spans(#"a*?b"#, "aab") == [[0, 3]])
        #expect(try spans(#"a??a"#, "aa") == [[0, 1], [1, 2]])
        #expect(try spans(#"a++a"#, "aaa") == [])
        #expect(try spans(#"(?>a+)b|a"#, "aab") == [[0, 3]])
        #expect(try spans(#"(?:ab){2,3}"#, "abababab") == [[0, 6]])
        #expect(try spans(#"(?:ab|a)*?b"#, "aabab") == [[0, 5]])
        #expect(try spans(#"x{"#, "x{") == [[0, 2]])  // not an interval: literal '{'
        #expect(try spans(#"\s+(?!\S)|\s+"#, "a   b") == [[1, 3], [3, 4]])
    }

    @Test func emptyPiecesAndEmptyMatches() throws {
        #expect(try spans("", "abc") == [[0, 0], [1, 1], [2, 2], [3, 3]])
        #expect(try spans("a|", "ab") == [[0, 1], [1, 1], [2, 2]])
        #expect(try spans("|b", "ab") == [[0, 0], [1, 1], [2, 2]])
        #expect(try spans("()", "ab") == [[0, 0], [1, 1], [2, 2]])
        #expect(try spans("(?:)", "") == [[0, 0]])
        #expect(try spans("x*", "axxbx") == [[0, 0], [1, 3], [3, 3], [4, 5], [5, 5]])
    }

    /// Patterns whose loops can match the empty string terminate and match as Oniguruma / Python's regex do.
    @Test func noInfiniteLoops() throws {
        #expect(try spans(#"(?:a*)*"#, "aab") == [[0, 2], [2, 2], [3, 3]])
        #expect(try spans(#"(?:a?)+b"#, "aab") == [[0, 3]])
        #expect(try spans(#"(?:)*x"#, "axb") == [[1, 2]])
        #expect(try spans(#"(?:\s*)*$"#, "a  \n") == [[1, 4], [4, 4]])
        #expect(try spans(#"(?:a|b)*c"#, "ababc abx") == [[0, 5]])
        let long = String(repeating: "ab ", count: 20_000)
        #expect(try UnicodeRegex(#"(?:\s*)*|x?"#).matches(in: long).count > 20_000)
    }

    /// A group repeated once per scalar over a long text: the matcher backtracks through a heap stack, so a
    /// million iterations (which the call stack of a recursive matcher could not hold) match, and backtrack.
    @Test func groupRepeatedOverALongTextDoesNotOverflowTheStack() throws {
        let n = 1_000_000
        let text = String(repeating: "ab", count: n / 2)
        #expect(try spans(#"(?:a|b)+"#, text) == [[0, n]])
        // Greedy to the end, then backtracking all the way for the final 'a': the choice stack is long.
        #expect(try spans(#"(?:ab|b)*a"#, text + "x") == [[0, n - 1]])
        let lazy = try spans(#"(?:a|b)+?x"#, text + "x")
        #expect(lazy == [[0, n + 1]])
        #expect(try spans(#"(?:(?:ab)+)+c"#, text + "c") == [[0, n + 1]])
    }

    @Test func unsupportedConstructsThrow() throws {
        let cases: [(String, String)] = [
            (#"(a)\1"#, "backreference"), (#"(?<name>a)"#, "named group"), (#"(?P<n>a)"#, "named group"),
            (#"(?<=a)b"#, "lookbehind"), (#"(?<!a)b"#, "lookbehind"), (#"[[:alpha:]]"#, "POSIX"),
            (#"[a[b]]"#, "nested"), (#"[a&&b]"#, "intersection"), (#"\p{Han}"#, "property"), (#"(?x)a b"#, "flag"),
            (#"*a"#, "quantifier"), (#"a{3,2}"#, "range"), (#"(a"#, "missing ')'"), (#"a)"#, "unbalanced"),
            (#"[a-"#, "unterminated"), (#"[z-a]"#, "empty range"), (#"\k<n>"#, "backreference"), (#"a\"#, "backslash"),
            (#"\q"#, "escape"),
        ]
        for (pattern, word) in cases {
            do {
                _ = try UnicodeRegex(pattern)
                Issue.record("\(pattern) compiled")
            } catch let TokenizerError.badPattern(p, reason) {
                #expect(p == pattern)
                #expect(reason.localizedCaseInsensitiveContains(word), "\(pattern): \(reason)")
            }
        }
    }

    @Test func compileThroughTextPatterns() throws {
        let p = try TextPatterns.compile(qwen2)
        #expect(pieces(p, "Hello  world's 123") == ["Hello", " ", " world", "'s", " ", "1", "2", "3"])
    }
}
