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

    /// ggml's `quantize_row_q5_1_ref`: d = (max − min)/31, m = min.
    static func quantize(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer) {
        var min = Float.greatestFiniteMagnitude, max = -Float.greatestFiniteMagnitude
        for j in 0..<32 {
            if x[j] < min { min = x[j] }
            if x[j] > max { max = x[j] }
        }
        let d = (max - min) / 31
        let id: Float = d != 0 ? 1 / d : 0
        storeHalf(block, 0, d)
        storeHalf(block, 2, min)
        var qh: UInt32 = 0
        for j in 0..<16 {
            let lo = UInt32(UInt8(truncatingIfNeeded: Int((x[j] - min) * id + 0.5)))
            let hi = UInt32(UInt8(truncatingIfNeeded: Int((x[j &+ 16] - min) * id + 0.5)))
            block.storeBytes(of: UInt8((lo & 0x0F) | ((hi & 0x0F) << 4)), toByteOffset: 8 &+ j, as: UInt8.self)
            qh |= ((lo & 0x10) >> 4) << UInt32(j)
            qh |= ((hi & 0x10) >> 4) << UInt32(j &+ 16)
        }
        block.storeBytes(of: qh.littleEndian, toByteOffset: 4, as: UInt32.self)
    }
}
