import Foundation

// Row-wise and element-wise kernels used by every layer: RMSNorm, SwiGLU's activation, softmax, axpy.
// They run on f32 activations; the matrix products live in their own files.

/// out[i] = w[i] · x[i] / sqrt(mean(x²) + eps), as HF's RMSNorm (statistics in f32). `out` may alias `x`.
@inline(__always)
public func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, count n: Int, eps: Float,
                    into out: UnsafeMutablePointer<Float>) {
    var acc = SIMD16<Float>()
    var i = 0
    while i + 16 <= n {
        let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        acc.addProduct(v, v)
        i += 16
    }
    var sum = acc.sum()
    while i < n { sum += x[i] * x[i]; i += 1 }
    let scale = 1 / (sum / Float(n) + eps).squareRoot()
    for j in 0..<n { out[j] = weight[j] * (x[j] * scale) }
}

/// e^x lane by lane: Cephes' expf (e^x = 2^n·e^r, n = round(x·log2 e), |r| ≤ ln2/2, degree-6 polynomial), within
/// ~2 ulp of expf. x is clamped to [-87.3, 88] so 2^n stays a normal float (e^-87.3 ≈ 1e-38 stands in for 0).
@inline(__always)
func exp8(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let x = vmin(vmax(x, SIMD8(repeating: -87.33654)), SIMD8(repeating: 88))
    // Adding 1.5·2^23 rounds x·log2 e to an integer held in the low mantissa bits.
    let magic = SIMD8<Float>(repeating: 12_582_912)
    let t = x * 1.442_695_04 + magic
    let n = t - magic
    let r = x - n * 0.693_359_375 + n * 2.121_944_4e-4   // x − n·ln 2 in two steps (ln 2 = C1 − C2)
    var p = SIMD8<Float>(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 0.166_666_655
    p = p * r + 0.500_000_01
    let y = p * (r * r) + r + 1
    // 2^n: n + 127 into the exponent field (t's bits are 0x4B40_0000 + n).
    let bits = (unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B3F_FF81) &<< 23
    return y * unsafeBitCast(bits, to: SIMD8<Float>.self)
}

// Lane-wise max/min written as compare-and-blend: the generic pointwiseMax/Min are not inlined.
@inline(__always)
func vmax(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a.replacing(with: b, where: a .< b) }

@inline(__always)
func vmin(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a.replacing(with: b, where: b .< a) }

@inline(__always)
func load8U(_ p: UnsafePointer<Float>) -> SIMD8<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }

@inline(__always)
func store8U(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self) }

/// The first n < 8 entries of p as a vector, the other lanes `fill`.
@inline(__always)
func loadPartial(_ p: UnsafePointer<Float>, _ n: Int, fill: Float) -> SIMD8<Float> {
    var v = SIMD8<Float>(repeating: fill)
    for j in 0..<n { v[j] = p[j] }
    return v
}

/// gate[i] = silu(gate[i]) · up[i] (SwiGLU), silu(g) = g / (1 + e^-g).
public func siluMultiply(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count n: Int) {
    siluMultiply(gate, up, into: gate, count: n)
}

/// out[i] = silu(gate[i]) · up[i]. `out` may alias `gate`.
public func siluMultiply(_ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                         count n: Int) {
    var i = 0
    while i &+ 8 <= n {
        let g = load8U(gate + i)
        store8U(g / (1 + exp8(-g)) * load8U(up + i), out + i)
        i &+= 8
    }
    while i < n {
        let g = gate[i]
        out[i] = g / (1 + exp8(SIMD8(repeating: -g))[0]) * up[i]
        i &+= 1
    }
}

/// The gated activation of a gated MLP (gate and up projections), applied into the gate rows.
public enum GatedActivation: Sendable, Equatable {
    /// silu(gate) · up (SwiGLU).
    case silu
    /// gpt-oss's clamped SwiGLU: g = min(gate, limit), u = clamp(up, ±limit), (u + 1) · g · σ(α·g).
    case clampedSwiGLU(alpha: Float, limit: Float)

    /// gate[i] = activation(gate[i], up[i]).
    public func apply(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count n: Int) {
        apply(gate, up, into: gate, count: n)
    }

    /// out[i] = activation(gate[i], up[i]); `out` may alias `gate`.
    public func apply(_ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count n: Int) {
        switch self {
        case .silu: siluMultiply(gate, up, into: out, count: n)
        case let .clampedSwiGLU(alpha, limit): MoEKernels.clampedSwiGLU(gate, up, into: out, count: n, alpha: alpha, limit: limit)
        }
    }

    /// Backward given d(out) in `da`: the up gradient into `du`, the gate gradient into `da` (in place).
    public func backward(_ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, _ da: UnsafeMutablePointer<Float>,
                         upGrad du: UnsafeMutablePointer<Float>, count n: Int) {
        switch self {
        case .silu: siluMultiplyBackward(gate, up, da, upGrad: du, count: n)
        case let .clampedSwiGLU(alpha, limit):
            // out = (u' + 1)·g'·σ(α·g'), g' = min(g, L), u' = clamp(u, ±L); a clamp passes gradient where it does
            // not bite (bounds included, as torch.clamp).
            for i in 0..<n {
                let g = min(gate[i], limit), u = min(max(up[i], -limit), limit)
                let s = 1 / (1 + Foundation.exp(-alpha * g))
                let d = da[i]
                du[i] = up[i] >= -limit && up[i] <= limit ? d * g * s : 0
                da[i] = gate[i] <= limit ? d * (u + 1) * (s + alpha * g * s * (1 - s)) : 0
            }
        }
    }
}

/// out[i] = (clamp(up[i], ±limit) + 1) · g · σ(α·g), g = min(gate[i], limit) (gpt-oss); `out` may alias `gate`.
public func clampedSwiGLU(_ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                          count n: Int, alpha: Float, limit: Float) {
    @inline(__always)
    func step(_ gate: SIMD8<Float>, _ up: SIMD8<Float>) -> SIMD8<Float> {
        let g = gate.replacing(with: SIMD8(repeating: limit), where: gate .> limit)
        let u = up.clamped(lowerBound: SIMD8(repeating: -limit), upperBound: SIMD8(repeating: limit))
        return (u + 1) * g / (1 + exp8(-alpha * g))
    }
    var i = 0
    while i &+ 8 <= n {
        store8U(step(load8U(gate + i), load8U(up + i)), out + i)
        i &+= 8
    }
    while i < n {
        out[i] = step(SIMD8(repeating: gate[i]), SIMD8(repeating: up[i]))[0]
        i &+= 1
    }
}

/// Backward of out = silu(g)·u given dOut in `da`: du = dOut·silu(g), then da = dOut·u·silu'(g) in place,
/// silu'(g) = σ(g)(1 + g(1 − σ(g))).
public func siluMultiplyBackward(_ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, _ da: UnsafeMutablePointer<Float>,
                                 upGrad du: UnsafeMutablePointer<Float>, count n: Int) {
    @inline(__always)
    func step(_ g: SIMD8<Float>, _ u: SIMD8<Float>, _ d: SIMD8<Float>) -> (da: SIMD8<Float>, du: SIMD8<Float>) {
        let sg = 1 / (1 + exp8(-g))
        return (d * u * sg * (1 + g * (1 - sg)), d * g * sg)
    }
    var i = 0
    while i &+ 8 <= n {
        let (a, u) = step(load8U(gate + i), load8U(up + i), load8U(da + i))
        store8U(a, da + i); store8U(u, du + i)
        i &+= 8
    }
    while i < n {
        let (a, u) = step(SIMD8(repeating: gate[i]), SIMD8(repeating: up[i]), SIMD8(repeating: da[i]))
        da[i] = a[0]; du[i] = u[0]
        i &+= 1
    }
}

/// max_i x[i] (−∞ for n = 0).
public func maxElement(_ x: UnsafePointer<Float>, count n: Int) -> Float {
    var m = SIMD8<Float>(repeating: -.infinity)
    var i = 0
    while i &+ 8 <= n { m = vmax(m, load8U(x + i)); i &+= 8 }
    var r = m.max()
    while i < n { r = Swift.max(r, x[i]); i &+= 1 }
    return r
}

/// x[i] = e^(x[i] − shift) in place; returns Σ of the new x (the softmax denominator when shift = max).
public func expShiftedSum(_ x: UnsafeMutablePointer<Float>, count n: Int, shift: Float) -> Float {
    let sh = SIMD8<Float>(repeating: shift)
    var acc = SIMD8<Float>()
    var i = 0
    while i &+ 8 <= n {
        let e = exp8(load8U(x + i) - sh)
        store8U(e, x + i)
        acc += e
        i &+= 8
    }
    var s = acc.sum()
    if i < n {
        let e = exp8(loadPartial(x + i, n &- i, fill: shift) - sh)
        for j in 0..<(n &- i) { x[i &+ j] = e[j]; s += e[j] }
    }
    return s
}

/// x[i] *= a
public func scale(_ x: UnsafeMutablePointer<Float>, count n: Int, by a: Float) {
    var i = 0
    while i &+ 8 <= n { store8U(load8U(x + i) * a, x + i); i &+= 8 }
    while i < n { x[i] *= a; i &+= 1 }
}

/// In-place softmax over `n` entries (max-subtracted, f32).
public func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) {
    if n <= 0 { return }
    let s = expShiftedSum(x, count: n, shift: maxElement(x, count: n))
    scale(x, count: n, by: 1 / s)
}

/// Softmax of x[0..<n] with one more logit, `sink`, in the denominator only (gpt-oss's attention sinks: a head can
/// give part of its attention to nothing); −∞ makes it the plain softmax.
public func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int, sink: Float) {
    if sink == -.infinity { softmax(x, count: n); return }
    let m = max(n > 0 ? maxElement(x, count: n) : -.infinity, sink)
    let s = (n > 0 ? expShiftedSum(x, count: n, shift: m) : 0) + Foundation.exp(sink - m)
    scale(x, count: n, by: 1 / s)
}

/// y[i] += a · x[i]
@inline(__always)
public func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int) {
    var i = 0
    while i &+ 8 <= n { store8U(load8U(y + i) + a * load8U(x + i), y + i); i &+= 8 }
    while i < n { y[i] += a * x[i]; i &+= 1 }
}

/// x[i] += b[i] for each of `rows` rows of length `n` (a bias added to every token).
@inline(__always)
public func addBias(_ x: UnsafeMutablePointer<Float>, rows: Int, stride: Int, bias: UnsafePointer<Float>, count n: Int) {
    for r in 0..<rows {
        let row = x + r * stride
        for i in 0..<n { row[i] += bias[i] }
    }
}

/// Σ a[i] · b[i] (f32, eight lanes then one reduction).
@inline(__always)
public func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count n: Int) -> Float {
    var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
    var i = 0
    while i &+ 16 <= n {
        let a0 = UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self)
        let b0 = UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
        let a1 = UnsafeRawPointer(a + (i &+ 8)).loadUnaligned(as: SIMD8<Float>.self)
        let b1 = UnsafeRawPointer(b + (i &+ 8)).loadUnaligned(as: SIMD8<Float>.self)
        acc0.addProduct(a0, b0)
        acc1.addProduct(a1, b1)
        i &+= 16
    }
    var s = (acc0 + acc1).sum()
    while i < n { s += a[i] * b[i]; i &+= 1 }
    return s
}
