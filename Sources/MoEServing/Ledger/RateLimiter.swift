import Foundation

/// Requests per key per minute, as a token bucket: a key may burst up to `perMinute` requests, then gets one
/// more every 60 / `perMinute` seconds. Refusals say when to retry (the server's 429 `Retry-After`).
///
///     let limiter = RateLimiter(perMinute: 60)
///     if let wait = limiter.take(keyHash: keyHash) { throw APIError.rateLimited(retryAfter: wait) }
final class RateLimiter: @unchecked Sendable {
    let perMinute: Int
    private let lock = NSLock()
    private var buckets: [String: (tokens: Double, at: ContinuousClock.Instant)] = [:]

    init(perMinute: Int) { self.perMinute = max(1, perMinute) }

    /// Takes one request from `keyHash`'s bucket: nil when allowed, else the whole seconds until it would be.
    func take(keyHash: String, now: ContinuousClock.Instant = .now) -> Int? {
        let capacity = Double(perMinute), perSecond = Double(perMinute) / 60
        return lock.withLock {
            var bucket = buckets[keyHash] ?? (capacity, now)
            let elapsed = bucket.at.duration(to: now)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            bucket = (min(capacity, bucket.tokens + max(0, seconds) * perSecond), now)
            defer { buckets[keyHash] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return max(1, Int(((1 - bucket.tokens) / perSecond).rounded(.up)))
        }
    }
}
