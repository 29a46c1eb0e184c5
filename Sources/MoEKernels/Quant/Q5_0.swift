/// Q5_0: 32 values as an f16 scale `d`, 32 fifth bits (a little-endian UInt32, bit i for value i) and 16 bytes of
/// low nibbles (as Q4_0); value = d · (q − 16).
enum Q5_0: QuantBlockFormat {
    static let name = "Q5_0"
    static let elements = 32
    static let bytes = 22

    @inline(__always)
    static func dequantize(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = half(block, 0)
        let qh = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
        for j in 0..<16 {
            let q = UInt32(byte(block, 6 &+ j))
            let lo = (q & 0x0F) | (((qh >> UInt32(j)) & 1) << 4)
            let hi = (q >> 4) | (((qh >> UInt32(j &+ 16)) & 1) << 4)
            y[j] = d * Float(Int(lo) &- 16)
            y[j &+ 16] = d * Float(Int(hi) &- 16)
        }
    }
}
