/// Restricts which tokens may come next (constrained decoding: a grammar, a JSON schema): told each chosen token,
/// it sets the logits of every token it does not allow to -infinity before the sampler sees them. One per
/// sequence; the generator and the serving engine call it from one thread.
///
/// Where it is finished, generation ends: with an end-of-sequence token when it can end and one is allowed,
/// else at once (finish reason "stop").
public protocol LogitsConstraint: AnyObject, Sendable {
    /// Disallowed tokens' logits → -infinity (end-of-sequence tokens only where the text may end).
    func apply(_ logits: UnsafeMutablePointer<Float>, count: Int)
    /// Follows a chosen token; false when it was not allowed.
    @discardableResult func accept(_ token: Int) -> Bool
    /// No token may come next (an end-of-sequence token aside).
    var isFinished: Bool { get }
    /// The text may end here (end-of-sequence tokens are allowed).
    var canEnd: Bool { get }
}
