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

/// One run of a program over a text of scalars. Everything is reached through unsafe pointers, so the inner
/// loops neither allocate nor retain.
struct RegexVM {
    let insts: UnsafePointer<RegexInst>
    let branches: UnsafePointer<RegexBranch>
    let bitmaps: UnsafePointer<UInt64>
    let program: RegexProgram
    let text: UnsafePointer<UInt32>
    let n: Int
    let counts: UnsafeMutablePointer<Int>
    let starts: UnsafeMutablePointer<Int>

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

    /// Runs from instruction `pc` at `pos`; returns where the (sub-)program succeeded, or -1.
    func run(_ pc0: Int32, _ pos0: Int) -> Int {
        var pc = Int(pc0)
        var pos = pos0
        while true {
            let ins = insts[pc]
            switch ins.op {
            case .char:
                guard pos < n, text[pos] == UInt32(bitPattern: ins.a) else { return -1 }
                pos += 1
                pc = Int(ins.next)
            case .set:
                guard pos < n, inSet(ins.a, text[pos]) else { return -1 }
                pos += 1
                pc = Int(ins.next)
            case .repSet:
                let lo = Int(ins.b)
                let limit = Swift.min(n - pos, Int(ins.c))
                if ins.mode == RepetitionMode.lazy.rawValue {
                    var k = 0
                    while k < lo {
                        guard k < limit, inSet(ins.a, text[pos + k]) else { return -1 }
                        k += 1
                    }
                    while true {
                        let r = run(ins.next, pos + k)
                        if r >= 0 { return r }
                        guard k < limit, inSet(ins.a, text[pos + k]) else { return -1 }
                        k += 1
                    }
                }
                var k = 0
                while k < limit, inSet(ins.a, text[pos + k]) { k += 1 }
                guard k >= lo else { return -1 }
                if ins.mode == RepetitionMode.greedy.rawValue && k > lo {
                    let next = insts[Int(ins.next)]
                    if next.op == .succeed { return pos + k }
                    if next.op == .char {  // only positions followed by that scalar can continue
                        while k > lo {
                            if pos + k < n, text[pos + k] == UInt32(bitPattern: next.a) {
                                let r = run(ins.next, pos + k)
                                if r >= 0 { return r }
                            }
                            k -= 1
                        }
                    } else {
                        while k > lo {
                            let r = run(ins.next, pos + k)
                            if r >= 0 { return r }
                            k -= 1
                        }
                    }
                }
                pos += k
                pc = Int(ins.next)
            case .alt:
                let base = Int(ins.a)
                let last = base + Int(ins.b) - 1
                let c: UInt32 = pos < n ? text[pos] : 0x110000
                for k in base..<last {
                    let br = branches[k]
                    if !br.first.nullable && (pos == n || !br.first.admits(c)) { continue }
                    let r = run(br.pc, pos)
                    if r >= 0 { return r }
                }
                let br = branches[last]
                if !br.first.nullable && (pos == n || !br.first.admits(c)) { return -1 }
                pc = Int(br.pc)
            case .repGroup:
                let slot = Int(ins.d)
                let (oldCount, oldStart) = (counts[slot], starts[slot])
                counts[slot] = 0
                starts[slot] = -1
                let r = iterate(pc, pos)
                counts[slot] = oldCount
                starts[slot] = oldStart
                return r
            case .repEnd:
                return iterate(Int(ins.a), pos)
            case .lookahead:
                let r = run(ins.a, pos)
                if (r >= 0) == (ins.mode == 1) { return -1 }
                pc = Int(ins.next)
            case .atomic:
                let r = run(ins.a, pos)
                if r < 0 { return -1 }
                pos = r
                pc = Int(ins.next)
            case .assertion:
                guard check(RegexAssertion(rawValue: ins.a)!, pos) else { return -1 }
                pc = Int(ins.next)
            case .succeed:
                return pos
            }
        }
    }

    /// At a group repetition `g` with `counts[slot]` iterations done (the last one started at `starts[slot]`):
    /// tries another iteration and/or the continuation, in the order of the mode.
    func iterate(_ g: Int, _ pos: Int) -> Int {
        let ins = insts[g]
        let slot = Int(ins.d)
        let count = counts[slot]
        // An empty iteration ends the loop (as Oniguruma and Perl do), whatever the minimum.
        if count > 0 && starts[slot] == pos { return run(ins.next, pos) }
        let canStop = count >= Int(ins.b)
        let canGo = count < Int(ins.c)
        func again() -> Int {
            let (oldCount, oldStart) = (counts[slot], starts[slot])
            counts[slot] = count + 1
            starts[slot] = pos
            let r = run(ins.a, pos)
            counts[slot] = oldCount
            starts[slot] = oldStart
            return r
        }
        if ins.mode == RepetitionMode.lazy.rawValue {
            if canStop { let r = run(ins.next, pos); if r >= 0 { return r } }
            return canGo ? again() : -1
        }
        if canGo { let r = again(); if r >= 0 { return r } }
        return canStop ? run(ins.next, pos) : -1
    }
}
