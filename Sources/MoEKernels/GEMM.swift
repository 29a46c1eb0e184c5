// B packing for the GEMM and the public GEMM entry points (`linear` for many tokens, `sgemmNT`, `sgemmNN`).
// The 8×8 transpose the packing uses (`transpose8`) is generated: GEMMKernels.generated.swift.

/// Where the GEMM's B[k×n] comes from.
enum GEMMBSource {
    /// B[kk][j] = base[kk*ld + j] (row-major k×n, f32).
    case nn(UnsafePointer<Float>, ld: Int)
    /// B[kk][j] = element (j, kk) of a row-major n×k matrix of `type` with `ldBytes` between rows (nn.Linear weights).
    case nt(UnsafeRawPointer, ldBytes: Int, type: ElementType)
}

@inline(__always)
func zipLo(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
    SIMD8<Float>(a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3])
}

@inline(__always)
func zipHi(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
    SIMD8<Float>(a[4], b[4], a[5], b[5], a[6], b[6], a[7], b[7])
}

/// Packs B[kb..<kb+kc][j0..<j0+ncb] into panels of kc×16 floats at dst (the last panel zero-padded).
@inline(__always)
func packNTTyped(_ type: ElementType, _ src: UnsafeRawPointer, _ ldBytes: Int, _ j0: Int, _ ncb: Int,
                 _ kb: Int, _ kc: Int, _ dst: UnsafeMutablePointer<Float>) {
    let es = type.byteSize
    var p = 0
    while p &* 16 < ncb {
        let jp = j0 &+ p &* 16
        let nr = min(16, ncb &- p &* 16)
        let d = dst + p &* kc &* 16
        let rowBase = src + jp &* ldBytes + kb &* es
        var kk = 0
        if nr == 16 {
            while kk &+ 8 <= kc {
                transpose8(type, rowBase + kk &* es, ldBytes, d + kk &* 16)
                transpose8(type, rowBase + 8 &* ldBytes + kk &* es, ldBytes, d + (kk &* 16 &+ 8))
                kk &+= 8
            }
        }
        if kk < kc {
            packNTEdge(type, rowBase, ldBytes, nr, kk, kc, d)
        }
        p &+= 1
    }
}

@inline(never)
func packNTEdge(_ type: ElementType, _ rowBase: UnsafeRawPointer, _ ldBytes: Int, _ nr: Int, _ k0: Int, _ kc: Int,
                _ d: UnsafeMutablePointer<Float>) {
    for kk in k0..<kc {
        for jj in 0..<16 {
            d[kk &* 16 &+ jj] = jj < nr ? loadScalar(rowBase + jj &* ldBytes, kk, type) : 0
        }
    }
}

@inline(never)
func packB(_ src: GEMMBSource, _ j0: Int, _ ncb: Int, _ kb: Int, _ kc: Int, _ dst: UnsafeMutablePointer<Float>) {
    switch src {
    case let .nt(base, ldBytes, type):
        switch type {
        case .f32: packNTTyped(.f32, base, ldBytes, j0, ncb, kb, kc, dst)
        case .bf16: packNTTyped(.bf16, base, ldBytes, j0, ncb, kb, kc, dst)
        case .f16: packNTTyped(.f16, base, ldBytes, j0, ncb, kb, kc, dst)
        case .quantized: preconditionFailure("packB: quantised rows go through quantizedLinear")
        }
    case let .nn(base, ld):
        var p = 0
        while p &* 16 < ncb {
            let jp = j0 &+ p &* 16
            let nr = min(16, ncb &- p &* 16)
            let d = dst + p &* kc &* 16
            if nr == 16 {
                for kk in 0..<kc {
                    let s = UnsafeRawPointer(base + ((kb &+ kk) &* ld &+ jp))
                    let o = UnsafeMutableRawPointer(d + kk &* 16)
                    o.storeBytes(of: s.loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
                    o.storeBytes(of: s.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self), toByteOffset: 32,
                                 as: SIMD8<Float>.self)
                }
            } else {
                for kk in 0..<kc {
                    let s = base + ((kb &+ kk) &* ld &+ jp)
                    for jj in 0..<16 { d[kk &* 16 &+ jj] = jj < nr ? s[jj] : 0 }
                }
            }
            p &+= 1
        }
    }
}

/// Packs rows i0..<i0+mc (mc ≤ gemmMC) of a transposed A (element (r, kk) at a[kk*lda + r]), steps kb..<kb+kc,
/// as 6-row strips, each k-major: row r of strip s at step kk is dst[(s*kc + kk)*8 + r]. The walk goes k-row by
/// k-row so every cache line of A is read once (A's k-rows may be far apart: one page each for the LM head).
@inline(__always)
func packATransposed(_ a: UnsafePointer<Float>, _ lda: Int, _ m: Int, _ i0: Int, _ mc: Int, _ kb: Int, _ kc: Int,
                     _ dst: UnsafeMutablePointer<Float>) {
    let strips = (mc &+ gemmMR &- 1) / gemmMR
    // Strips that can take eight in-bounds floats per step (the two past the strip are never read back).
    let wide = m &- i0 >= 8 ? min(strips, (m &- i0 &- 8) / gemmMR &+ 1) : 0
    var src = a + (kb &* lda &+ i0)
    for kk in 0..<kc {
        var s = 0
        while s < wide {
            UnsafeMutableRawPointer(dst + (s &* kc &+ kk) &* 8)
                .storeBytes(of: UnsafeRawPointer(src + s &* gemmMR).loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
            s &+= 1
        }
        while s < strips {
            let r0 = s &* gemmMR, d = dst + (s &* kc &+ kk) &* 8
            for r in 0..<min(gemmMR, mc &- r0) { d[r] = src[r0 &+ r] }
            s &+= 1
        }
        src += lda
    }
}

/// One thread's share: rows `ms` of C, columns `ns`, all of k. `aTransposed`: A is stored k×m (Aᵀ row-major)
/// and is packed gemmMC rows at a time before use.
func gemmChunk(_ ms: Range<Int>, _ ns: Range<Int>, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
               _ aTransposed: Bool, _ m: Int, _ b: GEMMBSource, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
               _ accumulate: Bool) {
    if ms.isEmpty || ns.isEmpty { return }
    let buf = ThreadScratch.current.floats(gemmKC &* gemmNC)
    let apack = aTransposed ? ThreadScratch.packedA.floats(gemmKC &* 8 &* (gemmMC / gemmMR)) : buf
    var jc = ns.lowerBound
    while jc < ns.upperBound {
        let ncb = min(gemmNC, ns.upperBound &- jc)
        let panels = (ncb &+ 15) / 16
        var kb = 0
        while kb < k {
            let kc = min(gemmKC, k &- kb)
            packB(b, jc, ncb, kb, kc, buf)
            let addC = accumulate || kb > 0
            var i = ms.lowerBound
            while i < ms.upperBound {
                let mr = min(gemmMR, ms.upperBound &- i)
                let ci = c + (i &* ldc &+ jc)
                if aTransposed {
                    // A block of gemmMC rows is packed when its first strip comes up.
                    let strip = (i &- ms.lowerBound) % gemmMC / gemmMR
                    if strip == 0 { packATransposed(a, lda, m, i, min(gemmMC, ms.upperBound &- i), kb, kc, apack) }
                    let ap = apack + strip &* kc &* 8
                    for p in 0..<panels {
                        let nr = min(16, ncb &- p &* 16)
                        packedMicroKernelDispatch(mr, kc, ap, buf + p &* kc &* 16, ci + p &* 16, ldc, nr, alpha, addC)
                    }
                } else {
                    let ai = a + (i &* lda &+ kb)
                    for p in 0..<panels {
                        let nr = min(16, ncb &- p &* 16)
                        microKernelDispatch(mr, kc, ai, lda, buf + p &* kc &* 16, ci + p &* 16, ldc, nr, alpha, addC)
                    }
                }
                i &+= gemmMR
            }
            kb &+= kc
        }
        jc &+= ncb
    }
}

/// C[m×n] = alpha·A·B (+C), split over the pool: by column panels first, then by rows when there are few panels.
/// `aTransposed`: A is given as Aᵀ, stored k×m with row stride lda.
func gemm(m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int, aTransposed: Bool = false,
          b: GEMMBSource, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, pool: WorkerPool?) {
    if m <= 0 || n <= 0 { return }
    if k <= 0 {
        if !accumulate { for i in 0..<m { (c + i &* ldc).update(repeating: 0, count: n) } }
        return
    }
    let threads = pool?.threads ?? 1
    let flops = 2.0 * Double(m) * Double(n) * Double(k)
    guard let pool, threads > 1, flops >= 2e6 else {
        gemmChunk(0..<m, 0..<n, k, alpha, a, lda, aTransposed, m, b, c, ldc, accumulate)
        return
    }
    // Each thread packs B for its columns and (transposed A) A for its rows: split the columns unless A is
    // packed too and has more rows than B has columns.
    let panels = (n + 15) / 16
    let nParts = aTransposed && m > n ? 1 : min(panels, threads)
    let mParts = min(max(1, threads / nParts), (m + gemmMR - 1) / gemmMR)
    pool.parallelFor(nParts * mParts) { idx in
        let ns = splitRange(n, parts: nParts, index: idx % nParts, align: 16)
        let ms = splitRange(m, parts: mParts, index: idx / nParts, align: gemmMR)
        gemmChunk(ms, ns, k, alpha, a, lda, aTransposed, m, b, c, ldc, accumulate)
    }
}

/// Token counts up to this use the streaming small-token kernels; larger ones the packed GEMM.
let linearSmallTokenLimit = 8
/// bf16 weights keep the streaming kernels up to this many tokens (batched decode of up to 16 sequences): they
/// read each weight row once for all tokens, where the GEMM would widen every weight into its f32 panels first.
let bf16SmallTokenLimit = 16

/// The Linear layer: out[t, o] = Σ_i x[t, i] · W[o, i]  (x · Wᵀ) for t in 0..<tokens, o in 0..<w.rows.
/// x is row-major [tokens, w.cols] with row stride `ldx` (elements); out is [tokens, w.rows] with stride `ldo`.
/// accumulate=true adds into out instead of overwriting. bf16/f16 weights are widened to f32 on the fly,
/// f32 accumulation.
public func linear(_ x: UnsafePointer<Float>, ldx: Int, tokens: Int, _ w: WeightMatrix,
                   into out: UnsafeMutablePointer<Float>, ldo: Int, accumulate: Bool = false, pool: WorkerPool) {
    precondition(tokens >= 0, "linear: negative token count")
    if tokens == 0 || w.rows == 0 { return }
    precondition(tokens == 1 || (ldx >= w.cols && ldo >= w.rows), "linear: leading dimension too small")
    if w.cols == 0 {
        if !accumulate { for t in 0..<tokens { (out + t &* ldo).update(repeating: 0, count: w.rows) } }
        return
    }
    if case let .quantized(q) = w.type {
        quantizedLinear(x, ldx, tokens, w, q, out, ldo, accumulate, pool)
    } else if tokens <= linearSmallTokenLimit || (w.type == .bf16 && tokens <= bf16SmallTokenLimit) {
        gemvSmall(x, ldx, tokens, w, out, ldo, accumulate, pool)
    } else {
        gemm(m: tokens, n: w.rows, k: w.cols, alpha: 1, a: x, lda: ldx,
             b: .nt(w.base, ldBytes: w.rowBytes, type: w.type), c: out, ldc: ldo, accumulate: accumulate, pool: pool)
    }
}

/// out1 = x·w1ᵀ and out2 = x·w2ᵀ for the same x (a SwiGLU's gate and up): as two `linear` calls, except that
/// quantised matrices of one type on 8-bit activations round x once and share one parallel section.
public func linearPair(_ x: UnsafePointer<Float>, ldx: Int, tokens: Int, _ w1: WeightMatrix,
                       into out1: UnsafeMutablePointer<Float>, ldo1: Int, _ w2: WeightMatrix,
                       into out2: UnsafeMutablePointer<Float>, ldo2: Int, pool: WorkerPool) {
    if tokens > 0 && w1.cols > 0 && (tokens == 1 || (ldx >= w1.cols && ldo1 >= w1.rows && ldo2 >= w2.rows))
        && quantizedLinearPair(x, ldx, tokens, w1, out1, ldo1, w2, out2, ldo2, pool) {
        return
    }
    linear(x, ldx: ldx, tokens: tokens, w1, into: out1, ldo: ldo1, pool: pool)
    linear(x, ldx: ldx, tokens: tokens, w2, into: out2, ldo: ldo2, pool: pool)
}

/// C[m×n] = alpha·A[m×k]·Bᵀ (+ C if accumulate), B stored [n×k]. Leading dimensions in elements.
public func sgemmNT(m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                    b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
                    accumulate: Bool, pool: WorkerPool?) {
    gemm(m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: .nt(UnsafeRawPointer(b), ldBytes: ldb &* 4, type: .f32),
         c: c, ldc: ldc, accumulate: accumulate, pool: pool)
}

/// C[m×n] = alpha·A[m×k]·B[k×n] (+ C if accumulate), B stored [k×n]. Leading dimensions in elements.
public func sgemmNN(m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                    b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
                    accumulate: Bool, pool: WorkerPool?) {
    gemm(m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: .nn(b, ld: ldb),
         c: c, ldc: ldc, accumulate: accumulate, pool: pool)
}

/// C[m×n] = alpha·Aᵀ·B (+ C if accumulate), A stored [k×m], B stored [k×n] (weight gradients: dW = dYᵀ·X).
/// Aᵀ is never materialised: blocks of gemmMC rows of Aᵀ are packed from A's columns as the GEMM reaches them.
public func sgemmTN(m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                    b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
                    accumulate: Bool, pool: WorkerPool?) {
    gemm(m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, aTransposed: true, b: .nn(b, ld: ldb), c: c, ldc: ldc,
         accumulate: accumulate, pool: pool)
}
