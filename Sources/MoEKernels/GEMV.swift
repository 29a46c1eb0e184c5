// Small-token Linear: out[t, o] = Σ_i x[t, i] · W[o, i] for a few tokens. W is streamed once. Tokens go in pairs: a
// row (up to 4 tokens) or a block of 4 rows (more) is read for the first pair and re-read from L1 by the next pairs;
// for one token (or an odd last one), rows are read one after another. bf16 weights — decode, batched decode, experts —
// go to GEMVBF16.swift instead. The dot products keep full SIMD8 (one ymm) accumulators and reduce them once per row.
//
// This file holds the hand-written part: loads, reductions, the kernel table and the row/thread split. The
// kernels themselves, one function per (element type, rows, tokens) shape, are in GEMVKernels.generated.swift,
// written by scripts/kernels/generate.py.

@inline(__always)
func load8F32(_ p: UnsafeRawPointer) -> SIMD8<Float> {
    p.loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always)
func load8BF16(_ p: UnsafeRawPointer) -> SIMD8<Float> {
    let h = p.loadUnaligned(as: SIMD8<UInt16>.self)
    return SIMD8<Float>(bf16Value(h[0]), bf16Value(h[1]), bf16Value(h[2]), bf16Value(h[3]),
                        bf16Value(h[4]), bf16Value(h[5]), bf16Value(h[6]), bf16Value(h[7]))
}

@inline(__always)
func load8F16(_ p: UnsafeRawPointer) -> SIMD8<Float> {
    let h = p.loadUnaligned(as: SIMD8<UInt16>.self)
    return SIMD8<Float>(f16Value(h[0]), f16Value(h[1]), f16Value(h[2]), f16Value(h[3]),
                        f16Value(h[4]), f16Value(h[5]), f16Value(h[6]), f16Value(h[7]))
}

@inline(__always)
func load8(_ p: UnsafeRawPointer, _ type: ElementType) -> SIMD8<Float> {
    switch type {
    case .f32: return load8F32(p)
    case .bf16: return load8BF16(p)
    case .f16: return load8F16(p)
    case .quantized: preconditionFailure("load8: quantised rows go through quantizedLinear")
    }
}

@inline(__always)
func loadScalar(_ p: UnsafeRawPointer, _ i: Int, _ type: ElementType) -> Float {
    switch type {
    case .f32: return p.load(fromByteOffset: i &* 4, as: Float.self)
    case .bf16: return bf16Value(p.load(fromByteOffset: i &* 2, as: UInt16.self))
    case .f16: return f16Value(p.load(fromByteOffset: i &* 2, as: UInt16.self))
    case .quantized: preconditionFailure("loadScalar: quantised rows go through quantizedLinear")
    }
}

@inline(__always)
func hsum(_ v: SIMD8<Float>) -> Float {
    let b = v.lowHalf + v.highHalf
    let c = b.lowHalf + b.highHalf
    return c[0] + c[1]
}

@inline(__always)
func ldx8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

/// Adds the columns past the last full vector and stores one output.
@inline(never)
func finishDot(_ acc: SIMD8<Float>, _ w: UnsafeRawPointer, _ type: ElementType, _ x: UnsafePointer<Float>, _ k0: Int,
               _ cols: Int, _ o: UnsafeMutablePointer<Float>, _ accumulate: Bool) {
    var s = hsum(acc)
    var k = k0
    while k < cols { s += loadScalar(w, k, type) * x[k]; k &+= 1 }
    o.pointee = accumulate ? o.pointee + s : s
}

typealias DotKernel = (UnsafeRawPointer, Int, Int, UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>, Int, Bool) -> Void

/// The generated kernel for a block of `nr` rows × `nt` tokens. gemvRows asks for 1×1 (one token, row by row)
/// and 1…4×2 (a pair of tokens: 4×2 for the bulk, the rest for the last rows); the generator's GEMV_SHAPES lists
/// the same shapes.
@inline(__always)
func dotKernel(_ type: ElementType, _ nr: Int, _ nt: Int) -> DotKernel {
    switch (type, nr, nt) {
    case (.f32, 1, 1): return dot_f32_1x1
    case (.f32, 1, 2): return dot_f32_1x2
    case (.f32, 2, 2): return dot_f32_2x2
    case (.f32, 3, 2): return dot_f32_3x2
    case (.f32, 4, 2): return dot_f32_4x2
    case (.bf16, 1, 1): return dot_bf16_1x1
    case (.bf16, 1, 2): return dot_bf16_1x2
    case (.bf16, 2, 2): return dot_bf16_2x2
    case (.bf16, 3, 2): return dot_bf16_3x2
    case (.bf16, 4, 2): return dot_bf16_4x2
    case (.f16, 1, 1): return dot_f16_1x1
    case (.f16, 1, 2): return dot_f16_1x2
    case (.f16, 2, 2): return dot_f16_2x2
    case (.f16, 3, 2): return dot_f16_3x2
    case (.f16, 4, 2): return dot_f16_4x2
    default: fatalError("dotKernel: unsupported block")
    }
}

func gemvRows(_ rows: Range<Int>, _ x: UnsafePointer<Float>, _ ldx: Int, _ tokens: Int,
              _ w: WeightMatrix, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    let rb = w.rowBytes, cols = w.cols, type = w.type
    if tokens == 1 {
        // One token: rows one after another (a single sequential stream for the prefetchers).
        let one = dotKernel(type, 1, 1)
        for r in rows { one(w.base + r &* rb, rb, cols, x, ldx, out + r, ldo, accumulate) }
        return
    }
    // Several tokens: a block of rows at a time, for every pair of tokens before the next block, so the block
    // comes from memory once and from L1 for the other pairs (token pairs outermost would stream the whole
    // range from memory once per pair). Blocks of 4 rows load x less often per weight but are four streams a row
    // apart; up to 4 tokens the one stream of rows read one by one is faster (f32 models, batched decode of 2
    // sequences: 0.7–1.4× one sequence's tokens/s with blocks of 4, 1.5–1.9× row by row; 6 sequences: 3.3× with
    // blocks, 2.4× without).
    let block = tokens <= 4 ? 1 : 4
    var r = rows.lowerBound
    while r < rows.upperBound {
        let nr = min(block, rows.upperBound &- r)
        let pair = dotKernel(type, nr, 2)
        var t = 0
        while t &+ 2 <= tokens {
            pair(w.base + r &* rb, rb, cols, x + t &* ldx, ldx, out + (t &* ldo &+ r), ldo, accumulate)
            t &+= 2
        }
        if t < tokens {
            // An odd last token: the block's rows one by one.
            let one = dotKernel(type, 1, 1)
            for i in r..<(r &+ nr) { one(w.base + i &* rb, rb, cols, x + t &* ldx, ldx, out + (t &* ldo &+ i), ldo, accumulate) }
        }
        r &+= nr
    }
}

/// The small-token path of `linear`: rows split into contiguous chunks over the pool.
func gemvSmall(_ x: UnsafePointer<Float>, _ ldx: Int, _ tokens: Int, _ w: WeightMatrix,
               _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool, _ pool: WorkerPool) {
    let bytes = w.rows &* w.rowBytes
    var chunks = 1
    if pool.threads > 1 && w.rows >= 8 && bytes &* tokens >= 96 << 10 {
        chunks = bytes >= 16 << 20 ? pool.threads * 8 : pool.threads
        chunks = min(chunks, (w.rows + 3) / 4)
    }
    if w.type == .bf16 {
        // bf16 goes to GEMVBF16.swift, with x split once (by the calling thread) into even and odd elements.
        let split = UnsafePointer(splitEvenOdd(x, ldx: ldx, tokens: tokens, cols: w.cols))
        if tokens == 1 {
            let xe = split, xo = split + w.cols / 2
            if chunks == 1 { gemvBF16Rows(0..<w.rows, w, x, xe, xo, out, accumulate); return }
            pool.parallelFor(chunks) { c in
                gemvBF16Rows(splitRange(w.rows, parts: chunks, index: c, align: 4), w, x, xe, xo, out, accumulate)
            }
        } else {
            let lds = 2 &* (w.cols / 2)
            if chunks == 1 { gemvBF16Tokens(0..<w.rows, w, x, ldx, split, lds, tokens, out, ldo, accumulate); return }
            pool.parallelFor(chunks) { c in
                gemvBF16Tokens(splitRange(w.rows, parts: chunks, index: c, align: 4), w, x, ldx, split, lds, tokens,
                               out, ldo, accumulate)
            }
        }
        return
    }
    if chunks == 1 {
        gemvRows(0..<w.rows, x, ldx, tokens, w, out, ldo, accumulate)
        return
    }
    pool.parallelFor(chunks) { c in
        let rows = splitRange(w.rows, parts: chunks, index: c, align: 4)
        if !rows.isEmpty { gemvRows(rows, x, ldx, tokens, w, out, ldo, accumulate) }
    }
}
