import Foundation
import Testing
import MoEKernels
@testable import MoEModel

@Suite struct ExpertRouterTests {
    /// Qwen3-Next's 512 experts top-10: the one-pass top-k gives a full sort's choice, in order, with ties (scores
    /// repeated on purpose) resolved toward the lower expert as a scan for the maximum does; NaN scores are never
    /// chosen over real ones; the counting sort groups every entry under its expert.
    @Test func topKOfManyExpertsEqualsASort() {
        let experts = 512, k = 10, T = 40
        let weights = [Float](repeating: 0, count: experts)
        weights.withUnsafeBufferPointer { w in
            let router = ExpertRouter(weight: WeightMatrix(base: UnsafeRawPointer(w.baseAddress!), rows: experts, cols: 1, type: .f32),
                                      topK: k, normTopKProb: true, layout: { var l = RouterLayout(); l.scoring = .sigmoid; return l }())
            var rng = Xoshiro256StarStar(seed: 3)
            var logits = (0..<(T * experts)).map { _ in Float(Int(rng.next() % 64)) / 8 - 4 }   // many equal values
            logits[5] = .nan
            let original = logits
            var routing = Routing()
            logits.withUnsafeMutableBufferPointer { router.route($0.baseAddress!, tokens: T, routing: &routing) }
            for t in 0..<T {
                let row = original[(t * experts)..<((t + 1) * experts)].map { $0.isNaN ? -Float.infinity : $0 }
                // Stable order: score descending, then expert ascending.
                let expected = row.indices.sorted { row[$0] != row[$1] ? row[$0] > row[$1] : $0 < $1 }.prefix(k).map { Int32($0) }
                #expect(Array(routing.chosen[(t * k)..<((t + 1) * k)]) == expected, "token \(t)")
                let sum = routing.weights[(t * k)..<((t + 1) * k)].reduce(0, +)
                #expect(abs(sum - 1) < 1e-5)
            }
            for e in 0..<experts {
                for i in routing.offsets[e]..<routing.offsets[e + 1] { #expect(routing.chosen[Int(routing.order[i])] == Int32(e)) }
            }
        }
    }
}
