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
}
