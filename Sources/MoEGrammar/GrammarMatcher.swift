/// Runs a `Grammar` over bytes of UTF-8: a pushdown automaton whose state is the set of stacks the text read
/// so far can be in (llama.cpp's `llama_grammar_accept`), with three things that make it cheap to ask, token
/// after token, which continuations stay possible:
///
/// - stacks are linked nodes, hash-consed: a stack is one integer, equal stacks are equal integers;
/// - a rule at the end of an alternative is not pushed (a tail call), so right recursion (`x*`) keeps the stack
///   flat and text of any length inside a string returns to the same state;
/// - states are interned, and every (state, byte) step is remembered.
///
/// One matcher serves every sequence of a request (each holds a state id); not thread-safe: use it from one
/// thread at a time (the engine's).
public final class GrammarMatcher: @unchecked Sendable {
    public let grammar: Grammar

    /// A state: the stacks (each the id of its top node; -1 is the empty stack, the grammar complete) and a
    /// UTF-8 character partly read (its bits so far and the bytes still to come).
    struct State: Hashable {
        var stacks: [Int32]
        var partial: UInt32 = 0
        var need: UInt8 = 0
        /// The partly read character's length in bytes (its smallest code point: 0x80, 0x800, 0x10000).
        var length: UInt8 = 0
    }

    // Stack nodes: the element the stack is at, and the node below.
    private var nodePosition: [Int32] = []
    private var nodeParent: [Int32] = []
    private var nodeIDs: [Int64: Int32] = [:]
    private var expansions: [Int32: [Int32]] = [:]
    private(set) var states: [State] = []
    private var stateIDs: [State: Int32] = [:]
    private var steps: [Int64: Int32] = [:]
    /// The state before anything is read.
    public private(set) var start: Int32 = 0
    /// A cap on remembered states and steps; beyond it the step memo is cleared (states stay valid).
    static let stepMemoLimit = 4_000_000

    public init(_ grammar: Grammar) {
        self.grammar = grammar
        var tops: [Int32] = []
        for a in grammar.alternatives[Int(grammar.root)] { tops += expand(node(a, -1)) }
        start = intern(State(stacks: Self.unique(tops)))
    }

    /// Whether the text read so far is a complete sentence of the grammar.
    public func accepts(_ state: Int32) -> Bool {
        let s = states[Int(state)]
        return s.need == 0 && s.stacks.first == -1
    }

    /// Whether the grammar is complete and nothing more may follow.
    public func isFinished(_ state: Int32) -> Bool {
        let s = states[Int(state)]
        return s.need == 0 && s.stacks == [-1]
    }

    /// The state after `byte`, or -1 when the grammar cannot read it there.
    @inline(__always)
    public func step(_ state: Int32, _ byte: UInt8) -> Int32 {
        let key = Int64(state) << 8 | Int64(byte)
        if let next = steps[key] { return next }
        if steps.count >= Self.stepMemoLimit { steps.removeAll(keepingCapacity: true) }
        let next = computeStep(state, byte)
        steps[key] = next
        return next
    }

    /// The state after `bytes` (-1 if they leave the grammar).
    public func step(_ state: Int32, _ bytes: some Sequence<UInt8>) -> Int32 {
        var s = state
        for b in bytes {
            s = step(s, b)
            if s < 0 { return -1 }
        }
        return s
    }

    // MARK: - Internals

    private func node(_ position: Int32, _ parent: Int32) -> Int32 {
        let key = Int64(position) << 32 | Int64(UInt32(bitPattern: parent))
        if let id = nodeIDs[key] { return id }
        let id = Int32(nodePosition.count)
        nodePosition.append(position)
        nodeParent.append(parent)
        nodeIDs[key] = id
        return id
    }

    private func intern(_ state: State) -> Int32 {
        if let id = stateIDs[state] { return id }
        let id = Int32(states.count)
        states.append(state)
        stateIDs[state] = id
        return id
    }

    static func unique(_ xs: [Int32]) -> [Int32] {
        var out = xs.sorted()
        var w = 0
        for r in out.indices where r == 0 || out[r] != out[r - 1] { out[w] = out[r]; w += 1 }
        out.removeLast(out.count - w)
        return out
    }

    /// The stacks a node stands for once its rule references are expanded: each topped by a character class,
    /// or -1 (nothing left to read).
    private func expand(_ n: Int32) -> [Int32] {
        if n < 0 { return [-1] }
        if let done = expansions[n] { return done }
        let position = nodePosition[Int(n)], parent = nodeParent[Int(n)]
        var out: [Int32] = []
        switch grammar.elements[Int(position)] {
        case .chars:
            out = [n]
        case .end:
            out = expand(parent)
        case .rule(let r):
            // What follows the reference; nothing to push when the reference ends its alternative (tail call).
            let continuation = grammar.elements[Int(position) + 1] == .end ? parent : node(position + 1, parent)
            for a in grammar.alternatives[Int(r)] { out += expand(node(a, continuation)) }
            out = Self.unique(out)
        }
        expansions[n] = out
        return out
    }

    private func computeStep(_ id: Int32, _ byte: UInt8) -> Int32 {
        var s = states[Int(id)]
        if s.need == 0 {
            switch byte {
            case 0..<0x80: return advance(s.stacks, UInt32(byte))
            case 0xC2..<0xE0: s.partial = UInt32(byte & 0x1F); s.need = 1; s.length = 2
            case 0xE0..<0xF0: s.partial = UInt32(byte & 0x0F); s.need = 2; s.length = 3
            case 0xF0..<0xF5: s.partial = UInt32(byte & 0x07); s.need = 3; s.length = 4
            default: return -1
            }
        } else {
            guard byte & 0xC0 == 0x80 else { return -1 }
            s.partial = s.partial << 6 | UInt32(byte & 0x3F)
            s.need -= 1
        }
        // The code points this start can still become: none overlong, past U+10FFFF or a surrogate.
        let shift = UInt32(6) * UInt32(s.need)
        let smallest: UInt32 = s.length == 2 ? 0x80 : s.length == 3 ? 0x800 : 0x10000
        let lo = max(s.partial << shift, smallest), hi = min((s.partial << shift) | ((1 << shift) - 1), 0x10FFFF)
        guard lo <= hi, !(lo >= 0xD800 && hi <= 0xDFFF) else { return -1 }
        if s.need == 0 { return advance(s.stacks, s.partial) }
        // A character partly read: alive while some stack can take a code point that starts this way.
        let alive = s.stacks.contains { top in
            guard top >= 0, case .chars(let k) = grammar.elements[Int(nodePosition[Int(top)])] else { return false }
            return grammar.classes[Int(k)].intersects(lo, hi)
        }
        return alive ? intern(s) : -1
    }

    private func advance(_ stacks: [Int32], _ c: UInt32) -> Int32 {
        var out: [Int32] = []
        for top in stacks where top >= 0 {
            let position = nodePosition[Int(top)]
            guard case .chars(let k) = grammar.elements[Int(position)], grammar.classes[Int(k)].contains(c) else { continue }
            let parent = nodeParent[Int(top)]
            out += grammar.elements[Int(position) + 1] == .end ? expand(parent) : expand(node(position + 1, parent))
        }
        return out.isEmpty ? -1 : intern(State(stacks: Self.unique(out)))
    }
}
