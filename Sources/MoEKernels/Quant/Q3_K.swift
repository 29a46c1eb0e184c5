/// Q3_K: 256 values in 16 groups of 16. Layout: 32 bytes of high bits (`hmask`), 64 bytes of 2-bit low codes (as
/// Q2_K), 12 bytes of 6-bit signed group scales, an f16 super-scale `d`; value = d·(scale − 32) · (q − 4·!high).
enum Q3_K: QuantBlockFormat {
    static let name = "Q3_K"
    static let elements = 256
    static let bytes = 110

    /// The 16 group scales (6 bits each: low nibbles in bytes 0…7, high pairs in bytes 8…11), minus 32.
    @inline(__always)
    static func scales(_ block: UnsafeRawPointer) -> SIMD16<Int8> {
        let s = block + 96
        var out = SIMD16<Int8>()
        for i in 0..<16 {
            let low = (byte(s, i % 8) >> (i < 8 ? 0 : 4)) & 0x0F
            let high = (byte(s, 8 &+ i % 4) >> UInt8(2 &* (i / 4))) & 0x03
            out[i] = Int8(bitPattern: low | (high << 4)) &- 32
        }
        return out
    }

    @inline(__always)
    static func dequantize(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = half(block, 108)
        let sc = scales(block)
        var out = y
        var m: UInt8 = 1
        var group = 0
        for half128 in 0..<2 {
            let q = block + (32 &+ 32 &* half128)
            for s in 0..<4 {
                let shift = UInt8(2 &* s)
                for g in 0..<2 {
                    let dl = d * Float(sc[group])
                    for l in 0..<16 {
                        let i = g &* 16 &+ l
                        let low = Int8((byte(q, i) >> shift) & 3)
                        let v = low &- (byte(block, i) & m != 0 ? 0 : 4)
                        out[l] = dl * Float(v)
                    }
                    out += 16
                    group &+= 1
                }
                m <<= 1
            }
        }
    }

    /// ggml's `quantize_row_q3_K_ref`: per group of 16, `make_q3_quants`; the signed scales to 6 bits under an f16
    /// super-scale (−32/max), then codes again against the rounded scales, split into low pairs and a high bit.
    static func quantize(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer) {
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: 256) { buffer in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16) { scales in
            let L = buffer.baseAddress!
            var maxScale: Float = 0, amax: Float = 0
            for j in 0..<16 {
                scales[j] = q3Quants(16, 4, x + 16 &* j, L + 16 &* j)
                if abs(scales[j]) > amax { amax = abs(scales[j]); maxScale = scales[j] }
            }
            var packed = [UInt8](repeating: 0, count: 12)
            if maxScale != 0 {
                let iscale = -32 / maxScale
                for j in 0..<16 {
                    let l = UInt8(Swift.max(-32, Swift.min(31, Int(Int8(truncatingIfNeeded: nearestInt(iscale * scales[j]))))) + 32)
                    if j < 8 { packed[j] = l & 0x0F } else { packed[j &- 8] |= (l & 0x0F) << 4 }
                    packed[j % 4 &+ 8] |= (l >> 4) << UInt8(2 &* (j / 4))
                }
                storeHalf(block, 108, 1 / iscale)
            } else {
                storeHalf(block, 108, 0)
            }
            for j in 0..<12 { block.storeBytes(of: packed[j], toByteOffset: 96 &+ j, as: UInt8.self) }
            let d = half(block, 108)
            for j in 0..<16 {
                let low = j < 8 ? packed[j] & 0x0F : packed[j &- 8] >> 4
                let sc = Int(low | (((packed[8 &+ j % 4] >> UInt8(2 &* (j / 4))) & 3) << 4)) &- 32
                let dl = d * Float(sc)
                if dl == 0 { continue }
                for i in 0..<16 {
                    L[16 &* j &+ i] = Int8(Swift.max(-4, Swift.min(3, nearestInt(x[16 &* j &+ i] / dl))) &+ 4)
                }
            }
            for m in 0..<32 { block.storeBytes(of: UInt8(0), toByteOffset: m, as: UInt8.self) }
            for j in 0..<256 where L[j] > 3 {
                let m = j % 32
                let bit = UInt8(1) << UInt8(j / 32)
                block.storeBytes(of: byte(block, m) | bit, toByteOffset: m, as: UInt8.self)
                L[j] &-= 4
            }
            for part in 0..<2 {
                for l in 0..<32 {
                    let j = 128 &* part &+ l
                    let q = UInt8(L[j]) | (UInt8(L[j &+ 32]) << 2) | (UInt8(L[j &+ 64]) << 4) | (UInt8(L[j &+ 96]) << 6)
                    block.storeBytes(of: q, toByteOffset: 32 &+ 32 &* part &+ l, as: UInt8.self)
                }
            }
        }
        }
    }
}
