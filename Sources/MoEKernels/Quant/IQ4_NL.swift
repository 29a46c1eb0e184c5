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

    /// ggml's `quantize_iq4_nl` (what llama.cpp's quantiser writes): the grid scale by least squares over 15 trials.
    static func quantize(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer) {
        var d: UInt16 = 0, unusedHigh: UInt16 = 0
        iq4Quantize(x, count: 32, scaleBits: &d, packed: block + 2, scalesHigh: &unusedHigh, scalesLow: nil)
        block.storeBytes(of: d.littleEndian, toByteOffset: 0, as: UInt16.self)
    }
}
