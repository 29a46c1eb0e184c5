import Foundation
import MoEKernels

// The differentiable building blocks every layer is made of: Linear, RMSNorm, SwiGLU, each as an explicit
// forward (saving what its backward needs in caller-owned buffers) and backward (accumulating into gradients).

/// A growable, 64-byte aligned f32 buffer owned by one layer for one purpose (saved activations, scratch).
/// `reserve` keeps the contents when no growth is needed, so forward can save and backward can read.
final class Floats: @unchecked Sendable {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init(_ n: Int = 0) {
        capacity = max(n, 16)
        pointer = UnsafeMutableRawPointer.allocate(byteCount: capacity * 4, alignment: 64).bindMemory(to: Float.self, capacity: capacity)
        pointer.initialize(repeating: 0, count: capacity)
    }

    deinit { pointer.deallocate() }

    /// At least `n` floats; reallocated (contents lost) only when growing.
    func reserve(_ n: Int) -> UnsafeMutablePointer<Float> {
        if n > capacity {
            pointer.deallocate()
            capacity = n
            pointer = UnsafeMutableRawPointer.allocate(byteCount: n * 4, alignment: 64).bindMemory(to: Float.self, capacity: n)
            pointer.initialize(repeating: 0, count: n)
        }
        return pointer
    }

    /// `n` zeroed floats.
    func zeroed(_ n: Int) -> UnsafeMutablePointer<Float> {
        let p = reserve(n)
        p.update(repeating: 0, count: n)
        return p
    }
}

@inline(__always)
func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }

@inline(__always)
func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

/// y[rows×out] = x[rows×in]·Wᵀ (+ b), W stored [out×in] like nn.Linear.
@inline(__always)
func linearForward(_ x: UnsafePointer<Float>, rows: Int, inputs: Int, outputs: Int, weight: UnsafePointer<Float>,
                   bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>, accumulate: Bool = false,
                   pool: WorkerPool?) {
    sgemmNT(m: rows, n: outputs, k: inputs, alpha: 1, a: x, lda: inputs, b: weight, ldb: inputs, c: y, ldc: outputs,
            accumulate: accumulate, pool: pool)
    if let bias { addBias(y, rows: rows, stride: outputs, bias: bias, count: outputs) }
}

/// Backward of `linearForward`: dW += dyᵀ·x, db += Σ_rows dy, dx (+)= dy·W. `dx` nil skips the input gradient.
@inline(__always)
func linearBackward(_ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int, inputs: Int, outputs: Int,
                    weight: UnsafePointer<Float>, weightGrad: UnsafeMutablePointer<Float>,
                    biasGrad: UnsafeMutablePointer<Float>?, inputGrad dx: UnsafeMutablePointer<Float>?,
                    accumulateInput: Bool, pool: WorkerPool?) {
    if rows == 0 { return }
    sgemmTN(m: outputs, n: inputs, k: rows, alpha: 1, a: dy, lda: outputs, b: x, ldb: inputs, c: weightGrad,
            ldc: inputs, accumulate: true, pool: pool)
    if let biasGrad { addColumnSums(dy, rows: rows, cols: outputs, into: biasGrad) }
    if let dx {
        sgemmNN(m: rows, n: inputs, k: outputs, alpha: 1, a: dy, lda: outputs, b: weight, ldb: inputs, c: dx,
                ldc: inputs, accumulate: accumulateInput, pool: pool)
    }
}

/// out[j] += Σ_r a[r][j].
@inline(__always)
func addColumnSums(_ a: UnsafePointer<Float>, rows: Int, cols: Int, into out: UnsafeMutablePointer<Float>) {
    for r in 0..<rows { axpy(1, a + r * cols, out, count: cols) }
}

/// RMSNorm over `dim` for each of `rows` rows, saving 1/rms per row for the backward.
func rmsNormForward(_ x: UnsafePointer<Float>, rows: Int, dim: Int, weight: UnsafePointer<Float>, eps: Float,
                    into y: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>, pool: WorkerPool?) {
    let body = { (r: Int) in
        let xr = x + r * dim
        let s = 1 / (dot(xr, xr, count: dim) / Float(dim) + eps).squareRoot()
        rstd[r] = s
        let yr = y + r * dim
        for j in 0..<dim { yr[j] = weight[j] * (xr[j] * s) }
    }
    forEachBlock(rows, pool: pool, body)
}

/// Backward of `rmsNormForward`: dx (+)= r·(w⊙dy) − x·r³·⟨w⊙dy, x⟩/dim; dw += Σ_rows dy⊙x·r.
/// `dx` may alias `dy` when not accumulating.
func rmsNormBackward(_ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int, dim: Int,
                     weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>, weightGrad: UnsafeMutablePointer<Float>,
                     inputGrad dx: UnsafeMutablePointer<Float>, accumulate: Bool, pool: WorkerPool?) {
    // Each part sums its rows' weight gradient into its own slice of `partial` (read before dx overwrites an
    // aliased dy); the slices are added in part order afterwards.
    let parts = blockCount(rows, pool: pool)
    var partial = [Float](repeating: 0, count: parts * dim)
    partial.withUnsafeMutableBufferPointer { pb in
        let partial = pb.baseAddress!
        forEachPart(rows, pool: pool) { range, part in
            let wg = partial + part * dim
            for r in range {
                let dyr = dy + r * dim, xr = x + r * dim, dxr = dx + r * dim, s = rstd[r]
                // ⟨w⊙dy, x⟩ in eight lanes (a scalar float sum would not vectorise).
                var dv = SIMD8<Float>()
                var j = 0
                while j + 8 <= dim {
                    let dyx = load8(dyr + j) * load8(xr + j)
                    store8(load8(wg + j) + dyx * s, wg + j)
                    dv += load8(weight + j) * dyx
                    j += 8
                }
                var d = dv.sum()
                while j < dim {
                    wg[j] += dyr[j] * xr[j] * s
                    d += weight[j] * dyr[j] * xr[j]
                    j += 1
                }
                let c = s * s * s * d / Float(dim)
                if accumulate {
                    for j in 0..<dim { dxr[j] += s * weight[j] * dyr[j] - xr[j] * c }
                } else {
                    for j in 0..<dim { dxr[j] = s * weight[j] * dyr[j] - xr[j] * c }
                }
            }
        }
        for part in 0..<parts { axpy(1, partial + part * dim, weightGrad, count: dim) }
    }
}

/// Runs body(r) for r in 0..<rows, in a few contiguous blocks over the pool (inline without one).
@inline(__always)
func forEachBlock(_ rows: Int, pool: WorkerPool?, _ body: (Int) -> Void) {
    forEachRange(rows, pool: pool) { range in
        for r in range { body(r) }
    }
}

/// The parts `forEachRange` splits `rows` into (1 without a pool or for few rows); a fixed count, so a
/// reduction over parts adds in the same order on every run.
@inline(__always)
func blockCount(_ rows: Int, pool: WorkerPool?) -> Int {
    guard let pool, pool.threads > 1, rows >= 64 else { return 1 }
    return pool.threads * 4
}

/// Runs body(range, part) over `blockCount` contiguous parts of 0..<rows, spread over the pool.
@inline(__always)
func forEachRange(_ rows: Int, pool: WorkerPool?, _ body: (Range<Int>) -> Void) {
    forEachPart(rows, pool: pool) { range, _ in body(range) }
}

@inline(__always)
func forEachPart(_ rows: Int, pool: WorkerPool?, _ body: (Range<Int>, Int) -> Void) {
    let parts = blockCount(rows, pool: pool)
    guard let pool, parts > 1 else {
        body(0..<rows, 0)
        return
    }
    pool.parallelFor(parts) { p in
        body(rows * p / parts ..< rows * (p + 1) / parts, p)
    }
}

/// The weights of one SwiGLU MLP, `down(silu(gate·x) ⊙ up·x)`, and their gradients.
struct SwiGLUWeights {
    var gate: UnsafeMutablePointer<Float>, up: UnsafeMutablePointer<Float>, down: UnsafeMutablePointer<Float>
    var gateGrad: UnsafeMutablePointer<Float>, upGrad: UnsafeMutablePointer<Float>, downGrad: UnsafeMutablePointer<Float>
    var hidden: Int, width: Int
    /// Biases of the three projections and their gradients (gpt-oss's experts), nil without.
    var biases: (gate: UnsafeMutablePointer<Float>, up: UnsafeMutablePointer<Float>, down: UnsafeMutablePointer<Float>)? = nil
    var biasGrads: (gate: UnsafeMutablePointer<Float>, up: UnsafeMutablePointer<Float>, down: UnsafeMutablePointer<Float>)? = nil
    var activation: GatedActivation = .silu
}

/// Gated MLP forward over `rows` rows of x: saves g = x·gateᵀ (+ b), u = x·upᵀ (+ b) and a = act(g, u) (silu(g)⊙u
/// unless the weights say otherwise) ([rows×width] each); y = a·downᵀ (+ b).
func swiGLUForward(_ x: UnsafePointer<Float>, rows: Int, _ w: SwiGLUWeights, g: UnsafeMutablePointer<Float>,
                   u: UnsafeMutablePointer<Float>, a: UnsafeMutablePointer<Float>, into y: UnsafeMutablePointer<Float>,
                   pool: WorkerPool?) {
    if rows == 0 { return }
    linearForward(x, rows: rows, inputs: w.hidden, outputs: w.width, weight: w.gate, bias: w.biases?.gate, into: g, pool: pool)
    linearForward(x, rows: rows, inputs: w.hidden, outputs: w.width, weight: w.up, bias: w.biases?.up, into: u, pool: pool)
    w.activation.apply(g, u, into: a, count: rows * w.width)
    linearForward(a, rows: rows, inputs: w.width, outputs: w.hidden, weight: w.down, bias: w.biases?.down, into: y, pool: pool)
}

/// SwiGLU backward: weight gradients accumulate; dx (+)= the input gradient. `scratch` holds 2·rows·width floats.
func swiGLUBackward(_ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int, _ w: SwiGLUWeights,
                    g: UnsafePointer<Float>, u: UnsafePointer<Float>, a: UnsafePointer<Float>,
                    inputGrad dx: UnsafeMutablePointer<Float>, accumulate: Bool, scratch: UnsafeMutablePointer<Float>,
                    pool: WorkerPool?) {
    if rows == 0 { return }
    let n = rows * w.width
    let da = scratch, du = scratch + n
    // da = dy·down; dDown += dyᵀ·a
    linearBackward(dy, x: a, rows: rows, inputs: w.width, outputs: w.hidden, weight: w.down, weightGrad: w.downGrad,
                   biasGrad: w.biasGrads?.down, inputGrad: da, accumulateInput: false, pool: pool)
    // a = act(g, u): du, and dg into da.
    w.activation.backward(g, u, da, upGrad: du, count: n)
    linearBackward(da, x: x, rows: rows, inputs: w.hidden, outputs: w.width, weight: w.gate, weightGrad: w.gateGrad,
                   biasGrad: w.biasGrads?.gate, inputGrad: dx, accumulateInput: accumulate, pool: pool)
    linearBackward(du, x: x, rows: rows, inputs: w.hidden, outputs: w.width, weight: w.up, weightGrad: w.upGrad,
                   biasGrad: w.biasGrads?.up, inputGrad: dx, accumulateInput: true, pool: pool)
}

/// An RMSNorm weight of the parameter store read as w + offset: 1 for the zero-centred norms of Qwen3-Next /
/// Qwen3.5 (stored as w − 1, as their checkpoints keep them). The gradient is the same for w and w + 1.
final class NormWeight {
    let offset: Int, count: Int, shift: Float
    private let shifted = Floats()

    init(_ offset: Int, count: Int, shift: Float) { self.offset = offset; self.count = count; self.shift = shift }

    /// The weights to multiply by (refreshed from the store on every call: the optimizer moves them).
    func values(_ store: ParameterStore) -> UnsafeMutablePointer<Float> {
        let w = store.values! + offset
        guard shift != 0 else { return w }
        let p = shifted.reserve(count)
        for j in 0..<count { p[j] = w[j] + shift }
        return p
    }
}
