/// Measures the memory read bandwidth in GB/s (10⁹ bytes per second): the pool sums a buffer of `bytes`
/// (touched first), best of a few passes.
public func measureReadBandwidth(pool: WorkerPool, bytes: Int) -> Double {
    let count = max(bytes / 64, 1024) * 16
    let buf = UnsafeMutablePointer<Float>.allocate(capacity: count)
    defer { buf.deallocate() }
    let chunks = pool.threads * 4
    pool.parallelFor(chunks) { c in
        let r = splitRange(count, parts: chunks, index: c, align: 16)
        (buf + r.lowerBound).initialize(repeating: 1, count: r.count)
    }
    let sums = UnsafeMutablePointer<Float>.allocate(capacity: chunks)
    defer { sums.deallocate() }
    var best = 0.0
    let clock = ContinuousClock()
    for _ in 0..<5 {
        let start = clock.now
        pool.parallelFor(chunks) { c in
            let r = splitRange(count, parts: chunks, index: c, align: 16)
            sums[c] = sumFloats(buf + r.lowerBound, r.count)
        }
        let d = start.duration(to: clock.now)
        let s = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        best = max(best, Double(count * 4) / s / 1e9)
    }
    return best
}

@inline(never)
func sumFloats(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
    var i = 0
    while i &+ 32 <= n {
        a0 += ldx8(p + i); a1 += ldx8(p + (i &+ 8)); a2 += ldx8(p + (i &+ 16)); a3 += ldx8(p + (i &+ 24))
        i &+= 32
    }
    var s = hsum((a0 + a1) + (a2 + a3))
    while i < n { s += p[i]; i &+= 1 }
    return s
}
