import MoEKernels

/// The gated feed-forward network: `down(act(gate(x), up(x)))`, SwiGLU (act = silu(gate) · up) unless set otherwise,
/// with optional biases (gpt-oss's experts). Dense layers, every expert and the shared expert are one of these.
public struct MLP: @unchecked Sendable {
    public let gate: WeightMatrix
    public let up: WeightMatrix
    public let down: WeightMatrix
    public var gateBias: [Float]? = nil
    public var upBias: [Float]? = nil
    public var downBias: [Float]? = nil
    public var activation: GatedActivation = .silu
    public var width: Int { gate.rows }

    public init(gate: WeightMatrix, up: WeightMatrix, down: WeightMatrix) {
        self.gate = gate; self.up = up; self.down = down
    }

    /// `{prefix}.gate_proj/up_proj/down_proj.weight` (or other names, as Mixtral's w1/w3/w2).
    public init(_ w: WeightReader, prefix: String, hidden: Int, width: Int,
                names: (gate: String, up: String, down: String) = ("gate_proj", "up_proj", "down_proj")) throws {
        gate = try w.matrix("\(prefix).\(names.gate).weight", rows: width, cols: hidden)
        up = try w.matrix("\(prefix).\(names.up).weight", rows: width, cols: hidden)
        down = try w.matrix("\(prefix).\(names.down).weight", rows: hidden, cols: width)
    }

    /// out[T, hidden] (= or +=) MLP(x[T, hidden]).
    func forward(_ x: UnsafePointer<Float>, tokens T: Int, into out: UnsafeMutablePointer<Float>, accumulate: Bool,
                 ws: Workspace, pool: WorkerPool) {
        let hidden = gate.cols, width = gate.rows
        let g = ws.gate.reserve(T * width), u = ws.up.reserve(T * width)
        linearPair(x, ldx: hidden, tokens: T, gate, into: g, ldo1: width, up, into: u, ldo2: width, pool: pool)
        activate(g, u, rows: T)
        linear(g, ldx: width, tokens: T, down, into: out, ldo: hidden, accumulate: accumulate, pool: pool)
        addDownBias(out, rows: T)
    }

    /// gate rows [rows, width] = act(gate + gate bias, up + up bias) (the projections, biases not yet added).
    @inline(__always)
    func activate(_ g: UnsafeMutablePointer<Float>, _ u: UnsafeMutablePointer<Float>, rows: Int) {
        let width = gate.rows
        gateBias?.withUnsafeBufferPointer { addBias(g, rows: rows, stride: width, bias: $0.baseAddress!, count: width) }
        upBias?.withUnsafeBufferPointer { addBias(u, rows: rows, stride: width, bias: $0.baseAddress!, count: width) }
        activation.apply(g, u, count: rows * width)
    }

    @inline(__always)
    func addDownBias(_ out: UnsafeMutablePointer<Float>, rows: Int) {
        let hidden = down.rows
        downBias?.withUnsafeBufferPointer { addBias(out, rows: rows, stride: hidden, bias: $0.baseAddress!, count: hidden) }
    }
}
