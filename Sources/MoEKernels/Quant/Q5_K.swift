/// Q5_K: 256 values in 8 groups of 32. Layout: as Q4_K (f16 `d`, `dmin`, 12 bytes of scales and mins), then 32
/// bytes of fifth bits (bit g of byte l for value l of group g), then 128 bytes of low nibbles (as Q4_K);
/// value = d·scale · q − dmin·min.
enum Q5_K: QuantBlockFormat {
    static let name = "Q5_K"
    static let elements = 256
    static let bytes = 176

    @inline(__always)
    static func dequantize(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = half(block, 0), dmin = half(block, 2)
        let scales = block + 4, qh = block + 16
        var out = y
        for pair in 0..<4 {
            let ql = block + (48 &+ 32 &* pair)
            let (s1, m1) = Q4_K.scaleMin(2 &* pair, scales), (s2, m2) = Q4_K.scaleMin(2 &* pair &+ 1, scales)
            let d1 = d * Float(s1), dm1 = dmin * Float(m1)
            let d2 = d * Float(s2), dm2 = dmin * Float(m2)
            let u1 = UInt8(1) << UInt8(2 &* pair), u2 = UInt8(2) << UInt8(2 &* pair)
            for l in 0..<32 {
                let h: UInt8 = byte(qh, l) & u1 != 0 ? 16 : 0
                out[l] = d1 * Float((byte(ql, l) & 0x0F) + h) - dm1
            }
            for l in 0..<32 {
                let h: UInt8 = byte(qh, l) & u2 != 0 ? 16 : 0
                out[32 &+ l] = d2 * Float((byte(ql, l) >> 4) + h) - dm2
            }
            out += 64
        }
    }

    /// ggml's `quantize_row_q5_K_ref`: Q4_K's scheme with 5-bit codes (a narrower search), the fifth bits apart.
    static func quantize(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer) {
        Q4_K.quantizeScaleMin(x, into: block, nmax: 31, rmin: -0.5, steps: 15) { L in
            for l in 0..<32 {
                var high: UInt8 = 0
                for pair in 0..<4 {
                    let j = 64 &* pair &+ l
                    let l1 = L[j], l2 = L[j &+ 32]
                    if l1 > 15 { high |= 1 << UInt8(2 &* pair) }
                    if l2 > 15 { high |= 2 << UInt8(2 &* pair) }
                    block.storeBytes(of: (l1 & 0x0F) | ((l2 & 0x0F) << 4), toByteOffset: 48 &+ 32 &* pair &+ l, as: UInt8.self)
                }
                block.storeBytes(of: high, toByteOffset: 16 &+ l, as: UInt8.self)
            }
        }
    }
}
