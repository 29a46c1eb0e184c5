/// Q4_0: 32 values as an f16 scale `d` and 16 bytes of 4-bit codes (value i in the low nibble of byte i, value
/// i+16 in its high nibble); value = d · (q − 8).
enum Q4_0: QuantBlockFormat {
    static let name = "Q4_0"
    static let elements = 32
    static let bytes = 18

    @inline(__always)
    static func dequantize(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = half(block, 0)
        for j in 0..<16 {
            let q = byte(block, 2 &+ j)
            y[j] = d * Float(Int(q & 0x0F) &- 8)
            y[j &+ 16] = d * Float(Int(q >> 4) &- 8)
        }
    }
}
