/// Q4_1: 32 values as f16 scale `d` and minimum `m`, then 16 bytes of 4-bit codes (as Q4_0); value = d · q + m.
enum Q4_1: QuantBlockFormat {
    static let name = "Q4_1"
    static let elements = 32
    static let bytes = 20

    @inline(__always)
    static func dequantize(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = half(block, 0), m = half(block, 2)
        for j in 0..<16 {
            let q = byte(block, 4 &+ j)
            y[j] = d * Float(q & 0x0F) + m
            y[j &+ 16] = d * Float(q >> 4) + m
        }
    }
}
