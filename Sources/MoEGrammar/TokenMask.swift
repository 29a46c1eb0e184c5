import MoEModel
import MoETokenizer

/// The vocabulary as a byte trie, for computing which tokens a grammar state allows: a walk down the trie
/// advances the matcher byte by byte and abandons a branch at its first impossible byte, so tokens sharing a
/// prefix share the work (the approach of outlines-core and llguidance; xgrammar adds precomputed masks).
///
/// Nodes are stored in depth-first order: node i's subtree is `i ..< end[i]`, its first child `i + 1`, the
/// sibling after child c is `end[c]`.
public struct TokenTrie: Sendable {
    public let vocabSize: Int
    /// Each token's bytes (nil: a special or unknown token, never produced under a grammar).
    public let tokenBytes: [[UInt8]?]
    let byte: [UInt8]
    let end: [Int32]
    /// Tokens whose bytes end at each node: `tokens[tokenStart[i] ..< tokenStart[i + 1]]`.
    let tokenStart: [Int32]
    let tokens: [Int32]

    /// `tokenBytes[id]`: what token `id` adds to the text (nil or empty: never allowed by a grammar).
    public init(tokenBytes: [[UInt8]?]) {
        vocabSize = tokenBytes.count
        self.tokenBytes = tokenBytes
        let ids = tokenBytes.indices.filter { tokenBytes[$0].map { !$0.isEmpty } ?? false }
            .sorted { tokenBytes[$0]!.lexicographicallyPrecedes(tokenBytes[$1]!) }
        var byte: [UInt8] = [0], end: [Int32] = [0], owners: [[Int32]] = [[]]
        // The path of the node just added (its bytes), as node indices.
        var path: [Int] = [0]
        var pathBytes: [UInt8] = []
        for id in ids {
            let b = tokenBytes[id]!
            var common = 0
            while common < min(b.count, pathBytes.count) && b[common] == pathBytes[common] { common += 1 }
            // Close the nodes below the common prefix.
            while path.count > common + 1 { end[path.removeLast()] = Int32(byte.count) }
            pathBytes.removeLast(pathBytes.count - common)
            for k in common..<b.count {
                path.append(byte.count)
                pathBytes.append(b[k])
                byte.append(b[k]); end.append(0); owners.append([])
            }
            owners[path.last!].append(Int32(id))
        }
        while let n = path.popLast() { end[n] = Int32(byte.count) }
        self.byte = byte
        self.end = end
        var start: [Int32] = [0], flat: [Int32] = []
        for o in owners { flat += o; start.append(Int32(flat.count)) }
        tokenStart = start
        tokens = flat
    }

    public var nodeCount: Int { byte.count }
}

/// A bit per token.
public struct TokenMask: Sendable, Equatable {
    public private(set) var words: [UInt64]
    public let count: Int

    public init(count: Int) {
        self.count = count
        words = [UInt64](repeating: 0, count: (count + 63) / 64)
    }

    @inline(__always) public subscript(_ i: Int) -> Bool {
        get { words[i >> 6] & (1 << UInt64(i & 63)) != 0 }
        set { if newValue { words[i >> 6] |= 1 << UInt64(i & 63) } else { words[i >> 6] &= ~(1 << UInt64(i & 63)) } }
    }

    public var allowedCount: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }
    public var isEmpty: Bool { !words.contains { $0 != 0 } }
}

/// A grammar over a vocabulary: which tokens each state allows (cached per state), shared by the sequences of
/// one request. Use from one thread at a time.
public final class GrammarVocabularyMatcher: @unchecked Sendable {
    public let matcher: GrammarMatcher
    public let trie: TokenTrie
    private var masks: [Int32: TokenMask] = [:]
    /// Masks kept (each a bit per token: 19 KB at 151k tokens).
    static let maskCacheLimit = 1024

    public init(grammar: Grammar, trie: TokenTrie) {
        matcher = GrammarMatcher(grammar)
        self.trie = trie
    }

    /// The tokens whose bytes the grammar can read in `state` (end-of-sequence tokens are the caller's: they are
    /// allowed where `matcher.accepts(state)`).
    public func mask(_ state: Int32) -> TokenMask {
        if let m = masks[state] { return m }
        var m = TokenMask(count: trie.vocabSize)
        walk(0, state, &m)
        if masks.count >= Self.maskCacheLimit { masks.removeAll(keepingCapacity: true) }
        masks[state] = m
        return m
    }

    private func walk(_ node: Int, _ state: Int32, _ m: inout TokenMask) {
        let t = trie
        for k in Int(t.tokenStart[node])..<Int(t.tokenStart[node + 1]) { m[Int(t.tokens[k])] = true }
        var child = node + 1
        let stop = Int(t.end[node])
        while child < stop {
            let next = matcher.step(state, t.byte[child])
            if next >= 0 { walk(child, next, &m) }
            child = Int(t.end[child])
        }
    }
}

/// One sequence under a grammar: masks its logits before sampling and follows the tokens chosen.
///
///     let constraint = GrammarConstraint(shared, stopTokens: eos)
///     constraint.apply(row, count: vocab)       // disallowed tokens → -inf
///     let token = sampler.sample(row, …)
///     constraint.accept(token)
public final class GrammarConstraint: LogitsConstraint, @unchecked Sendable {
    public let shared: GrammarVocabularyMatcher
    public let stopTokens: Set<Int>
    public private(set) var state: Int32

    public init(_ shared: GrammarVocabularyMatcher, stopTokens: Set<Int>) {
        self.shared = shared
        self.stopTokens = stopTokens
        state = shared.matcher.start
    }

    /// Whether the text so far completes the grammar (an end-of-sequence token may come now).
    public var accepts: Bool { shared.matcher.accepts(state) }
    public var canEnd: Bool { accepts }
    /// Whether no token of the vocabulary may come next: the grammar is complete, or what it still allows no
    /// token spells (an optional trailing space a vocabulary lacks).
    public var isFinished: Bool { shared.matcher.isFinished(state) || shared.mask(state).isEmpty }

    /// Sets the logits of every token the grammar does not allow next to -infinity (stop tokens only where the
    /// grammar is complete; ids beyond the tokenizer's vocabulary never).
    public func apply(_ logits: UnsafeMutablePointer<Float>, count: Int) {
        let mask = shared.mask(state)
        // Stop tokens' logits are put back after the mask where the text may end (no set lookup per token).
        let kept = accepts ? stopTokens.filter { $0 >= 0 && $0 < count }.map { ($0, logits[$0]) } : []
        for i in 0..<count where !(i < mask.count && mask[i]) { logits[i] = -.infinity }
        for (i, v) in kept { logits[i] = v }
    }

    /// Whether `token` may come next.
    public func allows(_ token: Int) -> Bool {
        if stopTokens.contains(token) { return accepts }
        guard token >= 0, token < shared.trie.vocabSize, let bytes = shared.trie.tokenBytes[token], !bytes.isEmpty else { return false }
        return shared.matcher.step(state, bytes) >= 0
    }

    /// Follows `token`; returns false (and stays put) when the grammar does not allow it.
    @discardableResult
    public func accept(_ token: Int) -> Bool {
        if stopTokens.contains(token) { return accepts }
        guard token >= 0, token < shared.trie.vocabSize, let bytes = shared.trie.tokenBytes[token], !bytes.isEmpty else { return false }
        let next = shared.matcher.step(state, bytes)
        guard next >= 0 else { return false }
        state = next
        return true
    }
}

extension TokenTrie {
    /// The trie of a tokenizer's tokens for a model whose vocabulary has `vocabSize` ids (ids past the
    /// tokenizer's, padding, are never allowed). Special tokens are left out, but for those whose text is in
    /// `specials` (a tool-call syntax's markers, which its grammar spells).
    public init(tokenizer: Tokenizer, vocabSize: Int, specials: Set<String> = []) {
        var bytes = (0..<vocabSize).map { tokenizer.bytes(ofToken: $0) }
        for t in tokenizer.addedTokens where t.id < vocabSize && specials.contains(t.content) { bytes[t.id] = Array(t.content.utf8) }
        self.init(tokenBytes: bytes)
    }
}
