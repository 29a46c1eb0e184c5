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

    /// ggml's `quantize_row_q5_0_ref`: d = −max/16 for the value of largest magnitude.
    static func quantize(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer) {
        var amax: Float = 0, max: Float = 0
        for j in 0..<32 where amax < abs(x[j]) { amax = abs(x[j]); max = x[j] }
        let d = max / -16
        let id: Float = d != 0 ? 1 / d : 0
        storeHalf(block, 0, d)
        var qh: UInt32 = 0
        for j in 0..<16 {
            let lo = UInt32(Swift.min(31, Int(x[j] * id + 16.5))), hi = UInt32(Swift.min(31, Int(x[j &+ 16] * id + 16.5)))
            block.storeBytes(of: UInt8((lo & 0x0F) | ((hi & 0x0F) << 4)), toByteOffset: 6 &+ j, as: UInt8.self)
            qh |= ((lo & 0x10) >> 4) << UInt32(j)
            qh |= ((hi & 0x10) >> 4) << UInt32(j &+ 16)
        }
        block.storeBytes(of: qh.littleEndian, toByteOffset: 2, as: UInt32.self)
    }
}
