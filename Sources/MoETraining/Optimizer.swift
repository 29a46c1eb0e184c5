import Foundation
import MoEKernels

/// AdamW (decoupled weight decay, as `torch.optim.AdamW`) over every tensor of a `ParameterStore`; weight
/// decay only on tensors registered with `decay` (matrices, not norms or biases); frozen tensors untouched.
public final class AdamW {
    public struct Settings: Codable, Sendable, Equatable {
        public var beta1: Float = 0.9
        public var beta2: Float = 0.95
        public var eps: Float = 1e-8
        public var weightDecay: Float = 0.1
        public init() {}
    }

    public let settings: Settings
    public private(set) var step = 0
    /// The flat range of the store this optimizer steps and keeps moments for: all of it, or (ZeRO-1) this rank's
    /// share. `m` and `v` hold the moments of `span` only.
    public let span: Range<Int>
    let m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>
    /// Tensors (their offsets) another process steps: expert parallelism's experts of other ranks.
    public var othersTensors: Set<Int> = []

    public init(_ store: ParameterStore, settings: Settings = Settings(), span: Range<Int>? = nil) {
        self.settings = settings
        self.span = span ?? 0 ..< max(store.count, 1)
        let count = max(self.span.count, 1)
        m = .allocate(capacity: count); m.initialize(repeating: 0, count: count)
        v = .allocate(capacity: count); v.initialize(repeating: 0, count: count)
    }

    deinit { m.deallocate(); v.deallocate() }

    /// One update with learning rate `lr` from the gradients in `store.grads`.
    public func update(_ store: ParameterStore, lr: Float, pool: WorkerPool) {
        step += 1
        let s = settings
        let c1 = 1 - Foundation.pow(s.beta1, Float(step)), c2 = 1 - Foundation.pow(s.beta2, Float(step))
        let w = store.values!, g = store.grads!, base = span.lowerBound
        // Equal slices of at most `slice` elements (tensors range from a norm to the embedding), so the threads
        // finish together.
        let slice = 1 << 16
        var work: [(lo: Int, hi: Int, decay: Float)] = []
        for t in store.tensors where !t.frozen && !othersTensors.contains(t.offset) {
            let decay: Float = t.decay ? 1 - lr * s.weightDecay : 1
            var lo = max(t.offset, span.lowerBound)
            let end = min(t.offset + t.count, span.upperBound)
            while lo < end {
                let hi = min(lo + slice, end)
                work.append((lo, hi, decay))
                lo = hi
            }
        }
        let b1 = s.beta1, b2 = s.beta2, eps = s.eps
        work.withUnsafeBufferPointer { wb in
            let work = wb.baseAddress!
            pool.parallelFor(wb.count) { i in
                let (lo, hi, decay) = work[i]
                // The slice's elements: the moments are indexed from the span's start.
                let g = g + lo, w = w + lo, m = self.m + (lo - base), v = self.v + (lo - base), n = hi - lo
                @inline(__always)
                func step(_ gj: SIMD8<Float>, _ mj: SIMD8<Float>, _ vj: SIMD8<Float>, _ wj: SIMD8<Float>)
                    -> (m: SIMD8<Float>, v: SIMD8<Float>, w: SIMD8<Float>) {
                    let mn = b1 * mj + (1 - b1) * gj
                    let vn = b2 * vj + (1 - b2) * gj * gj
                    let update = (mn / c1) / ((vn / c2).squareRoot() + eps)
                    return (mn, vn, wj * decay - lr * update)
                }
                var j = 0
                while j + 8 <= n {
                    let r = step(load8(g + j), load8(m + j), load8(v + j), load8(w + j))
                    store8(r.m, m + j); store8(r.v, v + j); store8(r.w, w + j)
                    j += 8
                }
                while j < n {
                    let r = step(SIMD8(repeating: g[j]), SIMD8(repeating: m[j]), SIMD8(repeating: v[j]), SIMD8(repeating: w[j]))
                    m[j] = r.m[0]; v[j] = r.v[0]; w[j] = r.w[0]
                    j += 1
                }
            }
        }
    }

    /// Moments in the store's layout as tensors named after the parameters (`exp_avg.<name>`, `exp_avg_sq.<name>`),
    /// the optimizer-state file of a checkpoint.
    static func stateTensors(_ store: ParameterStore, m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>)
        -> [(name: String, pointer: UnsafeMutablePointer<Float>, count: Int)] {
        store.tensors.flatMap { t in
            [("exp_avg.\(t.name)", m + t.offset, t.count), ("exp_avg_sq.\(t.name)", v + t.offset, t.count)]
        }
    }

    /// The moments in the store's layout when this optimizer keeps them all (nil for a share).
    func wholeMoments(_ store: ParameterStore) -> (m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>)? {
        span.lowerBound == 0 && span.count >= store.count ? (m, v) : nil
    }

    /// Takes the moments of the store's elements `offset ..< offset + count` where they fall in `span`.
    func setMoments(at offset: Int, m values: UnsafePointer<Float>, v squares: UnsafePointer<Float>, count: Int) {
        let part = span.clamped(to: offset ..< offset + count)
        guard !part.isEmpty else { return }
        (m + (part.lowerBound - span.lowerBound)).update(from: values + (part.lowerBound - offset), count: part.count)
        (v + (part.lowerBound - span.lowerBound)).update(from: squares + (part.lowerBound - offset), count: part.count)
    }

    func restore(step: Int) { self.step = step }
}

/// Global L2 norm of the (non-frozen) gradients of one or more stores (models trained together); scales them
/// down to `maxNorm` when above it (as `torch.nn.utils.clip_grad_norm_`). Returns the norm before clipping.
@discardableResult
public func clipGradients(_ store: ParameterStore, maxNorm: Float?) -> Float { clipGradients([store], maxNorm: maxNorm) }

/// `squaredNorm`: the squared norm when it is not that of the gradients here alone (expert parallelism).
@discardableResult
public func clipGradients(_ stores: [ParameterStore], maxNorm: Float?, squaredNorm: Double? = nil) -> Float {
    let norm = Float((squaredNorm ?? squaredGradientNorm(stores)).squareRoot())
    if let maxNorm, norm > maxNorm, norm.isFinite {
        let scale = maxNorm / (norm + 1e-6)
        for store in stores {
            for t in store.tensors where !t.frozen { MoEKernels.scale(store.grads! + t.offset, count: t.count, by: scale) }
        }
    }
    return norm
}

/// Σ g² over the non-frozen tensors of `stores` that `include` selects.
func squaredGradientNorm(_ stores: [ParameterStore], include: (ParameterStore.Tensor) -> Bool = { _ in true }) -> Double {
    var sum = 0.0
    for store in stores {
        let g = store.grads!
        for t in store.tensors where !t.frozen && include(t) {
            // Eight running sums (a scalar float sum does not vectorise), added once per tensor.
            var acc = SIMD8<Float>()
            var j = t.offset
            let end = t.offset + t.count
            while j + 8 <= end { let x = load8(g + j); acc += x * x; j += 8 }
            var s = acc.sum()
            while j < end { s += g[j] * g[j]; j += 1 }
            sum += Double(s)
        }
    }
    return sum
}

/// Learning rate by step: linear warm-up, then cosine decay to `minRatio`·peak, or warmup-stable-decay
/// (constant, then a linear decay over the last `decayFraction` of the steps).
public enum LearningRateSchedule: Codable, Sendable, Equatable {
    case cosine(warmup: Int, minRatio: Double)
    case warmupStableDecay(warmup: Int, decayFraction: Double, minRatio: Double)
    case constant(warmup: Int)

    public func rate(step: Int, totalSteps: Int, peak: Double) -> Double {
        let warmup: Int
        switch self {
        case let .cosine(w, _), let .warmupStableDecay(w, _, _), let .constant(w): warmup = w
        }
        if step < warmup { return peak * Double(step + 1) / Double(warmup) }
        switch self {
        case .constant:
            return peak
        case let .cosine(_, minRatio):
            let progress = min(1, Double(step - warmup) / Double(max(1, totalSteps - warmup)))
            return peak * (minRatio + (1 - minRatio) * 0.5 * (1 + cos(Double.pi * progress)))
        case let .warmupStableDecay(_, fraction, minRatio):
            let decaySteps = max(1, Int((Double(totalSteps) * fraction).rounded()))
            let decayStart = totalSteps - decaySteps
            if step < decayStart { return peak }
            let progress = min(1, Double(step - decayStart) / Double(decaySteps))
            return peak * (1 - (1 - minRatio) * progress)
        }
    }

    /// Parses `cosine`, `wsd` or `constant`.
    public static func named(_ name: String, warmup: Int, minRatio: Double = 0.1) -> LearningRateSchedule? {
        switch name {
        case "cosine": return .cosine(warmup: warmup, minRatio: minRatio)
        case "wsd": return .warmupStableDecay(warmup: warmup, decayFraction: 0.2, minRatio: 0)
        case "constant": return .constant(warmup: warmup)
        default: return nil
        }
    }
}
