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

/// gate[i] = silu(gate[i]) · up[i] (SwiGLU), silu(g) = g / (1 + e^-g).
@inline(__always)
public func siluMultiply(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count n: Int) {
    for i in 0..<n {
        let g = gate[i]
        gate[i] = g / (1 + expf(-g)) * up[i]
    }
}

/// In-place softmax over `n` entries (max-subtracted, f32).
@inline(__always)
public func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) {
    var m = -Float.infinity
    for i in 0..<n where x[i] > m { m = x[i] }
    var sum: Float = 0
    for i in 0..<n {
        let e = expf(x[i] - m)
        x[i] = e
        sum += e
    }
    let inv = 1 / sum
    for i in 0..<n { x[i] *= inv }
}

/// y[i] += a · x[i]
@inline(__always)
public func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int) {
    for i in 0..<n { y[i] += a * x[i] }
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
