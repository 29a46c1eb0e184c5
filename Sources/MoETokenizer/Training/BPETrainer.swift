import Foundation

/// Trains a byte-level BPE tokenizer (GPT-2 / Qwen2 style) on text files, as HF `tokenizers`' BpeTrainer
/// does with a Qwen2-like pipeline: NFC normalizer, pre-tokenizer Split(pattern, Isolated) + ByteLevel,
/// all 256 bytes as the initial alphabet.
///
///     let trained = try BPETrainer(vocabSize: 8000).train(files: ["corpus.txt"])
///     try trained.write(to: "my-tokenizer")   // tokenizer.json + tokenizer_config.json
///
/// - Text is read line by line, each line keeping its "\n" (as HF's `train_from_files` feeds lines); the
///   special tokens are cut out of each line first (they never take part in merges), then each stretch is
///   NFC-normalized and split by `pattern` (matches and the text between them are the words), and the
///   words are counted by their UTF-8 bytes.
/// - The merges are learned by HF's algorithm (see `MergeLearner`): the most frequent adjacent pair first,
///   ties to the pair of older tokens (smaller ids, bytes in GPT-2 alphabet order) — the same merges as HF's
///   trainer given the same words. Deterministic.
/// - `vocabSize` counts the special tokens: the BPE vocabulary gets `vocabSize - specialTokens.count` tokens
///   (256 bytes + merges) and the special tokens the ids after them. Training stops earlier when no pair
///   occurs `minFrequency` times.
public struct BPETrainer: Sendable {
    /// Qwen2's pre-tokenizer pattern (also Qwen2.5 / Qwen3).
    public static let qwen2Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    public var vocabSize: Int
    public var specialTokens: [String]
    public var pattern: String
    public var minFrequency: Int
    /// `model_max_length` of the written tokenizer_config.json.
    public var modelMaxLength: Int = 32768

    public init(vocabSize: Int, specialTokens: [String] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                pattern: String = BPETrainer.qwen2Pattern, minFrequency: Int = 2) {
        self.vocabSize = vocabSize
        self.specialTokens = specialTokens
        self.pattern = pattern
        self.minFrequency = minFrequency
    }

    /// Checks the settings; throws `TokenizerError.badInput` naming what is wrong.
    public func validate() throws {
        var seen = Set<String>()
        for s in specialTokens {
            if s.isEmpty { throw TokenizerError.badInput("special tokens must not be empty") }
            if !seen.insert(s).inserted { throw TokenizerError.badInput("special token \(s) is given twice") }
        }
        let least = 256 + specialTokens.count
        if vocabSize < least {
            throw TokenizerError.badInput(
                "vocabulary size \(vocabSize) is too small: it must be at least \(least) (256 bytes + \(specialTokens.count) special tokens)")
        }
        if minFrequency < 0 { throw TokenizerError.badInput("minimum frequency \(minFrequency) is negative") }
        _ = try TextPatterns.compile(pattern)
    }

    /// Trains on the UTF-8 text files `files`. `progress(bytesDone, bytesTotal)` is called while reading
    /// and counting; `mergeProgress(merged, wanted)` during the merges.
    public func train(files: [String], progress: ((_ bytesDone: Int, _ bytesTotal: Int) -> Void)? = nil,
                      mergeProgress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> TrainedBPE {
        try validate()
        if files.isEmpty { throw TokenizerError.badInput("no input files") }
        var total = 0
        for path in files {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw TokenizerError.badFile(path: path, reason: "no such file")
            }
            if isDirectory.boolValue { throw TokenizerError.badFile(path: path, reason: "is a directory, not a text file") }
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            total += (attributes?[.size] as? NSNumber)?.intValue ?? 0
        }
        // One counter per core; each block of lines is split among them.
        let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 16))
        var counters = try (0..<workers).map { _ in try WordCounter(pattern: pattern, specialTokens: specialTokens) }
        var done = 0
        progress?(0, total)
        for path in files {
            guard let handle = FileHandle(forReadingAtPath: path) else {
                throw TokenizerError.badFile(path: path, reason: "cannot be opened for reading")
            }
            defer { try? handle.close() }
            var carry: [UInt8] = []
            var offset = 0  // of `carry`'s first byte in the file
            while true {
                let data: Data
                do { data = try handle.read(upToCount: 1 << 22) ?? Data() } catch {
                    throw TokenizerError.badFile(path: path, reason: "read error: \(error)")
                }
                if data.isEmpty {
                    if !carry.isEmpty { try WordCounter.add(lines: carry, path: path, offset: offset, to: &counters) }
                    break
                }
                carry.append(contentsOf: data)
                // Hand over whole lines; keep the last partial line for the next read.
                if let lastNewline = carry.lastIndex(of: 0x0A) {
                    let lines = Array(carry[...lastNewline])
                    try WordCounter.add(lines: lines, path: path, offset: offset, to: &counters)
                    offset += lines.count
                    carry.removeSubrange(...lastNewline)
                }
                done += data.count
                progress?(min(done, max(total, done)), max(total, done))
            }
        }
        progress?(max(total, done), max(total, done))
        var counts = counters[0].counts
        for c in counters.dropFirst() { counts.merge(c.counts, uniquingKeysWith: +) }
        if counts.isEmpty {
            throw TokenizerError.badInput("no text to train on in \(files.joined(separator: ", ")) (empty, or only special tokens)")
        }
        return learn(counts, mergeProgress: mergeProgress)
    }

    /// Trains on in-memory texts, each one read as a file would be (line by line).
    public func train(texts: [String], mergeProgress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> TrainedBPE {
        try validate()
        var counter = try WordCounter(pattern: pattern, specialTokens: specialTokens)
        for text in texts { try counter.add(lines: Array(text.utf8), path: "text", offset: 0) }
        if counter.counts.isEmpty { throw TokenizerError.badInput("no text to train on (empty, or only special tokens)") }
        return learn(counter.counts, mergeProgress: mergeProgress)
    }

    func learn(_ wordCounts: [String: Int], mergeProgress: ((Int, Int) -> Void)?) -> TrainedBPE {
        // Sorted so that word indices, and with them everything after, do not depend on hashing.
        let entries = wordCounts.map { (Array($0.key.utf8), $0.value) }.sorted { $0.0.lexicographicallyPrecedes($1.0) }
        var learner = MergeLearner(words: entries.map(\.0), counts: entries.map(\.1))
        learner.learn(maxTokens: vocabSize - specialTokens.count, minFrequency: minFrequency, progress: mergeProgress)
        let tokens = learner.tokens.map { t in
            var s = String.UnicodeScalarView()
            for b in t { s.append(ByteLevel.table[Int(b)]) }
            return String(s)
        }
        let merges = learner.dedupedMerges.map { TrainedBPE.Merge(tokens[Int($0.left)], tokens[Int($0.right)]) }
        return TrainedBPE(tokens: tokens, merges: merges, specialTokens: specialTokens, pattern: pattern,
                          modelMaxLength: modelMaxLength, wordCount: entries.count)
    }
}

/// Splits text into pre-tokenizer words and counts them.
struct WordCounter {
    let pattern: any TextPattern
    let specials: [[UInt8]]
    let specialFirstBytes: Set<UInt8>
    var counts: [String: Int] = [:]

    init(pattern: String, specialTokens: [String]) throws {
        self.pattern = try TextPatterns.compile(pattern)
        // Longest first, so that at one position the longest special token wins (leftmost-longest).
        specials = specialTokens.map { Array($0.utf8) }.sorted { $0.count > $1.count }
        specialFirstBytes = Set(specials.compactMap(\.first))
    }

    /// Adds the lines of `bytes` to `counters`, splitting them among the counters (one thread each) when
    /// there is enough text.
    static func add(lines bytes: [UInt8], path: String, offset: Int, to counters: inout [WordCounter]) throws {
        let parts = counters.count
        if parts == 1 || bytes.count < 1 << 16 {
            try counters[0].add(lines: bytes, path: path, offset: offset)
            return
        }
        // Part k: lines starting in [k, k+1) * n / parts, cut after a newline.
        var cuts = [0]
        for k in 1..<parts {
            var c = max(bytes.count * k / parts, cuts[k - 1])
            while c < bytes.count && c > 0 && bytes[c - 1] != 0x0A { c += 1 }
            cuts.append(c)
        }
        cuts.append(bytes.count)
        let bounds = cuts
        var errors = [Error?](repeating: nil, count: parts)
        counters.withUnsafeMutableBufferPointer { counterBuffer in
            errors.withUnsafeMutableBufferPointer { errorBuffer in
                bytes.withUnsafeBufferPointer { all in
                    nonisolated(unsafe) let (c, e, b) = (counterBuffer, errorBuffer, all)
                    DispatchQueue.concurrentPerform(iterations: parts) { k in
                        guard bounds[k] < bounds[k + 1] else { return }
                        do {
                            try c[k].add(lines: Array(b[bounds[k]..<bounds[k + 1]]), path: path, offset: offset + bounds[k])
                        } catch {
                            e[k] = error
                        }
                    }
                }
            }
        }
        if let error = errors.compactMap({ $0 }).first { throw error }
    }

    /// Adds the lines of `bytes` (UTF-8; `offset` is its place in `path`, for errors).
    mutating func add(lines bytes: [UInt8], path: String, offset: Int) throws {
        var start = 0
        let n = bytes.count
        while start < n {
            var end = start
            while end < n && bytes[end] != 0x0A { end += 1 }
            if end < n { end += 1 }  // keep the "\n"
            try addLine(bytes[start..<end], path: path, offset: offset + start)
            start = end
        }
    }

    mutating func addLine(_ line: ArraySlice<UInt8>, path: String, offset: Int) throws {
        if specials.isEmpty || !line.contains(where: { specialFirstBytes.contains($0) }) {
            try addStretch(line, path: path, offset: offset)
            return
        }
        var i = line.startIndex, stretch = line.startIndex
        outer: while i < line.endIndex {
            if specialFirstBytes.contains(line[i]) {
                for s in specials where line.count - (i - line.startIndex) >= s.count && line[i..<(i + s.count)].elementsEqual(s) {
                    try addStretch(line[stretch..<i], path: path, offset: offset + (stretch - line.startIndex))
                    i += s.count
                    stretch = i
                    continue outer
                }
            }
            i += 1
        }
        try addStretch(line[stretch..<line.endIndex], path: path, offset: offset + (stretch - line.startIndex))
    }

    mutating func addStretch(_ bytes: ArraySlice<UInt8>, path: String, offset: Int) throws {
        if bytes.isEmpty { return }
        guard var text = String(validating: bytes, as: UTF8.self) else {
            throw TokenizerError.badFile(path: path, reason: "not valid UTF-8 (in the line at byte offset \(offset))")
        }
        if bytes.contains(where: { $0 >= 0x80 }) { text = text.precomposedStringWithCanonicalMapping }
        var last = text.startIndex
        for r in pattern.matches(in: text) {
            if last < r.lowerBound { counts[String(text[last..<r.lowerBound]), default: 0] += 1 }
            if !r.isEmpty { counts[String(text[r]), default: 0] += 1 }
            last = r.upperBound
        }
        if last < text.endIndex { counts[String(text[last...]), default: 0] += 1 }
    }
}
