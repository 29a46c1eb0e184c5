import Foundation
import MoEFormats
import MoEKernels

/// The mixture-of-experts feed-forward block, written once for every architecture:
///
///     w, idx = router(x)                       (`ExpertRouter`: k experts per token and their weights)
///     y = Σ_j w_j · expert_idx_j(x)            (each expert a SwiGLU MLP)
///     y += sigmoid(sharedGate · x) · shared(x) (Qwen2-MoE's gated shared expert, when present)
///     y += shared(x)                           (DeepSeek's and GLM-4.5's shared experts: no gate)
///
/// Dropless dispatch: tokens are grouped by the expert they chose (a counting sort), and each expert that
/// was hit runs one matrix product over its group of tokens.
public struct MoEBlock: @unchecked Sendable {
    public let router: ExpertRouter
    public let experts: [MLP]
    public let sharedExpert: MLP?
    /// The shared expert's sigmoid gate [hidden]; nil: the shared expert is added as it is.
    public let sharedExpertGate: [Float]?

    public var topK: Int { router.topK }

    public init(router: ExpertRouter, experts: [MLP], sharedExpert: MLP? = nil, sharedExpertGate: [Float]? = nil) {
        self.router = router; self.experts = experts
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

    /// The experts' biases, stacked per projection as gpt-oss's experts have them: `{experts}.gate_proj_bias`,
    /// `up_proj_bias` [E, width] and `down_proj_bias` [E, hidden].
    public static func readExpertBiases(_ w: WeightReader, prefix: String, into experts: inout [MLP], hidden: Int, width: Int) throws {
        let E = experts.count
        let gate = try w.vector("\(prefix).gate_proj_bias", shape: [E, width])
        let up = try w.vector("\(prefix).up_proj_bias", shape: [E, width])
        let down = try w.vector("\(prefix).down_proj_bias", shape: [E, hidden])
        for e in 0..<E {
            experts[e].gateBias = Array(gate[(e * width)..<((e + 1) * width)])
            experts[e].upBias = Array(up[(e * width)..<((e + 1) * width)])
            experts[e].downBias = Array(down[(e * hidden)..<((e + 1) * hidden)])
        }
    }

    /// residual[T, hidden] += MoE(x[T, hidden]).
    func forward(_ x: UnsafePointer<Float>, tokens T: Int, residual: UnsafeMutablePointer<Float>,
                 ws: Workspace, pool: WorkerPool) {
        let hidden = router.weight.cols, count = router.experts, k = topK
        let logits = ws.routerLogits.reserve(T * count)
        linear(x, ldx: hidden, tokens: T, router.weight, into: logits, ldo: count, pool: pool)
        router.bias?.withUnsafeBufferPointer { addBias(logits, rows: T, stride: count, bias: $0.baseAddress!, count: count) }
        router.route(logits, tokens: T, routing: &ws.routing)
        let routing = ws.routing

        // Gather every (token, choice) row in expert order: expert e owns rows offsets[e] ..< offsets[e+1].
        let entries = routing.entries
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
            mlp.activate(gate + lo * width, up + lo * width, rows: rows)
            linear(gate + lo * width, ldx: width, tokens: rows, mlp.down, into: out + lo * hidden, ldo: hidden, pool: pool)
            mlp.addDownBias(out + lo * hidden, rows: rows)
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

        if let sharedExpert {
            guard let sharedExpertGate else {
                sharedExpert.forward(x, tokens: T, into: residual, accumulate: true, ws: ws, pool: pool)
                return
            }
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
}
