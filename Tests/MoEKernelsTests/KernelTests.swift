import Testing
import MoEKernels

// Naive double-precision references on deterministic pseudo-random data.

private struct Rng {
    var s: UInt64
    init(_ seed: UInt64) { s = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {
        s &+= 0x9E37_79B9_7F4A_7C15
        var z = s
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func float() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
    mutating func floats(_ n: Int) -> [Float] { (0..<n).map { _ in float() } }
}

private let pool2 = WorkerPool(threads: 2)
private let pool1 = WorkerPool(threads: 1)

/// Weights stored in `type`, plus their exact f32 values.
private func makeWeights(_ rows: Int, _ cols: Int, _ type: ElementType, _ rng: inout Rng) -> (bytes: [UInt8], values: [Float]) {
    let f = rng.floats(rows * cols)
    switch type {
    case .f32:
        return (f.withUnsafeBytes { Array($0) }, f)
    case .bf16:
        var h = [UInt16](repeating: 0, count: f.count)
        floatToBF16(f, &h, count: f.count)
        return (h.withUnsafeBytes { Array($0) }, h.map { Float(bitPattern: UInt32($0) << 16) })
    case .f16:
        var h = [UInt16](repeating: 0, count: f.count)
        floatToF16(f, &h, count: f.count)
        return (h.withUnsafeBytes { Array($0) }, h.map { Float(Float16(bitPattern: $0)) })
    case .quantized:
        preconditionFailure("quantised weights are tested in GGUFModelTests")
    }
}

private func checkLinear(tokens: Int, rows: Int, cols: Int, type: ElementType, accumulate: Bool, padX: Int, padO: Int,
                         pool: WorkerPool, seed: UInt64) {
    var rng = Rng(seed)
    let (bytes, wv) = makeWeights(rows, cols, type, &rng)
    let ldx = cols + padX, ldo = rows + padO
    let x = rng.floats(tokens * ldx)
    let initial = rng.floats(tokens * ldo)
    var out = initial
    bytes.withUnsafeBytes { wb in
        let w = WeightMatrix(base: wb.baseAddress!, rows: rows, cols: cols, type: type)
        linear(x, ldx: ldx, tokens: tokens, w, into: &out, ldo: ldo, accumulate: accumulate, pool: pool)
    }
    var worst = 0.0
    for t in 0..<tokens {
        for o in 0..<rows {
            var s = 0.0, mag = 0.0
            for i in 0..<cols {
                let p = Double(x[t * ldx + i]) * Double(wv[o * cols + i])
                s += p; mag += abs(p)
            }
            if accumulate { s += Double(initial[t * ldo + o]); mag += abs(Double(initial[t * ldo + o])) }
            let err = abs(Double(out[t * ldo + o]) - s) / (mag + 1e-30)
            worst = max(worst, err)
        }
        // Padding columns of out must be untouched.
        for o in rows..<ldo { #expect(out[t * ldo + o] == initial[t * ldo + o]) }
    }
    #expect(worst < 2e-6, "linear \(type) t=\(tokens) \(rows)×\(cols) acc=\(accumulate): rel err \(worst)")
}

@Suite struct LinearTests {
    @Test(arguments: [ElementType.f32, .bf16, .f16])
    func shapesAndTokens(type: ElementType) {
        var seed: UInt64 = 1
        for tokens in [1, 2, 3, 7, 9, 64, 130] {
            for (rows, cols) in [(37, 53), (1, 40), (40, 1), (64, 256), (19, 300), (33, 16)] {
                if tokens >= 64 && rows * cols > 20_000 { continue }
                checkLinear(tokens: tokens, rows: rows, cols: cols, type: type, accumulate: seed % 2 == 0,
                            padX: Int(seed % 3), padO: Int(seed % 5), pool: pool2, seed: seed)
                seed += 1
            }
        }
    }

    /// Every small-token path (1…8 tokens): each generated dot kernel shape (1×1 for an odd last token, 1…4×2 for
    /// pairs) for each element type, and column counts around the 32/16/8-column loops and the scalar tail.
    @Test func everySmallTokenKernelShape() {
        var seed: UInt64 = 500
        for type in [ElementType.f32, .bf16, .f16] {
            for tokens in 1...8 {
                for rows in [1, 2, 3, 4, 5, 6, 7, 9] {
                    for cols in [1, 8, 15, 16, 33, 77] {
                        checkLinear(tokens: tokens, rows: rows, cols: cols, type: type, accumulate: seed % 2 == 0,
                                    padX: Int(seed % 3), padO: Int(seed % 2), pool: pool1, seed: seed)
                        seed += 1
                    }
                }
            }
        }
    }

    /// bf16 weights take their own small-token kernels up to 16 tokens (batched decode): token groups of 1…4 and
    /// several groups over blocks of rows (more rows than one block of `bf16TokensBlockBytes` holds), with column
    /// counts around the 16-column vector loop and an odd last column.
    @Test func severalTokensOfBF16() {
        var seed: UInt64 = 900
        for tokens in [2, 3, 4, 5, 7, 8, 9, 12, 13, 16] {
            for (rows, cols) in [(5, 16), (9, 33), (3, 1), (70, 1030), (40, 2047)] {
                checkLinear(tokens: tokens, rows: rows, cols: cols, type: .bf16, accumulate: seed % 2 == 0,
                            padX: Int(seed % 3), padO: Int(seed % 4), pool: seed % 3 == 0 ? pool1 : pool2, seed: seed)
                seed += 1
            }
        }
    }

    @Test func accumulateAndStrides() {
        for type in [ElementType.f32, .bf16, .f16] {
            for tokens in [1, 4, 8, 40] {
                for accumulate in [false, true] {
                    checkLinear(tokens: tokens, rows: 70, cols: 129, type: type, accumulate: accumulate,
                                padX: 7, padO: 3, pool: pool2, seed: UInt64(tokens * 2 + (accumulate ? 1 : 0)))
                }
            }
        }
    }

    @Test func largeShapesSingleAndTwoThreads() {
        // Crosses the K (256) and N (512) blocks of the GEMM and the chunking of the GEMV.
        checkLinear(tokens: 20, rows: 600, cols: 700, type: .bf16, accumulate: true, padX: 1, padO: 2, pool: pool2, seed: 91)
        checkLinear(tokens: 13, rows: 530, cols: 520, type: .f32, accumulate: false, padX: 0, padO: 0, pool: pool1, seed: 92)
        checkLinear(tokens: 1, rows: 4099, cols: 1030, type: .bf16, accumulate: false, padX: 0, padO: 0, pool: pool2, seed: 93)
        checkLinear(tokens: 2, rows: 1500, cols: 1024, type: .f16, accumulate: true, padX: 0, padO: 0, pool: pool2, seed: 94)
    }

    @Test func loadRowWidens() {
        var rng = Rng(5)
        for type in [ElementType.f32, .bf16, .f16] {
            let (bytes, wv) = makeWeights(7, 45, type, &rng)
            var dst = [Float](repeating: 0, count: 45)
            bytes.withUnsafeBytes { wb in
                loadRow(WeightMatrix(base: wb.baseAddress!, rows: 7, cols: 45, type: type), row: 3, into: &dst)
            }
            #expect(dst == Array(wv[(3 * 45)..<(4 * 45)]))
        }
        #expect(ElementType.f32.byteSize == 4 && ElementType.bf16.byteSize == 2 && ElementType.f16.byteSize == 2)
    }
}

private func refGemm(_ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: [Float], _ lda: Int, _ b: [Float], _ ldb: Int,
                     transposedB: Bool, _ c0: [Float], _ ldc: Int, _ accumulate: Bool) -> (value: [Double], mag: [Double]) {
    var v = [Double](repeating: 0, count: m * ldc), mg = v
    for i in 0..<m {
        for j in 0..<n {
            var s = 0.0, g = 0.0
            for p in 0..<k {
                let bv = transposedB ? b[j * ldb + p] : b[p * ldb + j]
                let t = Double(alpha) * Double(a[i * lda + p]) * Double(bv)
                s += t; g += abs(t)
            }
            if accumulate { s += Double(c0[i * ldc + j]); g += abs(Double(c0[i * ldc + j])) }
            v[i * ldc + j] = s; mg[i * ldc + j] = g
        }
    }
    return (v, mg)
}

@Suite struct SGEMMTests {
    @Test func oddSizesAlphaAccumulate() {
        var rng = Rng(11)
        let cases: [(Int, Int, Int)] = [(1, 1, 1), (5, 17, 3), (7, 33, 65), (13, 50, 129), (6, 16, 256), (30, 70, 300),
                                        (64, 128, 64), (3, 600, 40)]
        for (ci, (m, n, k)) in cases.enumerated() {
            for transposed in [false, true] {
                let accumulate = ci % 2 == 1
                let alpha: Float = ci % 3 == 0 ? 1 : 0.37
                let lda = k + 2, ldb = (transposed ? k : n) + 3, ldc = n + 1
                let a = rng.floats(m * lda)
                let b = rng.floats((transposed ? n : k) * ldb)
                let c0 = rng.floats(m * ldc)
                var c = c0
                let pool: WorkerPool? = ci % 2 == 0 ? nil : pool2
                if transposed {
                    sgemmNT(m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, c: &c, ldc: ldc,
                            accumulate: accumulate, pool: pool)
                } else {
                    sgemmNN(m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, c: &c, ldc: ldc,
                            accumulate: accumulate, pool: pool)
                }
                let (ref, mag) = refGemm(m, n, k, alpha, a, lda, b, ldb, transposedB: transposed, c0, ldc, accumulate)
                var worst = 0.0
                for i in 0..<m {
                    for j in 0..<n { worst = max(worst, abs(Double(c[i * ldc + j]) - ref[i * ldc + j]) / (mag[i * ldc + j] + 1e-30)) }
                    #expect(c[i * ldc + n] == c0[i * ldc + n])   // the padding column is untouched
                }
                #expect(worst < 2e-6, "sgemm \(transposed ? "NT" : "NN") \(m)×\(n)×\(k): rel err \(worst)")
            }
        }
    }

    /// Aᵀ·B (weight gradients): A stored [k×m]; m not a multiple of the micro-kernel's 6 rows, below 8, above
    /// the 96-row packing block, k above the 256 blocking, with and without the pool (rows split when m > n).
    @Test func transposedAOddSizes() {
        var rng = Rng(12)
        let cases: [(Int, Int, Int)] = [(1, 1, 1), (5, 17, 3), (7, 9, 300), (97, 33, 65), (200, 40, 513), (13, 130, 20)]
        for (ci, (m, n, k)) in cases.enumerated() {
            let accumulate = ci % 2 == 0
            let alpha: Float = ci % 3 == 0 ? 1 : 0.37
            let lda = m + 2, ldb = n + 3, ldc = n + 1
            let a = rng.floats(k * lda), b = rng.floats(k * ldb), c0 = rng.floats(m * ldc)
            var at = [Float](repeating: 0, count: m * k)   // Aᵀ, [m×k], for the reference
            for p in 0..<k { for i in 0..<m { at[i * k + p] = a[p * lda + i] } }
            for pool in [nil, pool2] as [WorkerPool?] {
                var c = c0
                sgemmTN(m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, c: &c, ldc: ldc,
                        accumulate: accumulate, pool: pool)
                let (ref, mag) = refGemm(m, n, k, alpha, at, k, b, ldb, transposedB: false, c0, ldc, accumulate)
                var worst = 0.0
                for i in 0..<m {
                    for j in 0..<n { worst = max(worst, abs(Double(c[i * ldc + j]) - ref[i * ldc + j]) / (mag[i * ldc + j] + 1e-30)) }
                    #expect(c[i * ldc + n] == c0[i * ldc + n])
                }
                #expect(worst < 2e-6, "sgemm TN \(m)×\(n)×\(k): rel err \(worst)")
            }
        }
    }

    @Test func zeroK() {
        var c: [Float] = [1, 2, 3, 4]
        let a: [Float] = [0], b: [Float] = [0]
        sgemmNN(m: 2, n: 2, k: 0, alpha: 1, a: a, lda: 1, b: b, ldb: 2, c: &c, ldc: 2, accumulate: true, pool: nil)
        #expect(c == [1, 2, 3, 4])
        sgemmNT(m: 2, n: 2, k: 0, alpha: 1, a: a, lda: 1, b: b, ldb: 1, c: &c, ldc: 2, accumulate: false, pool: nil)
        #expect(c == [0, 0, 0, 0])
    }
}

@Suite struct ConversionTests {
    private func bf(_ bits: UInt32) -> UInt16 {
        var out: UInt16 = 0
        var f = Float(bitPattern: bits)
        floatToBF16(&f, &out, count: 1)
        return out
    }

    @Test func bf16RoundToNearestEven() {
        #expect(bf(0x3F80_0000) == 0x3F80)            // 1.0
        #expect(bf(0x3F80_8000) == 0x3F80)            // tie, even stays
        #expect(bf(0x3F81_8000) == 0x3F82)            // tie, odd rounds up
        #expect(bf(0x3F80_8001) == 0x3F81)            // above half
        #expect(bf(0x3F80_7FFF) == 0x3F80)            // below half
        #expect(bf(0xBF81_8000) == 0xBF82)            // negative tie
        #expect(bf(0x7F7F_FFFF) == 0x7F80)            // max float rounds to inf
        #expect(bf(0x7F80_0000) == 0x7F80)            // inf
        #expect(bf(0xFF80_0000) == 0xFF80)            // -inf
        #expect(bf(0x0000_0001) == 0x0000)            // tiny subnormal
        #expect(bf(0x8000_0000) == 0x8000)            // -0
        for nan: UInt32 in [0x7FC0_0000, 0x7F80_0001, 0xFF80_0001, 0x7FFF_FFFF] {
            let h = bf(nan)
            #expect(h & 0x7F80 == 0x7F80 && h & 0x7F != 0, "NaN \(nan) → \(h)")
        }
    }

    @Test func bf16AllValuesRoundTrip() {
        let all = (0...0xFFFF).map { UInt16($0) }
        var f = [Float](repeating: 0, count: all.count)
        bf16ToFloat(all, &f, count: all.count)
        var back = [UInt16](repeating: 0, count: all.count)
        floatToBF16(f, &back, count: all.count)
        for i in 0..<all.count {
            #expect(f[i].bitPattern == UInt32(all[i]) << 16)
            if !f[i].isNaN { #expect(back[i] == all[i]) } else { #expect(back[i] & 0x7F80 == 0x7F80 && back[i] & 0x7F != 0) }
        }
    }

    @Test func f16KnownValues() {
        let cases: [(UInt16, Float)] = [(0x0000, 0), (0x8000, -0.0), (0x3C00, 1), (0xC000, -2), (0x7BFF, 65504),
                                        (0x0001, 0x1p-24), (0x03FF, 1023 * 0x1p-24), (0x0400, 0x1p-14),
                                        (0x7C00, .infinity), (0xFC00, -.infinity), (0x3555, 0.333251953125)]
        for (h, v) in cases {
            var src = h, dst: Float = 0
            f16ToFloat(&src, &dst, count: 1)
            #expect(dst == v && dst.sign == v.sign, "f16 \(h)")
            var back: UInt16 = 0
            floatToF16(&dst, &back, count: 1)
            #expect(back == h)
        }
        var nan: UInt16 = 0x7E00, nf: Float = 0
        f16ToFloat(&nan, &nf, count: 1)
        #expect(nf.isNaN)
        // Rounding: ties to even, overflow, subnormal results.
        let rounding: [(Float, UInt16)] = [(65519, 0x7BFF), (65520, 0x7C00), (1e6, 0x7C00), (0x1p-25, 0x0000),
                                           (0x1.8p-25, 0x0001), (0x1.8p-24, 0x0002), (0x1p-24, 0x0001),
                                           (1 + 0x1p-11, 0x3C00), (1 + 0x1.8p-10, 0x3C02), (-.infinity, 0xFC00),
                                           (1e-10, 0x0000), (-1e-10, 0x8000)]
        for (f, h) in rounding {
            var src = f, dst: UInt16 = 0
            floatToF16(&src, &dst, count: 1)
            #expect(dst == h, "f16 of \(f): \(dst) vs \(h)")
        }
        var fnan = Float.nan, hn: UInt16 = 0
        floatToF16(&fnan, &hn, count: 1)
        #expect(hn & 0x7C00 == 0x7C00 && hn & 0x3FF != 0)
    }

    @Test func f16AllValuesRoundTrip() {
        let all = (0...0xFFFF).map { UInt16($0) }
        var f = [Float](repeating: 0, count: all.count)
        f16ToFloat(all, &f, count: all.count)
        var back = [UInt16](repeating: 0, count: all.count)
        floatToF16(f, &back, count: all.count)
        for i in 0..<all.count {
            if f[i].isNaN {
                #expect(all[i] & 0x7C00 == 0x7C00 && all[i] & 0x3FF != 0)
                #expect(back[i] & 0x7C00 == 0x7C00 && back[i] & 0x3FF != 0)
            } else {
                #expect(back[i] == all[i])
                // Exact value: sign · mantissa · 2^exp.
                let e = Int((all[i] >> 10) & 0x1F), m = Int(all[i] & 0x3FF)
                let mag: Float = e == 0 ? Float(m) * 0x1p-24 : (e == 31 ? .infinity : Float(1024 + m) * Float(sign: .plus, exponent: e - 25, significand: 1))
                #expect(f[i] == (all[i] & 0x8000 != 0 ? -mag : mag))
            }
        }
    }
}

@Suite struct PoolTests {
    @Test func everyIndexOnce() {
        for threads in [1, 2, 3] {
            let pool = WorkerPool(threads: threads)
            #expect(pool.threads == threads)
            for count in [0, 1, 2, 5, 100, 1000] {
                let hits = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
                hits.initialize(repeating: 0, count: max(count, 1))
                for _ in 0..<20 { pool.parallelFor(count) { i in hits[i] += 1 } }
                for i in 0..<count { #expect(hits[i] == 20) }
                hits.deallocate()
            }
        }
        #expect(WorkerPool.defaultThreadCount >= 1)
    }

    @Test func nestedCallsRunInline() {
        let pool = WorkerPool(threads: 2)
        let hits = UnsafeMutablePointer<Int>.allocate(capacity: 8 * 8)
        hits.initialize(repeating: 0, count: 64)
        pool.parallelFor(8) { i in
            pool.parallelFor(8) { j in hits[i * 8 + j] += 1 }
        }
        for i in 0..<64 { #expect(hits[i] == 1) }
        hits.deallocate()
    }

    @Test func manySmallSections() {
        let pool = WorkerPool(threads: 2)
        let sums = UnsafeMutablePointer<Int>.allocate(capacity: 2)
        sums.initialize(repeating: 0, count: 2)
        for _ in 0..<5000 { pool.parallelFor(2) { i in sums[i] += i + 1 } }
        #expect(sums[0] == 5000 && sums[1] == 10000)
        sums.deallocate()
    }

    /// Back-to-back sections whose sizes alternate, on more workers than cores so that workers are preempted
    /// mid-claim: a late worker must never run an index of a finished section with the next section's body.
    @Test func lateWorkersNeverRunAStaleIndex() {
        let pool = WorkerPool(threads: 4)
        let counts = [2, 7, 3, 16]
        let slots = UnsafeMutablePointer<Int>.allocate(capacity: 32)
        var wrong = 0, total = 0
        for round in 0..<200_000 {
            let count = counts[round % counts.count]
            slots.initialize(repeating: 0, count: 16)
            pool.parallelFor(count) { i in
                // Uneven item lengths, so workers finish at different times.
                for _ in 0..<(i * 7 % 50) { slots[16 + i] &+= 1 }
                slots[i] &+= 1
            }
            for i in 0..<16 where slots[i] != (i < count ? 1 : 0) { wrong += 1 }
            total += count
        }
        #expect(wrong == 0, "\(wrong) slots run a wrong number of times in \(total) items")
        slots.deallocate()
    }

    @Test func bandwidthIsPositive() {
        #expect(measureReadBandwidth(pool: pool2, bytes: 1 << 22) > 0)
    }
}
