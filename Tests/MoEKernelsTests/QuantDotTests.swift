import Foundation
import Testing
@testable import MoEKernels

/// The decode kernels of every block type (`QuantType.dotRows`: the Swift kernels and, where the CPU has AVX2, the
/// C target's) against the dequantised rows multiplied in double precision. The C kernels round the activations to
/// 16 bits per group of 32 (each off by at most its group's largest magnitude / 65,534): their bound adds that.
@Suite struct QuantDotTests {
    /// 512 columns; and 8,448, past the C kernels' stack buffer for the quantised activations, with a group of 32
    /// zeros and an outlier among the activations.
    @Test(arguments: QuantType.allCases, [512, 8448])
    func dotRowsEqualTheDequantisedProduct(_ q: QuantType, cols: Int) {
        let rows = 5
        var seed: UInt64 = 0x1234_5678 &+ UInt64(q.rawValue)
        func uniform() -> Float {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Double(seed >> 11) / Double(1 << 53)) * 2 - 1
        }
        let values = (0..<(rows * cols)).map { i in uniform() * (i % 97 == 0 ? 4 : 0.5) }
        var x = (0..<cols).map { _ in uniform() }
        if cols > 512 {
            for i in 64..<96 { x[i] = 0 }
            x[200] = 40
        }
        let rowBytes = q.rowBytes(cols)!
        var blocks = [UInt8](repeating: 0, count: rows * rowBytes)
        blocks.withUnsafeMutableBytes { q.quantize(values, into: $0.baseAddress!, count: rows * cols) }
        var dense = [Float](repeating: 0, count: cols)
        var expected = [Double](repeating: 0, count: rows), activationRounding = [Double](repeating: 0, count: rows)
        let groupMax = stride(from: 0, to: cols, by: 32).map { g in x[g..<(g + 32)].map { abs(Double($0)) }.max()! }
        blocks.withUnsafeBytes { b in
            for r in 0..<rows {
                q.dequantize(b.baseAddress! + r * rowBytes, into: &dense, count: cols)
                expected[r] = 0.25 + zip(dense, x).reduce(0) { $0 + Double($1.0) * Double($1.1) }
                activationRounding[r] = dense.indices.reduce(0) { $0 + abs(Double(dense[$1])) * groupMax[$1 / 32] / 65534 }
            }
        }
        for portable in quantDotAVX2 ? [true, false] : [true] {
            var out = [Float](repeating: 0.25, count: rows)
            blocks.withUnsafeBytes { b in
                let w = WeightMatrix(base: b.baseAddress!, rows: rows, cols: cols, type: .quantized(q))
                q.dotRows(0..<rows, w, x, &out, true, portable: portable)
            }
            for r in 0..<rows {
                let bound = 1e-4 * max(1, abs(expected[r])) + (portable ? 0 : activationRounding[r])
                #expect(abs(Double(out[r]) - expected[r]) <= bound,
                        "\(q) row \(r) (\(portable ? "Swift" : "AVX2")): \(out[r]) vs \(expected[r])")
            }
        }
    }
}

extension QuantDotTests {
    /// A NaN or infinite activation makes every output NaN or infinite (as f32 products would), on both paths:
    /// the AVX2 kernels' integer activations must not hide it.
    @Test(arguments: [QuantType.q4_0, .q8_0, .q4_K, .q6_K])
    func nonFiniteActivationsStayVisible(_ q: QuantType) {
        let rows = 3, cols = 256
        let values = (0..<(rows * cols)).map { Float(($0 * 37) % 101) / 50 - 1 }
        var blocks = [UInt8](repeating: 0, count: rows * q.rowBytes(cols)!)
        blocks.withUnsafeMutableBytes { q.quantize(values, into: $0.baseAddress!, count: rows * cols) }
        for bad in [Float.nan, .infinity] {
            var x = (0..<cols).map { Float($0 % 7) - 3 }
            x[77] = bad
            for portable in quantDotAVX2 ? [true, false] : [true] {
                var out = [Float](repeating: 0, count: rows)
                blocks.withUnsafeBytes { b in
                    let w = WeightMatrix(base: b.baseAddress!, rows: rows, cols: cols, type: .quantized(q))
                    q.dotRows(0..<rows, w, x, &out, false, portable: portable)
                }
                #expect(out.allSatisfy { !$0.isFinite }, "\(q) \(bad) (\(portable ? "Swift" : "AVX2")): \(out)")
            }
        }
    }
}

extension QuantDotTests {
    /// The several-token kernels (batched decode), 1–8 tokens with a row stride wider than the row, accumulating:
    /// each token's outputs as its own dot products, within the bound of the activations' rounding.
    @Test(.enabled(if: quantDotAVX2, "needs the AVX2 kernels"), arguments: [QuantType.q4_0, .q8_0, .q4_K, .q6_K], [2, 5, 8])
    func severalTokensEqualTheDequantisedProduct(_ q: QuantType, tokens: Int) {
        let rows = 7, cols = 512, ldx = cols + 3, ldo = rows + 2
        let values = (0..<(rows * cols)).map { Float(($0 * 7919) % 1009) / 504.5 - 1 }
        let x = (0..<(tokens * ldx)).map { Float(($0 * 104_729) % 997) / 498.5 - 1 }
        var blocks = [UInt8](repeating: 0, count: rows * q.rowBytes(cols)!)
        blocks.withUnsafeMutableBytes { q.quantize(values, into: $0.baseAddress!, count: rows * cols) }
        var out = [Float](repeating: 0.5, count: tokens * ldo)
        var dense = [Float](repeating: 0, count: cols)
        blocks.withUnsafeBytes { b in
            let w = WeightMatrix(base: b.baseAddress!, rows: rows, cols: cols, type: .quantized(q))
            q.dotRowsTokens(0..<rows, w, x, ldx, tokens, &out, ldo, true)
            for r in 0..<rows {
                q.dequantize(b.baseAddress! + r * q.rowBytes(cols)!, into: &dense, count: cols)
                for t in 0..<tokens {
                    let xt = x[(t * ldx)..<(t * ldx + cols)]
                    let expected = 0.5 + zip(dense, xt).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                    let rounding = dense.indices.reduce(0.0) { sum, i in
                        let g = t * ldx + i / 32 * 32
                        return sum + abs(Double(dense[i])) * Double(x[g..<(g + 32)].map { abs($0) }.max()!) / 65534
                    }
                    #expect(abs(Double(out[t * ldo + r]) - expected) <= 1e-4 * max(1, abs(expected)) + rounding,
                            "\(q) row \(r) token \(t): \(out[t * ldo + r]) vs \(expected)")
                }
            }
        }
        // The padding between rows of the output is untouched.
        for t in 0..<tokens { #expect(out[t * ldo + rows] == 0.5 && out[t * ldo + rows + 1] == 0.5) }
    }
}

extension QuantDotTests {
    /// The fast path (`int8Linear`: activations rounded to int8 per 32 values for Q4_0, per 256 for the K-quants), for
    /// 1–70 tokens and 256–8,448 columns, over two chunks of rows (the second with a lone last row for the GEMM's
    /// pairs), accumulating; the decode kernels and, for the K-quants, the prefill GEMM. With
    /// activations that int8 holds exactly (each group's largest is 1, the rest multiples of 1/127) the outputs are
    /// the exact dot products; with any activations, within their rounding (each off by at most its group's
    /// largest / 254).
    @Test(.enabled(if: quantDotAVX2, "needs the AVX2 kernels"),
          arguments: [QuantType.q4_0, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_xs, .mxfp4], [(1, 512), (3, 512), (4, 8448), (17, 512), (70, 256)])
    func int8ActivationsEqualTheDequantisedProduct(_ q: QuantType, shape: (tokens: Int, cols: Int)) {
        let (tokens, cols) = shape
        let rows = 7, ldx = cols + 5, ldo = rows + 1, group = q.int8ActivationGroup
        let values = (0..<(rows * cols)).map { Float(($0 * 7919) % 1009) / 504.5 - 1 }
        var blocks = [UInt8](repeating: 0, count: rows * q.rowBytes(cols)!)
        blocks.withUnsafeMutableBytes { q.quantize(values, into: $0.baseAddress!, count: rows * cols) }
        for gemm in (q.hasInt8Kernel ? [false] : []) + (q.hasInt8GEMM ? [true] : []) {
        for exact in [true, false] {
            let x = (0..<(tokens * ldx)).map { i -> Float in
                let k = Float((i * 104_729) % 255 - 127)
                if exact { return i % ldx % group == 5 ? 1 : k / 127 }
                return i % ldx == 200 ? 30 : k / 97 + 0.01
            }
            var out = [Float](repeating: 0.5, count: tokens * ldo)
            var dense = [Float](repeating: 0, count: cols)
            blocks.withUnsafeBytes { b in
                let w = WeightMatrix(base: b.baseAddress!, rows: rows, cols: cols, type: .quantized(q))
                int8Linear(x, ldx, tokens, w, q, &out, ldo, true, WorkerPool(threads: 1), chunks: 2, gemm: gemm)
                for r in 0..<rows {
                    q.dequantize(b.baseAddress! + r * q.rowBytes(cols)!, into: &dense, count: cols)
                    for t in 0..<tokens {
                        let xt = x[(t * ldx)..<(t * ldx + cols)]
                        let expected = 0.5 + zip(dense, xt).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                        let rounding = exact ? 0 : dense.indices.reduce(0.0) { sum, i in
                            let g = t * ldx + i / group * group
                            return sum + abs(Double(dense[i])) * Double(x[g..<(g + group)].map { abs($0) }.max()!) / 254
                        }
                        #expect(abs(Double(out[t * ldo + r]) - expected) <= 1e-4 * max(1, abs(expected)) + rounding,
                                "\(q) \(gemm ? "GEMM" : "rows") \(exact ? "exact" : "rounded") row \(r) token \(t): \(out[t * ldo + r]) vs \(expected)")
                    }
                }
            }
            for t in 0..<tokens { #expect(out[t * ldo + rows] == 0.5) }
        }
        }
    }

    /// The GEMM sums up to eight products of codes and activations in 16 bits before scaling them: with every code at
    /// its largest (all bits set), the scales' fields too, and every activation at ±127, nothing wraps.
    @Test(.enabled(if: quantDotAVX2, "needs the AVX2 kernels"), arguments: [QuantType.q4_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_xs])
    func int8GEMMLargestCodesDoNotOverflow(_ q: QuantType) {
        let rows = 9, cols = 512, tokens = 13
        let bytes = q.rowBytes(cols)!, blockBytes = bytes / (cols / q.blockElements)
        // The f16 scale fields (d, and dmin where the type has one) set to 2^-10; every other byte 0xFF.
        let halves: [Int] = switch q {
        case .q2_K: [80, 82]
        case .q3_K: [108]
        case .q6_K: [208]
        case .q4_0, .iq4_xs: [0]
        default: [0, 2]
        }
        var blocks = [UInt8](repeating: 0xFF, count: rows * bytes)
        for b in stride(from: 0, to: blocks.count, by: blockBytes) {
            for h in halves { blocks[b + h] = 0x00; blocks[b + h + 1] = 0x14 }
        }
        for sign: Float in [1, -1] {
            let x = [Float](repeating: sign, count: tokens * cols)
            var out = [Float](repeating: 0, count: tokens * rows)
            var dense = [Float](repeating: 0, count: cols)
            blocks.withUnsafeBytes { b in
                let w = WeightMatrix(base: b.baseAddress!, rows: rows, cols: cols, type: .quantized(q))
                int8Linear(x, cols, tokens, w, q, &out, rows, false, WorkerPool(threads: 1), chunks: 1, gemm: true)
                q.dequantize(b.baseAddress!, into: &dense, count: cols)
            }
            let expected = Double(sign) * dense.reduce(0.0) { $0 + Double($1) }
            for (i, o) in out.enumerated() {
                #expect(abs(Double(o) - expected) <= 1e-4 * max(1, abs(expected)), "\(q) sign \(sign) output \(i): \(o) vs \(expected)")
            }
        }
    }

    /// `linearPair` (gate and up sharing one rounding of x and one parallel section) gives exactly the two `linear`
    /// products, on the row kernels and the GEMM, and falls back to them for matrices of different types.
    @Test(arguments: [(QuantType.q4_K, QuantType.q4_K), (.q6_K, .q6_K), (.q4_0, .q4_0), (.q4_K, .q6_K)], [1, 5, 40])
    func linearPairEqualsTwoProducts(_ types: (QuantType, QuantType), tokens: Int) {
        let rows = 20, cols = 512
        let values = (0..<(rows * cols)).map { Float(($0 * 7919) % 1009) / 504.5 - 1 }
        var a = [UInt8](repeating: 0, count: rows * types.0.rowBytes(cols)!)
        var b = [UInt8](repeating: 0, count: rows * types.1.rowBytes(cols)!)
        a.withUnsafeMutableBytes { types.0.quantize(values, into: $0.baseAddress!, count: rows * cols) }
        b.withUnsafeMutableBytes { types.1.quantize(values.reversed(), into: $0.baseAddress!, count: rows * cols) }
        let x = (0..<(tokens * cols)).map { Float(($0 * 104_729) % 255 - 127) / 97 }
        let pool = WorkerPool(threads: 2)
        var pair1 = [Float](repeating: 9, count: tokens * rows), pair2 = pair1, one = pair1, two = pair1
        a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in
                let w1 = WeightMatrix(base: pa.baseAddress!, rows: rows, cols: cols, type: .quantized(types.0), activations: .int8)
                let w2 = WeightMatrix(base: pb.baseAddress!, rows: rows, cols: cols, type: .quantized(types.1), activations: .int8)
                linearPair(x, ldx: cols, tokens: tokens, w1, into: &pair1, ldo1: rows, w2, into: &pair2, ldo2: rows, pool: pool)
                linear(x, ldx: cols, tokens: tokens, w1, into: &one, ldo: rows, pool: pool)
                linear(x, ldx: cols, tokens: tokens, w2, into: &two, ldo: rows, pool: pool)
            }
        }
        #expect(pair1 == one && pair2 == two, "\(types) \(tokens) tokens")
    }

    /// A NaN or infinite activation stays visible on the fast path too.
    @Test(.enabled(if: quantDotAVX2, "needs the AVX2 kernels"), arguments: [QuantType.q4_0, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_xs, .mxfp4])
    func int8NonFiniteActivationsStayVisible(_ q: QuantType) {
        let rows = 3, cols = 512
        let values = (0..<(rows * cols)).map { Float(($0 * 37) % 101) / 50 - 1 }
        var blocks = [UInt8](repeating: 0, count: rows * q.rowBytes(cols)!)
        blocks.withUnsafeMutableBytes { q.quantize(values, into: $0.baseAddress!, count: rows * cols) }
        for bad in [Float.nan, .infinity, -.infinity] {
            var x = (0..<cols).map { Float($0 % 7) - 3 }
            x[300] = bad
            for gemm in (q.hasInt8Kernel ? [false] : []) + (q.hasInt8GEMM ? [true] : []) {
                var out = [Float](repeating: 0, count: rows)
                blocks.withUnsafeBytes { b in
                    let w = WeightMatrix(base: b.baseAddress!, rows: rows, cols: cols, type: .quantized(q))
                    int8Linear(x, cols, 1, w, q, &out, rows, false, WorkerPool(threads: 1), chunks: 1, gemm: gemm)
                }
                #expect(out.allSatisfy { !$0.isFinite }, "\(q) \(gemm ? "GEMM" : "rows") \(bad): \(out)")
            }
        }
    }
}
