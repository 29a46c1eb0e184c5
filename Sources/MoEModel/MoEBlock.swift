import Foundation
import MoEFormats
import MoEKernels

/// The mixture-of-experts feed-forward block, written once for every architecture:
///
///     router logits = gate(x)                  (Linear hidden → experts, no bias)
///     p = softmax(logits)                      (f32, over all experts)
///     w, idx = topk(p, k)                      (then w /= Σw if normTopKProb)
///     y = Σ_j w_j · expert_idx_j(x)            (each expert a SwiGLU MLP)
///     y += sigmoid(sharedGate · x) · shared(x) (Qwen2-MoE's shared expert, when present)
///
/// Dropless dispatch: tokens are grouped by the expert they chose (a counting sort), and each expert that
/// was hit runs one matrix product over its group of tokens.
public struct MoEBlock: @unchecked Sendable {
    public let router: WeightMatrix
    public let experts: [MLP]
    public let topK: Int
    public let normTopKProb: Bool
    public let sharedExpert: MLP?
    public let sharedExpertGate: [Float]?

    public init(router: WeightMatrix, experts: [MLP], topK: Int, normTopKProb: Bool,
                sharedExpert: MLP? = nil, sharedExpertGate: [Float]? = nil) {
        self.router = router; self.experts = experts; self.topK = topK; self.normTopKProb = normTopKProb
        self.sharedExpert = sharedExpert; self.sharedExpertGate = sharedExpertGate
    }

    /// Reads experts stored one by one (`{experts}.{e}.{gate}.weight`, as hub checkpoints), fused as
    /// transformers 5 keeps them (`{experts}.gate_up_proj` [E, 2·width, hidden], `{experts}.down_proj`
    /// [E, hidden, width]), or stacked per projection as GGUF keeps them (`{experts}.gate_proj`, `up_proj`
    /// [E, width, hidden], `down_proj`).
    public static func readExperts(_ w: WeightReader, prefix: String, count: Int, hidden: Int, width: Int,
                                   names: (gate: String, up: String, down: String) = ("gate_proj", "up_proj", "down_proj")) throws -> [MLP] {
        let fused = "\(prefix).gate_up_proj"
        if w.has(fused) {
            return try (0..<count).map { e in
                MLP(gate: try w.stackedMatrix(fused, index: e, shape: [count, 2 * width, hidden], rows: width),
                    up: try w.stackedMatrix(fused, index: e, shape: [count, 2 * width, hidden], rowOffset: width, rows: width),
                    down: try w.stackedMatrix("\(prefix).down_proj", index: e, shape: [count, hidden, width], rows: hidden))
            }
        }
        if w.has("\(prefix).gate_proj") {
            // Stacked one matrix per projection (GGUF's ffn_{gate,up,down}_exps).
            return try (0..<count).map { e in
                MLP(gate: try w.stackedMatrix("\(prefix).gate_proj", index: e, shape: [count, width, hidden], rows: width),
                    up: try w.stackedMatrix("\(prefix).up_proj", index: e, shape: [count, width, hidden], rows: width),
                    down: try w.stackedMatrix("\(prefix).down_proj", index: e, shape: [count, hidden, width], rows: hidden))
            }
        }
        return try (0..<count).map { e in try MLP(w, prefix: "\(prefix).\(e)", hidden: hidden, width: width, names: names) }
    }

    /// residual[T, hidden] += MoE(x[T, hidden]).
    func forward(_ x: UnsafePointer<Float>, tokens T: Int, residual: UnsafeMutablePointer<Float>,
                 ws: Workspace, pool: WorkerPool) {
        let hidden = router.cols, count = router.rows, k = topK
        let logits = ws.routerLogits.reserve(T * count)
        linear(x, ldx: hidden, tokens: T, router, into: logits, ldo: count, pool: pool)
        route(logits, tokens: T, routing: &ws.routing)
        let routing = ws.routing

        // Gather every (token, choice) row in expert order: expert e owns rows offsets[e] ..< offsets[e+1].
        let entries = T * k
        let width = experts[0].width
        let input = ws.expertInput.reserve(entries * hidden)
        let gate = ws.gate.reserve(entries * width), up = ws.up.reserve(entries * width)
        let out = ws.mlpOut.reserve(entries * hidden)
        for r in 0..<entries {
            let token = Int(routing.order[r]) / k
            (input + r * hidden).update(from: x + token * hidden, count: hidden)
        }
        let hit = routing.hit
        func runExpert(_ e: Int, _ pool: WorkerPool) {
            let lo = routing.offsets[e], rows = routing.offsets[e + 1] - lo
            let mlp = experts[e]
            linearPair(input + lo * hidden, ldx: hidden, tokens: rows, mlp.gate, into: gate + lo * width, ldo1: width,
                       mlp.up, into: up + lo * width, ldo2: width, pool: pool)
            siluMultiply(gate + lo * width, up + lo * width, count: rows * width)
            linear(gate + lo * width, ldx: width, tokens: rows, mlp.down, into: out + lo * hidden, ldo: hidden, pool: pool)
        }
        if entries < 16 * hit.count {
            // Few rows per expert (decode; batched decode too: with B ≤ 16 sequences the mean is below 16 unless
            // all B chose the same k experts): one parallel section over the experts, each a single-threaded GEMV.
            pool.parallelFor(hit.count) { i in runExpert(hit[i], pool) }
        } else {
            // Many rows per expert (prefill): one expert at a time, each product spread over the threads.
            for e in hit { runExpert(e, pool) }
        }
        for r in 0..<entries {
            let entry = Int(routing.order[r])
            axpy(routing.weights[entry], out + r * hidden, residual + (entry / k) * hidden, count: hidden)
        }

        if let sharedExpert, let sharedExpertGate {
            let shared = ws.mlpOut.reserve(T * hidden)
            sharedExpert.forward(x, tokens: T, into: shared, accumulate: false, ws: ws, pool: pool)
            sharedExpertGate.withUnsafeBufferPointer { g in
                for t in 0..<T {
                    var dot: Float = 0
                    for i in 0..<hidden { dot += x[t * hidden + i] * g[i] }
                    let weight = 1 / (1 + expf(-dot))
                    axpy(weight, shared + t * hidden, residual + t * hidden, count: hidden)
                }
            }
        }
    }

    /// softmax → top-k → optional renormalisation, then the counting sort by expert.
    func route(_ logits: UnsafeMutablePointer<Float>, tokens T: Int, routing: inout Routing) {
        let count = router.rows, k = topK
        if routing.chosen.count < T * k {
            routing.chosen = .init(repeating: 0, count: T * k)
            routing.weights = .init(repeating: 0, count: T * k)
            routing.order = .init(repeating: 0, count: T * k)
        }
        if routing.offsets.count != count + 1 { routing.offsets = .init(repeating: 0, count: count + 1) }
        for e in 0...count { routing.offsets[e] = 0 }
        for t in 0..<T {
            let p = logits + t * count
            softmax(p, count: count)
            var sum: Float = 0
            for j in 0..<k {
                // The j-th largest probability; earlier picks are marked by negating them (p ≥ 0).
                var best = -1
                var bestP = -Float.infinity
                for e in 0..<count where p[e] > bestP { bestP = p[e]; best = e }
                routing.chosen[t * k + j] = Int32(best)
                routing.weights[t * k + j] = bestP
                sum += bestP
                p[best] = -1
            }
            if normTopKProb { for j in 0..<k { routing.weights[t * k + j] /= sum } }
            for j in 0..<k { routing.offsets[Int(routing.chosen[t * k + j]) + 1] += 1 }
        }
        routing.hit.removeAll(keepingCapacity: true)
        for e in 0..<count {
            if routing.offsets[e + 1] > 0 { routing.hit.append(e) }
            routing.offsets[e + 1] += routing.offsets[e]
        }
        // Place each entry at its expert's next free slot (offsets[e] advances, then is restored).
        for entry in 0..<(T * k) {
            let e = Int(routing.chosen[entry])
            routing.order[routing.offsets[e]] = Int32(entry)
            routing.offsets[e] += 1
        }
        for e in stride(from: count, to: 0, by: -1) { routing.offsets[e] = routing.offsets[e - 1] }
        routing.offsets[0] = 0
    }
}
