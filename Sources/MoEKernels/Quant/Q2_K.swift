/// Q2_K: 256 values in 16 groups of 16. Layout: 16 bytes of 4-bit scale / 4-bit min per group, 64 bytes of 2-bit
/// codes, f16 super-scales `d` and `dmin`; value = d·scale · q − dmin·min. The codes of 128 values share 32 bytes:
/// values 32s…32s+31 are bits 2s…2s+1 of those bytes.
enum Q2_K: QuantBlockFormat {
    static let name = "Q2_K"
    static let elements = 256
    static let bytes = 84

    @inline(__always)
    static func dequantize(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = half(block, 80), dmin = half(block, 82)
        var out = y
        for half128 in 0..<2 {
            let q = block + (16 &+ 32 &* half128)
            for s in 0..<4 {
                let shift = UInt8(2 &* s)
                for g in 0..<2 {
                    let sc = byte(block, half128 &* 8 &+ s &* 2 &+ g)
                    let dl = d * Float(sc & 0x0F), ml = dmin * Float(sc >> 4)
                    for l in 0..<16 { out[l] = dl * Float((byte(q, g &* 16 &+ l) >> shift) & 3) - ml }
                    out += 16
                }
            }
        }
    }
}
