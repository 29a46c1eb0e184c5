/// A context-free grammar over Unicode code points, as llama.cpp's GBNF describes one: rules of alternatives,
/// each a sequence of character classes and rule references. Repetitions and groups are already rewritten into
/// rules of their own (`GBNF.parse` does that), so the matcher sees only these two kinds of element.
///
/// Stored flat, as llama.cpp stores it: every alternative is a run of `elements` ended by `.end`, and
/// `alternatives[r]` lists where rule r's runs start. A position in the grammar is then one index.
public struct Grammar: Sendable {
    public enum Element: Sendable, Equatable {
        /// One code point from the class `classes[i]`.
        case chars(Int32)
        /// Rule `r`, whole.
        case rule(Int32)
        /// The end of an alternative.
        case end
    }

    /// A set of code points: `ranges` (inclusive), or everything outside them when `negated`.
    public struct CharClass: Sendable, Equatable, Hashable {
        public var ranges: [ClosedRange<UInt32>]
        public var negated: Bool

        public init(ranges: [ClosedRange<UInt32>], negated: Bool = false) {
            self.ranges = ranges
            self.negated = negated
        }

        @inline(__always)
        public func contains(_ c: UInt32) -> Bool {
            var hit = false
            for r in ranges where r.contains(c) { hit = true; break }
            return hit != negated
        }

        /// Whether some code point in `lo...hi` is in the class (a partly read UTF-8 character could still match).
        public func intersects(_ lo: UInt32, _ hi: UInt32) -> Bool {
            if !negated { return ranges.contains { $0.lowerBound <= hi && lo <= $0.upperBound } }
            // Negated: is some point of lo...hi outside every range?
            var next = lo
            for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) where r.upperBound >= next {
                if r.lowerBound > next { return true }
                if r.upperBound >= hi { return false }
                next = r.upperBound + 1
            }
            return next <= hi
        }
    }

    public internal(set) var elements: [Element] = []
    public internal(set) var classes: [CharClass] = []
    /// Rule r's alternatives: indices into `elements`.
    public internal(set) var alternatives: [[Int32]] = []
    public internal(set) var names: [String] = []
    public internal(set) var root: Int32 = 0

    public var ruleCount: Int { alternatives.count }
}

/// Why a grammar (or the schema it came from) cannot be used. The message names what is wrong and where.
public struct GrammarError: Error, CustomStringConvertible, Equatable {
    public var message: String
    /// The schema keyword or grammar part at fault (for an API's `param`).
    public var keyword: String?

    public init(_ message: String, keyword: String? = nil) {
        self.message = message
        self.keyword = keyword
    }

    public var description: String { message }
}

/// Builds a `Grammar` rule by rule: rules are named and may be referred to before they are defined.
struct GrammarBuilder {
    /// A sequence element before flattening.
    enum Item: Hashable {
        case chars(Grammar.CharClass)
        case rule(Int)
    }

    private(set) var names: [String] = []
    private var ids: [String: Int] = [:]
    private(set) var bodies: [[[Item]]?] = []
    /// Where each rule was first referred to (for "undefined rule" messages).
    private var firstUse: [Int: String] = [:]

    /// The id of rule `name`, made (empty, undefined) on first use.
    mutating func id(_ name: String, usedAt place: String? = nil) -> Int {
        if let id = ids[name] { return id }
        let id = names.count
        names.append(name)
        ids[name] = id
        bodies.append(nil)
        if let place { firstUse[id] = place }
        return id
    }

    /// A new rule named after `base` (`base-1`, `base-2`, …) for a group or repetition.
    mutating func fresh(_ base: String, _ body: [[Item]]) -> Int {
        var n = names.count
        while ids["\(base)-\(n)"] != nil { n += 1 }
        let id = id("\(base)-\(n)")
        bodies[id] = body
        return id
    }

    /// A new rule whose body refers to the rule itself.
    mutating func fresh(_ base: String, recursive body: (Int) -> [[Item]]) -> Int {
        let id = fresh(base, [])
        bodies[id] = body(id)
        return id
    }

    mutating func define(_ name: String, _ body: [[Item]]) throws(GrammarError) {
        let id = id(name)
        guard bodies[id] == nil else { throw GrammarError("rule '\(name)' is defined twice", keyword: "grammar") }
        bodies[id] = body
    }

    /// Flattens the rules; checks that every rule is defined and that none is left-recursive (the matcher
    /// expands rules depth-first, so a rule that can reach itself before reading a character would never end).
    func build(root: String) throws(GrammarError) -> Grammar {
        guard let rootID = ids[root], bodies[rootID] != nil else {
            throw GrammarError("the grammar has no '\(root)' rule", keyword: "grammar")
        }
        for (i, body) in bodies.enumerated() where body == nil {
            throw GrammarError("rule '\(names[i])' is used\(firstUse[i].map { " (\($0))" } ?? "") but never defined", keyword: "grammar")
        }
        let rules = bodies.map { $0! }
        try Self.checkLeftRecursion(rules, names: names)
        var g = Grammar()
        g.names = names
        g.root = Int32(rootID)
        var classIndex: [Grammar.CharClass: Int32] = [:]
        for body in rules {
            var starts: [Int32] = []
            for alternative in body {
                starts.append(Int32(g.elements.count))
                for item in alternative {
                    switch item {
                    case .chars(let c):
                        if let i = classIndex[c] { g.elements.append(.chars(i)) } else {
                            classIndex[c] = Int32(g.classes.count)
                            g.elements.append(.chars(Int32(g.classes.count)))
                            g.classes.append(c)
                        }
                    case .rule(let r): g.elements.append(.rule(Int32(r)))
                    }
                }
                g.elements.append(.end)
            }
            g.alternatives.append(starts)
        }
        return g
    }

    /// Finds a rule that reaches itself through leftmost references (skipping rules that can match nothing).
    static func checkLeftRecursion(_ rules: [[[Item]]], names: [String]) throws(GrammarError) {
        var nullable = [Bool](repeating: false, count: rules.count)
        var changed = true
        while changed {
            changed = false
            for (r, body) in rules.enumerated() where !nullable[r] {
                let canBeEmpty = body.contains { seq in
                    seq.allSatisfy { if case .rule(let s) = $0 { return nullable[s] } else { return false } }
                }
                if canBeEmpty { nullable[r] = true; changed = true }
            }
        }
        // left[r]: the rules r can start with.
        let left: [[Int]] = rules.map { body in
            var out: [Int] = []
            for seq in body {
                for item in seq {
                    guard case .rule(let s) = item else { break }
                    out.append(s)
                    if !nullable[s] { break }
                }
            }
            return out
        }
        // Depth-first search for a cycle in `left`.
        var color = [UInt8](repeating: 0, count: rules.count)
        for start in rules.indices where color[start] == 0 {
            var stack: [(Int, Int)] = [(start, 0)]
            color[start] = 1
            while let (r, i) = stack.last {
                if i < left[r].count {
                    stack[stack.count - 1].1 += 1
                    let s = left[r][i]
                    if color[s] == 1 {
                        throw GrammarError("rule '\(names[s])' is left-recursive (it can reach itself before reading a character); "
                                           + "rewrite it with a repetition", keyword: "grammar")
                    }
                    if color[s] == 0 { color[s] = 1; stack.append((s, 0)) }
                } else {
                    color[r] = 2
                    stack.removeLast()
                }
            }
        }
    }
}
