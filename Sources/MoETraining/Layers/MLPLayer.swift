import Foundation
import MoEKernels
import MoEModel

/// A dense SwiGLU MLP layer (`{prefix}.gate_proj/up_proj/down_proj`), also used as Qwen2-MoE's shared expert.
final class MLPLayer {
    let hidden: Int, width: Int
    let gate: Int, up: Int, down: Int
    let input = Floats(), g = Floats(), u = Floats(), a = Floats(), scratch = Floats()

    init(_ store: ParameterStore, prefix: String, hidden: Int, width: Int,
         names: MoELayout.ExpertNames = .swiGLU) {
        self.hidden = hidden; self.width = width
        gate = store.add("\(prefix).\(names.gate).weight", shape: [width, hidden], decay: true)
        up = store.add("\(prefix).\(names.up).weight", shape: [width, hidden], decay: true)
        down = store.add("\(prefix).\(names.down).weight", shape: [hidden, width], decay: true)
    }

    func weights(_ store: ParameterStore) -> SwiGLUWeights {
        let w = store.values!, gr = store.grads!
        return SwiGLUWeights(gate: w + gate, up: w + up, down: w + down, gateGrad: gr + gate, upGrad: gr + up,
                             downGrad: gr + down, hidden: hidden, width: width)
    }

    /// y[rows×hidden] = MLP(x) (overwritten).
    func forward(_ x: UnsafePointer<Float>, rows: Int, store: ParameterStore, into y: UnsafeMutablePointer<Float>, pool: WorkerPool) {
        let xs = input.reserve(rows * hidden)
        xs.update(from: x, count: rows * hidden)
        swiGLUForward(xs, rows: rows, weights(store), g: g.reserve(rows * width), u: u.reserve(rows * width),
                      a: a.reserve(rows * width), into: y, pool: pool)
    }

    func backward(_ dy: UnsafePointer<Float>, rows: Int, store: ParameterStore, inputGrad dx: UnsafeMutablePointer<Float>,
                  accumulate: Bool, pool: WorkerPool) {
        swiGLUBackward(dy, x: input.pointer, rows: rows, weights(store), g: g.pointer, u: u.pointer, a: a.pointer,
                       inputGrad: dx, accumulate: accumulate, scratch: scratch.reserve(2 * rows * width), pool: pool)
    }
}
