/// IQ4_NL: 32 values as an f16 scale `d` and 16 bytes of 4-bit indices (as Q4_0) into a fixed non-linear grid;
/// value = d · grid[q].
enum IQ4_NL: QuantBlockFormat {
    static let name = "IQ4_NL"
    static let elements = 32
    static let bytes = 18

    @inline(__always)
    static func dequantize(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = half(block, 0)
        for j in 0..<16 {
            let q = byte(block, 2 &+ j)
            y[j] = d * Float(iq4nlValues[Int(q & 0x0F)])
            y[j &+ 16] = d * Float(iq4nlValues[Int(q >> 4)])
        }
    }
}
