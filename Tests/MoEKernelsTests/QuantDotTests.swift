import Foundation
import Testing
@testable import MoEKernels

/// The decode kernels of every block type (`QuantType.dotRows`: the Swift kernels and, where the CPU has AVX2, the
/// C target's) against the dequantised rows multiplied in double precision.
@Suite struct QuantDotTests {
    @Test(arguments: QuantType.allCases)
    func dotRowsEqualTheDequantisedProduct(_ q: QuantType) {
        let rows = 5, cols = 512
        var seed: UInt64 = 0x1234_5678 &+ UInt64(q.rawValue)
        func uniform() -> Float {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Double(seed >> 11) / Double(1 << 53)) * 2 - 1
        }
        let values = (0..<(rows * cols)).map { i in uniform() * (i % 97 == 0 ? 4 : 0.5) }
        let x = (0..<cols).map { _ in uniform() }
        let rowBytes = q.rowBytes(cols)!
        var blocks = [UInt8](repeating: 0, count: rows * rowBytes)
        blocks.withUnsafeMutableBytes { q.quantize(values, into: $0.baseAddress!, count: rows * cols) }
        var dense = [Float](repeating: 0, count: cols)
        var expected = [Double](repeating: 0, count: rows)
        blocks.withUnsafeBytes { b in
            for r in 0..<rows {
                q.dequantize(b.baseAddress! + r * rowBytes, into: &dense, count: cols)
                expected[r] = 0.25 + zip(dense, x).reduce(0) { $0 + Double($1.0) * Double($1.1) }
            }
        }
        for portable in quantDotAVX2 ? [true, false] : [true] {
            var out = [Float](repeating: 0.25, count: rows)
            blocks.withUnsafeBytes { b in
                let w = WeightMatrix(base: b.baseAddress!, rows: rows, cols: cols, type: .quantized(q))
                q.dotRows(0..<rows, w, x, &out, true, portable: portable)
            }
            for r in 0..<rows {
                #expect(abs(Double(out[r]) - expected[r]) <= 1e-4 * max(1, abs(expected[r])),
                        "\(q) row \(r) (\(portable ? "Swift" : "AVX2")): \(out[r]) vs \(expected[r])")
            }
        }
    }
}
