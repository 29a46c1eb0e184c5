// UnicodeRegex's compiled form (a small instruction graph) and its backtracking interpreter.

enum RegexOp: UInt8 {
    case char, set, repSet, alt, repGroup, repEnd, lookahead, atomic, assertion, succeed
}

/// One instruction. `next` is the continuation; the other fields depend on `op`:
/// char: a = scalar · set: a = set · repSet: a = set, b = min, c = max, mode ·
/// alt: a = first branch (in `branches`), b = count · repGroup: a = body, b = min, c = max, d = counter slot, mode ·
/// repEnd: a = its repGroup · lookahead: a = sub-program, mode 1 = negative · atomic: a = sub-program ·
/// assertion: a = RegexAssertion.
struct RegexInst {
    var op: RegexOp
    var mode: UInt8 = 0
    var a: Int32 = 0
    var b: Int32 = 0
    var c: Int32 = 0
    var d: Int32 = 0
    var next: Int32 = -1
}

/// What can start a match of a node: ASCII scalars as a 128-bit map, `nonASCII` if any other scalar may, and
/// `nullable` if it may match the empty string (then nothing can be skipped).
struct FirstSet {
    var lo: UInt64 = 0
    var hi: UInt64 = 0
    var nonASCII = false
    var nullable = false

    static let none = FirstSet()
    static let nullableNone = FirstSet(nullable: true)

    mutating func formUnion(_ o: FirstSet) {
        lo |= o.lo; hi |= o.hi; nonASCII = nonASCII || o.nonASCII
    }

    @inline(__always)
    func admits(_ c: UInt32) -> Bool {
        if c < 64 { return lo >> UInt64(c) & 1 != 0 }
        if c < 128 { return hi >> UInt64(c - 64) & 1 != 0 }
        return nonASCII
    }
}

struct RegexBranch {
    var pc: Int32
    var first: FirstSet
}

/// Supplementary-plane membership of a set (the BMP is a bitmap).
struct SupplementarySet {
    var mask: UInt32
    var negated: Bool
    var ranges: [ClosedRange<UInt32>]
}

final class RegexProgram: @unchecked Sendable {
    var insts: [RegexInst] = []
    var branches: [RegexBranch] = []
    /// 1024 words (65,536 bits) per set: membership of every BMP scalar.
    var bitmaps: [UInt64] = []
    var supplementary: [SupplementarySet] = []
    var specs: [ScalarSetSpec] = []
    var slots: Int32 = 0
    var start: Int32 = 0
    var first = FirstSet()

    init(_ root: RegexNode) {
        let done = emit(RegexInst(op: .succeed))
        start = compile(root, next: done)
        first = firstSet(root)
    }

    func emit(_ inst: RegexInst) -> Int32 {
        insts.append(inst)
        return Int32(insts.count - 1)
    }

    func setIndex(_ spec: ScalarSetSpec) -> Int32 {
        if let k = specs.firstIndex(of: spec) { return Int32(k) }
        specs.append(spec)
        var words = [UInt64](repeating: 0, count: 1024)
        let table = RegexUnicode.bmpWords
        let ranges = spec.ranges
        table.withUnsafeBufferPointer { t in
            for c in 0..<0x10000 {
                var hit = t[c] & spec.mask != 0
                if !hit {
                    for r in ranges where r.contains(UInt32(c)) { hit = true; break }
                }
                if hit != spec.negated { words[c >> 6] |= 1 << UInt64(c & 63) }
            }
        }
        bitmaps += words
        supplementary.append(SupplementarySet(mask: spec.mask, negated: spec.negated,
                                              ranges: spec.ranges.filter { $0.upperBound >= 0x10000 }))
        return Int32(specs.count - 1)
    }

    /// Emits `node` followed by `next`; returns its entry.
    func compile(_ node: RegexNode, next: Int32) -> Int32 {
        switch node {
        case .empty:
            return next
        case let .set(spec):
            if let c = spec.singleScalar { return emit(RegexInst(op: .char, a: Int32(c), next: next)) }
            return emit(RegexInst(op: .set, a: setIndex(spec), next: next))
        case let .sequence(items):
            var pc = next
            for item in items.reversed() { pc = compile(item, next: pc) }
            return pc
        case let .alternation(options):
            let entries = options.map { (compile($0, next: next), firstSet($0)) }
            let base = Int32(branches.count)
            for (pc, f) in entries { branches.append(RegexBranch(pc: pc, first: f)) }
            return emit(RegexInst(op: .alt, a: base, b: Int32(entries.count), next: next))
        case let .repetition(body, lo, hi, mode):
            let maxCount = Int32(clamping: hi ?? Int(Int32.max))
            if case let .set(spec) = body {
                return emit(RegexInst(op: .repSet, mode: mode.rawValue, a: setIndex(spec), b: Int32(lo),
                                      c: maxCount, next: next))
            }
            if mode == .possessive {
                return compile(.atomic(.repetition(body, min: lo, max: hi, mode: .greedy)), next: next)
            }
            if hi == 0 { return next }
            if lo == 1 && hi == 1 { return compile(body, next: next) }
            if lo == 0 && hi == 1 {  // x? as an alternation: no counters
                return compile(.alternation(mode == .lazy ? [.empty, body] : [body, .empty]), next: next)
            }
            let slot = slots
            slots += 1
            let group = emit(RegexInst(op: .repGroup, mode: mode.rawValue, b: Int32(lo), c: maxCount, d: slot,
                                       next: next))
            let end = emit(RegexInst(op: .repEnd, a: group))
            insts[Int(group)].a = compile(body, next: end)
            return group
        case let .lookahead(body, negative):
            let done = emit(RegexInst(op: .succeed))
            let sub = compile(body, next: done)
            return emit(RegexInst(op: .lookahead, mode: negative ? 1 : 0, a: sub, next: next))
        case let .atomic(body):
            let done = emit(RegexInst(op: .succeed))
            let sub = compile(body, next: done)
            return emit(RegexInst(op: .atomic, a: sub, next: next))
        case let .assertion(kind):
            return emit(RegexInst(op: .assertion, a: kind.rawValue, next: next))
        }
    }

    func firstSet(_ node: RegexNode) -> FirstSet {
        switch node {
        case .empty, .assertion, .lookahead:
            return .nullableNone
        case let .set(spec):
            var f = FirstSet()
            for c in UInt32(0)..<128 where spec.contains(c) {
                if c < 64 { f.lo |= 1 << UInt64(c) } else { f.hi |= 1 << UInt64(c - 64) }
            }
            f.nonASCII = spec.negated || spec.mask != 0 || spec.ranges.contains { $0.upperBound >= 128 }
            return f
        case let .sequence(items):
            var f = FirstSet.nullableNone
            for item in items {
                let g = firstSet(item)
                f.formUnion(g)
                if !g.nullable { f.nullable = false; return f }
            }
            return f
        case let .alternation(options):
            var f = FirstSet()
            for o in options {
                let g = firstSet(o)
                f.formUnion(g)
                f.nullable = f.nullable || g.nullable
            }
            return f
        case let .repetition(body, lo, hi, _):
            var f = firstSet(body)
            if lo == 0 || hi == 0 { f.nullable = true }
            return f
        case let .atomic(body):
            return firstSet(body)
        }
    }
}

/// A point to come back to when the match fails further on (or, `restore`, a repetition counter to put back
/// on the way): what the recursive form of the matcher kept in its call stack, kept here in a growable array
/// on the heap so that neither a long input nor a group repeated many times can overflow the thread's stack.
struct RegexChoice {
    enum Kind: UInt8 {
        /// Put counter `inst` (a slot) back to count `pos`, start `k`.
        case restore
        /// Try the alternation at `inst` from branch `k` (an index into `branches`) at `pos`.
        case alternative
        /// A lazy set repetition at `inst` that matched `k` scalars from `pos`: take one more.
        case lazySet
        /// A greedy set repetition at `inst` from `pos`: try the continuation after at most `k` scalars.
        case greedySet
        /// The group repetition `inst` at `pos`: go on after the loop instead of iterating.
        case stopIterating
        /// The group repetition `inst` at `pos`: iterate once more instead of going on.
        case iterateAgain
    }
    var kind: Kind
    var inst: Int32
    var pos: Int
    var k: Int
}

/// The choice stack of one search, shared by nested runs (lookaheads, atomic groups): each run owns the
/// entries above where it started. Grows by doubling; freed by its owner.
struct RegexChoiceStack {
    var items: UnsafeMutablePointer<RegexChoice>
    var count = 0
    var capacity: Int

    init(capacity: Int = 64) {
        self.capacity = capacity
        items = .allocate(capacity: capacity)
    }

    func free() { items.deallocate() }

    @inline(__always)
    mutating func push(_ kind: RegexChoice.Kind, _ inst: Int32, _ pos: Int, _ k: Int) {
        if count == capacity {
            let grown = UnsafeMutablePointer<RegexChoice>.allocate(capacity: capacity * 2)
            grown.moveInitialize(from: items, count: count)
            items.deallocate()
            items = grown
            capacity *= 2
        }
        (items + count).initialize(to: RegexChoice(kind: kind, inst: inst, pos: pos, k: k))
        count += 1
    }
}

/// One run of a program over a text of scalars. Everything is reached through unsafe pointers, so the inner
/// loops neither allocate (but to grow the choice stack) nor retain. Backtracking goes through the explicit
/// choice stack; only lookaheads and atomic groups recurse, as deep as the pattern nests them.
struct RegexVM {
    let insts: UnsafePointer<RegexInst>
    let branches: UnsafePointer<RegexBranch>
    let bitmaps: UnsafePointer<UInt64>
    let program: RegexProgram
    let text: UnsafePointer<UInt32>
    let n: Int
    let counts: UnsafeMutablePointer<Int>
    let starts: UnsafeMutablePointer<Int>
    let stack: UnsafeMutablePointer<RegexChoiceStack>

    @inline(__always)
    func inSet(_ set: Int32, _ c: UInt32) -> Bool {
        if c < 0x10000 {
            return bitmaps[Int(set) << 10 | Int(c >> 6)] >> UInt64(c & 63) & 1 != 0
        }
        return supplementaryContains(set, c)
    }

    @inline(never)
    func supplementaryContains(_ set: Int32, _ c: UInt32) -> Bool {
        let s = program.supplementary[Int(set)]
        var hit = RegexUnicode.computeWord(c) & s.mask != 0
        if !hit { hit = s.ranges.contains { $0.contains(c) } }
        return hit != s.negated
    }

    @inline(__always)
    func isWord(_ pos: Int) -> Bool {
        pos >= 0 && pos < n && RegexUnicode.propertyWord(text[pos]) & RegexUnicode.word != 0
    }

    func check(_ kind: RegexAssertion, _ pos: Int) -> Bool {
        switch kind {
        // Oniguruma: '^' after a newline, but not at the very end of the text.
        case .lineStart: return pos == 0 || (pos < n && text[pos - 1] == 0x0A)
        case .lineEnd: return pos == n || text[pos] == 0x0A
        case .textStart: return pos == 0
        case .textEnd: return pos == n
        case .textEndBeforeFinalNewline: return pos == n || (pos == n - 1 && text[pos] == 0x0A)
        case .wordBoundary: return isWord(pos - 1) != isWord(pos)
        case .notWordBoundary: return isWord(pos - 1) == isWord(pos)
        }
    }

    /// Runs from instruction `pc` at `pos`; returns where the (sub-)program succeeded, or -1. The choices it
    /// leaves are dropped before it returns.
    func run(_ pc0: Int32, _ pos0: Int) -> Int {
        let base = stack.pointee.count
        var pc = Int(pc0)
        var pos = pos0
        var matched = -1
        search: while true {
            let ins = insts[pc]
            var failed = false
            switch ins.op {
            case .char:
                if pos < n, text[pos] == UInt32(bitPattern: ins.a) {
                    pos += 1
                    pc = Int(ins.next)
                } else {
                    failed = true
                }
            case .set:
                if pos < n, inSet(ins.a, text[pos]) {
                    pos += 1
                    pc = Int(ins.next)
                } else {
                    failed = true
                }
            case .repSet:
                let lo = Int(ins.b)
                let limit = Swift.min(n - pos, Int(ins.c))
                var k = 0
                if ins.mode == RepetitionMode.lazy.rawValue {
                    while k < lo, k < limit, inSet(ins.a, text[pos + k]) { k += 1 }
                    if k < lo {
                        failed = true
                    } else {
                        stack.pointee.push(.lazySet, Int32(pc), pos, k)
                        pos += k
                        pc = Int(ins.next)
                    }
                } else {
                    while k < limit, inSet(ins.a, text[pos + k]) { k += 1 }
                    if k < lo {
                        failed = true
                    } else if ins.mode == RepetitionMode.greedy.rawValue && k > lo && insts[Int(ins.next)].op != .succeed {
                        pos = greedyAttempt(Int32(pc), pos, upTo: k)
                        pc = Int(ins.next)
                    } else {
                        pos += k
                        pc = Int(ins.next)
                    }
                }
            case .alt:
                if let branch = alternative(Int32(pc), from: Int(ins.a), pos) {
                    pc = Int(branch)
                } else {
                    failed = true
                }
            case .repGroup:
                let slot = Int(ins.d)
                stack.pointee.push(.restore, Int32(slot), counts[slot], starts[slot])
                counts[slot] = 0
                starts[slot] = -1
                if let next = iterate(pc, pos) { pc = next } else { failed = true }
            case .repEnd:
                if let next = iterate(Int(ins.a), pos) { pc = next } else { failed = true }
            case .lookahead:
                let r = run(ins.a, pos)
                if (r >= 0) == (ins.mode == 1) { failed = true } else { pc = Int(ins.next) }
            case .atomic:
                let r = run(ins.a, pos)
                if r < 0 { failed = true } else { pos = r; pc = Int(ins.next) }
            case .assertion:
                if check(RegexAssertion(rawValue: ins.a)!, pos) { pc = Int(ins.next) } else { failed = true }
            case .succeed:
                matched = pos
                break search
            }
            if failed {
                guard let (next, at) = backtrack(to: base) else { break search }
                pc = next
                pos = at
            }
        }
        // Drop this run's choices (a failure has popped them all). Its counters need no putting back: they are
        // of repetitions inside the (sub-)program, and each is reset when the repetition is entered again.
        stack.pointee.count = base
        return matched
    }

    /// Pops choices down to `base` until one can be resumed; returns where to go on, or nil when none is left.
    func backtrack(to base: Int) -> (Int, Int)? {
        while stack.pointee.count > base {
            stack.pointee.count -= 1
            let c = stack.pointee.items[stack.pointee.count]
            switch c.kind {
            case .restore:
                counts[Int(c.inst)] = c.pos
                starts[Int(c.inst)] = c.k
            case .alternative:
                if let branch = alternative(c.inst, from: c.k, c.pos) { return (Int(branch), c.pos) }
            case .lazySet:
                let ins = insts[Int(c.inst)]
                let limit = Swift.min(n - c.pos, Int(ins.c))
                if c.k < limit, inSet(ins.a, text[c.pos + c.k]) {
                    stack.pointee.push(.lazySet, c.inst, c.pos, c.k + 1)
                    return (Int(ins.next), c.pos + c.k + 1)
                }
            case .greedySet:
                return (Int(insts[Int(c.inst)].next), greedyAttempt(c.inst, c.pos, upTo: c.k))
            case .stopIterating:
                return (Int(insts[Int(c.inst)].next), c.pos)
            case .iterateAgain:
                return (again(Int(c.inst), c.pos), c.pos)
            }
        }
        return nil
    }

    /// The first branch from `first` (an index into `branches`) of the alternation at `pc` that may match at
    /// `pos`, with a choice pushed for the branches after it; nil when none may.
    @inline(__always)
    func alternative(_ pc: Int32, from first: Int, _ pos: Int) -> Int32? {
        let ins = insts[Int(pc)]
        let last = Int(ins.a) + Int(ins.b) - 1
        let c: UInt32 = pos < n ? text[pos] : 0x110000
        var k = first
        while k <= last {
            let br = branches[k]
            if br.first.nullable || (pos < n && br.first.admits(c)) {
                if k < last { stack.pointee.push(.alternative, pc, pos, k + 1) }
                return br.pc
            }
            k += 1
        }
        return nil
    }

    /// A greedy set repetition at `pc` from `pos` that may take up to `k` scalars: the longest count that may
    /// continue (when a scalar follows, only counts before it), with a choice pushed for the shorter ones;
    /// the minimum when none is longer. Returns the position after it.
    @inline(__always)
    func greedyAttempt(_ pc: Int32, _ pos: Int, upTo k: Int) -> Int {
        let ins = insts[Int(pc)]
        let lo = Int(ins.b)
        var k = k
        let next = insts[Int(ins.next)]
        if next.op == .char {
            while k > lo && !(pos + k < n && text[pos + k] == UInt32(bitPattern: next.a)) { k -= 1 }
        }
        if k > lo { stack.pointee.push(.greedySet, pc, pos, k - 1) }
        return pos + k
    }

    /// At a group repetition `g` with `counts[slot]` iterations done (the last one started at `starts[slot]`):
    /// another iteration and/or the continuation, in the order of the mode (the other one as a choice). Returns
    /// the instruction to go on with, or nil when neither may.
    @inline(__always)
    func iterate(_ g: Int, _ pos: Int) -> Int? {
        let ins = insts[g]
        let slot = Int(ins.d)
        let count = counts[slot]
        // An empty iteration ends the loop (as Oniguruma and Perl do), whatever the minimum.
        if count > 0 && starts[slot] == pos { return Int(ins.next) }
        let canStop = count >= Int(ins.b)
        let canGo = count < Int(ins.c)
        if ins.mode == RepetitionMode.lazy.rawValue {
            if canStop {
                if canGo { stack.pointee.push(.iterateAgain, Int32(g), pos, 0) }
                return Int(ins.next)
            }
            return canGo ? again(g, pos) : nil
        }
        if canGo {
            if canStop { stack.pointee.push(.stopIterating, Int32(g), pos, 0) }
            return again(g, pos)
        }
        return canStop ? Int(ins.next) : nil
    }

    /// Starts one more iteration of the group repetition `g` at `pos` (its counter put back on backtracking);
    /// returns the body's entry.
    @inline(__always)
    func again(_ g: Int, _ pos: Int) -> Int {
        let ins = insts[g]
        let slot = Int(ins.d)
        stack.pointee.push(.restore, Int32(slot), counts[slot], starts[slot])
        counts[slot] += 1
        starts[slot] = pos
        return Int(ins.a)
    }
}
