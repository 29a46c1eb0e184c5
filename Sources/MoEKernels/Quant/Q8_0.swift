/// Q8_0: 32 values as one f16 scale `d` and 32 signed bytes; value = d · q.
enum Q8_0: QuantBlockFormat {
    static let name = "Q8_0"
    static let elements = 32
    static let bytes = 34

    @inline(__always)
    static func dequantize(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = half(block, 0)
        for i in 0..<32 { y[i] = Float(block.load(fromByteOffset: 2 &+ i, as: Int8.self)) * d }
    }

    /// ggml's `quantize_row_q8_0_ref`: d = amax/127, codes rounded half away from zero.
    static func quantize(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer) {
        var amax: Float = 0
        for j in 0..<32 { amax = Swift.max(amax, abs(x[j])) }
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        storeHalf(block, 0, d)
        for j in 0..<32 {
            block.storeBytes(of: Int8(truncatingIfNeeded: Int((x[j] * id).rounded())), toByteOffset: 2 &+ j, as: Int8.self)
        }
    }
}
