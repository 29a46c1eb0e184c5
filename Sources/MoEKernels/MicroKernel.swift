// Packed, register-blocked f32 GEMM: C[m×n] = alpha·A[m×k]·B[k×n] (+C). A is read in place (row-major, lda), B is
// packed per thread into k-major panels of 16 columns (widened from bf16/f16 while packing). The 6×16 micro-kernel
// keeps 12 ymm accumulators (AVX2: 16 registers), loads two B vectors and broadcasts 6 A scalars per k step.
// Each row count 1…6 is its own function (no reliance on inlining for constant folding): microKernel1…6 in
// GEMMKernels.generated.swift, written by scripts/kernels/generate.py (whose MR must equal gemmMR).
// For Aᵀ·B the A rows are columns of the stored matrix: `packATransposed` copies each 6-row strip k-major
// (8 floats per k, one vector copy per k) and microKernelPacked1…6 broadcast from there.

let gemmMR = 6
let gemmNR = 16
let gemmKC = 256
let gemmNC = 512
/// Rows of a transposed A packed at once (a multiple of gemmMR).
let gemmMC = 96

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

/// The micro-kernel for the `mr` (1…gemmMR) rows of A left in the tile.
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

/// The packed-A micro-kernel for the `mr` rows left in the tile; A as `packATransposed` leaves it.
@inline(__always)
func packedMicroKernelDispatch(_ mr: Int, _ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                               _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ nr: Int, _ alpha: Float, _ addC: Bool) {
    switch mr {
    case 6: microKernelPacked6(kc, a, b, c, ldc, nr, alpha, addC)
    case 5: microKernelPacked5(kc, a, b, c, ldc, nr, alpha, addC)
    case 4: microKernelPacked4(kc, a, b, c, ldc, nr, alpha, addC)
    case 3: microKernelPacked3(kc, a, b, c, ldc, nr, alpha, addC)
    case 2: microKernelPacked2(kc, a, b, c, ldc, nr, alpha, addC)
    case 1: microKernelPacked1(kc, a, b, c, ldc, nr, alpha, addC)
    default: break
    }
}
