// The decode hot path: one token times a bf16 weight matrix (attention projections, experts, the LM head), and a
// few tokens at once (batched decode of several sequences, experts that several tokens chose).
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
            a0.addProduct(bf16Even(u0), ldx8(xe + k)); a1.addProduct(bf16Odd(u0, mask), ldx8(xo + k))
            a2.addProduct(bf16Even(u1), ldx8(xe + (k &+ 8))); a3.addProduct(bf16Odd(u1, mask), ldx8(xo + (k &+ 8)))
            a0.addProduct(bf16Even(u2), ldx8(xe + (k &+ 16))); a1.addProduct(bf16Odd(u2, mask), ldx8(xo + (k &+ 16)))
            a2.addProduct(bf16Even(u3), ldx8(xe + (k &+ 24))); a3.addProduct(bf16Odd(u3, mask), ldx8(xo + (k &+ 24)))
            k &+= 32
        }
        while k &+ 8 <= pairs {
            let u = (p + k &* 4).loadUnaligned(as: SIMD8<UInt32>.self)
            a0.addProduct(bf16Even(u), ldx8(xe + k)); a1.addProduct(bf16Odd(u, mask), ldx8(xo + k))
            k &+= 8
        }
        storeDot(hsum((a0 + a2) + (a1 + a3)), p, x, k &* 2, cols, out + r, accumulate)
    }
}

/// The even elements of eight bf16 pairs, as f32 (a bf16 is the high half of an f32).
@inline(__always) func bf16Even(_ u: SIMD8<UInt32>) -> SIMD8<Float> { unsafeBitCast(u &<< 16, to: SIMD8<Float>.self) }
/// The odd elements of eight bf16 pairs, as f32; `mask` is 0xFFFF0000 in every lane.
@inline(__always) func bf16Odd(_ u: SIMD8<UInt32>, _ mask: SIMD8<UInt32>) -> SIMD8<Float> {
    unsafeBitCast(u & mask, to: SIMD8<Float>.self)
}

/// The even/odd split of `tokens` rows of x (row stride `ldx`) in the calling thread's scratch: row t's evens at
/// t·2·(cols/2), its odds cols/2 further. An odd last column is left out (the kernels take it from x itself).
@inline(__always)
func splitEvenOdd(_ x: UnsafePointer<Float>, ldx: Int, tokens: Int, cols: Int) -> UnsafeMutablePointer<Float> {
    let half = cols / 2
    let s = ThreadScratch.current.floats(max(tokens &* 2 &* half, 1))
    for t in 0..<tokens {
        let xt = x + t &* ldx, st = s + t &* 2 &* half
        for k in 0..<half { st[k] = xt[2 &* k]; st[half &+ k] = xt[2 &* k &+ 1] }
    }
    return s
}

// Several tokens: each weight row is read from memory once for all of them (batched decode reads the LM head once
// per step, not once per sequence). A kernel takes one row against a group of up to four tokens: x split into even
// and odd elements, four tokens' worth (16 KB at hidden 1024) staying in L1, every widened weight vector shared by
// the four. More tokens go group after group over a block of rows small enough to stay in L2, so only the first
// group streams the block from memory; the others re-read it from cache.

typealias BF16TokensKernel = (UnsafeRawPointer, Int, Int, Int, UnsafePointer<Float>, Int, UnsafePointer<Float>, Int,
                              UnsafeMutablePointer<Float>, Int, Bool) -> Void

/// The generated kernel (GEMVKernels.generated.swift) for a group of `nt` tokens.
@inline(__always)
func bf16TokensKernel(_ nt: Int) -> BF16TokensKernel {
    switch nt {
    case 1: return dotRows_bf16_x1
    case 2: return dotRows_bf16_x2
    case 3: return dotRows_bf16_x3
    case 4: return dotRows_bf16_x4
    default: fatalError("bf16TokensKernel: unsupported token count")
    }
}

/// Bytes of weight rows that one pass of every token group goes over (L2 is 512 KB a core on the machines
/// measured; this leaves room for x and the other threads' data in a shared L2).
let bf16TokensBlockBytes = 64 << 10

/// out[t, r] (=|+=) W[r, :] · x[t, :] for r in `rows`, t in 0..<tokens; `xs` is x split by `splitEvenOdd` (row
/// stride `ldxs`).
func gemvBF16Tokens(_ rows: Range<Int>, _ w: WeightMatrix, _ x: UnsafePointer<Float>, _ ldx: Int,
                    _ xs: UnsafePointer<Float>, _ ldxs: Int, _ tokens: Int, _ out: UnsafeMutablePointer<Float>,
                    _ ldo: Int, _ accumulate: Bool) {
    let rb = w.rowBytes, cols = w.cols
    let blockRows = tokens <= 4 ? rows.count : max(1, bf16TokensBlockBytes / max(rb, 1))
    var block = rows.lowerBound
    while block < rows.upperBound {
        let n = min(blockRows, rows.upperBound &- block)
        var t = 0
        while t < tokens {
            bf16TokensKernel(min(4, tokens &- t))(w.base + block &* rb, rb, n, cols, xs + t &* ldxs, ldxs, x + t &* ldx, ldx,
                                                  out + (t &* ldo &+ block), ldo, accumulate)
            t &+= 4
        }
        block &+= n
    }
}

/// Stores one output of a bf16 row: `s` (the dot product over columns 0..<k0) plus the columns past the last full
/// vector, if any, added or written.
@inline(__always)
func storeDot(_ s: Float, _ w: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ k0: Int, _ cols: Int,
              _ o: UnsafeMutablePointer<Float>, _ accumulate: Bool) {
    let v = k0 < cols ? s + bf16TailDot(w, x, k0, cols) : s
    o.pointee = accumulate ? o.pointee + v : v
}

@inline(never)
func bf16TailDot(_ w: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ k0: Int, _ cols: Int) -> Float {
    let h = w.assumingMemoryBound(to: UInt16.self)
    var s: Float = 0
    for c in k0..<cols { s += Float(bitPattern: UInt32(h[c]) &<< 16) * x[c] }
    return s
}
