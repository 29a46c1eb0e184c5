/// Keys and values of every layer for the positions seen so far, held in pages of a `KVPagePool` (vLLM's
/// PagedAttention idea): position p is row `p % pageSize` of page `pageTable[p / pageSize]`. A cache takes pages
/// as it grows and gives them back when truncated or freed; caches of one pool share the pages of a common prefix
/// and copy a shared page only when they write into it.
///
/// ```swift
/// let cache = model.makeCache()                       // its own pool: one page for the whole capacity
/// let pool = try model.makePagePool(pages: 256, pageSize: 64)
/// let a = KVCache(pool: pool, capacity: 4096), b = KVCache(pool: pool, capacity: 4096)
/// try model.forward(systemPrompt, cache: a)
/// try b.copyPrefix(from: a, count: a.count)           // shares a's pages, copies nothing
/// ```
public final class KVCache: @unchecked Sendable {
    public let pool: KVPagePool
    /// Positions this cache may hold at most.
    public let capacity: Int
    /// Number of positions already stored (the next token's position).
    public var count = 0
    /// Page of each run of `pool.pageSize` positions; the first `pagesHeld` entries are valid.
    let pageTable: UnsafeMutablePointer<Int32>
    public private(set) var pagesHeld = 0
    /// A cache with a pool of its own keeps its page when truncated (nobody else could use it).
    private var keepsPages = false
    /// The linear-attention layers' state (hybrid models such as Qwen3-Next), nil for attention-only models. It
    /// follows the positions: `truncate` to anything but `count` starts the sequence over (see there).
    public let recurrent: RecurrentState?

    public var layers: Int { pool.layers }
    public var rowWidth: Int { pool.rowWidth }
    public var valueWidth: Int { pool.valueWidth }

    /// A cache with a pool of its own: one page of `capacity` positions, allocated now (a single sequence's
    /// cache, laid out as one contiguous run per layer).
    public convenience init(layers: Int, capacity: Int, kvHeads: Int, headDim: Int) {
        self.init(layers: layers, capacity: capacity, keyWidth: kvHeads * headDim, valueWidth: kvHeads * headDim)
    }

    /// A cache with a pool of its own whose rows hold `keyWidth` and `valueWidth` floats (latent attention keeps
    /// one row per position: `valueWidth` 0).
    public convenience init(layers: Int, capacity: Int, keyWidth: Int, valueWidth: Int, recurrent: RecurrentShape? = nil) {
        let capacity = max(capacity, 1)
        // A single sequence's cache is planned by its caller (the model's context): no limit to check here.
        let pool = try! KVPagePool(layers: layers, rowWidth: keyWidth, valueWidth: valueWidth, pageSize: capacity, pages: 1,
                                   recurrent: recurrent)
        try! self.init(pool: pool, capacity: capacity)
        _ = reserve(upTo: capacity)
        keepsPages = true
    }

    /// A cache of at most `capacity` positions whose pages come from `pool` as it grows.
    public init(pool: KVPagePool, capacity: Int) throws {
        guard capacity > 0 else { throw ModelError.badInput("a KV cache needs a capacity of at least one position") }
        self.pool = pool
        self.capacity = capacity
        recurrent = pool.recurrent.map { RecurrentState($0) }
        let pages = (capacity + pool.pageSize - 1) / pool.pageSize
        pageTable = .allocate(capacity: pages)
    }

    deinit {
        releasePages(from: 0)
        pageTable.deallocate()
    }

    /// Pages needed to hold positions `0..<n` (n at most `capacity`).
    @inline(__always) func pagesFor(_ n: Int) -> Int { (n + pool.pageSize - 1) / pool.pageSize }

    /// Keys of `layer` for position `p` (a row of `rowWidth` floats).
    @inline(__always) func keys(layer: Int, position p: Int) -> UnsafeMutablePointer<Float> {
        pool.keys(page: Int(pageTable[p / pool.pageSize]), layer: layer) + (p % pool.pageSize) * pool.rowWidth
    }

    @inline(__always) func values(layer: Int, position p: Int) -> UnsafeMutablePointer<Float> {
        pool.values(page: Int(pageTable[p / pool.pageSize]), layer: layer) + (p % pool.pageSize) * pool.valueWidth
    }

    /// Calls `body(first, n, keys, values)` for each run of positions `0..<positions` that is contiguous in one
    /// page of `layer`: `keys`/`values` point at position `first`'s row, the run's rows follow `rowWidth` apart.
    @inline(__always)
    func forEachRun(layer: Int, positions: Int,
                    _ body: (Int, Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        let size = pool.pageSize
        var first = 0, page = 0
        while first < positions {
            let n = min(size, positions - first)
            let p = Int(pageTable[page])
            body(first, n, pool.keys(page: p, layer: layer), pool.values(page: p, layer: layer))
            first += n
            page += 1
        }
    }

    /// Makes positions `count..<n` writable: takes the pages they need and copies a page shared with another
    /// cache before it is written (copy on write). Returns false, having taken what it could, when the pool
    /// has too few free pages.
    public func reserve(upTo n: Int) -> Bool {
        let n = min(n, capacity)
        guard n > count else { return true }
        // The page holding position `count`, when already held, may be shared: the new rows must not land in
        // another cache's prefix.
        if count % pool.pageSize != 0 {
            let index = count / pool.pageSize
            let page = pageTable[index]
            if pool.isShared(page) {
                guard let copy = pool.take() else { return false }
                pool.copy(page: page, to: copy, rows: count % pool.pageSize)
                pool.release(page)
                pageTable[index] = copy
            }
        }
        while pagesHeld < pagesFor(n) {
            guard let page = pool.take() else { return false }
            pageTable[pagesHeld] = page
            pagesHeld += 1
        }
        return true
    }

    /// Free pages of the pool this cache would take to hold positions up to `n` (copies of shared pages included).
    public func pagesMissing(upTo n: Int) -> Int {
        let n = min(n, capacity)
        guard n > count else { return 0 }
        let copy = count % pool.pageSize != 0 && pool.isShared(pageTable[count / pool.pageSize]) ? 1 : 0
        return copy + max(0, pagesFor(n) - pagesHeld)
    }

    /// Forgets everything and gives its pages back (a cache with a pool of its own keeps them).
    public func reset() { truncate(to: 0); recurrent?.reset() }

    /// Keeps the first `n` positions (for reusing a shared prefix); pages past them go back to the pool. A
    /// cache with recurrent state cannot go back to a position inside what it holds: it keeps everything
    /// (`n` ≥ `count`) or starts over (`count` becomes 0); callers read `count` afterwards.
    public func truncate(to n: Int) {
        let n = min(count, max(n, 0))
        if let recurrent, n < count {
            recurrent.reset()
            count = 0
        } else {
            count = n
        }
        if !keepsPages { releasePages(from: pagesFor(count)) }
    }

    /// Goes back to position `n` of what it holds, taking `state` as the recurrent state there (a snapshot
    /// taken at `n`). `keepingPages`: the pages past `n` stay held (positions about to be written again).
    public func restore(to n: Int, state: RecurrentState, keepingPages: Bool = false) {
        precondition(n <= count, "restore(to:) moves back only")
        count = max(n, 0)
        if !keepsPages && !keepingPages { releasePages(from: pagesFor(count)) }
        recurrent?.copy(from: state)
    }

    private func releasePages(from first: Int) {
        while pagesHeld > first {
            pagesHeld -= 1
            pool.release(pageTable[pagesHeld])
        }
    }

    /// Holds the first `n` positions of `other` and exactly those (`count = n`): a sequence that starts with
    /// another's prefix skips recomputing it. In the same pool the pages are shared (nothing is copied until one
    /// of the two writes into a shared page); from another pool the rows are copied. The caches must have the
    /// same layers and row width (capacities may differ).
    ///
    /// Throws `badInput` for a cache of another shape or `n` beyond what `other` holds, `contextOverflow` when
    /// `n` exceeds this cache's capacity, `kvPagesExhausted` when a copy finds too few free pages.
    ///
    /// With recurrent state, `state` is that state at position `n` (a snapshot taken there) unless `n` is all
    /// `other` holds (or 0); without it such an `n` is `badInput`.
    public func copyPrefix(from other: KVCache, count n: Int, state: RecurrentState? = nil) throws {
        guard other.layers == layers, other.rowWidth == rowWidth, other.valueWidth == valueWidth,
              other.pool.recurrent == pool.recurrent else {
            throw ModelError.badInput("copyPrefix: caches of different shapes (\(other.layers) layers × \(other.rowWidth)+\(other.valueWidth) "
                                      + "into \(layers) × \(rowWidth)+\(valueWidth))")
        }
        guard n >= 0, n <= other.count else {
            throw ModelError.badInput("copyPrefix: \(n) positions asked for, the source holds \(other.count)")
        }
        guard n <= capacity else { throw ModelError.contextOverflow(tokens: n, context: capacity) }
        if recurrent != nil {
            // The state exists only for the source's last position.
            guard n == other.count || n == 0 || state != nil, other.recurrent != nil else {
                throw ModelError.badInput("copyPrefix: a sequence with linear-attention state can take another's positions only whole, or with the state at \(n) (of \(other.count))")
            }
            if other === self {
                if let state, n < count { restore(to: n, state: state) } else if n == 0 { reset() }
                return
            }
        }
        guard other !== self else { truncate(to: n); return }
        if other.pool === pool {
            reset()
            for i in 0..<other.pagesFor(n) {
                pool.retain(other.pageTable[i])
                pageTable[i] = other.pageTable[i]
            }
            pagesHeld = other.pagesFor(n)
        } else {
            truncate(to: 0)
            guard reserve(upTo: n) else {
                throw ModelError.kvPagesExhausted(needed: pagesMissing(upTo: n), free: pool.freePages)
            }
            for p in 0..<n {
                for layer in 0..<layers {
                    keys(layer: layer, position: p).update(from: other.keys(layer: layer, position: p), count: rowWidth)
                    values(layer: layer, position: p).update(from: other.values(layer: layer, position: p), count: valueWidth)
                }
            }
        }
        if let recurrent, let source = state ?? other.recurrent { n == 0 ? recurrent.reset() : recurrent.copy(from: source) }
        count = n
    }

    /// Bytes of the pages this cache holds (shared pages counted in full) and of its recurrent state.
    public var byteCount: Int { pagesHeld * pool.pageBytes + (recurrent?.byteCount ?? 0) }
}

/// A fixed store of KV pages, each `pageSize` positions of every layer's keys and values, handed out to the
/// caches of one model and reference-counted so that caches can share a prefix. Its size is planned once
/// (`ModelServer` sizes it from `--memory-limit`); nothing grows later. Not thread-safe: one thread hands pages
/// out (the engine's), while a pass only reads and writes rows of pages already held.
public final class KVPagePool: @unchecked Sendable {
    public let layers: Int
    /// Floats of one position's key row in one layer.
    public let rowWidth: Int
    /// Floats of one position's value row (equal to `rowWidth` for grouped-query attention; 0 for latent
    /// attention, whose one row per position serves as key and value).
    public let valueWidth: Int
    /// Positions per page.
    public let pageSize: Int
    /// The recurrent state each cache of this pool carries (hybrid models), beside its pages.
    public let recurrent: RecurrentShape?
    public let pageCount: Int
    /// Bytes of one page: keys and values of `pageSize` positions in every layer.
    public let pageBytes: Int
    let keyStore: UnsafeMutablePointer<Float>
    let valueStore: UnsafeMutablePointer<Float>
    /// Caches holding each page (0: free).
    private let references: UnsafeMutablePointer<Int32>
    private var freeList: [Int32]

    /// Throws `badInput` for sizes that are not positive or whose product overflows. `valueWidth` defaults to
    /// `rowWidth`.
    public init(layers: Int, rowWidth: Int, valueWidth: Int? = nil, pageSize: Int, pages: Int, recurrent: RecurrentShape? = nil) throws {
        let valueWidth = valueWidth ?? rowWidth
        guard layers > 0, rowWidth > 0, valueWidth >= 0, pageSize > 0, pages > 0, pages <= Int(Int32.max) else {
            throw ModelError.badInput("a KV page pool needs positive sizes (\(layers) layers, rows \(rowWidth)+\(valueWidth), \(pageSize) positions a page, \(pages) pages)")
        }
        guard let keyFloats = Self.floats(layers: layers, rowWidth: rowWidth, pageSize: pageSize, pages: pages),
              let valueFloats = Self.floats(layers: layers, rowWidth: valueWidth, pageSize: pageSize, pages: pages),
              let bytes = Self.bytes(layers: layers, rowWidth: rowWidth, valueWidth: valueWidth, pageSize: pageSize, pages: pages) else {
            throw ModelError.badInput("a KV page pool of \(pages) pages × \(pageSize) positions × \(layers) layers × \(rowWidth)+\(valueWidth) floats overflows")
        }
        self.layers = layers; self.rowWidth = rowWidth; self.valueWidth = valueWidth; self.pageSize = pageSize; pageCount = pages
        self.recurrent = recurrent
        pageBytes = bytes / pages
        keyStore = .allocate(capacity: keyFloats)
        valueStore = .allocate(capacity: max(valueFloats, 1))
        references = .allocate(capacity: pages)
        references.initialize(repeating: 0, count: pages)
        freeList = (0..<Int32(pages)).reversed()
    }

    deinit { keyStore.deallocate(); valueStore.deallocate(); references.deallocate() }

    /// Floats of one store (keys or values) for `pages` pages; nil when the product overflows.
    public static func floats(layers: Int, rowWidth: Int, pageSize: Int, pages: Int) -> Int? {
        var total = 1
        for factor in [layers, rowWidth, pageSize, pages] {
            let (product, overflow) = total.multipliedReportingOverflow(by: factor)
            guard !overflow else { return nil }
            total = product
        }
        return total
    }

    /// Bytes of keys and values of `pages` pages; nil when the product overflows (what a pool of that size takes).
    public static func bytes(layers: Int, rowWidth: Int, valueWidth: Int? = nil, pageSize: Int, pages: Int) -> Int? {
        let (width, overflow) = rowWidth.addingReportingOverflow(valueWidth ?? rowWidth)
        guard !overflow, let floats = floats(layers: layers, rowWidth: width, pageSize: pageSize, pages: pages) else { return nil }
        let (bytes, overflow2) = floats.multipliedReportingOverflow(by: MemoryLayout<Float>.size)
        return overflow2 ? nil : bytes
    }

    public var freePages: Int { freeList.count }

    @inline(__always) func keys(page: Int, layer: Int) -> UnsafeMutablePointer<Float> {
        keyStore + (page * layers + layer) * pageSize * rowWidth
    }

    @inline(__always) func values(page: Int, layer: Int) -> UnsafeMutablePointer<Float> {
        valueStore + (page * layers + layer) * pageSize * valueWidth
    }

    /// A free page, now held once; nil when none is free.
    func take() -> Int32? {
        guard let page = freeList.popLast() else { return nil }
        references[Int(page)] = 1
        return page
    }

    func retain(_ page: Int32) { references[Int(page)] += 1 }

    func release(_ page: Int32) {
        references[Int(page)] -= 1
        if references[Int(page)] == 0 { freeList.append(page) }
    }

    func isShared(_ page: Int32) -> Bool { references[Int(page)] > 1 }

    /// Copies the first `rows` positions of every layer of `page` into `target`.
    func copy(page: Int32, to target: Int32, rows: Int) {
        for layer in 0..<layers {
            keys(page: Int(target), layer: layer).update(from: keys(page: Int(page), layer: layer), count: rows * rowWidth)
            values(page: Int(target), layer: layer).update(from: values(page: Int(page), layer: layer), count: rows * valueWidth)
        }
    }
}
