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

    /// Σ value·x over the block, as eight partial sums: codes widened to f32 in registers, scaled once.
    @inline(__always)
    static func dot(_ block: UnsafeRawPointer, _ x: UnsafePointer<Float>) -> SIMD8<Float> {
        var s0 = codes8(block + 2) * load8U(x)
        var s1 = codes8(block + 10) * load8U(x + 8)
        s0.addProduct(codes8(block + 18), load8U(x + 16))
        s1.addProduct(codes8(block + 26), load8U(x + 24))
        return (s0 + s1) * half(block, 0)
    }

    /// Eight signed byte codes at `p` as f32.
    @inline(__always)
    static func codes8(_ p: UnsafeRawPointer) -> SIMD8<Float> {
        float8(int8s8(p))
    }
}
