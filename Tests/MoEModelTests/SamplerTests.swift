import Foundation
import Testing
@testable import MoEModel

/// Reference cases written by scripts/make_sampling_fixtures.py from transformers' own logits processors.
private struct SamplingFixture: Decodable {
    struct Case: Decodable {
        let name: String
        let params: SamplingParameters
        let logits: [Double?]
        let history: [Int]
        let generated: [Int]
        let expectedScores: [Double?]
        let expectedProbs: [Double]
        let expectedArgmax: Int
        let tieSplit: Bool

        enum CodingKeys: String, CodingKey {
            case name, params, logits, history, generated
            case expectedScores = "expected_scores", expectedProbs = "expected_probs"
            case expectedArgmax = "expected_argmax", tieSplit = "tie_split"
        }

        var floatLogits: [Float] { logits.map { $0.map(Float.init) ?? -.infinity } }
        var kept: Int { expectedScores.count { $0 != nil } }
    }

    let transformers: String
    let cases: [Case]

    static let shared: SamplingFixture = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/sampling.json")
        do {
            return try JSONDecoder().decode(SamplingFixture.self, from: Data(contentsOf: url))
        } catch {
            fatalError("cannot load \(url.path): \(error)")
        }
    }()

    func named(_ name: String) -> Case {
        guard let c = cases.first(where: { $0.name == name }) else { fatalError("no fixture case \(name)") }
        return c
    }
}

/// Softmax in Double of processed scores (-inf gives 0).
private func softmax(_ scores: [Float]) -> [Double] {
    let m = Double(scores.max() ?? 0)
    let e = scores.map { $0 == -.infinity ? 0 : Foundation.exp(Double($0) - m) }
    let z = e.reduce(0, +)
    return e.map { $0 / z }
}

@Suite struct SamplerTests {
    @Test func fixtureIsFromTransformers523() {
        #expect(SamplingFixture.shared.transformers == "5.23.0")
        #expect(SamplingFixture.shared.cases.count >= 30)
    }

    /// The processed scores and their softmax equal HF's (and vLLM's penalties) for every case.
    @Test(arguments: SamplingFixture.shared.cases.map(\.name))
    func processMatchesHF(_ name: String) {
        let c = SamplingFixture.shared.named(name)
        var scores = c.floatLogits
        Sampler(c.params).process(&scores, history: c.history, generated: c.generated)
        let probs = softmax(scores)
        let filtered = scores.map { $0 == -.infinity }
        let expectedFiltered = c.expectedScores.map { $0 == nil }
        if c.tieSplit {
            // Top-p cut a group of equal scores; HF's survivors follow torch.sort's unstable order, ours are the
            // lowest ids. Same number kept, same distribution up to which tied ids.
            #expect(filtered.count { !$0 } == expectedFiltered.count { !$0 }, "\(name): kept count")
            let a = probs.sorted(), b = c.expectedProbs.sorted()
            for i in a.indices { #expect(abs(a[i] - b[i]) <= 1e-6, "\(name): sorted prob \(i)") }
            return
        }
        #expect(filtered == expectedFiltered, "\(name): set of filtered entries")
        for i in scores.indices {
            if let e = c.expectedScores[i], scores[i] != -.infinity {
                #expect(abs(Double(scores[i]) - e) <= 1e-5 * max(1, abs(e)), "\(name): score \(i)")
            }
            #expect(abs(probs[i] - c.expectedProbs[i]) <= 1e-6, "\(name): prob \(i) \(probs[i]) vs \(c.expectedProbs[i])")
        }
    }

    /// Greedy decoding returns torch.argmax of the penalised logits (ties to the lowest id).
    @Test func greedyIsArgmax() {
        let cases = SamplingFixture.shared.cases.filter { !$0.params.doSample }
        #expect(cases.count >= 3)
        for c in cases {
            var sampler = Sampler(c.params)
            var logits = c.floatLogits
            #expect(sampler.sample(&logits, history: c.history, generated: c.generated) == c.expectedArgmax, "\(c.name)")
        }
        // Exact ties: the first one wins.
        var sampler = Sampler(.greedy)
        var tied: [Float] = [0, 3, 1, 3, 3, -2]
        #expect(sampler.sample(&tied, history: [Int](), generated: [Int]()) == 1)
        var allMasked = [Float](repeating: -.infinity, count: 4)
        #expect(sampler.sample(&allMasked, history: [Int](), generated: [Int]()) == 0)
        var drawing = Sampler(SamplingParameters(topP: 0.9, minP: 0.1, seed: 1))
        allMasked = [Float](repeating: -.infinity, count: 4)
        #expect(drawing.sample(&allMasked, history: [Int](), generated: [Int]()) == 0)
    }

    /// Whenever HF leaves a single candidate, sampling returns it, whatever the seed.
    @Test func singleCandidateIsDeterministic() {
        let cases = SamplingFixture.shared.cases.filter { $0.params.doSample && $0.kept == 1 }
        #expect(cases.count >= 3)
        for c in cases {
            for seed: UInt64 in 0..<20 {
                var params = c.params
                params.seed = seed
                var sampler = Sampler(params)
                for _ in 0..<5 {
                    var logits = c.floatLogits
                    #expect(sampler.sample(&logits, history: c.history, generated: c.generated) == c.expectedArgmax)
                }
            }
        }
    }

    @Test func topK1IsDeterministic() {
        let c = SamplingFixture.shared.named("temperature_1.3")
        let expected = c.floatLogits.indices.max { c.floatLogits[$0] < c.floatLogits[$1] }!
        for seed: UInt64 in 0..<50 {
            var sampler = Sampler(SamplingParameters(temperature: 1.3, topK: 1, seed: seed))
            var logits = c.floatLogits
            #expect(sampler.sample(&logits, history: [Int](), generated: [Int]()) == expected)
        }
    }

    private func draws(_ c: SamplingFixture.Case, seed: UInt64?, count: Int) -> [Int] {
        var params = c.params
        params.seed = seed
        var sampler = Sampler(params)
        var out: [Int] = []
        out.reserveCapacity(count)
        let original = c.floatLogits
        var logits = original
        for _ in 0..<count {
            logits.withUnsafeMutableBufferPointer { buffer in
                original.withUnsafeBufferPointer { buffer.baseAddress!.update(from: $0.baseAddress!, count: $0.count) }
            }
            out.append(sampler.sample(&logits, history: c.history, generated: c.generated))
        }
        return out
    }

    @Test func sameSeedSameSequence() {
        let c = SamplingFixture.shared.named("all_temp_1.3")
        let a = draws(c, seed: 42, count: 200)
        #expect(a == draws(c, seed: 42, count: 200))
        #expect(a != draws(c, seed: 43, count: 200))
        #expect(Set(a).count > 3)
        // Only candidates HF keeps are ever drawn.
        #expect(a.allSatisfy { c.expectedScores[$0] != nil })
        // The stream is pinned: SplitMix64-seeded xoshiro256** gives these on every machine.
        var g = Xoshiro256StarStar(seed: 0)
        #expect(g.next() == 0x99EC_5F36_CB75_F2B4)
        #expect(g.next() == 0xBF6E_1F78_4956_452A)
        let unseeded = Sampler(SamplingParameters())
        #expect(Sampler(SamplingParameters(seed: unseeded.seed)).generator == unseeded.generator)
    }

    /// 20,000 seeded draws follow the processed distribution.
    @Test(arguments: ["temperature_1.3", "top_p_0.9_small", "all_temp_1.3", "top_k_5_ties"])
    func empiricalFrequencies(_ name: String) {
        let c = SamplingFixture.shared.named(name)
        let n = 20_000
        var histogram = [Int](repeating: 0, count: c.logits.count)
        for t in draws(c, seed: 7, count: n) { histogram[t] += 1 }
        for i in histogram.indices {
            if c.expectedScores[i] == nil && !c.tieSplit { #expect(histogram[i] == 0, "\(name): filtered \(i) drawn") }
            #expect(abs(Double(histogram[i]) / Double(n) - c.expectedProbs[i]) < 0.02, "\(name): token \(i)")
        }
    }

    /// Partial selection (top-k heap and quickselect, top-p buckets) on a large vocabulary gives what a plain full
    /// sort gives.
    @Test func largeVocabularyMatchesFullSort() {
        let vocab = 65_536
        var g = Xoshiro256StarStar(seed: 99)
        var logits = [Float](repeating: 0, count: vocab)
        for i in 0..<vocab {
            // Roughly normal, with a few coarse ties.
            let u = (0..<4).reduce(0.0) { s, _ in s + g.nextUnit() } - 2
            logits[i] = i % 7 == 0 ? Float((u * 4).rounded()) : Float(u * 4)
        }
        let settings: [SamplingParameters] = [
            .init(topK: 50), .init(topK: 5000), .init(topP: 0.9), .init(temperature: 0.7, topK: 40, topP: 0.95),
            .init(minP: 0.05), .init(temperature: 1.3, topP: 0.5, minP: 0.1), .init(topP: 0.999),
        ]
        for p in settings {
            var fast = logits
            Sampler(p).process(&fast, history: [Int](), generated: [Int]())
            let slow = referenceProcess(logits, p)
            #expect(fast.map { $0 == -.infinity } == slow.map { $0 == -.infinity }, "\(p)")
        }
    }

    /// A straightforward HF port (full sort; equal scores ordered by id, lower ids ranked higher).
    private func referenceProcess(_ input: [Float], _ p: SamplingParameters) -> [Float] {
        var s = input.map { $0 / p.temperature }
        if p.topK > 0 {
            let kth = s.sorted(by: >)[min(p.topK, s.count) - 1]
            for i in s.indices where s[i] < kth { s[i] = -.infinity }
        }
        if p.topP < 1 {
            let m = Double(s.max()!)
            let e = s.map { Foundation.exp(Double($0) - m) }
            let z = e.reduce(0, +)
            let order = s.indices.sorted { s[$0] != s[$1] ? s[$0] > s[$1] : $0 < $1 }
            var above = 0.0
            for (rank, i) in order.enumerated() {
                if rank > 0 && above >= Double(p.topP) * z { s[i] = -.infinity }
                above += e[i]
            }
        }
        if p.minP > 0 {
            let m = Double(s.max()!)
            for i in s.indices where Foundation.exp(Double(s[i]) - m) < Double(p.minP) { s[i] = -.infinity }
        }
        return s
    }

    @Test func exponentialIsAccurate() {
        var worst = 0.0
        var x: Float = -87
        while x <= 0 {
            let r = Double(Sampler.exp(x)), e = Foundation.exp(Double(x))
            worst = max(worst, abs(r - e) / e)
            x += 0.0137
        }
        #expect(worst < 3e-7)
        #expect(Sampler.exp(0) == 1)
        #expect(Sampler.exp(-.infinity) == 0)
        #expect(Sampler.exp(-100) == 0)
    }

    @Test func parametersDecodeWithDefaults() throws {
        let p = try JSONDecoder().decode(SamplingParameters.self, from: Data(#"{"temperature":0.6,"topP":0.95}"#.utf8))
        #expect(p == SamplingParameters(temperature: 0.6, topP: 0.95))
        #expect(p.doSample && !SamplingParameters.greedy.doSample)
        let q = SamplingParameters(temperature: 0.7, topK: 20, topP: 0.8, minP: 0.05, repetitionPenalty: 1.1,
                                   presencePenalty: 0.5, frequencyPenalty: 0.25, seed: 3)
        #expect(try JSONDecoder().decode(SamplingParameters.self, from: JSONEncoder().encode(q)) == q)
    }

    /// Penalties count ids the way HF (distinct ids of the history) and vLLM (counts over generated) do.
    @Test func penaltySemantics() {
        var logits: [Float] = [2, -2, 2, -2, 1, 0]
        Sampler(SamplingParameters(temperature: 0, repetitionPenalty: 2))
            .process(&logits, history: [0, 0, 0, 1, 1, 5, 99, -1], generated: [Int]())
        #expect(logits == [1, -4, 2, -2, 1, 0])
        logits = [2, -2, 2, -2, 1, 0]
        Sampler(SamplingParameters(temperature: 0, presencePenalty: 0.5, frequencyPenalty: 0.25))
            .process(&logits, history: [0, 1, 2, 2, 2, 3], generated: [2, 2, 2, 3])
        #expect(logits == [2, -2, 2 - 0.75 - 0.5, -2 - 0.25 - 0.5, 1, 0])
    }
}
