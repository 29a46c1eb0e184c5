/// Q6_K: 256 values in 16 groups of 16. Layout: 128 bytes of low nibbles, 64 bytes of high bit pairs, 16 signed
/// byte scales, an f16 super-scale `d`; value = d·scale · (q − 32). Each 128 values use 64 low and 32 high bytes.
enum Q6_K: QuantBlockFormat {
    static let name = "Q6_K"
    static let elements = 256
    static let bytes = 210

    @inline(__always)
    static func dequantize(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = half(block, 208)
        for n in 0..<2 {
            let ql = block + 64 &* n, qh = block + (128 &+ 32 &* n)
            let sc = block + (192 &+ 8 &* n)
            let out = y + 128 &* n
            for l in 0..<32 {
                let g = l / 16
                let h = byte(qh, l)
                let q1 = Int8(bitPattern: (byte(ql, l) & 0x0F) | ((h & 3) << 4)) &- 32
                let q2 = Int8(bitPattern: (byte(ql, l &+ 32) & 0x0F) | (((h >> 2) & 3) << 4)) &- 32
                let q3 = Int8(bitPattern: (byte(ql, l) >> 4) | (((h >> 4) & 3) << 4)) &- 32
                let q4 = Int8(bitPattern: (byte(ql, l &+ 32) >> 4) | (((h >> 6) & 3) << 4)) &- 32
                out[l] = d * Float(sc.load(fromByteOffset: g, as: Int8.self)) * Float(q1)
                out[l &+ 32] = d * Float(sc.load(fromByteOffset: g &+ 2, as: Int8.self)) * Float(q2)
                out[l &+ 64] = d * Float(sc.load(fromByteOffset: g &+ 4, as: Int8.self)) * Float(q3)
                out[l &+ 96] = d * Float(sc.load(fromByteOffset: g &+ 6, as: Int8.self)) * Float(q4)
            }
        }
    }

    /// ggml's `quantize_row_q6_K_ref`: per group of 16, `make_qx_quants` (x²-weighted); the signed scales to 8 bits
    /// under an f16 super-scale (−128/max), then codes again against the rounded scales.
    static func quantize(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer) {
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: 256) { buffer in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16) { scales in
            let L = buffer.baseAddress!
            var maxScale: Float = 0, maxAbsScale: Float = 0
            for g in 0..<16 {
                scales[g] = symmetricQuants(16, 32, x + 16 &* g, L + 16 &* g)
                if abs(scales[g]) > maxAbsScale { maxAbsScale = abs(scales[g]); maxScale = scales[g] }
            }
            if maxAbsScale < groupMaxEpsilon {
                block.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
                return
            }
            let iscale = -128 / maxScale
            storeHalf(block, 208, 1 / iscale)
            for g in 0..<16 {
                block.storeBytes(of: Int8(truncatingIfNeeded: Swift.min(127, nearestInt(iscale * scales[g]))),
                                 toByteOffset: 192 &+ g, as: Int8.self)
            }
            let d = half(block, 208)
            for g in 0..<16 {
                let dl = d * Float(block.load(fromByteOffset: 192 &+ g, as: Int8.self))
                if dl == 0 { continue }
                for i in 0..<16 {
                    L[16 &* g &+ i] = Int8(Swift.max(-32, Swift.min(31, nearestInt(x[16 &* g &+ i] / dl))) &+ 32)
                }
            }
            for part in 0..<2 {
                let ql = 64 &* part, qh = 128 &+ 32 &* part, base = 128 &* part
                for l in 0..<32 {
                    let q1 = UInt8(L[base &+ l]), q2 = UInt8(L[base &+ l &+ 32])
                    let q3 = UInt8(L[base &+ l &+ 64]), q4 = UInt8(L[base &+ l &+ 96])
                    block.storeBytes(of: (q1 & 0x0F) | ((q3 & 0x0F) << 4), toByteOffset: ql &+ l, as: UInt8.self)
                    block.storeBytes(of: (q2 & 0x0F) | ((q4 & 0x0F) << 4), toByteOffset: ql &+ l &+ 32, as: UInt8.self)
                    block.storeBytes(of: (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6),
                                     toByteOffset: qh &+ l, as: UInt8.self)
                }
            }
        }
        }
    }

    /// Σ value·x over the block: 6-bit codes assembled from their low nibbles and high pairs in Int32 lanes (the
    /// high pair moved into place with one shift and mask each), each 16-value group's sum scaled once by d·scale.
    @inline(__always)
    static func dot(_ block: UnsafeRawPointer, _ x: UnsafePointer<Float>) -> SIMD8<Float> {
        let d = half(block, 208)
        let m15 = SIMD8<Int32>(repeating: 15), m48 = SIMD8<Int32>(repeating: 48), bias = SIMD8<Int32>(repeating: 32)
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
        for n in 0..<2 {
            let ql = block + 64 &* n, qh = block + (128 &+ 32 &* n), sc = block + (192 &+ 8 &* n)
            let xn = x + 128 &* n
            for g in 0..<2 {
                var p1 = SIMD8<Float>(), p2 = SIMD8<Float>(), p3 = SIMD8<Float>(), p4 = SIMD8<Float>()
                for k in 0..<2 {
                    let l = 16 &* g &+ 8 &* k
                    let lo = bytes8(ql + l), lo2 = bytes8(ql + (l &+ 32)), h = bytes8(qh + l)
                    p1.addProduct(float8(((lo & m15) | ((h &<< 4) & m48)) &- bias), load8U(xn + l))
                    p2.addProduct(float8(((lo2 & m15) | ((h &<< 2) & m48)) &- bias), load8U(xn + (l &+ 32)))
                    p3.addProduct(float8(((lo &>> 4) | (h & m48)) &- bias), load8U(xn + (l &+ 64)))
                    p4.addProduct(float8(((lo2 &>> 4) | ((h &>> 2) & m48)) &- bias), load8U(xn + (l &+ 96)))
                }
                @inline(__always) func scale(_ i: Int) -> SIMD8<Float> {
                    SIMD8(repeating: d * Float(sc.load(fromByteOffset: i, as: Int8.self)))
                }
                acc0.addProduct(p1, scale(g))
                acc1.addProduct(p2, scale(g &+ 2))
                acc0.addProduct(p3, scale(g &+ 4))
                acc1.addProduct(p4, scale(g &+ 6))
            }
        }
        return acc0 + acc1
    }
}
