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
    let m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>
    let count: Int

    public init(_ store: ParameterStore, settings: Settings = Settings()) {
        self.settings = settings
        count = max(store.count, 1)
        m = .allocate(capacity: count); m.initialize(repeating: 0, count: count)
        v = .allocate(capacity: count); v.initialize(repeating: 0, count: count)
    }

    deinit { m.deallocate(); v.deallocate() }

    /// One update with learning rate `lr` from the gradients in `store.grads`.
    public func update(_ store: ParameterStore, lr: Float, pool: WorkerPool) {
        step += 1
        let s = settings
        let c1 = 1 - Foundation.pow(s.beta1, Float(step)), c2 = 1 - Foundation.pow(s.beta2, Float(step))
        let w = store.values!, g = store.grads!, m = self.m, v = self.v
        let tensors = store.tensors.filter { !$0.frozen }
        pool.parallelFor(tensors.count) { i in
            let t = tensors[i]
            let decay: Float = t.decay ? 1 - lr * s.weightDecay : 1
            for j in t.offset ..< t.offset + t.count {
                let gj = g[j]
                m[j] = s.beta1 * m[j] + (1 - s.beta1) * gj
                v[j] = s.beta2 * v[j] + (1 - s.beta2) * gj * gj
                let update = (m[j] / c1) / ((v[j] / c2).squareRoot() + s.eps)
                w[j] = w[j] * decay - lr * update
            }
        }
    }

    /// The moments as tensors named after the parameters (`exp_avg.<name>`, `exp_avg_sq.<name>`), for the
    /// optimizer-state file of a checkpoint.
    func stateTensors(_ store: ParameterStore) -> [(name: String, pointer: UnsafeMutablePointer<Float>, count: Int)] {
        store.tensors.flatMap { t in
            [("exp_avg.\(t.name)", m + t.offset, t.count), ("exp_avg_sq.\(t.name)", v + t.offset, t.count)]
        }
    }

    func restore(step: Int) { self.step = step }
}

/// Global L2 norm of the (non-frozen) gradients; scales them down to `maxNorm` when above it (as
/// `torch.nn.utils.clip_grad_norm_`). Returns the norm before clipping.
@discardableResult
public func clipGradients(_ store: ParameterStore, maxNorm: Float?) -> Float {
    let g = store.grads!
    var sum = 0.0
    for t in store.tensors where !t.frozen {
        var s: Float = 0
        var j = t.offset
        let end = t.offset + t.count
        while j < end { s += g[j] * g[j]; j += 1 }
        sum += Double(s)
    }
    let norm = Float(sum.squareRoot())
    if let maxNorm, norm > maxNorm, norm.isFinite {
        let scale = maxNorm / (norm + 1e-6)
        for t in store.tensors where !t.frozen {
            for j in t.offset ..< t.offset + t.count { g[j] *= scale }
        }
    }
    return norm
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
