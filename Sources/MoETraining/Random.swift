import Foundation

/// SplitMix64 (Steele et al.): a small, fast, seedable generator whose whole state is one UInt64, so
/// training's random state (initialisation, data order, sampling) checkpoints trivially.
public struct SplitMix64: RandomNumberGenerator, Codable, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// A generator for one of many independent streams of a seed (one per document, per example…).
    public init(seed: UInt64, stream: UInt64) {
        state = seed ^ (stream &* 0xD1B5_4A32_D192_ED03)
        _ = next()
    }

    static let gamma: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// The output function: a good 64-bit hash of x + gamma.
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ gamma
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func next() -> UInt64 {
        let out = SplitMix64.mix(state)
        state &+= SplitMix64.gamma
        return out
    }

    /// Uniform in 0..<n (modulo bias negligible for the small n used here).
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func int(in range: ClosedRange<Int>) -> Int { range.lowerBound + int(range.count) }
    mutating func pick<T>(_ items: [T]) -> T { items[int(items.count)] }

    /// A standard normal sample (Box–Muller).
    public mutating func nextGaussian() -> Float {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), 1e-300), u2 = Double(next() >> 11) / Double(1 << 53)
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }
}
