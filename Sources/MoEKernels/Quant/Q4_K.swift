/// Q4_K: 256 values in 8 groups of 32. Layout: f16 super-scales `d`, `dmin`; 12 bytes of 6-bit group scales and
/// mins; 128 bytes of 4-bit codes (64 values per 32 bytes: low nibbles first, then high); value = d·scale · q −
/// dmin·min.
enum Q4_K: QuantBlockFormat {
    static let name = "Q4_K"
    static let elements = 256
    static let bytes = 144

    /// Group j's 6-bit scale and min from the 12 packed bytes at `s` (ggml's `get_scale_min_k4`; Q5_K's too).
    @inline(__always)
    static func scaleMin(_ j: Int, _ s: UnsafeRawPointer) -> (scale: UInt8, min: UInt8) {
        if j < 4 { return (byte(s, j) & 63, byte(s, j &+ 4) & 63) }
        return ((byte(s, j &+ 4) & 0x0F) | ((byte(s, j &- 4) >> 6) << 4),
                (byte(s, j &+ 4) >> 4) | ((byte(s, j) >> 6) << 4))
    }

    @inline(__always)
    static func dequantize(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = half(block, 0), dmin = half(block, 2)
        let scales = block + 4
        var out = y
        for pair in 0..<4 {
            let q = block + (16 &+ 32 &* pair)
            let (s1, m1) = scaleMin(2 &* pair, scales), (s2, m2) = scaleMin(2 &* pair &+ 1, scales)
            let d1 = d * Float(s1), dm1 = dmin * Float(m1)
            let d2 = d * Float(s2), dm2 = dmin * Float(m2)
            for l in 0..<32 { out[l] = d1 * Float(byte(q, l) & 0x0F) - dm1 }
            for l in 0..<32 { out[32 &+ l] = d2 * Float(byte(q, l) >> 4) - dm2 }
            out += 64
        }
    }

    /// ggml's `quantize_row_q4_K_ref`: per group of 32, `make_qkx2_quants` weighted by rms + |x|; scales and mins
    /// to 6 bits under f16 super-scales, then codes again against the rounded scales.
    static func quantize(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer) {
        quantizeScaleMin(x, into: block, nmax: 15, rmin: -1, steps: 20)
    }

    /// Q4_K's and Q5_K's shared quantiser (they differ in the code range, the search and how codes are packed):
    /// fills bytes 0..<16 (d, dmin, packed scales) and returns the codes in `codes` (256 values in [0, nmax]).
    static func quantizeScaleMin(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer, nmax: Int,
                                 rmin: Float, steps: Int, codes: ((UnsafePointer<UInt8>) -> Void)? = nil) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256 + 32) { buffer in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 32 + 16) { floats in
            let L = buffer.baseAddress!, trial = L + 256
            let weights = floats.baseAddress!, scales = weights + 32, mins = weights + 40
            var maxScale: Float = 0, maxMin: Float = 0
            for j in 0..<8 {
                let xg = x + 32 &* j
                var sumX2: Float = 0
                for l in 0..<32 { sumX2 += xg[l] * xg[l] }
                let average = (sumX2 / 32).squareRoot()
                for l in 0..<32 { weights[l] = average + abs(xg[l]) }
                (scales[j], mins[j]) = asymmetricQuants(32, nmax, xg, weights, L + 32 &* j, trial,
                                                        rmin: rmin, rdelta: 0.1, steps: steps, absolute: false)
                if scales[j] > maxScale { maxScale = scales[j] }
                if mins[j] > maxMin { maxMin = mins[j] }
            }
            let invScale: Float = maxScale > 0 ? 63 / maxScale : 0
            let invMin: Float = maxMin > 0 ? 63 / maxMin : 0
            var packed = [UInt8](repeating: 0, count: 12)
            for j in 0..<8 {
                let ls = Swift.min(63, UInt8(truncatingIfNeeded: nearestInt(invScale * scales[j])))
                let lm = Swift.min(63, UInt8(truncatingIfNeeded: nearestInt(invMin * mins[j])))
                if j < 4 {
                    packed[j] = ls
                    packed[j &+ 4] = lm
                } else {
                    packed[j &+ 4] = (ls & 0x0F) | ((lm & 0x0F) << 4)
                    packed[j &- 4] |= (ls >> 4) << 6
                    packed[j] |= (lm >> 4) << 6
                }
            }
            storeHalf(block, 0, maxScale / 63)
            storeHalf(block, 2, maxMin / 63)
            for j in 0..<12 { block.storeBytes(of: packed[j], toByteOffset: 4 &+ j, as: UInt8.self) }
            let d = half(block, 0), dmin = half(block, 2)
            for j in 0..<8 {
                let (sc, m) = scaleMin(j, block + 4)
                let dl = d * Float(sc)
                if dl == 0 { continue }
                let ml = dmin * Float(m)
                for i in 0..<32 {
                    L[32 &* j &+ i] = UInt8(Swift.max(0, Swift.min(nmax, nearestInt((x[32 &* j &+ i] + ml) / dl))))
                }
            }
            if let codes { codes(L) } else {
                for pair in 0..<4 {
                    for l in 0..<32 {
                        let j = 64 &* pair &+ l
                        block.storeBytes(of: L[j] | (L[j &+ 32] << 4), toByteOffset: 16 &+ 32 &* pair &+ l, as: UInt8.self)
                    }
                }
            }
        }
        }
    }

    /// Σ value·x over the block: per group of 32, d·scale·Σq·x − dmin·min·Σx, the nibbles widened in registers.
    @inline(__always)
    static func dot(_ block: UnsafeRawPointer, _ x: UnsafePointer<Float>) -> SIMD8<Float> {
        let d = half(block, 0), dmin = half(block, 2)
        var acc = SIMD8<Float>(), mins = SIMD8<Float>()
        for pair in 0..<4 {
            let q = block + (16 &+ 32 &* pair)
            let (s1, m1) = scaleMin(2 &* pair, block + 4), (s2, m2) = scaleMin(2 &* pair &+ 1, block + 4)
            let xa = x + 64 &* pair, xb = xa + 32
            var lo = SIMD8<Float>(), hi = SIMD8<Float>(), sumLo = SIMD8<Float>(), sumHi = SIMD8<Float>()
            for k in 0..<4 {
                let v = bytes8(q + 8 &* k)
                let xl = load8U(xa + 8 &* k), xh = load8U(xb + 8 &* k)
                lo.addProduct(float8(v & 15), xl)
                hi.addProduct(float8(v &>> 4), xh)
                sumLo += xl
                sumHi += xh
            }
            acc.addProduct(lo, SIMD8(repeating: d * Float(s1)))
            acc.addProduct(hi, SIMD8(repeating: d * Float(s2)))
            mins.addProduct(sumLo, SIMD8(repeating: dmin * Float(m1)))
            mins.addProduct(sumHi, SIMD8(repeating: dmin * Float(m2)))
        }
        return acc - mins
    }
}
