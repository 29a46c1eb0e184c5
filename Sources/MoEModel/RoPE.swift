import Foundation
import MoEFormats

/// Rotary position embedding as `transformers` computes it (`modeling_rope_utils.py`): inverse frequencies
/// for the rope types `default`, `linear`, `llama3` and `yarn`, and the "rotate half" form (the two halves
/// of each head's rotary dimensions are rotated together, not interleaved pairs).
///
/// HF computes inverse frequencies and angles in f32; so does this, so positions far along the context
/// round the same way.
public struct RotaryEmbedding: Sendable {
    public let rotaryDim: Int
    public let inverseFrequencies: [Float]
    /// YaRN's attention factor, multiplied into cos and sin (1 for the other types).
    public let attentionScaling: Float

    public static let supportedTypes = ["default", "linear", "llama3", "yarn"]

    public init(_ p: RopeParameters, headDim: Int, maxPositionEmbeddings: Int) throws {
        let dim = Int(Double(headDim) * p.partialRotaryFactor)
        rotaryDim = dim
        let base = Float(p.theta)
        // 1 / base^(2i/dim), computed as torch does: pow in f32 then reciprocal.
        var plain: [Float] = stride(from: 0, to: dim, by: 2).map { 1 / Foundation.pow(base, Float($0) / Float(dim)) }
        if let factors = p.frequencyFactors {
            guard factors.count == plain.count else {
                throw ModelError.badInput("rope frequency factors: \(factors.count) values for \(plain.count) frequencies")
            }
            for i in plain.indices { plain[i] /= factors[i] }
        }
        func need(_ v: Double?, _ name: String) throws -> Double {
            guard let v else { throw ModelError.unsupported("rope type '\(p.type)' needs '\(name)' in its parameters") }
            return v
        }
        switch p.type {
        case "default":
            inverseFrequencies = plain
            attentionScaling = 1
        case "linear":
            let factor = Float(try need(p.factor, "factor"))
            inverseFrequencies = plain.map { $0 / factor }
            attentionScaling = 1
        case "llama3":
            let factor = Float(try need(p.factor, "factor"))
            let low = Float(try need(p.lowFreqFactor, "low_freq_factor"))
            let high = Float(try need(p.highFreqFactor, "high_freq_factor"))
            let oldContext = Float(p.originalMaxPositionEmbeddings ?? maxPositionEmbeddings)
            let lowWavelen = oldContext / low
            let highWavelen = oldContext / high
            inverseFrequencies = plain.map { f in
                let wavelen = 2 * Float.pi / f
                if wavelen < highWavelen { return f }
                if wavelen > lowWavelen { return f / factor }
                let smooth = (oldContext / wavelen - low) / (high - low)
                return (1 - smooth) * f / factor + smooth * f
            }
            attentionScaling = 1
        case "yarn":
            // transformers 5.23: `factor` as given; only when absent is it the ratio of the extended context
            // to the pre-trained one.
            let original = Double(p.originalMaxPositionEmbeddings ?? maxPositionEmbeddings)
            let factor = p.factor ?? Double(maxPositionEmbeddings) / original
            func mscale(_ scale: Double, _ m: Double = 1) -> Double { scale <= 1 ? 1 : 0.1 * m * Foundation.log(scale) + 1 }
            if let a = p.attentionFactor {
                attentionScaling = Float(a)
            } else if let m = p.mscale, let mAll = p.mscaleAllDim, m != 0, mAll != 0 {
                attentionScaling = Float(mscale(factor, m) / mscale(factor, mAll))
            } else {
                attentionScaling = Float(mscale(factor))
            }
            let betaFast = p.betaFast ?? 32
            let betaSlow = p.betaSlow ?? 1
            let d = Double(dim)
            func correctionDim(_ rotations: Double) -> Double {
                d * Foundation.log(original / (rotations * 2 * Double.pi)) / (2 * Foundation.log(p.theta))
            }
            var low = correctionDim(betaFast)
            var high = correctionDim(betaSlow)
            if p.truncate ?? true { low = low.rounded(.down); high = high.rounded(.up) }
            low = max(low, 0)
            high = min(high, d - 1)
            if low == high { high += 0.001 }
            let f = Float(factor)
            inverseFrequencies = plain.enumerated().map { i, extrapolation in
                let ramp = min(max((Float(i) - Float(low)) / Float(high - low), 0), 1)
                let extrapolationWeight = 1 - ramp
                let interpolation = extrapolation / f
                return interpolation * (1 - extrapolationWeight) + extrapolation * extrapolationWeight
            }
        default:
            throw ModelError.unsupported("rope type '\(p.type)' is not supported (supported: \(Self.supportedTypes.joined(separator: ", ")))")
        }
    }

    /// cos and sin tables for `positions`, `rotaryDim / 2` entries each (the two halves share them).
    public func table(position: Int, cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>) {
        let p = Float(position)
        for i in 0..<inverseFrequencies.count {
            let angle = p * inverseFrequencies[i]
            cos[i] = Foundation.cos(angle) * attentionScaling
            sin[i] = Foundation.sin(angle) * attentionScaling
        }
    }

    /// Rotates `heads` vectors of length `headDim` at `x` (stride headDim) in place.
    @inline(__always)
    public static func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, rotaryDim: Int,
                             cos: UnsafePointer<Float>, sin: UnsafePointer<Float>) {
        let half = rotaryDim / 2
        for h in 0..<heads {
            let v = x + h * headDim
            for i in 0..<half {
                let a = v[i], b = v[i + half]
                v[i] = a * cos[i] - b * sin[i]
                v[i + half] = b * cos[i] + a * sin[i]
            }
        }
    }

    /// As `apply`, for weights laid out with the rotary pairs interleaved (DeepSeek's `rope_interleave`, and
    /// DeepSeek-V2's complex form): dimensions 2i and 2i+1 rotate together by frequency i.
    @inline(__always)
    public static func applyInterleaved(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, rotaryDim: Int,
                                        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>) {
        for h in 0..<heads {
            let v = x + h * headDim
            for i in 0..<(rotaryDim / 2) {
                let a = v[2 * i], b = v[2 * i + 1]
                v[2 * i] = a * cos[i] - b * sin[i]
                v[2 * i + 1] = b * cos[i] + a * sin[i]
            }
        }
    }
}
