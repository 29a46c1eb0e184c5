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

    /// ggml's `quantize_row_q4_0_ref`: d = −max/8 for the value of largest magnitude.
    static func quantize(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer) {
        var amax: Float = 0, max: Float = 0
        for j in 0..<32 where amax < abs(x[j]) { amax = abs(x[j]); max = x[j] }
        let d = max / -8
        let id: Float = d != 0 ? 1 / d : 0
        storeHalf(block, 0, d)
        for j in 0..<16 {
            let lo = UInt8(Swift.min(15, Int(x[j] * id + 8.5))), hi = UInt8(Swift.min(15, Int(x[j &+ 16] * id + 8.5)))
            block.storeBytes(of: lo | (hi << 4), toByteOffset: 2 &+ j, as: UInt8.self)
        }
    }

    /// Σ value·x over the block: nibbles widened in registers; Σ(q − 8)·x = Σq·x − 8·Σx.
    @inline(__always)
    static func dot(_ block: UnsafeRawPointer, _ x: UnsafePointer<Float>) -> SIMD8<Float> {
        var s = SIMD8<Float>(), xs = SIMD8<Float>()
        for k in 0..<2 {
            let v = bytes8(block + (2 &+ 8 &* k))
            let xl = load8U(x + 8 &* k), xh = load8U(x + (16 &+ 8 &* k))
            s.addProduct(float8(v & 15), xl)
            s.addProduct(float8(v &>> 4), xh)
            xs += xl + xh
        }
        return (s - 8 * xs) * half(block, 0)
    }
}
