import CMoEKernels

// Linear with quantised weights: out[t, o] (=|+=) Σ_i x[t, i] · W[o, i] for W in a ggml block format.
//
// Each thread takes a contiguous range of rows and walks it a few rows at a time: the rows' blocks are dequantised
// into the thread's scratch (a small f32 matrix that stays in L1/L2), which the f32 kernels then multiply by every
// token — the streaming kernels for a few tokens (decode, batched decode), the packed GEMM for more (prefill). So
// each quantised row is read from memory once per call, and no dequantised copy of the model ever exists. One
// token (decode) skips the scratch: each block is dotted with x in registers (`QuantType.dotRows`: integer products
// in the C target for Q4_0, Q8_0, Q4_K and Q6_K, f32 in Swift for the other types), and so are a few tokens (batched
// decode) where the C target has the type. The integer kernels round the activations to 8 bits where the matrix asks
// for it (`ActivationRounding.int8`: Q4_0, Q2_K–Q6_K and IQ4_XS), else to 16. Prefill (more than 16 tokens) on 8-bit
// activations of Q4_0, Q8_0, Q2_K–Q6_K and IQ4_XS takes the integer GEMM of quant_gemm8.c (rows repacked into eight-row
// panels once per call: 94 Gproducts/s per thread on Q4_K against the f32 GEMM's 44); the other types, and 16-bit
// activations, dequantise into the f32 GEMM.

/// Up to this many tokens (batched decode of up to 16 sequences, small prompts), types with integer row kernels use
/// them rather than a GEMM: with 16 sequences the dequantising f32 path ran at 0.7× one sequence's speed, and the 8-bit
/// GEMM from 12 tokens (faster than the row kernels on one Q4_K matrix of 1,024 rows: 31 against 27 Gproducts/s at 12
/// tokens, 41 against 33 at 16) served 8 and 16 streams 5–10 % slower on Q4_K_M (likely the repacking of its
/// 151,936-row Q6_K output matrix for every step).
let integerTokensLimit = 16

/// Bytes of f32 scratch one step dequantises: small enough to stay in L2 beside the GEMM's packed panels.
let dequantizedStepBytes = 64 << 10

/// How many parallel pieces a product over `w`'s rows is split into: one per thread, four per thread for matrices of
/// 4 MiB and more (so that a slow thread does not hold up the others), at least four rows each.
func rowChunks(_ w: WeightMatrix, _ pool: WorkerPool) -> Int {
    if pool.threads == 1 || w.rows < 8 { return 1 }
    return min(w.rows &* w.rowBytes >= 4 << 20 ? pool.threads &* 4 : pool.threads, (w.rows + 3) / 4)
}

/// Whether a product of `tokens` tokens with `w` takes the 8-bit integer kernels, and which: the GEMM (`true`), the
/// row kernels (`false`), or neither (`nil`).
func int8Path(_ w: WeightMatrix, _ q: QuantType, tokens: Int) -> Bool? {
    guard w.activations == .int8 else { return nil }
    if tokens > integerTokensLimit && q.hasInt8GEMM { return true }
    if tokens <= integerTokensLimit && q.hasInt8Kernel { return false }
    return nil
}

func quantizedLinear(_ x: UnsafePointer<Float>, _ ldx: Int, _ tokens: Int, _ w: WeightMatrix, _ q: QuantType,
                     _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool, _ pool: WorkerPool) {
    let chunks = rowChunks(w, pool)
    if let gemm = int8Path(w, q, tokens: tokens) {
        int8Linear(x, ldx, tokens, w, q, out, ldo, accumulate, pool, chunks: chunks, gemm: gemm)
        return
    }
    // Whole 16-row panels of the GEMM: a step of 8 rows (2,048 columns) left half of each micro-kernel idle and
    // halved prefill.
    let step = max(16, dequantizedStepBytes / max(1, w.cols &* 4)) & ~15
    if chunks == 1 {
        quantizedRows(0..<w.rows, step, x, ldx, tokens, w, q, out, ldo, accumulate)
        return
    }
    pool.parallelFor(chunks) { c in
        let rows = splitRange(w.rows, parts: chunks, index: c, align: 4)
        if !rows.isEmpty { quantizedRows(rows, step, x, ldx, tokens, w, q, out, ldo, accumulate) }
    }
}

/// The fast path: the activations rounded to int8 once (split across the threads when there are many tokens), then
/// each thread's rows by the integer kernels: the row-streaming ones (`dot8Rows`, decode) or the GEMM (`gemm8Rows`,
/// prefill). Either is correct for any number of tokens.
/// `second`: another matrix of the same type and width, multiplied by the same x in the same parallel section (a
/// SwiGLU's gate and up), not accumulating.
func int8Linear(_ x: UnsafePointer<Float>, _ ldx: Int, _ tokens: Int, _ w: WeightMatrix, _ q: QuantType,
                _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool, _ pool: WorkerPool, chunks: Int,
                gemm: Bool, second: (w: WeightMatrix, out: UnsafeMutablePointer<Float>, ldo: Int)? = nil) {
    let n = w.cols, group = q.int8ActivationGroup
    let activations = ThreadScratch.activations.bytes(moe_activations8_bytes(n, tokens))
    // Split from 16 tokens: an expert's few dozen rows rounded on one thread left the other idle (bench Q4_K_M
    // prefill 1,355–1,472 tokens/s split from 64, 1,433–1,494 from 16).
    let parts = tokens >= 16 ? pool.threads : 1
    pool.parallelFor(parts) { p in
        let range = splitRange(tokens, parts: parts, index: p, align: 1)
        moe_quantize_activations8(x, ldx, n, group, range.lowerBound, range.upperBound, activations)
    }
    pool.parallelFor(second == nil ? chunks : 2 &* chunks) { piece in
        let (w, out, ldo, c) = piece < chunks ? (w, out, ldo, piece) : (second!.w, second!.out, second!.ldo, piece &- chunks)
        let rows = splitRange(w.rows, parts: chunks, index: c, align: 4)
        if rows.isEmpty { return }
        if gemm {
            let scratch = ThreadScratch.dequantized.bytes(moe_gemm8_scratch_bytes(w.cols))
            q.gemm8Rows(rows, w, activations, tokens, out, ldo, accumulate, scratch: scratch)
        } else {
            q.dot8Rows(rows, w, activations, tokens, out, ldo, accumulate)
        }
    }
}

/// Both products of `linearPair` at once where they can share the 8-bit activations: two matrices of one quantised type
/// and shape on the integer path. Returns false (nothing done) otherwise.
func quantizedLinearPair(_ x: UnsafePointer<Float>, _ ldx: Int, _ tokens: Int, _ w1: WeightMatrix,
                         _ out1: UnsafeMutablePointer<Float>, _ ldo1: Int, _ w2: WeightMatrix,
                         _ out2: UnsafeMutablePointer<Float>, _ ldo2: Int, _ pool: WorkerPool) -> Bool {
    guard case let .quantized(q) = w1.type, w2.type == w1.type, w2.rows == w1.rows, w2.cols == w1.cols,
          w2.activations == w1.activations, let gemm = int8Path(w1, q, tokens: tokens) else { return false }
    int8Linear(x, ldx, tokens, w1, q, out1, ldo1, false, pool, chunks: rowChunks(w1, pool), gemm: gemm,
               second: (w2, out2, ldo2))
    return true
}

/// One thread's rows, `step` at a time: dequantise, then multiply with the f32 kernels.
func quantizedRows(_ rows: Range<Int>, _ step: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ tokens: Int,
                   _ w: WeightMatrix, _ q: QuantType, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ accumulate: Bool) {
    if tokens == 1 {
        q.dotRows(rows, w, x, out, accumulate)
        return
    }
    if tokens <= integerTokensLimit && q.hasTokensKernel {
        q.dotRowsTokens(rows, w, x, ldx, tokens, out, ldo, accumulate)
        return
    }
    let cols = w.cols, rowBytes = w.rowBytes
    let scratch = ThreadScratch.dequantized.floats(step &* cols)
    var r = rows.lowerBound
    while r < rows.upperBound {
        let n = min(step, rows.upperBound &- r)
        for i in 0..<n { q.dequantize(w.base + (r &+ i) &* rowBytes, into: scratch + i &* cols, count: cols) }
        let block = WeightMatrix(base: UnsafeRawPointer(scratch), rows: n, cols: cols, type: .f32)
        if tokens <= linearSmallTokenLimit {
            gemvRows(0..<n, x, ldx, tokens, block, out + r, ldo, accumulate)
        } else {
            gemmChunk(0..<tokens, 0..<n, cols, 1, x, ldx, false, tokens, .nt(UnsafeRawPointer(scratch), ldBytes: cols &* 4, type: .f32),
                      out + r, ldo, accumulate)
        }
        r &+= n
    }
}
