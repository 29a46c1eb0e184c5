// Element conversions between f32 and the 16-bit weight/storage formats.
// The loops are written element-wise so that LLVM vectorises them (vpmovzxwd+vpslld for bf16,
// vcvtph2ps / vcvtps2ph for f16 on CPUs with F16C/AVX-512).

@inline(__always)
func bf16Bits(_ f: Float) -> UInt16 {
    let u = f.bitPattern
    if (u & 0x7FFF_FFFF) > 0x7F80_0000 {
        return UInt16(truncatingIfNeeded: u >> 16) | 0x0040   // quiet NaN, keeps sign and payload top
    }
    let rounded = u &+ 0x7FFF &+ ((u >> 16) & 1)              // round to nearest even
    return UInt16(truncatingIfNeeded: rounded >> 16)
}

@inline(__always)
func bf16Value(_ h: UInt16) -> Float {
    Float(bitPattern: UInt32(h) &<< 16)
}

#if arch(x86_64) && os(macOS)
// Float16 is unavailable on Intel macOS: exact software conversions.
@inline(__always)
func f16Value(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let mag = UInt32(h & 0x7FFF)
    if mag >= 0x7C00 { return Float(bitPattern: sign | 0x7F80_0000 | ((mag & 0x3FF) << 13)) }
    // Normal and subnormal halves: scale the shifted bits by 2^112.
    let f = Float(bitPattern: mag << 13) * Float(bitPattern: 0x7780_0000)
    return Float(bitPattern: f.bitPattern | sign)
}

@inline(__always)
func f16Bits(_ f: Float) -> UInt16 {
    let u = f.bitPattern
    let sign = UInt16(truncatingIfNeeded: (u >> 16) & 0x8000)
    let a = u & 0x7FFF_FFFF
    if a > 0x7F80_0000 { return sign | 0x7E00 | UInt16(truncatingIfNeeded: (a >> 13) & 0x3FF) }
    if a >= 0x477F_F000 { return sign | 0x7C00 }   // rounds to inf
    if a < 0x3880_0000 {                           // subnormal half (or zero)
        let v = Float(bitPattern: a) + 0.5         // 0.5 = 2^-1: aligns the bits so that ulp = 2^-24
        return sign | UInt16(truncatingIfNeeded: v.bitPattern &- 0x3F00_0000)
    }
    let m = (a >> 13) & 1
    let r = (a &+ 0xC800_0FFF &+ m) >> 13
    return sign | UInt16(truncatingIfNeeded: r)
}
#else
@inline(__always)
func f16Value(_ h: UInt16) -> Float { Float(Float16(bitPattern: h)) }

@inline(__always)
func f16Bits(_ f: Float) -> UInt16 { Float16(f).bitPattern }
#endif

/// bf16 → f32 (exact: a shift).
public func bf16ToFloat(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<max(count, 0) { dst[i] = bf16Value(src[i]) }
}

/// f32 → bf16, round to nearest even; NaN stays NaN.
public func floatToBF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
    for i in 0..<max(count, 0) { dst[i] = bf16Bits(src[i]) }
}

/// f16 → f32 (exact, subnormals/inf/NaN included).
public func f16ToFloat(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<max(count, 0) { dst[i] = f16Value(src[i]) }
}

/// f32 → f16, round to nearest even, subnormals/inf/NaN included.
public func floatToF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
    for i in 0..<max(count, 0) { dst[i] = f16Bits(src[i]) }
}

/// Widens `count` elements of `type` at `src` to f32.
@inline(__always)
func widen(_ src: UnsafeRawPointer, _ type: ElementType, _ dst: UnsafeMutablePointer<Float>, count: Int) {
    switch type {
    case .f32: dst.update(from: src.assumingMemoryBound(to: Float.self), count: count)
    case .bf16: bf16ToFloat(src.assumingMemoryBound(to: UInt16.self), dst, count: count)
    case .f16: f16ToFloat(src.assumingMemoryBound(to: UInt16.self), dst, count: count)
    case let .quantized(q): q.dequantize(src, into: dst, count: count)
    }
}

/// One row of a weight matrix widened to f32 (used e.g. for embedding lookup).
public func loadRow(_ w: WeightMatrix, row: Int, into dst: UnsafeMutablePointer<Float>) {
    precondition(row >= 0 && row < w.rows, "loadRow: row \(row) out of 0..<\(w.rows)")
    widen(w.base + row &* w.rowBytes, w.type, dst, count: w.cols)
}
