// The project's own pre-tokenizer pattern matcher.

/// A backtracking regex matcher over Unicode scalars for the subset of regex syntax that tokenizer pre-tokenizer
/// patterns use (GPT-2, Llama-3, Qwen2/3.5, DeepSeek, cl100k/o200k …), giving the same successive leftmost
/// matches as Oniguruma (HF `tokenizers`) and fancy-regex (tiktoken) for them.
///
/// Supported: literals; escapes `\t \n \r \f \v \a \e \0oo \xHH \x{H…} \uHHHH` and escaped punctuation;
/// `.` (any scalar but `\n`); `\s \S` (White_Space), `\d \D` (Nd), `\w \W` (Oniguruma: L, M, N, Pc);
/// `\p{..}` / `\P{..}` / `\pL` / `\p{^..}` for General_Category names (`L Lu Ll Lt Lm Lo M Mn Mc Me N Nd Nl No
/// P* S* Z* C*`, long names too); classes `[...]` / `[^...]` with ranges and escapes; groups `(...)`, `(?:...)`,
/// flags `(?i:...)`, `(?-i:...)`, `(?i)` (simple Unicode case folding); alternation; quantifiers `? * + {n}
/// {n,} {n,m} {,m}`, lazy (`??` …) and possessive (`?+ *+ ++`, and `{n,m}+` — see `Options`); atomic groups
/// `(?>...)`; lookahead `(?=...)` `(?!...)`; anchors `^ $ \A \z \Z \b \B`.
///
/// Not supported (init throws `TokenizerError.badPattern`): backreferences, named groups, lookbehind, nested
/// classes / POSIX brackets / `&&`, Unicode scripts and binary properties other than White_Space, flags other
/// than `i`, and Oniguruma's multi-scalar case folds (ß ~ ss).
///
/// After an empty match the search resumes one scalar further on (as Oniguruma and Rust's regex do); an empty
/// match right after a non-empty one is reported.
public struct UnicodeRegex: TextPattern {
    public struct Options: Sendable, Equatable {
        /// `^` / `$` match at line starts / ends (Oniguruma, Ruby syntax — what HF tokenizers use); false:
        /// only at the text's start / end (fancy-regex without `(?m)`). They differ only for patterns such as
        /// DeepSeek-LLM's `\s+$`; tiktoken's `\s++$` gives the same matches either way.
        public var lineAnchors: Bool
        /// `x{n,m}+` is possessive (fancy-regex, Python's regex; tiktoken's cl100k `\p{N}{1,3}+`); false: it is
        /// `(?:x{n,m})+` as in Oniguruma's Ruby syntax.
        public var possessiveIntervals: Bool

        public init(lineAnchors: Bool = true, possessiveIntervals: Bool = true) {
            self.lineAnchors = lineAnchors
            self.possessiveIntervals = possessiveIntervals
        }

        /// Oniguruma with Ruby syntax (HF tokenizers) exactly.
        public static let oniguruma = Options(lineAnchors: true, possessiveIntervals: false)
        /// fancy-regex (tiktoken) exactly.
        public static let fancyRegex = Options(lineAnchors: false, possessiveIntervals: true)
    }

    public let pattern: String
    let program: RegexProgram

    /// Compiles `pattern`. The default options are right for every known tokenizer pattern under its own engine.
    public init(_ pattern: String, options: Options = Options()) throws {
        self.pattern = pattern
        var parser = RegexParser(pattern, options: options)
        let root = try parser.parse()
        program = RegexProgram(root)
    }

    public func matches(in text: String) -> [Range<String.Index>] {
        var native = text  // withUTF8 needs contiguous UTF-8 (a no-op copy for native strings)
        let offsets = native.withUTF8 { scalarMatches(utf8: $0) }
        var out: [Range<String.Index>] = []
        out.reserveCapacity(offsets.count / 2)
        let u = text.utf8
        var k = 0
        while k < offsets.count {
            let lo = u.index(u.startIndex, offsetBy: offsets[k])
            let hi = u.index(lo, offsetBy: offsets[k + 1] - offsets[k])
            out.append(lo..<hi)
            k += 2
        }
        return out
    }

    /// Matches as UTF-8 byte offsets, `[start0, end0, start1, end1, …]`.
    func scalarMatches(utf8: UnsafeBufferPointer<UInt8>, maxNonEmpty: Int = .max) -> [Int] {
        let count = utf8.count
        // Decode to scalars, remembering each scalar's byte offset (the text is valid UTF-8).
        let scalars = UnsafeMutablePointer<UInt32>.allocate(capacity: count + 1)
        let byteOffset = UnsafeMutablePointer<Int32>.allocate(capacity: count + 1)
        defer { scalars.deallocate(); byteOffset.deallocate() }
        var n = 0
        var i = 0
        while i < count {
            let b0 = UInt32(utf8[i])
            byteOffset[n] = Int32(i)
            if b0 < 0x80 {
                scalars[n] = b0; i += 1
            } else if b0 < 0xE0 {
                scalars[n] = (b0 & 0x1F) << 6 | UInt32(utf8[i + 1] & 0x3F); i += 2
            } else if b0 < 0xF0 {
                scalars[n] = (b0 & 0x0F) << 12 | UInt32(utf8[i + 1] & 0x3F) << 6 | UInt32(utf8[i + 2] & 0x3F)
                i += 3
            } else {
                scalars[n] = (b0 & 0x07) << 18 | UInt32(utf8[i + 1] & 0x3F) << 12 | UInt32(utf8[i + 2] & 0x3F) << 6
                    | UInt32(utf8[i + 3] & 0x3F)
                i += 4
            }
            n += 1
        }
        byteOffset[n] = Int32(count)

        var out: [Int] = []
        out.reserveCapacity(n / 2)
        var nonEmpty = 0
        search(text: scalars, n: n) { s, e in
            out.append(Int(byteOffset[s])); out.append(Int(byteOffset[e]))
            if e > s { nonEmpty += 1 }
            return nonEmpty < maxNonEmpty
        }
        return out
    }

    /// The matcher over `n` scalars: successive leftmost matches as scalar offsets, until `found` returns false.
    func search(text: UnsafePointer<UInt32>, n: Int, _ found: (Int, Int) -> Bool) {
        let prog = program
        let slots = max(Int(prog.slots), 1)
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: slots)
        let starts = UnsafeMutablePointer<Int>.allocate(capacity: slots)
        let stack = UnsafeMutablePointer<RegexChoiceStack>.allocate(capacity: 1)
        stack.initialize(to: RegexChoiceStack())
        defer { counts.deallocate(); starts.deallocate(); stack.pointee.free(); stack.deallocate() }
        counts.initialize(repeating: 0, count: slots)
        starts.initialize(repeating: -1, count: slots)
        prog.insts.withUnsafeBufferPointer { insts in
            prog.branches.withUnsafeBufferPointer { branches in
                prog.bitmaps.withUnsafeBufferPointer { bitmaps in
                    let vm = RegexVM(insts: insts.baseAddress!, branches: branches.baseAddress ?? UnsafePointer(bitPattern: 8)!,
                                     bitmaps: bitmaps.baseAddress ?? UnsafePointer(bitPattern: 8)!, program: prog,
                                     text: text, n: n, counts: counts, starts: starts, stack: stack)
                    let first = prog.first
                    var pos = 0
                    while pos <= n {
                        if !first.nullable {
                            while pos < n && !first.admits(text[pos]) { pos += 1 }
                            if pos == n { break }
                        }
                        let e = vm.run(prog.start, pos)
                        if e >= 0 {
                            guard found(pos, e) else { return }
                            pos = e > pos ? e : pos + 1
                        } else {
                            pos += 1
                        }
                    }
                }
            }
        }
    }
}
