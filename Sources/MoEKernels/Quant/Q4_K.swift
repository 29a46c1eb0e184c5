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
}
