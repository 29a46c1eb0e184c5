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
}
