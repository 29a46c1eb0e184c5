import CMoEKernels
import Foundation

/// ggml's block-quantised weight formats, one case per type with ggml's type id (`ggml_type`) as raw value.
///
/// A quantised row of `n` values is `n / elements` blocks of `bytes` bytes each; every block holds its own scales.
/// Each type is declared once, in its own file (`Q8_0.swift`, `Q4_K.swift`, …), as a `QuantBlockFormat`: its
/// layout, its dequantisation (bit for bit ggml's `dequantize_row_*` and gguf-py's `dequantize`) and, where
/// swift-moe writes the type, its quantisation. Kernels, the GGUF reader and writer all go through this table.
/// Adding a type: one file with its `QuantBlockFormat`, plus its case and `format` line here.
public enum QuantType: Int, Sendable, CaseIterable, CustomStringConvertible {
    case q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14
    case iq4_nl = 20, iq4_xs = 23, mxfp4 = 39

    /// The type's block format.
    public var format: any QuantBlockFormat.Type {
        switch self {
        case .q4_0: return Q4_0.self
        case .q4_1: return Q4_1.self
        case .q5_0: return Q5_0.self
        case .q5_1: return Q5_1.self
        case .q8_0: return Q8_0.self
        case .q2_K: return Q2_K.self
        case .q3_K: return Q3_K.self
        case .q4_K: return Q4_K.self
        case .q5_K: return Q5_K.self
        case .q6_K: return Q6_K.self
        case .iq4_nl: return IQ4_NL.self
        case .iq4_xs: return IQ4_XS.self
        case .mxfp4: return MXFP4.self
        }
    }

    /// Values per block (32, or 256 for the K-quants and IQ4_XS).
    public var blockElements: Int { format.elements }
    /// Bytes per block.
    public var blockBytes: Int { format.bytes }
    /// ggml's name, e.g. "Q4_K".
    public var description: String { format.name }

    /// Bytes of a row of `count` values, or nil when `count` is not a whole number of blocks.
    public func rowBytes(_ count: Int) -> Int? {
        count % blockElements == 0 ? count / blockElements * blockBytes : nil
    }

    /// Quantises `count` finite values (a whole number of blocks) at `src` into blocks at `dst`, as llama.cpp's
    /// quantiser does. Callers check finiteness first: NaN has no code.
    public func quantize(_ src: UnsafePointer<Float>, into dst: UnsafeMutableRawPointer, count: Int) {
        let f = format
        for b in 0..<count / f.elements { f.quantize(src + b * f.elements, into: dst + b * f.bytes) }
    }

    /// out[r] (=|+=) Σ_i W[r, i]·x[i] for one token: the decode kernel, blocks dotted in registers (no dequantised
    /// copy), two blocks in flight per row. One case per type, so that each loop is specialised; Q4_0, Q8_0, Q4_K and
    /// Q6_K use the C target's AVX2 integer kernels where the CPU has them, unless `portable`.
    func dotRows(_ rows: Range<Int>, _ w: WeightMatrix, _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                 _ accumulate: Bool, portable: Bool = !quantDotAVX2) {
        switch self {
        case .q4_0:
            if !portable {
                moe_dot_rows_q4_0(w.base, w.rowBytes, w.cols / 32, x, out, rows.lowerBound, rows.upperBound, accumulate ? 1 : 0)
            } else {
                dotRowsOf(Q4_0.self, rows, w, x, out, accumulate)
            }
        case .q4_1: dotRowsOf(Q4_1.self, rows, w, x, out, accumulate)
        case .q5_0: dotRowsOf(Q5_0.self, rows, w, x, out, accumulate)
        case .q5_1: dotRowsOf(Q5_1.self, rows, w, x, out, accumulate)
        case .q8_0:
            if !portable {
                moe_dot_rows_q8_0(w.base, w.rowBytes, w.cols / 32, x, out, rows.lowerBound, rows.upperBound, accumulate ? 1 : 0)
            } else {
                dotRowsOf(Q8_0.self, rows, w, x, out, accumulate)
            }
        case .q2_K: dotRowsOf(Q2_K.self, rows, w, x, out, accumulate)
        case .q3_K: dotRowsOf(Q3_K.self, rows, w, x, out, accumulate)
        case .q4_K:
            if !portable {
                moe_dot_rows_q4_K(w.base, w.rowBytes, w.cols / 256, x, out, rows.lowerBound, rows.upperBound, accumulate ? 1 : 0)
            } else {
                dotRowsOf(Q4_K.self, rows, w, x, out, accumulate)
            }
        case .q5_K: dotRowsOf(Q5_K.self, rows, w, x, out, accumulate)
        case .q6_K:
            if !portable {
                moe_dot_rows_q6_K(w.base, w.rowBytes, w.cols / 256, x, out, rows.lowerBound, rows.upperBound, accumulate ? 1 : 0)
            } else {
                dotRowsOf(Q6_K.self, rows, w, x, out, accumulate)
            }
        case .iq4_nl: dotRowsOf(IQ4_NL.self, rows, w, x, out, accumulate)
        case .iq4_xs: dotRowsOf(IQ4_XS.self, rows, w, x, out, accumulate)
        case .mxfp4: dotRowsOf(MXFP4.self, rows, w, x, out, accumulate)
        }
    }

    /// The several-token decode kernel (batched decode): out[t·ldo + r] (=|+=) Σ_i W[r, i]·x[t·ldx + i] for the rows
    /// and tokens, each row's codes unpacked once for up to four tokens. Only where the C target has the type's
    /// integer kernel and the CPU runs it (`hasTokensKernel`).
    func dotRowsTokens(_ rows: Range<Int>, _ w: WeightMatrix, _ x: UnsafePointer<Float>, _ ldx: Int, _ tokens: Int,
                       _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
        let kernel: @convention(c) (UnsafeRawPointer?, Int, Int, UnsafePointer<Float>?, Int, Int,
                                    UnsafeMutablePointer<Float>?, Int, Int, Int, Int32) -> Void
        switch self {
        case .q4_0: kernel = moe_dot_rows_tokens_q4_0
        case .q8_0: kernel = moe_dot_rows_tokens_q8_0
        case .q4_K: kernel = moe_dot_rows_tokens_q4_K
        case .q6_K: kernel = moe_dot_rows_tokens_q6_K
        default: preconditionFailure("\(self) has no several-token kernel")
        }
        kernel(w.base, w.rowBytes, w.cols / blockElements, x, ldx, tokens, out, ldo, rows.lowerBound, rows.upperBound,
               accumulate ? 1 : 0)
    }

    /// Values per scale of the 8-bit activations `dot8Rows` takes: 32 for Q4_0 (as ggml's Q8_0), 256 for the
    /// K-quants and IQ4_XS (ggml's Q8_K).
    var int8ActivationGroup: Int { blockElements }

    /// The fast path on 8-bit activations (`ActivationRounding.int8`): out[t·ldo + r] (=|+=) Σ_i W[r, i]·x[t, i] for
    /// the rows and `tokens` tokens of `activations`, x rounded by `moe_quantize_activations8` with
    /// `int8ActivationGroup`. Each row's codes are unpacked once per four tokens, over tiles of rows that stay in L1.
    /// Only where `hasInt8Kernel`.
    func dot8Rows(_ rows: Range<Int>, _ w: WeightMatrix, _ activations: UnsafeRawPointer, _ tokens: Int,
                  _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
        let kernel: @convention(c) (UnsafeRawPointer?, Int, Int, UnsafeRawPointer?, Int, UnsafeMutablePointer<Float>?,
                                    Int, Int, Int, Int32) -> Void
        switch self {
        case .q4_0: kernel = moe_dot8_rows_q4_0
        case .q2_K: kernel = moe_dot8_rows_q2_K
        case .q3_K: kernel = moe_dot8_rows_q3_K
        case .q4_K: kernel = moe_dot8_rows_q4_K
        case .q5_K: kernel = moe_dot8_rows_q5_K
        case .q6_K: kernel = moe_dot8_rows_q6_K
        case .iq4_xs: kernel = moe_dot8_rows_iq4_xs
        case .mxfp4: kernel = moe_dot8_rows_mxfp4
        default: preconditionFailure("\(self) has no 8-bit kernel")
        }
        kernel(w.base, w.rowBytes, w.cols / blockElements, activations, tokens, out, ldo, rows.lowerBound, rows.upperBound,
               accumulate ? 1 : 0)
    }

    /// Whether `dot8Rows` runs for this type here. (Q8_0 gained nothing from 8-bit activations: quant_dot8.c.)
    var hasInt8Kernel: Bool {
        guard quantDotAVX2 else { return false }
        switch self {
        case .q4_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_xs, .mxfp4: return true
        default: return false
        }
    }

    /// Prefill on 8-bit activations (quant_gemm8.c): rows [rows) repacked eight at a time into `scratch` (at least
    /// `moe_gemm8_scratch_bytes(cols)` bytes), then multiplied four tokens at a time. Only where `hasInt8GEMM`.
    func gemm8Rows(_ rows: Range<Int>, _ w: WeightMatrix, _ activations: UnsafeRawPointer, _ tokens: Int,
                   _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool, scratch: UnsafeMutableRawPointer) {
        let kernel: @convention(c) (UnsafeRawPointer?, Int, Int, UnsafeRawPointer?, Int, UnsafeMutablePointer<Float>?,
                                    Int, Int, Int, Int32, UnsafeMutableRawPointer?) -> Void
        switch self {
        case .q4_0: kernel = moe_gemm8_rows_q4_0
        case .q8_0: kernel = moe_gemm8_rows_q8_0
        case .q2_K: kernel = moe_gemm8_rows_q2_K
        case .q3_K: kernel = moe_gemm8_rows_q3_K
        case .q4_K: kernel = moe_gemm8_rows_q4_K
        case .q5_K: kernel = moe_gemm8_rows_q5_K
        case .q6_K: kernel = moe_gemm8_rows_q6_K
        case .iq4_xs: kernel = moe_gemm8_rows_iq4_xs
        default: preconditionFailure("\(self) has no 8-bit GEMM")
        }
        kernel(w.base, w.rowBytes, w.cols / blockElements, activations, tokens, out, ldo, rows.lowerBound,
               rows.upperBound, accumulate ? 1 : 0, scratch)
    }

    /// Whether `gemm8Rows` runs for this type here: the K-quants, IQ4_XS, Q4_0 and Q8_0.
    var hasInt8GEMM: Bool {
        guard quantDotAVX2 else { return false }
        switch self {
        case .q4_0, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_xs: return true
        default: return false
        }
    }

    /// Whether `dotRowsTokens` runs for this type here.
    var hasTokensKernel: Bool {
        quantDotAVX2 && (self == .q4_0 || self == .q8_0 || self == .q4_K || self == .q6_K)
    }

    /// Dequantises `count` values (a whole number of blocks) at `src` into `dst`.
    /// (One case per type, so that each call is specialised and the block loop inlined.)
    @inline(__always)
    public func dequantize(_ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .q4_0: Q4_0.dequantizeRow(src, into: dst, count: count)
        case .q4_1: Q4_1.dequantizeRow(src, into: dst, count: count)
        case .q5_0: Q5_0.dequantizeRow(src, into: dst, count: count)
        case .q5_1: Q5_1.dequantizeRow(src, into: dst, count: count)
        case .q8_0: Q8_0.dequantizeRow(src, into: dst, count: count)
        case .q2_K: Q2_K.dequantizeRow(src, into: dst, count: count)
        case .q3_K: Q3_K.dequantizeRow(src, into: dst, count: count)
        case .q4_K: Q4_K.dequantizeRow(src, into: dst, count: count)
        case .q5_K: Q5_K.dequantizeRow(src, into: dst, count: count)
        case .q6_K: Q6_K.dequantizeRow(src, into: dst, count: count)
        case .iq4_nl: IQ4_NL.dequantizeRow(src, into: dst, count: count)
        case .iq4_xs: IQ4_XS.dequantizeRow(src, into: dst, count: count)
        case .mxfp4: MXFP4.dequantizeRow(src, into: dst, count: count)
        }
    }
}

/// One ggml block type: its layout and its dequantisation. Conforming types are namespaces (no instances); the
/// kernels call them through `QuantType`'s switch, so each call site is specialised for its type.
public protocol QuantBlockFormat {
    /// ggml's name of the type, e.g. "Q8_0".
    static var name: String { get }
    /// Values per block.
    static var elements: Int { get }
    /// Bytes per block.
    static var bytes: Int { get }
    /// The `elements` values of the block at `block`, as ggml computes them.
    static func dequantize(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>)
    /// Quantises `elements` finite values into the block at `block`, bit for bit as llama.cpp's quantiser
    /// (`ggml_quantize_chunk` without an importance matrix).
    static func quantize(_ x: UnsafePointer<Float>, into block: UnsafeMutableRawPointer)
    /// Σ value·x over the block's `elements` values, as eight partial sums: the decode kernel's inner step (types
    /// without their own dequantise the block on the stack and multiply).
    static func dot(_ block: UnsafeRawPointer, _ x: UnsafePointer<Float>) -> SIMD8<Float>
}

extension QuantBlockFormat {
    /// Dequantises `count` values (a whole number of blocks).
    @inline(__always)
    public static func dequantizeRow(_ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count: Int) {
        var b = 0, y = dst
        let blocks = count / elements
        while b < blocks {
            dequantize(src + b &* bytes, into: y)
            y += elements
            b &+= 1
        }
    }
}

extension QuantBlockFormat {
    @inline(__always)
    public static func dot(_ block: UnsafeRawPointer, _ x: UnsafePointer<Float>) -> SIMD8<Float> {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: elements) { buffer in
            let y = buffer.baseAddress!
            dequantize(block, into: y)
            var acc = SIMD8<Float>()
            for i in stride(from: 0, to: elements, by: 8) { acc.addProduct(load8U(y + i), load8U(x + i)) }
            return acc
        }
    }
}

/// Whether the C target's AVX2 kernels run here (CPU with AVX2, FMA and F16C); MOE_PORTABLE_KERNELS=1 forces the
/// Swift kernels (to compare the two).
let quantDotAVX2: Bool = moe_quant_avx2_available() != 0
    && ProcessInfo.processInfo.environment["MOE_PORTABLE_KERNELS"] != "1"

/// One specialisation per type, each its own function (kept out of line so that the block kernel and its SIMD
/// conversions inline into it).
@inline(never)
func dotRowsOf<F: QuantBlockFormat>(_ format: F.Type, _ rows: Range<Int>, _ w: WeightMatrix, _ x: UnsafePointer<Float>,
                                    _ out: UnsafeMutablePointer<Float>, _ accumulate: Bool) {
    let blocks = w.cols / F.elements, rowBytes = w.rowBytes
    for r in rows {
        var p = w.base + r &* rowBytes, xp = x
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
        var b = 0
        while b &+ 2 <= blocks {
            a0 += F.dot(p, xp)
            a1 += F.dot(p + F.bytes, xp + F.elements)
            p += 2 &* F.bytes; xp += 2 &* F.elements; b &+= 2
        }
        if b < blocks { a0 += F.dot(p, xp) }
        let s = (a0 + a1).sum()
        out[r] = accumulate ? out[r] + s : s
    }
}

// Helpers shared by the block formats.

// The SIMD conversions below are spelled lane by lane: the standard library's generic vector conversions are not
// always inlined into the kernels (each became a call), while these become one vpmovzxbd/vpmovsxbd or vcvtdq2ps.

/// Eight unsigned bytes at `p`, widened to Int32 lanes.
@inline(__always)
func bytes8(_ p: UnsafeRawPointer) -> SIMD8<Int32> {
    let b = p.assumingMemoryBound(to: UInt8.self)
    return SIMD8<Int32>(Int32(b[0]), Int32(b[1]), Int32(b[2]), Int32(b[3]), Int32(b[4]), Int32(b[5]), Int32(b[6]), Int32(b[7]))
}

/// Eight signed bytes at `p`, widened to Int32 lanes.
@inline(__always)
func int8s8(_ p: UnsafeRawPointer) -> SIMD8<Int32> {
    let b = p.assumingMemoryBound(to: Int8.self)
    return SIMD8<Int32>(Int32(b[0]), Int32(b[1]), Int32(b[2]), Int32(b[3]), Int32(b[4]), Int32(b[5]), Int32(b[6]), Int32(b[7]))
}

/// Int32 lanes as f32.
@inline(__always)
func float8(_ v: SIMD8<Int32>) -> SIMD8<Float> {
    SIMD8<Float>(Float(v[0]), Float(v[1]), Float(v[2]), Float(v[3]), Float(v[4]), Float(v[5]), Float(v[6]), Float(v[7]))
}

/// Stores `value` as an IEEE half (round to nearest even) at byte `offset` of `p`.
@inline(__always)
func storeHalf(_ p: UnsafeMutableRawPointer, _ offset: Int, _ value: Float) {
    p.storeBytes(of: f16Bits(value).littleEndian, toByteOffset: offset, as: UInt16.self)
}

/// An IEEE half at byte `offset` of `p`, as f32.
@inline(__always)
func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
    f16Value(p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
}

/// Byte `i` of `p`.
@inline(__always)
func byte(_ p: UnsafeRawPointer, _ i: Int) -> UInt8 { p.load(fromByteOffset: i, as: UInt8.self) }

/// The 4-bit non-linear grid of IQ4_NL and IQ4_XS (ggml's `kvalues_iq4nl`).
let iq4nlValues: SIMD16<Int8> = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]
