// Packed, register-blocked f32 GEMM: C[m×n] = alpha·A[m×k]·B[k×n] (+C). A is read in place (row-major, lda), B is
// packed per thread into k-major panels of 16 columns (widened from bf16/f16 while packing). The 6×16 micro-kernel
// keeps 12 ymm accumulators (AVX2: 16 registers), loads two B vectors and broadcasts 6 A scalars per k step.
// Each row count 1…6 is its own function (no reliance on inlining for constant folding).

let gemmMR = 6
let gemmNR = 16
let gemmKC = 256
let gemmNC = 512

@inline(__always)
func ldA8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).load(as: SIMD8<Float>.self)
}

@inline(__always)
func storeTileRow(_ cr: UnsafeMutablePointer<Float>, _ v0: SIMD8<Float>, _ v1: SIMD8<Float>, _ nr: Int,
                  _ alpha: Float, _ addC: Bool) {
    let s0 = v0 * alpha, s1 = v1 * alpha
    if nr == 16 {
        let raw = UnsafeMutableRawPointer(cr)
        if addC {
            raw.storeBytes(of: raw.loadUnaligned(as: SIMD8<Float>.self) + s0, as: SIMD8<Float>.self)
            raw.storeBytes(of: raw.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self) + s1, toByteOffset: 32, as: SIMD8<Float>.self)
        } else {
            raw.storeBytes(of: s0, as: SIMD8<Float>.self)
            raw.storeBytes(of: s1, toByteOffset: 32, as: SIMD8<Float>.self)
        }
    } else {
        storeTileRowPartial(cr, s0, s1, nr, addC)
    }
}

@inline(never)
func storeTileRowPartial(_ cr: UnsafeMutablePointer<Float>, _ s0: SIMD8<Float>, _ s1: SIMD8<Float>, _ nr: Int, _ addC: Bool) {
    for j in 0..<nr {
        let v = j < 8 ? s0[j] : s1[j &- 8]
        cr[j] = addC ? cr[j] + v : v
    }
}

/// 1 row(s) of A times one packed B panel of kc×16.
@inline(never)
func microKernel1(_ kc: Int, _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>,
                  _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ nr: Int, _ alpha: Float, _ addC: Bool) {
    var c00 = SIMD8<Float>(), c01 = SIMD8<Float>()
    let a0 = a + 0 &* lda
    var bp = b
    for k in 0..<kc {
        let b0 = ldA8(bp), b1 = ldA8(bp + 8)
        let s0 = SIMD8<Float>(repeating: a0[k])
        c00 = c00.addingProduct(b0, s0); c01 = c01.addingProduct(b1, s0)
        bp += 16
    }
    storeTileRow(c + 0 &* ldc, c00, c01, nr, alpha, addC)
}

/// 2 row(s) of A times one packed B panel of kc×16.
@inline(never)
func microKernel2(_ kc: Int, _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>,
                  _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ nr: Int, _ alpha: Float, _ addC: Bool) {
    var c00 = SIMD8<Float>(), c01 = SIMD8<Float>()
    var c10 = SIMD8<Float>(), c11 = SIMD8<Float>()
    let a0 = a + 0 &* lda
    let a1 = a + 1 &* lda
    var bp = b
    for k in 0..<kc {
        let b0 = ldA8(bp), b1 = ldA8(bp + 8)
        let s0 = SIMD8<Float>(repeating: a0[k])
        c00 = c00.addingProduct(b0, s0); c01 = c01.addingProduct(b1, s0)
        let s1 = SIMD8<Float>(repeating: a1[k])
        c10 = c10.addingProduct(b0, s1); c11 = c11.addingProduct(b1, s1)
        bp += 16
    }
    storeTileRow(c + 0 &* ldc, c00, c01, nr, alpha, addC)
    storeTileRow(c + 1 &* ldc, c10, c11, nr, alpha, addC)
}

/// 3 row(s) of A times one packed B panel of kc×16.
@inline(never)
func microKernel3(_ kc: Int, _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>,
                  _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ nr: Int, _ alpha: Float, _ addC: Bool) {
    var c00 = SIMD8<Float>(), c01 = SIMD8<Float>()
    var c10 = SIMD8<Float>(), c11 = SIMD8<Float>()
    var c20 = SIMD8<Float>(), c21 = SIMD8<Float>()
    let a0 = a + 0 &* lda
    let a1 = a + 1 &* lda
    let a2 = a + 2 &* lda
    var bp = b
    for k in 0..<kc {
        let b0 = ldA8(bp), b1 = ldA8(bp + 8)
        let s0 = SIMD8<Float>(repeating: a0[k])
        c00 = c00.addingProduct(b0, s0); c01 = c01.addingProduct(b1, s0)
        let s1 = SIMD8<Float>(repeating: a1[k])
        c10 = c10.addingProduct(b0, s1); c11 = c11.addingProduct(b1, s1)
        let s2 = SIMD8<Float>(repeating: a2[k])
        c20 = c20.addingProduct(b0, s2); c21 = c21.addingProduct(b1, s2)
        bp += 16
    }
    storeTileRow(c + 0 &* ldc, c00, c01, nr, alpha, addC)
    storeTileRow(c + 1 &* ldc, c10, c11, nr, alpha, addC)
    storeTileRow(c + 2 &* ldc, c20, c21, nr, alpha, addC)
}

/// 4 row(s) of A times one packed B panel of kc×16.
@inline(never)
func microKernel4(_ kc: Int, _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>,
                  _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ nr: Int, _ alpha: Float, _ addC: Bool) {
    var c00 = SIMD8<Float>(), c01 = SIMD8<Float>()
    var c10 = SIMD8<Float>(), c11 = SIMD8<Float>()
    var c20 = SIMD8<Float>(), c21 = SIMD8<Float>()
    var c30 = SIMD8<Float>(), c31 = SIMD8<Float>()
    let a0 = a + 0 &* lda
    let a1 = a + 1 &* lda
    let a2 = a + 2 &* lda
    let a3 = a + 3 &* lda
    var bp = b
    for k in 0..<kc {
        let b0 = ldA8(bp), b1 = ldA8(bp + 8)
        let s0 = SIMD8<Float>(repeating: a0[k])
        c00 = c00.addingProduct(b0, s0); c01 = c01.addingProduct(b1, s0)
        let s1 = SIMD8<Float>(repeating: a1[k])
        c10 = c10.addingProduct(b0, s1); c11 = c11.addingProduct(b1, s1)
        let s2 = SIMD8<Float>(repeating: a2[k])
        c20 = c20.addingProduct(b0, s2); c21 = c21.addingProduct(b1, s2)
        let s3 = SIMD8<Float>(repeating: a3[k])
        c30 = c30.addingProduct(b0, s3); c31 = c31.addingProduct(b1, s3)
        bp += 16
    }
    storeTileRow(c + 0 &* ldc, c00, c01, nr, alpha, addC)
    storeTileRow(c + 1 &* ldc, c10, c11, nr, alpha, addC)
    storeTileRow(c + 2 &* ldc, c20, c21, nr, alpha, addC)
    storeTileRow(c + 3 &* ldc, c30, c31, nr, alpha, addC)
}

/// 5 row(s) of A times one packed B panel of kc×16.
@inline(never)
func microKernel5(_ kc: Int, _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>,
                  _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ nr: Int, _ alpha: Float, _ addC: Bool) {
    var c00 = SIMD8<Float>(), c01 = SIMD8<Float>()
    var c10 = SIMD8<Float>(), c11 = SIMD8<Float>()
    var c20 = SIMD8<Float>(), c21 = SIMD8<Float>()
    var c30 = SIMD8<Float>(), c31 = SIMD8<Float>()
    var c40 = SIMD8<Float>(), c41 = SIMD8<Float>()
    let a0 = a + 0 &* lda
    let a1 = a + 1 &* lda
    let a2 = a + 2 &* lda
    let a3 = a + 3 &* lda
    let a4 = a + 4 &* lda
    var bp = b
    for k in 0..<kc {
        let b0 = ldA8(bp), b1 = ldA8(bp + 8)
        let s0 = SIMD8<Float>(repeating: a0[k])
        c00 = c00.addingProduct(b0, s0); c01 = c01.addingProduct(b1, s0)
        let s1 = SIMD8<Float>(repeating: a1[k])
        c10 = c10.addingProduct(b0, s1); c11 = c11.addingProduct(b1, s1)
        let s2 = SIMD8<Float>(repeating: a2[k])
        c20 = c20.addingProduct(b0, s2); c21 = c21.addingProduct(b1, s2)
        let s3 = SIMD8<Float>(repeating: a3[k])
        c30 = c30.addingProduct(b0, s3); c31 = c31.addingProduct(b1, s3)
        let s4 = SIMD8<Float>(repeating: a4[k])
        c40 = c40.addingProduct(b0, s4); c41 = c41.addingProduct(b1, s4)
        bp += 16
    }
    storeTileRow(c + 0 &* ldc, c00, c01, nr, alpha, addC)
    storeTileRow(c + 1 &* ldc, c10, c11, nr, alpha, addC)
    storeTileRow(c + 2 &* ldc, c20, c21, nr, alpha, addC)
    storeTileRow(c + 3 &* ldc, c30, c31, nr, alpha, addC)
    storeTileRow(c + 4 &* ldc, c40, c41, nr, alpha, addC)
}

/// 6 row(s) of A times one packed B panel of kc×16.
@inline(never)
func microKernel6(_ kc: Int, _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>,
                  _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ nr: Int, _ alpha: Float, _ addC: Bool) {
    var c00 = SIMD8<Float>(), c01 = SIMD8<Float>()
    var c10 = SIMD8<Float>(), c11 = SIMD8<Float>()
    var c20 = SIMD8<Float>(), c21 = SIMD8<Float>()
    var c30 = SIMD8<Float>(), c31 = SIMD8<Float>()
    var c40 = SIMD8<Float>(), c41 = SIMD8<Float>()
    var c50 = SIMD8<Float>(), c51 = SIMD8<Float>()
    let a0 = a + 0 &* lda
    let a1 = a + 1 &* lda
    let a2 = a + 2 &* lda
    let a3 = a + 3 &* lda
    let a4 = a + 4 &* lda
    let a5 = a + 5 &* lda
    var bp = b
    for k in 0..<kc {
        let b0 = ldA8(bp), b1 = ldA8(bp + 8)
        let s0 = SIMD8<Float>(repeating: a0[k])
        c00 = c00.addingProduct(b0, s0); c01 = c01.addingProduct(b1, s0)
        let s1 = SIMD8<Float>(repeating: a1[k])
        c10 = c10.addingProduct(b0, s1); c11 = c11.addingProduct(b1, s1)
        let s2 = SIMD8<Float>(repeating: a2[k])
        c20 = c20.addingProduct(b0, s2); c21 = c21.addingProduct(b1, s2)
        let s3 = SIMD8<Float>(repeating: a3[k])
        c30 = c30.addingProduct(b0, s3); c31 = c31.addingProduct(b1, s3)
        let s4 = SIMD8<Float>(repeating: a4[k])
        c40 = c40.addingProduct(b0, s4); c41 = c41.addingProduct(b1, s4)
        let s5 = SIMD8<Float>(repeating: a5[k])
        c50 = c50.addingProduct(b0, s5); c51 = c51.addingProduct(b1, s5)
        bp += 16
    }
    storeTileRow(c + 0 &* ldc, c00, c01, nr, alpha, addC)
    storeTileRow(c + 1 &* ldc, c10, c11, nr, alpha, addC)
    storeTileRow(c + 2 &* ldc, c20, c21, nr, alpha, addC)
    storeTileRow(c + 3 &* ldc, c30, c31, nr, alpha, addC)
    storeTileRow(c + 4 &* ldc, c40, c41, nr, alpha, addC)
    storeTileRow(c + 5 &* ldc, c50, c51, nr, alpha, addC)
}

@inline(__always)
func microKernelDispatch(_ mr: Int, _ kc: Int, _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>,
                         _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ nr: Int, _ alpha: Float, _ addC: Bool) {
    switch mr {
    case 6: microKernel6(kc, a, lda, b, c, ldc, nr, alpha, addC)
    case 5: microKernel5(kc, a, lda, b, c, ldc, nr, alpha, addC)
    case 4: microKernel4(kc, a, lda, b, c, ldc, nr, alpha, addC)
    case 3: microKernel3(kc, a, lda, b, c, ldc, nr, alpha, addC)
    case 2: microKernel2(kc, a, lda, b, c, ldc, nr, alpha, addC)
    case 1: microKernel1(kc, a, lda, b, c, ldc, nr, alpha, addC)
    default: break
    }
}
