/// IQ4_XS: 256 values in 8 groups of 32. Layout: an f16 super-scale `d`, 16 bits of scale high pairs (`scales_h`,
/// little-endian), 4 bytes of scale low nibbles, 128 bytes of 4-bit grid indices (16 bytes per group, as IQ4_NL);
/// value = d·(scale − 32) · grid[q].
enum IQ4_XS: QuantBlockFormat {
    static let name = "IQ4_XS"
    static let elements = 256
    static let bytes = 136

    @inline(__always)
    static func dequantize(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = half(block, 0)
        let scalesHigh = UInt16(littleEndian: block.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        for g in 0..<8 {
            let low = (byte(block, 4 &+ g / 2) >> UInt8(4 &* (g % 2))) & 0x0F
            let high = UInt8(truncatingIfNeeded: scalesHigh >> UInt16(2 &* g)) & 3
            let dl = d * Float(Int(low | (high << 4)) &- 32)
            let q = block + (8 &+ 16 &* g)
            let out = y + 32 &* g
            for j in 0..<16 {
                let b = byte(q, j)
                out[j] = dl * Float(iq4nlValues[Int(b & 0x0F)])
                out[j &+ 16] = dl * Float(iq4nlValues[Int(b >> 4)])
            }
        }
    }

    /// ggml's `quantize_iq4_xs`: IQ4_NL's search per group, then 6-bit group scales under an f16 super-scale.
    static func quantize(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer) {
        var d: UInt16 = 0, high: UInt16 = 0
        iq4Quantize(x, count: 256, scaleBits: &d, packed: block + 8, scalesHigh: &high, scalesLow: block + 4)
        block.storeBytes(of: d.littleEndian, toByteOffset: 0, as: UInt16.self)
        block.storeBytes(of: high.littleEndian, toByteOffset: 2, as: UInt16.self)
    }
}
