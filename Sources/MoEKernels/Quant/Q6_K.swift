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
}
