/// Q2_K: 256 values in 16 groups of 16. Layout: 16 bytes of 4-bit scale / 4-bit min per group, 64 bytes of 2-bit
/// codes, f16 super-scales `d` and `dmin`; value = d·scale · q − dmin·min. The codes of 128 values share 32 bytes:
/// values 32s…32s+31 are bits 2s…2s+1 of those bytes.
enum Q2_K: QuantBlockFormat {
    static let name = "Q2_K"
    static let elements = 256
    static let bytes = 84

    @inline(__always)
    static func dequantize(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = half(block, 80), dmin = half(block, 82)
        var out = y
        for half128 in 0..<2 {
            let q = block + (16 &+ 32 &* half128)
            for s in 0..<4 {
                let shift = UInt8(2 &* s)
                for g in 0..<2 {
                    let sc = byte(block, half128 &* 8 &+ s &* 2 &+ g)
                    let dl = d * Float(sc & 0x0F), ml = dmin * Float(sc >> 4)
                    for l in 0..<16 { out[l] = dl * Float((byte(q, g &* 16 &+ l) >> shift) & 3) - ml }
                    out += 16
                }
            }
        }
    }

    /// ggml's `quantize_row_q2_K_ref`: per group of 16, `make_qkx2_quants` (|x|-weighted absolute error), the
    /// scales and mins to 4 bits under f16 super-scales, then codes again against the rounded scales.
    static func quantize(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256 + 16) { buffer in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16 * 3) { floats in
            let L = buffer.baseAddress!, trial = L + 256
            let weights = floats.baseAddress!, scales = weights + 16, mins = weights + 32
            var maxScale: Float = 0, maxMin: Float = 0
            for j in 0..<16 {
                for l in 0..<16 { weights[l] = abs(x[16 &* j &+ l]) }
                (scales[j], mins[j]) = asymmetricQuants(16, 3, x + 16 &* j, weights, L + 16 &* j, trial,
                                                        rmin: -0.5, rdelta: 0.1, steps: 15, absolute: true)
                if scales[j] > maxScale { maxScale = scales[j] }
                if mins[j] > maxMin { maxMin = mins[j] }
            }
            var packedScales = [UInt8](repeating: 0, count: 16)
            if maxScale > 0 {
                let iscale = 15 / maxScale
                for j in 0..<16 { packedScales[j] = UInt8(truncatingIfNeeded: nearestInt(iscale * scales[j])) }
                storeHalf(block, 80, maxScale / 15)
            } else {
                storeHalf(block, 80, 0)
            }
            if maxMin > 0 {
                let iscale = 15 / maxMin
                for j in 0..<16 { packedScales[j] |= UInt8(truncatingIfNeeded: nearestInt(iscale * mins[j]) << 4) }
                storeHalf(block, 82, maxMin / 15)
            } else {
                storeHalf(block, 82, 0)
            }
            let d = half(block, 80), dmin = half(block, 82)
            for j in 0..<16 {
                block.storeBytes(of: packedScales[j], toByteOffset: j, as: UInt8.self)
                let dl = d * Float(packedScales[j] & 0x0F)
                if dl == 0 { continue }
                let ml = dmin * Float(packedScales[j] >> 4)
                for i in 0..<16 {
                    L[16 &* j &+ i] = UInt8(Swift.max(0, Swift.min(3, nearestInt((x[16 &* j &+ i] + ml) / dl))))
                }
            }
            for part in 0..<2 {
                for l in 0..<32 {
                    let j = 128 &* part &+ l
                    let q = L[j] | (L[j &+ 32] << 2) | (L[j &+ 64] << 4) | (L[j &+ 96] << 6)
                    block.storeBytes(of: q, toByteOffset: 16 &+ 32 &* part &+ l, as: UInt8.self)
                }
            }
        }
        }
    }
}
