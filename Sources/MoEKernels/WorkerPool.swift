#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

/// A persistent pool of worker threads (created once, reused for every parallel section; the calling
/// thread takes part). `threads` = 1 runs everything inline.
///
/// Dispatch is lock-free on the hot path: a section is published by storing a (generation, next index)
/// word; workers claim indices with compare-and-swap on that word, and a finished section's word is
/// closed before the next is published, so a late worker can never run an index of a finished section.
/// Idle workers spin briefly, then sleep on a condition variable. A call made while the pool is already
/// running a section (a nested call from inside a body, or a concurrent call from another thread) runs
/// inline on the calling thread.
public final class WorkerPool: @unchecked Sendable {
    public let threads: Int
    private let shared: PoolShared

    /// The number of active processors.
    public static var defaultThreadCount: Int {
        max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    public init(threads: Int) {
        let n = max(1, threads)
        self.threads = n
        self.shared = PoolShared()
        for w in 1..<max(n, 1) {
            let s = shared
            let t = Thread { s.workerLoop() }
            t.name = "moe-worker-\(w)"
            t.stackSize = 1 << 20
            t.start()
        }
    }

    deinit {
        shared.stop()
    }

    /// Calls body(i) for every i in 0..<count, spread over the threads; returns when all are done.
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if threads == 1 || count == 1 {
            for i in 0..<count { body(i) }
            return
        }
        guard shared.busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            // Nested (from inside a body) or concurrent use: run inline.
            for i in 0..<count { body(i) }
            return
        }
        withoutActuallyEscaping(body) { job in
            shared.run(count: count, job: job)
        }
        shared.busy.store(false, ordering: .releasing)
    }
}

final class PoolShared: @unchecked Sendable {
    /// (generation << 32) | next index to claim.
    let state = Atomic<Int>(0)
    /// Items completed in the current section.
    let done = Atomic<Int>(0)
    /// Items in the current section.
    let count = Atomic<Int>(0)
    let busy = Atomic<Bool>(false)
    let sleepers = Atomic<Int>(0)
    let stopping = Atomic<Bool>(false)
    /// Only written by the thread holding `busy`, read by workers after a successful claim.
    var job: ((Int) -> Void)? = nil
    private var generation = 0
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    static let indexMask = 0xFFFF_FFFF

    init() {
        mutex = .allocate(capacity: 1)
        cond = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    // Never freed: workers may still touch the mutex while stopping; the pool lives for the process anyway.

    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(cond)
        pthread_mutex_unlock(mutex)
    }

    /// Called by the thread that won `busy`.
    func run(count n: Int, job body: @escaping (Int) -> Void) {
        job = body
        // Releasing, paired with the workers' acquiring load: a worker that sees this count also sees the
        // previous section closed (below), so its compare-and-swap on that section's word fails.
        count.store(n, ordering: .releasing)
        done.store(0, ordering: .relaxed)
        generation = (generation &+ 1) & 0x7FFF_FFFF
        let gen = generation
        state.store(gen << 32, ordering: .sequentiallyConsistent)
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            pthread_mutex_lock(mutex)
            pthread_cond_broadcast(cond)
            pthread_mutex_unlock(mutex)
        }
        runItems(gen)
        var spins = 0
        while done.load(ordering: .acquiring) < n {
            spins &+= 1
            if spins > 4096 { sched_yield() }
        }
        // Close the section: a worker that read its last word (every index claimed) before the next section's
        // larger count became visible would otherwise claim one index past the end and run it with the next
        // section's body.
        state.store((gen << 32) | PoolShared.indexMask, ordering: .releasing)
        job = nil
    }

    /// Claims and runs items of section `gen` until none are left.
    @inline(__always)
    func runItems(_ gen: Int) {
        var completed = 0
        var v = state.load(ordering: .acquiring)
        while true {
            if (v >> 32) != gen { break }
            let idx = v & PoolShared.indexMask
            if idx >= count.load(ordering: .acquiring) { break }
            let (ok, orig) = state.compareExchange(expected: v, desired: v &+ 1, ordering: .acquiringAndReleasing)
            if !ok { v = orig; continue }
            job.unsafelyUnwrapped(idx)
            completed &+= 1
            v = state.load(ordering: .acquiring)
        }
        if completed > 0 { done.add(completed, ordering: .releasing) }
    }

    func workerLoop() {
        var seen = 0
        while true {
            var spins = 0
            var gen = state.load(ordering: .acquiring) >> 32
            while gen == seen {
                if stopping.load(ordering: .relaxed) { return }
                spins &+= 1
                if spins < 200_000 {
                    // busy spin
                } else if spins < 200_100 {
                    sched_yield()
                } else {
                    pthread_mutex_lock(mutex)
                    sleepers.add(1, ordering: .sequentiallyConsistent)
                    while (state.load(ordering: .sequentiallyConsistent) >> 32) == seen
                            && !stopping.load(ordering: .sequentiallyConsistent) {
                        pthread_cond_wait(cond, mutex)
                    }
                    sleepers.subtract(1, ordering: .sequentiallyConsistent)
                    pthread_mutex_unlock(mutex)
                    spins = 0
                }
                gen = state.load(ordering: .acquiring) >> 32
            }
            if stopping.load(ordering: .relaxed) { return }
            seen = gen
            runItems(gen)
        }
    }
}

/// Splits 0..<total into `parts` nearly equal ranges aligned to `align`; returns range i.
@inline(__always)
func splitRange(_ total: Int, parts: Int, index i: Int, align: Int) -> Range<Int> {
    let units = (total + align - 1) / align
    let lo = (units * i / parts) * align
    let hi = min(total, (units * (i + 1) / parts) * align)
    return min(lo, total)..<max(min(lo, total), hi)
}
