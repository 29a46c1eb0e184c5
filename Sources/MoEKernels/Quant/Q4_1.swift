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

    /// ggml's `quantize_row_q4_1_ref`: d = (max − min)/15, m = min.
    static func quantize(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer) {
        var min = Float.greatestFiniteMagnitude, max = -Float.greatestFiniteMagnitude
        for j in 0..<32 {
            if x[j] < min { min = x[j] }
            if x[j] > max { max = x[j] }
        }
        let d = (max - min) / 15
        let id: Float = d != 0 ? 1 / d : 0
        storeHalf(block, 0, d)
        storeHalf(block, 2, min)
        for j in 0..<16 {
            let lo = UInt8(Swift.min(15, Int((x[j] - min) * id + 0.5)))
            let hi = UInt8(Swift.min(15, Int((x[j &+ 16] - min) * id + 0.5)))
            block.storeBytes(of: lo | (hi << 4), toByteOffset: 4 &+ j, as: UInt8.self)
        }
    }
}
