import Foundation
import MoEKernels
import MoEModel

/// Router statistics the balance losses need, summed over the MoE layers of one forward pass.
struct RouterStatistics {
    var experts: Int
    /// Σ over layers and tokens of how many of the token's top-k choices were expert e.
    var counts: [Double]
    /// Σ over layers and tokens of softmax probability of expert e.
    var probabilitySums: [Double]
    /// Σ over layers and tokens of logsumexp(router logits)² (the z-loss before averaging).
    var zSum: Double = 0
    /// Layers × tokens: the denominator of every mean.
    var rows = 0
    /// Σ over (layer, sequence) of the sequence-wise balance loss Σ_i f_i·P_i, and the number of such pairs.
    var sequenceSum: Double = 0
    var sequences = 0

    init(experts: Int) {
        self.experts = experts
        counts = .init(repeating: 0, count: experts); probabilitySums = counts
    }
}

/// How the balance losses enter the router's gradient; set from the statistics after the whole forward.
struct BalanceGradient {
    /// d(loss)/d p[e] for every token of every layer: auxCoef · E · f[e] / rows.
    var probability: [Float]
    /// d(loss)/d lse for each token's logsumexp is zCoef · 2·lse / rows.
    var zScale: Float
    /// The sequence-wise loss's weight over the (layer, sequence) pairs: seqCoef / pairs.
    var sequenceScale: Float = 0
}

/// The mixture-of-experts layer: router → softmax or sigmoid scores → top-k (chosen with the aux-loss-free bias
/// added when there is one, within the best expert groups when the router has groups; optionally renormalised,
/// then scaled) → tokens sorted by expert (dropless: every choice is kept) → one SwiGLU per expert over its rows →
/// weighted sum, plus the shared expert (sigmoid-gated as Qwen2-MoE's, or added as DeepSeek's and GLM's). As
/// `ExpertRouter` in inference; the gradient flows through the chosen experts' scores only. The Switch aux loss
/// and the z-loss are defined on softmax probabilities: sigmoid routers take no part in them (they balance by the
/// selection bias). Under expert parallelism the sorted rows run on their experts' owners (`exchange`).
final class MoELayer {
    let hidden: Int, experts: Int, topK: Int, width: Int, normTopKProb: Bool
    let routing: RouterLayout
    let router: Int
    /// gpt-oss's bias on the router logits.
    let routerBias: Int?
    let expertWeights: [(gate: Int, up: Int, down: Int)]
    /// gpt-oss's biases of each expert's projections.
    let expertBiases: [(gate: Int, up: Int, down: Int)]?
    let activation: GatedActivation
    /// DeepSeek-V3's `e_score_correction_bias`: added to the probabilities only to choose experts.
    let selectionBias: Int?
    let shared: MLPLayer?
    let sharedGate: Int?

    // Saved activations.
    let input = Floats(), logits = Floats(), probs = Floats(), lse = Floats()
    var choice: [Int32] = [], weight: [Float] = []          // [N×k]
    var order: [Int32] = [], offsets: [Int] = []            // rows sorted by expert
    let gathered = Floats(), g = Floats(), u = Floats(), a = Floats(), expertOut = Floats()
    let sharedOut = Floats(), sharedGateValue = Floats()
    // Backward scratch.
    let dGathered = Floats(), dExpertOut = Floats(), scratch = Floats(), dLogits = Floats(), dShared = Floats()
    /// Expert parallel: the exchange with the experts' owners (nil: every expert runs here), the rows other ranks
    /// (and this one) sent for this rank's experts, their outputs, and the backward pass's rows of the same order.
    var exchange: ExpertExchange?
    let received = Floats(), receivedOut = Floats(), receivedGrad = Floats(), receivedInputGrad = Floats()
    /// Tokens routed to each expert in the last forward (the load the logs and the bias update read).
    var load: [Int] = []
    /// Which rows count in the balance losses (false: padding, as HF's attention mask); nil: all.
    var balanceMask: [Bool]?
    /// Per sequence of the last forward: f_i of the sequence-wise balance loss [sequences × experts], the counted
    /// tokens, and each token's sum of scores.
    var sequenceF: [Float] = [], sequenceTokens: [Int] = [], scoreSums: [Float] = []

    init(_ store: ParameterStore, layout m: MoELayout, hidden: Int, selectionBias: Bool) {
        self.hidden = hidden; experts = m.experts; topK = m.topK; width = m.width; normTopKProb = m.normTopKProb
        routing = m.router
        router = store.add(m.routerName, shape: [m.experts, hidden], decay: true)
        routerBias = m.routerBias ? store.add(m.routerBiasName, shape: [m.experts], decay: false) : nil
        activation = m.activation
        self.selectionBias = selectionBias || m.router.selectionBias
            ? store.add(m.selectionBiasName, shape: [m.experts], decay: false, frozen: true) : nil
        let n = m.expertNames
        expertWeights = (0..<m.experts).map { e in
            let p = m.expertPrefix(e)
            return (store.add("\(p).\(n.gate).weight", shape: [m.width, hidden], decay: true),
                    store.add("\(p).\(n.up).weight", shape: [m.width, hidden], decay: true),
                    store.add("\(p).\(n.down).weight", shape: [hidden, m.width], decay: true))
        }
        expertBiases = m.expertBias ? (0..<m.experts).map { e in
            let p = m.expertPrefix(e)
            return (store.add("\(p).\(n.gate).bias", shape: [m.width], decay: false),
                    store.add("\(p).\(n.up).bias", shape: [m.width], decay: false),
                    store.add("\(p).\(n.down).bias", shape: [hidden], decay: false))
        } : nil
        if let sw = m.sharedWidth {
            shared = MLPLayer(store, prefix: m.sharedPrefix, hidden: hidden, width: sw)
            sharedGate = m.sharedGated ? store.add(m.sharedGateName, shape: [1, hidden], decay: true) : nil
        } else {
            shared = nil; sharedGate = nil
        }
    }

    private func expert(_ e: Int, _ store: ParameterStore) -> SwiGLUWeights {
        let w = store.values!, gr = store.grads!, x = expertWeights[e]
        var weights = SwiGLUWeights(gate: w + x.gate, up: w + x.up, down: w + x.down, gateGrad: gr + x.gate, upGrad: gr + x.up,
                                    downGrad: gr + x.down, hidden: hidden, width: width)
        if let b = expertBiases?[e] {
            weights.biases = (w + b.gate, w + b.up, w + b.down)
            weights.biasGrads = (gr + b.gate, gr + b.up, gr + b.down)
        }
        weights.activation = activation
        return weights
    }

    /// out[N×hidden] += MoE(x[N×hidden]); adds this layer's router statistics to `stats`.
    func forward(_ x: UnsafePointer<Float>, tokens n: Int, seqLen T: Int, store: ParameterStore,
                 into out: UnsafeMutablePointer<Float>, stats: inout RouterStatistics, pool: WorkerPool) {
        let w = store.values!, E = experts, k = topK
        let xs = input.reserve(n * hidden)
        xs.update(from: x, count: n * hidden)
        let lg = logits.reserve(n * E), pr = probs.reserve(n * E), ls = lse.reserve(n)
        linearForward(xs, rows: n, inputs: hidden, outputs: E, weight: w + router, bias: routerBias.map { w + $0 }, into: lg, pool: pool)

        // Router: scores (softmax or sigmoid), then top-k on scores + bias (when balancing without aux loss) within
        // the best groups, then renormalisation and scaling.
        choice = .init(repeating: 0, count: n * k); weight = .init(repeating: 0, count: n * k)
        let bias = selectionBias.map { UnsafePointer(w + $0) }
        let routing = self.routing, normTopKProb = self.normTopKProb, scale = Float(routing.scale)
        choice.withUnsafeMutableBufferPointer { chb in
            weight.withUnsafeMutableBufferPointer { wtb in
                let ch = chb.baseAddress!, wt = wtb.baseAddress!
                forEachRange(n, pool: pool) { tokens in
                    var score = [Float](repeating: 0, count: E)
                    var groupScore = [Float](repeating: 0, count: routing.groups)
                    var top = [Int32](repeating: 0, count: k), topScore = [Float](repeating: 0, count: k)
                    for t in tokens {
                        let l = lg + t * E, p = pr + t * E
                        var m = -Float.infinity
                        for e in 0..<E { m = max(m, l[e]) }
                        var s: Float = 0
                        for e in 0..<E { s += expf(l[e] - m) }
                        ls[t] = m + logf(s)
                        switch routing.scoring {
                        case .softmax: for e in 0..<E { p[e] = expf(l[e] - m) / s }
                        case .sigmoid: for e in 0..<E { p[e] = 1 / (1 + expf(-l[e])) }
                        }
                        for e in 0..<E { score[e] = p[e] + (bias?[e] ?? 0) }
                        if routing.groups > 1 {
                            score.withUnsafeMutableBufferPointer { sc in
                                groupScore.withUnsafeMutableBufferPointer { routing.keepBestGroups(sc.baseAddress!, experts: E, groupScores: $0.baseAddress!) }
                            }
                        }
                        var total: Float = 0
                        // Ties go to the lower index, as torch.topk does on CPU.
                        selectTopK(score, count: E, k: k, indices: &top, values: &topScore)
                        for j in 0..<k {
                            let best = Int(top[j])
                            ch[t * k + j] = top[j]
                            wt[t * k + j] = p[best]
                            total += p[best]
                        }
                        for j in 0..<k { wt[t * k + j] = (normTopKProb ? wt[t * k + j] / (total + 1e-20) : wt[t * k + j]) * scale }
                    }
                }
            }
        }
        for t in 0..<n where balanceMask?[t] ?? true {
            let p = pr + t * E
            if routing.scoring == .softmax {
                for e in 0..<E { stats.probabilitySums[e] += Double(p[e]) }
                stats.zSum += Double(ls[t] * ls[t])
            }
            for j in 0..<k { stats.counts[Int(choice[t * k + j])] += 1 }
            stats.rows += 1
        }

        sequenceStatistics(tokens: n, seqLen: T, stats: &stats)

        // Dispatch: a counting sort of the n·k choices by expert.
        load = .init(repeating: 0, count: E)
        for c in choice { load[Int(c)] += 1 }
        offsets = .init(repeating: 0, count: E + 1)
        for e in 0..<E { offsets[e + 1] = offsets[e] + load[e] }
        order = .init(repeating: 0, count: n * k)
        var next = offsets
        for (i, c) in choice.enumerated() { order[next[Int(c)]] = Int32(i); next[Int(c)] += 1 }

        let rows = n * k
        let gx = gathered.reserve(rows * hidden)
        order.withUnsafeBufferPointer { ob in
            let ord = ob.baseAddress!
            forEachBlock(rows, pool: pool) { r in (gx + r * hidden).update(from: xs + Int(ord[r]) / k * hidden, count: hidden) }
        }
        let yp = expertOut.reserve(rows * hidden)
        // The experts run here over these rows: all of them, or (expert parallel) this rank's experts over the rows
        // every rank sent them, whose outputs then go back in the order they left.
        let local: Range<Int>, localOffsets: [Int], lx: UnsafeMutablePointer<Float>, ly: UnsafeMutablePointer<Float>
        if let exchange {
            exchange.plan(offsets: offsets)
            (local, localOffsets) = (exchange.local, exchange.localOffsets)
            lx = received.reserve(exchange.receivedRows * hidden); ly = receivedOut.reserve(exchange.receivedRows * hidden)
            exchange.toOwners(gx, width: hidden, into: lx)
        } else {
            (local, localOffsets, lx, ly) = (0..<experts, offsets, gx, yp)
        }
        let m = localOffsets.last ?? 0
        let gp = g.reserve(m * width), up = u.reserve(m * width), ap = a.reserve(m * width)
        runExperts(local, offsets: localOffsets, pool: pool) { e, range, inner in
            let r0 = range.lowerBound
            swiGLUForward(lx + r0 * hidden, rows: range.count, self.expert(e, store), g: gp + r0 * self.width,
                          u: up + r0 * self.width, a: ap + r0 * self.width, into: ly + r0 * hidden, pool: inner)
        }
        exchange?.fromOwners(ly, width: hidden, into: yp)
        // Combine: out[t] += w · expert output, each token's choices in order so the sum is the same on every run.
        let slot = slots()
        slot.withUnsafeBufferPointer { sb in
            weight.withUnsafeBufferPointer { wb in
                let sl = sb.baseAddress!, wt = wb.baseAddress!, hidden = self.hidden
                forEachBlock(n, pool: pool) { t in
                    for i in t * k ..< (t + 1) * k { axpy(wt[i], yp + sl[i] * hidden, out + t * hidden, count: hidden) }
                }
            }
        }

        if let shared, sharedGate == nil {
            let so = sharedOut.reserve(n * hidden)
            shared.forward(xs, rows: n, store: store, into: so, pool: pool)
            axpy(1, so, out, count: n * hidden)
        }
        if let shared, let sharedGate {
            let so = sharedOut.reserve(n * hidden), sg = sharedGateValue.reserve(n)
            shared.forward(xs, rows: n, store: store, into: so, pool: pool)
            for t in 0..<n {
                let s = 1 / (1 + expf(-dot(xs + t * hidden, w + sharedGate, count: hidden)))
                sg[t] = s
                axpy(s, so + t * hidden, out + t * hidden, count: hidden)
            }
        }
    }

    /// The sequence-wise balance loss's parts for each sequence of T tokens (counted rows only): f_i = E/(k·T)·(tokens
    /// choosing i) and P_i = mean of s_i / Σ_j s_j; adds Σ_i f_i·P_i per sequence to `stats`.
    private func sequenceStatistics(tokens n: Int, seqLen T: Int, stats: inout RouterStatistics) {
        let E = experts, k = topK, B = n / T, pr = probs.pointer
        sequenceF = .init(repeating: 0, count: B * E); sequenceTokens = .init(repeating: 0, count: B)
        scoreSums = .init(repeating: 0, count: n)
        for t in 0..<n {
            var sum: Float = 0
            for e in 0..<E { sum += pr[t * E + e] }
            scoreSums[t] = sum
        }
        for b in 0..<B {
            var P = [Double](repeating: 0, count: E)
            for t in b * T ..< (b + 1) * T where balanceMask?[t] ?? true {
                sequenceTokens[b] += 1
                for j in 0..<k { sequenceF[b * E + Int(choice[t * k + j])] += 1 }
                for e in 0..<E { P[e] += Double(pr[t * E + e] / scoreSums[t]) }
            }
            let count = sequenceTokens[b]
            guard count > 0 else { continue }
            var loss = 0.0
            for e in 0..<E {
                sequenceF[b * E + e] *= Float(E) / Float(k * count)
                loss += Double(sequenceF[b * E + e]) * P[e] / Double(count)
            }
            stats.sequenceSum += loss
            stats.sequences += 1
        }
    }

    /// (token, choice) → its row in expert order: the inverse of `order`.
    private func slots() -> [Int] {
        var slot = [Int](repeating: 0, count: order.count)
        for (r, i) in order.enumerated() { slot[Int(i)] = r }
        return slot
    }

    /// Runs `experts` over their rows (`offsets[i] ..< offsets[i + 1]` are the rows of `experts.lowerBound + i`):
    /// experts in parallel when they are many and small (each expert's products on one thread), else one expert
    /// after another with the products themselves parallel.
    private func runExperts(_ experts: Range<Int>, offsets: [Int], pool: WorkerPool, _ body: (Int, Range<Int>, WorkerPool?) -> Void) {
        let first = experts.lowerBound
        func rows(_ e: Int) -> Range<Int> { offsets[e - first] ..< offsets[e - first + 1] }
        let busy = experts.filter { !rows($0).isEmpty }
        if busy.count >= 2 * pool.threads && offsets[experts.count] * hidden * width < busy.count * (1 << 22) {
            // Largest first, so the threads finish together.
            let sorted = busy.sorted { rows($0).count > rows($1).count }
            pool.parallelFor(sorted.count) { i in body(sorted[i], rows(sorted[i]), nil) }
        } else {
            for e in busy { body(e, rows(e), pool) }
        }
    }

    /// Backward: parameter gradients accumulate; dx (+)= the gradient of the input. `balance` carries the
    /// aux and z losses' share of the router gradient.
    func backward(_ dOut: UnsafePointer<Float>, tokens n: Int, seqLen T: Int, store: ParameterStore, balance: BalanceGradient,
                  inputGrad dx: UnsafeMutablePointer<Float>, accumulate: Bool, pool: WorkerPool) {
        let w = store.values!, gr = store.grads!, E = experts, k = topK, rows = n * k
        let xs = input.pointer, yp = expertOut.pointer
        let slot = slots()

        // Gradient of each routing weight, and of each expert's output row.
        var dWeight = [Float](repeating: 0, count: rows)
        let dy = dExpertOut.reserve(rows * hidden)
        slot.withUnsafeBufferPointer { sb in
            weight.withUnsafeBufferPointer { wb in
                dWeight.withUnsafeMutableBufferPointer { db in
                    let sl = sb.baseAddress!, wt = wb.baseAddress!, dw = db.baseAddress!, hidden = self.hidden
                    forEachBlock(rows, pool: pool) { i in
                        let d = dOut + i / k * hidden, r = sl[i]
                        dw[i] = dot(d, yp + r * hidden, count: hidden)
                        let dst = dy + r * hidden
                        for j in 0..<hidden { dst[j] = wt[i] * d[j] }
                    }
                }
            }
        }
        let gp = g.pointer, up = u.pointer, ap = a.pointer
        let dgx = dGathered.reserve(rows * hidden)
        // As in the forward pass; expert parallel: d(output) rows go to the experts' owners, d(input) rows come back.
        let local: Range<Int>, localOffsets: [Int], lx: UnsafeMutablePointer<Float>
        let ldy: UnsafeMutablePointer<Float>, ldx: UnsafeMutablePointer<Float>
        if let exchange {
            let m = exchange.receivedRows
            (local, localOffsets, lx) = (exchange.local, exchange.localOffsets, received.pointer)
            ldy = receivedGrad.reserve(m * hidden); ldx = receivedInputGrad.reserve(m * hidden)
            exchange.toOwners(dy, width: hidden, into: ldy)
        } else {
            (local, localOffsets, lx, ldy, ldx) = (0..<experts, offsets, gathered.pointer, dy, dgx)
        }
        let sc = scratch.reserve(2 * (localOffsets.last ?? 0) * width)
        runExperts(local, offsets: localOffsets, pool: pool) { e, range, inner in
            let r0 = range.lowerBound
            swiGLUBackward(ldy + r0 * hidden, x: lx + r0 * hidden, rows: range.count, self.expert(e, store),
                           g: gp + r0 * self.width, u: up + r0 * self.width, a: ap + r0 * self.width,
                           inputGrad: ldx + r0 * hidden, accumulate: false, scratch: sc + 2 * r0 * self.width, pool: inner)
        }
        exchange?.fromOwners(ldx, width: hidden, into: dgx)

        // Router: routing weights → chosen scores (through the scaling and renormalisation) → all scores (plus,
        // for softmax, the aux loss's constant per-expert term) → logits (softmax or sigmoid, plus the z-loss's term).
        let pr = probs.pointer, ls = lse.pointer
        let dl = dLogits.reserve(n * E)
        let softmaxScores = routing.scoring == .softmax, scale = Float(routing.scale)
        let f = sequenceF, sequenceTokens = self.sequenceTokens, scoreSums = self.scoreSums
        choice.withUnsafeBufferPointer { cb in
            weight.withUnsafeBufferPointer { wb in
              dWeight.withUnsafeBufferPointer { db in
                let ch = cb.baseAddress!, wt = wb.baseAddress!, dWeight = db.baseAddress!
                let mask = self.balanceMask
                forEachBlock(n, pool: pool) { t in
                    let p = pr + t * E, d = dl + t * E
                    let counted = (mask?[t] ?? true) && softmaxScores
                    for e in 0..<E { d[e] = counted ? balance.probability[e] : 0 }
                    if normTopKProb {
                        // w_j = scale·p_j / (Σ p + 1e-20): d p_j = (scale·dw_j − Σ dw_i·w_i) / (Σ p + 1e-20).
                        var total: Float = 0, inner: Float = 0
                        for j in 0..<k { total += p[Int(ch[t * k + j])]; inner += dWeight[t * k + j] * wt[t * k + j] }
                        for j in 0..<k { d[Int(ch[t * k + j])] += (scale * dWeight[t * k + j] - inner) / (total + 1e-20) }
                    } else {
                        for j in 0..<k { d[Int(ch[t * k + j])] += scale * dWeight[t * k + j] }
                    }
                    if balance.sequenceScale != 0, mask?[t] ?? true {
                        // d/ds_e of f·P for this token: (f_e − Σ_j f_j·s_j/Σs) / (T·Σs).
                        let b = t / T, count = sequenceTokens[b], sum = scoreSums[t]
                        if count > 0 {
                            let fb = b * E
                            var mean: Float = 0
                            for e in 0..<E { mean += f[fb + e] * p[e] }
                            mean /= sum
                            let c = balance.sequenceScale / (Float(count) * sum)
                            for e in 0..<E { d[e] += c * (f[fb + e] - mean) }
                        }
                    }
                    if softmaxScores {
                        var c: Float = 0
                        for e in 0..<E { c += p[e] * d[e] }
                        let z = counted ? balance.zScale * 2 * ls[t] : 0
                        for e in 0..<E { d[e] = p[e] * (d[e] - c) + z * p[e] }
                    } else {
                        for e in 0..<E { d[e] *= p[e] * (1 - p[e]) }
                    }
                }
              }
            }
        }
        linearBackward(dl, x: xs, rows: n, inputs: hidden, outputs: E, weight: w + router, weightGrad: gr + router,
                       biasGrad: routerBias.map { gr + $0 }, inputGrad: dx, accumulateInput: accumulate, pool: pool)
        // Scatter the experts' input gradients back to their tokens (each token's choices in order).
        slot.withUnsafeBufferPointer { sb in
            let sl = sb.baseAddress!, hidden = self.hidden
            forEachBlock(n, pool: pool) { t in
                for i in t * k ..< (t + 1) * k { axpy(1, dgx + sl[i] * hidden, dx + t * hidden, count: hidden) }
            }
        }

        if let shared, sharedGate == nil {
            shared.backward(dOut, rows: n, store: store, inputGrad: dx, accumulate: true, pool: pool)
        }
        if let shared, let sharedGate {
            let so = sharedOut.pointer, sg = sharedGateValue.pointer
            let ds = dShared.reserve(n * hidden)
            let gw = w + sharedGate, gg = gr + sharedGate
            for t in 0..<n {
                let d = dOut + t * hidden, s = sg[t]
                let dGate = dot(d, so + t * hidden, count: hidden) * s * (1 - s)
                for j in 0..<hidden { ds[t * hidden + j] = s * d[j] }
                axpy(dGate, xs + t * hidden, gg, count: hidden)
                axpy(dGate, gw, dx + t * hidden, count: hidden)
            }
            shared.backward(ds, rows: n, store: store, inputGrad: dx, accumulate: true, pool: pool)
        }
    }
}
