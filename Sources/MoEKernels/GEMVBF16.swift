// The decode hot path: one token times a bf16 weight matrix (attention projections, experts, the LM head).
//
// Two bf16 values are loaded as one UInt32 lane and widened with bit operations — the even element is
// `u << 16`, the odd one `u & 0xFFFF0000` — against x split once into its even and odd elements. That is
// two ALU operations per 16 weights instead of a shuffle-port widening per 8, which is what lets one row
// stream at close to the memory bandwidth. Rows are read one after another (one sequential stream per
// thread, which the hardware prefetchers follow best; interleaving several rows measured slower).

/// out[r] (=|+=) W[r, :] · x for r in `rows`; `xe`/`xo` are x's even and odd elements (cols/2 each).
@inline(never)
func gemvBF16Rows(_ rows: Range<Int>, _ w: WeightMatrix, _ x: UnsafePointer<Float>, _ xe: UnsafePointer<Float>,
                  _ xo: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ accumulate: Bool) {
    let cols = w.cols, rowBytes = w.rowBytes, pairs = cols / 2
    let mask = SIMD8<UInt32>(repeating: 0xFFFF_0000)
    for r in rows {
        let p = w.base + r &* rowBytes
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
        var k = 0   // pair index: elements 2k and 2k+1
        while k &+ 32 <= pairs {
            let u0 = (p + k &* 4).loadUnaligned(as: SIMD8<UInt32>.self)
            let u1 = (p + (k &+ 8) &* 4).loadUnaligned(as: SIMD8<UInt32>.self)
            let u2 = (p + (k &+ 16) &* 4).loadUnaligned(as: SIMD8<UInt32>.self)
            let u3 = (p + (k &+ 24) &* 4).loadUnaligned(as: SIMD8<UInt32>.self)
            a0.addProduct(even(u0), ldx8(xe + k)); a1.addProduct(odd(u0, mask), ldx8(xo + k))
            a2.addProduct(even(u1), ldx8(xe + (k &+ 8))); a3.addProduct(odd(u1, mask), ldx8(xo + (k &+ 8)))
            a0.addProduct(even(u2), ldx8(xe + (k &+ 16))); a1.addProduct(odd(u2, mask), ldx8(xo + (k &+ 16)))
            a2.addProduct(even(u3), ldx8(xe + (k &+ 24))); a3.addProduct(odd(u3, mask), ldx8(xo + (k &+ 24)))
            k &+= 32
        }
        while k &+ 8 <= pairs {
            let u = (p + k &* 4).loadUnaligned(as: SIMD8<UInt32>.self)
            a0.addProduct(even(u), ldx8(xe + k)); a1.addProduct(odd(u, mask), ldx8(xo + k))
            k &+= 8
        }
        var s = hsum((a0 + a2) + (a1 + a3))
        var c = k &* 2
        let h = p.assumingMemoryBound(to: UInt16.self)
        while c < cols { s += Float(bitPattern: UInt32(h[c]) &<< 16) * x[c]; c &+= 1 }
        out[r] = accumulate ? out[r] + s : s
    }
}

@inline(__always) private func even(_ u: SIMD8<UInt32>) -> SIMD8<Float> { unsafeBitCast(u &<< 16, to: SIMD8<Float>.self) }
@inline(__always) private func odd(_ u: SIMD8<UInt32>, _ mask: SIMD8<UInt32>) -> SIMD8<Float> {
    unsafeBitCast(u & mask, to: SIMD8<Float>.self)
}

/// x's even and odd elements, side by side in the calling thread's scratch: [xe (cols/2) | xo (cols/2)].
@inline(__always)
func splitEvenOdd(_ x: UnsafePointer<Float>, cols: Int) -> UnsafeMutablePointer<Float> {
    let half = cols / 2
    let s = ThreadScratch.current.floats(max(2 &* half, 1))
    for k in 0..<half { s[k] = x[2 &* k]; s[half &+ k] = x[2 &* k &+ 1] }
    return s
}
