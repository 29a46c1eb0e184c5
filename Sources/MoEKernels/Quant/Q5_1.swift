/// Q5_1: 32 values as f16 scale `d` and minimum `m`, 32 fifth bits and 16 bytes of low nibbles (as Q5_0);
/// value = d · q + m.
enum Q5_1: QuantBlockFormat {
    static let name = "Q5_1"
    static let elements = 32
    static let bytes = 24

    @inline(__always)
    static func dequantize(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = half(block, 0), m = half(block, 2)
        let qh = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        for j in 0..<16 {
            let q = UInt32(byte(block, 8 &+ j))
            let lo = (q & 0x0F) | (((qh >> UInt32(j)) & 1) << 4)
            let hi = (q >> 4) | (((qh >> UInt32(j &+ 16)) & 1) << 4)
            y[j] = d * Float(lo) + m
            y[j &+ 16] = d * Float(hi) + m
        }
    }
}
