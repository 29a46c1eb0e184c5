import Foundation

// Token sampling: Hugging Face's logits processors (in HF's order) plus OpenAI/vLLM presence and frequency
// penalties, then a draw from a seeded generator.
//
// Order, as `GenerationMixin._get_logits_processor` builds it in transformers 5.23 (generation/utils.py):
//
//     if generation_config.repetition_penalty is not None and generation_config.repetition_penalty != 1.0:
//         processors.append(RepetitionPenaltyLogitsProcessor(...))
//     ...
//     if generation_config.do_sample:
//         if generation_config.temperature is not None and generation_config.temperature != 1.0:
//             processors.append(TemperatureLogitsWarper(generation_config.temperature))
//         ...
//         if generation_config.top_k is not None and generation_config.top_k != 0:
//             processors.append(TopKLogitsWarper(top_k=..., min_tokens_to_keep=min_tokens_to_keep))
//         if generation_config.top_p is not None and generation_config.top_p < 1.0:
//             processors.append(TopPLogitsWarper(top_p=..., min_tokens_to_keep=min_tokens_to_keep))
//         if generation_config.min_p is not None:
//             # Applied after temperature scaling (...)
//             processors.append(MinPLogitsWarper(min_p=..., min_tokens_to_keep=min_tokens_to_keep))
//
// so: repetition penalty, then (sampling only) temperature, top-k, top-p, min-p. Greedy decoding (do_sample=False)
// applies the repetition penalty and takes `torch.argmax`. HF has no presence/frequency penalties; they go where
// vLLM's `apply_penalties` (vllm/model_executor/layers/utils.py) puts them: right after the repetition penalty and
// before temperature, frequency first:
//
//     apply_repetition_penalties(logits, prompt_mask, output_mask, repetition_penalties)
//     # We follow the definition in OpenAI API.
//     logits -= frequency_penalties.unsqueeze(dim=1) * output_bin_counts
//     logits -= presence_penalties.unsqueeze(dim=1) * output_mask
//
// where the bin counts and mask come from the *output* (generated) tokens only, while the repetition penalty looks at
// the prompt too (vLLM's prompt_mask | output_mask, the same set as HF's whole input_ids).
//
// Everything after the penalties uses basic IEEE-754 float operations only (including the exponential, see
// `Sampler.exp`), so the same seed and logits give the same tokens on every machine.

/// Sampling settings as HF `generate` / the OpenAI API name them.
public struct SamplingParameters: Sendable, Equatable, Codable {
    /// Divides the logits (HF `TemperatureLogitsWarper`). 0 (or less) means greedy decoding: only the penalties are
    /// applied, then argmax, and top-k/top-p/min-p are ignored, as HF does with `do_sample=False`.
    public var temperature: Float
    /// Keeps the `topK` highest scores and every score tied with the k-th (HF `TopKLogitsWarper`). 0 = off.
    public var topK: Int
    /// Nucleus sampling (HF `TopPLogitsWarper`, `min_tokens_to_keep = 1`). 1 = off.
    public var topP: Float
    /// Removes tokens whose probability is below `minP` times the top probability (HF `MinPLogitsWarper`). 0 = off.
    public var minP: Float
    /// HF `RepetitionPenaltyLogitsProcessor`: every distinct id of the history (prompt included) gets its logit
    /// divided by the penalty when positive, multiplied when negative. 1 = off.
    public var repetitionPenalty: Float
    /// OpenAI / vLLM: `logit -= presencePenalty` for each token that occurs in the generated text. 0 = off.
    public var presencePenalty: Float
    /// OpenAI / vLLM: `logit -= frequencyPenalty * count` over the generated text. 0 = off.
    public var frequencyPenalty: Float
    /// Seed of the generator; nil draws one from the system's random source (see `Sampler.seed`).
    public var seed: UInt64?

    public init(temperature: Float = 1, topK: Int = 0, topP: Float = 1, minP: Float = 0,
                repetitionPenalty: Float = 1, presencePenalty: Float = 0, frequencyPenalty: Float = 0,
                seed: UInt64? = nil) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.seed = seed
    }

    /// Argmax decoding with no penalties.
    public static let greedy = SamplingParameters(temperature: 0)

    /// Whether tokens are drawn (HF `do_sample`); false means greedy.
    public var doSample: Bool { temperature > 0 }

    private enum CodingKeys: String, CodingKey {
        case temperature, topK, topP, minP, repetitionPenalty, presencePenalty, frequencyPenalty, seed
    }

    /// Missing keys take the defaults above.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        temperature = try c.decodeIfPresent(Float.self, forKey: .temperature) ?? temperature
        topK = try c.decodeIfPresent(Int.self, forKey: .topK) ?? topK
        topP = try c.decodeIfPresent(Float.self, forKey: .topP) ?? topP
        minP = try c.decodeIfPresent(Float.self, forKey: .minP) ?? minP
        repetitionPenalty = try c.decodeIfPresent(Float.self, forKey: .repetitionPenalty) ?? repetitionPenalty
        presencePenalty = try c.decodeIfPresent(Float.self, forKey: .presencePenalty) ?? presencePenalty
        frequencyPenalty = try c.decodeIfPresent(Float.self, forKey: .frequencyPenalty) ?? frequencyPenalty
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed)
    }
}

/// xoshiro256** (Blackman & Vigna) seeded through SplitMix64: small, fast, and the same stream everywhere.
public struct Xoshiro256StarStar: RandomNumberGenerator, Sendable, Equatable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitMix(); s1 = splitMix(); s2 = splitMix(); s3 = splitMix()
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }

    /// Uniform in [0, 1) with 53 random bits.
    @inline(__always)
    public mutating func nextUnit() -> Double {
        Double(next() >> 11) * 0x1p-53
    }
}

/// Turns logits into a token: applies HF's logits processors in HF's order, then samples with a seeded PRNG.
///
/// One sampler per sequence. It keeps scratch buffers (sized to the vocabulary on first use, reused afterwards) in a
/// reference shared by copies, so a sampler is not `Sendable`: use it (and its copies) from one task at a time.
public struct Sampler {
    public let parameters: SamplingParameters
    /// The seed actually used: `parameters.seed`, or the one drawn from the system when that is nil.
    public let seed: UInt64
    /// The generator; advances by exactly one draw per sampled (non-greedy) token.
    public var generator: Xoshiro256StarStar
    private let scratch = Scratch()

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        var system = SystemRandomNumberGenerator()
        seed = parameters.seed ?? system.next()
        generator = Xoshiro256StarStar(seed: seed)
    }

    /// Applies penalties and warpers in place (filtered entries become `-Float.infinity`), as HF's processors would
    /// leave `scores`: repetition penalty over `history`, frequency then presence penalty over `generated`, then,
    /// when sampling, temperature, top-k, top-p, min-p. Greedy parameters stop after the penalties.
    ///
    /// - `history`: ids the repetition penalty looks at (HF: the whole `input_ids`, prompt included).
    /// - `generated`: ids the presence/frequency penalties count (OpenAI/vLLM: the generated tokens only, normally
    ///   the suffix of `history` after the prompt).
    ///
    /// Ids outside `0..<count` are ignored (HF clamps and drops them too). Logits must be finite or `-infinity`.
    /// Where top-p cuts through a group of exactly equal scores, the lower ids are kept (HF's choice there follows
    /// the order the unstable `torch.sort` leaves them in).
    public func process(_ logits: UnsafeMutablePointer<Float>, count: Int, history: some Collection<Int>,
                        generated: some Collection<Int>) {
        _ = run(logits, count: count, history: history, generated: generated)
    }

    /// Greedy: argmax of the penalised logits, ties to the lowest id as `torch.argmax`. Sampling: `process`, then one
    /// inverse-CDF draw over the softmax of what is left. `logits` is left as `process` leaves it.
    public mutating func sample(_ logits: UnsafeMutablePointer<Float>, count: Int, history: some Collection<Int>,
                                generated: some Collection<Int>) -> Int {
        precondition(count > 0, "empty vocabulary")
        let state = run(logits, count: count, history: history, generated: generated)
        guard parameters.doSample else { return Sampler.argmax(logits, count: count) }
        let u = generator.nextUnit()
        return scratch.draw(logits, count: count, state: state, unit: u)
    }

    /// One inverse-CDF draw over the softmax of logits already processed (filtered entries `-infinity`).
    func drawProcessed(_ logits: UnsafeMutablePointer<Float>, count: Int, unit: Double) -> Int {
        scratch.reserve(count)
        return scratch.draw(logits, count: count, state: State(), unit: unit)
    }

    /// `process` on an array.
    public func process(_ logits: inout [Float], history: some Collection<Int>, generated: some Collection<Int>) {
        let n = logits.count
        logits.withUnsafeMutableBufferPointer { process($0.baseAddress!, count: n, history: history, generated: generated) }
    }

    /// `sample` on an array (which it leaves processed).
    public mutating func sample(_ logits: inout [Float], history: some Collection<Int>,
                                generated: some Collection<Int>) -> Int {
        let n = logits.count
        return logits.withUnsafeMutableBufferPointer {
            sample($0.baseAddress!, count: n, history: history, generated: generated)
        }
    }

    /// Index of the first largest value (`torch.argmax`); 0 when every value is `-infinity`.
    public static func argmax(_ values: UnsafePointer<Float>, count: Int) -> Int {
        let m = maximum(values, count: count)
        for i in 0..<count where values[i] == m { return i }
        return 0
    }

    /// Largest value (-infinity for none); eight running maxima so that it vectorises.
    static func maximum(_ values: UnsafePointer<Float>, count: Int) -> Float {
        var m0 = -Float.infinity, m1 = m0, m2 = m0, m3 = m0, m4 = m0, m5 = m0, m6 = m0, m7 = m0
        var i = 0
        while i + 8 <= count {
            let p = values + i
            m0 = p[0] > m0 ? p[0] : m0; m1 = p[1] > m1 ? p[1] : m1
            m2 = p[2] > m2 ? p[2] : m2; m3 = p[3] > m3 ? p[3] : m3
            m4 = p[4] > m4 ? p[4] : m4; m5 = p[5] > m5 ? p[5] : m5
            m6 = p[6] > m6 ? p[6] : m6; m7 = p[7] > m7 ? p[7] : m7
            i += 8
        }
        var m = m0
        for v in [m1, m2, m3, m4, m5, m6, m7] where v > m { m = v }
        while i < count { if values[i] > m { m = values[i] }; i += 1 }
        return m
    }

    /// e^x for x <= 0 (and -infinity), to about 1 ulp, from basic IEEE operations only (Cephes `expf`'s
    /// polynomial with Cody-Waite reduction, rounding by the 1.5 * 2^23 trick) so that it gives the same bits on
    /// every machine and vectorises; 0 below -87.
    @inline(__always)
    static func exp(_ x: Float) -> Float {
        let xc = x < -87 ? -87 : x
        let shifted = xc * 1.442_695_040_888_963_4 + 12_582_912  // 1.5 * 2^23: rounds to an integer, to even
        let n = shifted - 12_582_912
        var r = xc - n * 0.693_359_375
        r = r - n * -2.121_944_400_546_905_8e-4
        var p: Float = 1.987_569_150_0e-4
        p = p * r + 1.398_199_950_7e-3
        p = p * r + 8.333_451_907_3e-3
        p = p * r + 4.166_579_589_4e-2
        p = p * r + 1.666_666_545_9e-1
        p = p * r + 5.000_000_120_1e-1
        let y = p * r * r + r + 1
        // The low bits of `shifted` hold n; 2^n as a float is (n + 127) << 23.
        let scale = Float(bitPattern: (shifted.bitPattern &- 0x4B40_0000 &+ 127) << 23)
        return x < -87 ? 0 : y * scale
    }

    // MARK: - Processing

    /// What `run` leaves for the draw: the surviving candidates (all of `0..<count` that are not -inf when
    /// `candidates` is negative, else `scratch.ids[0..<candidates]`), and, when `exps` is true, `scratch.exps[id]`
    /// = e^(logit - max) for each of them.
    struct State {
        var candidates = -1
        var maxValue: Float = 0
        var exps = false
    }

    /// Hands the ids over as buffers (one generic call each, so callers in other modules get non-generic loops).
    private func run(_ logits: UnsafeMutablePointer<Float>, count: Int, history: some Collection<Int>,
                     generated: some Collection<Int>) -> State {
        func withBuffer<R>(_ ids: some Collection<Int>, _ body: (UnsafeBufferPointer<Int>) -> R) -> R {
            if let r = ids.withContiguousStorageIfAvailable(body) { return r }
            return Array(ids).withUnsafeBufferPointer(body)
        }
        return withBuffer(history) { h in
            withBuffer(generated) { g in run(logits, count: count, history: h, generated: g) }
        }
    }

    private func run(_ logits: UnsafeMutablePointer<Float>, count: Int, history: UnsafeBufferPointer<Int>,
                     generated: UnsafeBufferPointer<Int>) -> State {
        let p = parameters
        scratch.reserve(count)
        if p.repetitionPenalty != 1 { scratch.repetition(logits, count: count, history: history, penalty: p.repetitionPenalty) }
        if p.presencePenalty != 0 || p.frequencyPenalty != 0 {
            scratch.presenceFrequency(logits, count: count, generated: generated,
                                      presence: p.presencePenalty, frequency: p.frequencyPenalty)
        }
        var state = State()
        guard p.doSample else { return state }
        if p.temperature != 1 {
            let t = p.temperature
            for i in 0..<count { logits[i] = logits[i] / t }
        }
        if p.topK > 0 && p.topK < count { scratch.topK(logits, count: count, k: p.topK, state: &state) }
        if p.topP < 1 {
            scratch.computeExps(logits, count: count, state: &state)
            scratch.topP(logits, count: count, p: p.topP, state: &state)
        }
        if p.minP > 0 {
            scratch.computeExps(logits, count: count, state: &state)
            scratch.minP(logits, count: count, minP: p.minP, state: &state)
        }
        return state
    }

    /// Vocabulary-sized buffers, allocated once and reused. `marks` and `counts` are all zero between calls.
    final class Scratch {
        private(set) var capacity = 0
        var marks = UnsafeMutablePointer<UInt8>.allocate(capacity: 0)
        var counts = UnsafeMutablePointer<Int32>.allocate(capacity: 0)
        var exps = UnsafeMutablePointer<Float>.allocate(capacity: 0)
        var ids = UnsafeMutablePointer<Int32>.allocate(capacity: 0)
        var keys = UnsafeMutablePointer<UInt64>.allocate(capacity: 0)
        var floats = UnsafeMutablePointer<Float>.allocate(capacity: 0)
        var blockSums = UnsafeMutablePointer<Double>.allocate(capacity: 0)
        let bucketMass = UnsafeMutablePointer<Double>.allocate(capacity: Scratch.bucketCount)

        deinit { free(); bucketMass.deallocate() }

        private func free() {
            marks.deallocate(); counts.deallocate(); exps.deallocate()
            ids.deallocate(); keys.deallocate(); floats.deallocate(); blockSums.deallocate()
        }

        func reserve(_ n: Int) {
            guard n > capacity else { return }
            free()
            marks = .allocate(capacity: n); marks.initialize(repeating: 0, count: n)
            counts = .allocate(capacity: n); counts.initialize(repeating: 0, count: n)
            exps = .allocate(capacity: n)
            ids = .allocate(capacity: n)
            keys = .allocate(capacity: n)
            floats = .allocate(capacity: n)
            blockSums = .allocate(capacity: n / Scratch.block + 1)
            capacity = n
        }

        /// HF: `score = gather(scores, input_ids); where(score < 0, score * penalty, score / penalty)`, scattered
        /// back, so each distinct id is penalised once.
        func repetition(_ logits: UnsafeMutablePointer<Float>, count: Int, history: UnsafeBufferPointer<Int>,
                        penalty: Float) {
            let marks = self.marks
            for id in history where id >= 0 && id < count && marks[id] == 0 {
                marks[id] = 1
                let s = logits[id]
                logits[id] = s < 0 ? s * penalty : s / penalty
            }
            for id in history where id >= 0 && id < count { marks[id] = 0 }
        }

        /// vLLM: `logits -= frequency * output_bin_counts; logits -= presence * output_mask`.
        func presenceFrequency(_ logits: UnsafeMutablePointer<Float>, count: Int, generated: UnsafeBufferPointer<Int>,
                               presence: Float, frequency: Float) {
            let counts = self.counts
            for id in generated where id >= 0 && id < count { counts[id] += 1 }
            for id in generated where id >= 0 && id < count && counts[id] > 0 {
                var s = logits[id]
                s -= frequency * Float(counts[id])
                s -= presence
                logits[id] = s
                counts[id] = 0
            }
        }

        /// HF: `scores < torch.topk(scores, k)[0][..., -1, None]` are removed: ties with the k-th value stay.
        func topK(_ logits: UnsafeMutablePointer<Float>, count: Int, k: Int, state: inout State) {
            let ids = self.ids, floats = self.floats
            let kth: Float
            if k <= 4096 {
                // Min-heap of the k largest seen so far: its root is the k-th largest.
                let heap = floats
                for i in 0..<k { heap[i] = logits[i].isNaN ? -.infinity : logits[i] }
                var i = k / 2
                while i > 0 { i -= 1; Scratch.siftDown(heap, k, i) }
                for i in k..<count where logits[i] > heap[0] {
                    heap[0] = logits[i]
                    Scratch.siftDown(heap, k, 0)
                }
                kth = heap[0]
            } else {
                let a = floats
                for i in 0..<count { a[i] = logits[i].isNaN ? -.infinity : logits[i] }
                kth = Scratch.kthLargest(a, count, k)
            }
            var n = 0
            var best = -Float.infinity
            for i in 0..<count {
                let v = logits[i]
                if v < kth {
                    logits[i] = -.infinity
                } else {
                    ids[n] = Int32(truncatingIfNeeded: i)
                    n += 1
                    if v > best { best = v }
                }
            }
            state.candidates = n
            state.maxValue = best
        }

        /// Fills `exps[id] = e^(logit - max)` for the candidates (once: no later filter removes the maximum).
        func computeExps(_ logits: UnsafeMutablePointer<Float>, count: Int, state: inout State) {
            let exps = self.exps, ids = self.ids
            guard !state.exps else { return }
            if state.candidates < 0 {
                let m = Sampler.maximum(logits, count: count)
                state.maxValue = m
                if m == -.infinity {  // everything masked: no mass anywhere (and no -inf - -inf)
                    exps.initialize(repeating: 0, count: count)
                } else {
                    for i in 0..<count { exps[i] = Sampler.exp(logits[i] - m) }
                }
            } else {
                let m = state.maxValue
                for j in 0..<state.candidates {
                    let id = Int(ids[j])
                    exps[id] = Sampler.exp(logits[id] - m)
                }
            }
            state.exps = true
        }

        /// Number of top-p buckets and their width: bucket b holds the scores in (max - (b+1)/64, max - b/64].
        static let bucketCount = 4096
        static let bucketsPerUnit: Float = 64

        /// HF: sort ascending, `cumsum(softmax) <= 1 - top_p` is removed, the largest always stays. Equivalently a
        /// token stays when the probability mass of the tokens ranked above it (by score, then lower id first) is
        /// below `top_p`. Instead of sorting the vocabulary, the scores are bucketed by distance from the maximum;
        /// whole buckets are kept or removed by their mass, and only the one bucket the cut falls in is sorted.
        func topP(_ logits: UnsafeMutablePointer<Float>, count: Int, p: Float, state: inout State) {
            let exps = self.exps, ids = self.ids, keys = self.keys, bucketMass = self.bucketMass
            let m = state.maxValue
            let buckets = Scratch.bucketCount
            let last = Float(buckets - 1)
            @inline(__always) func bucket(_ v: Float) -> Int {
                Int(Swift.min((m - v) * Scratch.bucketsPerUnit, last))
            }
            bucketMass.initialize(repeating: 0, count: buckets)
            var total = 0.0
            let all = state.candidates < 0
            let n = all ? count : state.candidates
            for j in 0..<n {
                let id = all ? j : Int(ids[j])
                let v = logits[id]
                guard v > -.infinity else { continue }
                let e = Double(exps[id])
                bucketMass[bucket(v)] += e
                total += e
            }
            let target = Double(p) * total
            // The cut: the first bucket whose end passes the target (none: everything stays).
            var cut = buckets
            var before = 0.0
            for b in 0..<buckets {
                if before + bucketMass[b] > target { cut = b; break }
                before += bucketMass[b]
            }
            var kept = 0
            var inCut = 0
            for j in 0..<n {
                let id = all ? j : Int(ids[j])
                let v = logits[id]
                guard v > -.infinity else { continue }
                let b = bucket(v)
                if b < cut {
                    ids[kept] = Int32(truncatingIfNeeded: id)
                    kept += 1
                } else if b == cut {
                    // (score descending, id ascending) as one integer: monotone bits of the score, then ~id.
                    let bits = v.bitPattern
                    let ordered = bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
                    keys[inCut] = UInt64(ordered) << 32 | UInt64(~UInt32(truncatingIfNeeded: id))
                    inCut += 1
                } else {
                    logits[id] = -.infinity
                }
            }
            Scratch.sortDescending(keys, inCut)
            var above = before
            var j = 0
            while j < inCut {
                let id = Int(~UInt32(truncatingIfNeeded: keys[j]))
                if !(above < target || kept == 0) { break }
                ids[kept] = Int32(truncatingIfNeeded: id)
                kept += 1
                above += Double(exps[id])
                j += 1
            }
            while j < inCut {
                logits[Int(~UInt32(truncatingIfNeeded: keys[j]))] = -.infinity
                j += 1
            }
            state.candidates = kept
        }

        /// HF: `probs < min_p * max(probs)` is removed, i.e. e^(s - max) < min_p; the maximum always stays.
        func minP(_ logits: UnsafeMutablePointer<Float>, count: Int, minP: Float, state: inout State) {
            let exps = self.exps, ids = self.ids
            let all = state.candidates < 0
            let n = all ? count : state.candidates
            var kept = 0
            for j in 0..<n {
                let id = all ? j : Int(ids[j])
                guard logits[id] > -.infinity else { continue }
                if exps[id] < minP && logits[id] != state.maxValue {
                    logits[id] = -.infinity
                } else {
                    ids[kept] = Int32(truncatingIfNeeded: id)
                    kept += 1
                }
            }
            state.candidates = kept
        }

        /// Inverse CDF over the softmax of the processed logits: the first candidate at which the running sum of
        /// e^(s - max) passes `unit * total`. Sums are in Double, in blocks of 256 in a fixed order (the total is the
        /// sum of the block sums), so a draw finds its block first and then walks only inside it.
        func draw(_ logits: UnsafeMutablePointer<Float>, count: Int, state: State, unit: Double) -> Int {
            let exps = self.exps, ids = self.ids, floats = self.floats, blockSums = self.blockSums
            var state = state
            computeExps(logits, count: count, state: &state)
            let values: UnsafeMutablePointer<Float>
            let n: Int
            if state.candidates < 0 {
                values = exps
                n = count
            } else {
                n = state.candidates
                guard n > 0 else { return Sampler.argmax(logits, count: count) }
                for j in 0..<n { floats[j] = exps[Int(ids[j])] }
                values = floats
            }
            let j = Scratch.inverseCDF(values, n, unit: unit, blocks: blockSums)
            return state.candidates < 0 ? j : Int(ids[j])
        }

        static let block = 256

        /// Index of the first entry where the running sum of `values[0..<n]` (>= 0, not all 0) exceeds
        /// `unit * total`; never an entry that is 0.
        static func inverseCDF(_ values: UnsafePointer<Float>, _ n: Int, unit: Double,
                               blocks: UnsafeMutablePointer<Double>) -> Int {
            let blockCount = (n + block - 1) / block
            var total = 0.0
            for b in 0..<blockCount {
                let start = b * block, end = Swift.min(n, start + block)
                var a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
                var i = start
                while i + 4 <= end {
                    a0 += Double(values[i]); a1 += Double(values[i + 1])
                    a2 += Double(values[i + 2]); a3 += Double(values[i + 3])
                    i += 4
                }
                while i < end { a0 += Double(values[i]); i += 1 }
                let sum = (a0 + a1) + (a2 + a3)
                blocks[b] = sum
                total += sum
            }
            let target = unit * total
            var cumulative = 0.0
            var lastPositive = 0
            for b in 0..<blockCount where blocks[b] > 0 {
                let start = b * block, end = Swift.min(n, start + block)
                if cumulative + blocks[b] > target {
                    var c = cumulative
                    for i in start..<end where values[i] > 0 {
                        c += Double(values[i])
                        lastPositive = i
                        if c > target { return i }
                    }
                    return lastPositive  // rounding: the block's own sum passed the target, its walk did not
                }
                cumulative += blocks[b]
                for i in (start..<end).reversed() where values[i] > 0 { lastPositive = i; break }
            }
            return lastPositive
        }

        // MARK: Selection helpers

        @inline(__always)
        static func exchange<T>(_ a: UnsafeMutablePointer<T>, _ i: Int, _ j: Int) {
            let t = a[i]; a[i] = a[j]; a[j] = t
        }

        @inline(__always)
        static func siftDown(_ heap: UnsafeMutablePointer<Float>, _ n: Int, _ start: Int) {
            var i = start
            let v = heap[i]
            while true {
                var c = 2 * i + 1
                if c >= n { break }
                if c + 1 < n && heap[c + 1] < heap[c] { c += 1 }
                if heap[c] < v { heap[i] = heap[c]; i = c } else { break }
            }
            heap[i] = v
        }

        /// The k-th largest of a[0..<n] (1-based k, duplicates counted), by quickselect; scrambles `a`.
        static func kthLargest(_ a: UnsafeMutablePointer<Float>, _ n: Int, _ k: Int) -> Float {
            var lo = 0, hi = n - 1
            let target = k - 1
            while lo < hi {
                let mid = lo + (hi - lo) / 2
                if a[mid] > a[lo] { exchange(a, mid, lo) }
                if a[hi] > a[lo] { exchange(a, hi, lo) }
                if a[hi] > a[mid] { exchange(a, hi, mid) }
                let pivot = a[mid]
                var i = lo, j = hi
                while i <= j {
                    while a[i] > pivot { i += 1 }
                    while a[j] < pivot { j -= 1 }
                    if i <= j { exchange(a, i, j); i += 1; j -= 1 }
                }
                if target <= j { hi = j } else if target >= i { lo = i } else { return a[target] }
            }
            return a[target]
        }

        /// Sorts a[0..<n] (distinct keys) in descending order, in place, without allocating.
        static func sortDescending(_ a: UnsafeMutablePointer<UInt64>, _ n: Int) {
            var lo = 0, hi = n - 1
            while hi - lo > 16 {
                let mid = lo + (hi - lo) / 2
                if a[mid] > a[lo] { exchange(a, mid, lo) }
                if a[hi] > a[lo] { exchange(a, hi, lo) }
                if a[hi] > a[mid] { exchange(a, hi, mid) }
                let pivot = a[mid]
                var i = lo, j = hi
                while i <= j {
                    while a[i] > pivot { i += 1 }
                    while a[j] < pivot { j -= 1 }
                    if i <= j { exchange(a, i, j); i += 1; j -= 1 }
                }
                // Recurse into the smaller side, loop on the larger.
                if j - lo < hi - i {
                    sortDescending(a + lo, j - lo + 1)
                    lo = i
                } else {
                    sortDescending(a + i, hi - i + 1)
                    hi = j
                }
            }
            if hi > lo {
                for i in (lo + 1)...hi {
                    let v = a[i]
                    var j = i
                    while j > lo && a[j - 1] < v { a[j] = a[j - 1]; j -= 1 }
                    a[j] = v
                }
            }
        }
    }
}
