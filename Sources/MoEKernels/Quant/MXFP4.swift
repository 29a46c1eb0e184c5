#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// MXFP4 (OCP microscaling FP4, gpt-oss's experts): 32 values as one E8M0 exponent byte and 16 bytes of E2M1 codes
/// (as Q4_0's nibbles); value = 2^(e−127) · fp4(q). ggml keeps the E2M1 values doubled and the scale halved.
enum MXFP4: QuantBlockFormat {
    static let name = "MXFP4"
    static let elements = 32
    static let bytes = 17
    /// E2M1 values, doubled (ggml's `kvalues_mxfp4`).
    static let values: SIMD16<Int8> = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12]

    /// 2^(e−128) as f32 (ggml's `ggml_e8m0_to_fp32_half`), subnormal for e < 2.
    @inline(__always)
    static func halfScale(_ e: UInt8) -> Float {
        Float(bitPattern: e < 2 ? UInt32(0x0020_0000) << UInt32(e) : UInt32(e &- 1) << 23)
    }

    @inline(__always)
    static func dequantize(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = halfScale(byte(block, 0))
        for j in 0..<16 {
            let q = byte(block, 1 &+ j)
            y[j] = d * Float(values[Int(q & 0x0F)])
            y[j &+ 16] = d * Float(values[Int(q >> 4)])
        }
    }

    /// ggml's `quantize_row_mxfp4_ref`: exponent floor(log2 amax) − 2, each value to its nearest E2M1 code.
    static func quantize(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer) {
        var amax: Float = 0
        for j in 0..<32 where amax < abs(x[j]) { amax = abs(x[j]) }
        let e = amax > 0 ? UInt8(truncatingIfNeeded: Int(Float(floorf(log2f(amax))) - 2 + 127)) : 0
        let d = halfScale(e)
        block.storeBytes(of: e, toByteOffset: 0, as: UInt8.self)
        @inline(__always) func nearest(_ v: Float) -> UInt8 {
            var best = 0, bestError = abs(Float(values[0]) * d - v)
            for i in 1..<16 {
                let error = abs(Float(values[i]) * d - v)
                if error < bestError { best = i; bestError = error }
            }
            return UInt8(best)
        }
        for j in 0..<16 {
            block.storeBytes(of: nearest(x[j]) | (nearest(x[j &+ 16]) << 4), toByteOffset: 1 &+ j, as: UInt8.self)
        }
    }
}

/// One row of MXFP4 as Hugging Face checkpoints store it (gpt-oss's `*_blocks` / `*_scales`) into ggml's blocks,
/// bit for bit the same values: `groups` exponent bytes, and 16 code bytes per group holding element 2j in byte j's
/// low nibble and 2j+1 in its high, become `groups` blocks of [exponent, 16 bytes with element j low, j+16 high].
public func repackMXFP4Row(blocks: UnsafePointer<UInt8>, scales: UnsafePointer<UInt8>, groups: Int,
                           into out: UnsafeMutableRawPointer) {
    for g in 0..<groups {
        let src = blocks + g * 16, dst = out + g * MXFP4.bytes
        dst.storeBytes(of: scales[g], as: UInt8.self)
        @inline(__always) func code(_ i: Int) -> UInt8 { (src[i >> 1] >> UInt8((i & 1) * 4)) & 0x0F }
        for j in 0..<16 { dst.storeBytes(of: code(j) | code(j + 16) << 4, toByteOffset: 1 + j, as: UInt8.self) }
    }
}

/// One row of `count` values (whole blocks of 32) quantised to MXFP4 as Hugging Face checkpoints store it (the layout
/// `repackMXFP4Row` reads): ggml's rounding (exponent floor(log2 amax) − 2, nearest E2M1 code), codes re-paired.
public func quantizeMXFP4Row(_ x: UnsafePointer<Float>, count: Int, blocks: UnsafeMutablePointer<UInt8>,
                             scales: UnsafeMutablePointer<UInt8>) {
    var block = [UInt8](repeating: 0, count: MXFP4.bytes)
    for g in 0..<(count / 32) {
        block.withUnsafeMutableBytes { MXFP4.quantize(x + g * 32, into: $0.baseAddress!) }
        scales[g] = block[0]
        // ggml: element j in byte 1 + j % 16, low nibble for j < 16; HF: element 2j low and 2j + 1 high in byte j.
        @inline(__always) func code(_ i: Int) -> UInt8 { i < 16 ? block[1 + i] & 0x0F : block[1 + i - 16] >> 4 }
        for j in 0..<16 { blocks[g * 16 + j] = code(2 * j) | code(2 * j + 1) << 4 }
    }
}
