import MoEModel

/// The engine's slots: a KV cache each, the tokens it holds, and — for hybrid models, whose linear-attention state
/// cannot be cut back to an earlier position — the states saved where later prompts may resume.
extension InferenceEngine {
    /// A KV cache and the tokens whose keys and values it holds (kept after a sequence ends, for reuse, until
    /// its pages are wanted).
    struct Slot {
        let cache: KVCache
        var tokens: [Int] = []
        /// The expert budget those tokens ran with: a prefix is reused only for the same budget.
        var budget = ExpertBudget.full
        var busy = false
        var lastUsed = 0
        /// Hybrid models (linear-attention state that cannot be cut back): the state at earlier positions of
        /// `tokens` — prompt chunk boundaries and the position before a prompt's last token —, oldest first.
        var states: [(position: Int, state: RecurrentState)] = []

        /// The longest prefix of `tokens`, at most `n` positions, that the cache can go back to: any for
        /// keys and values alone; with recurrent state, all it holds or a position with a saved state.
        func reusable(_ n: Int) -> Int {
            guard cache.recurrent != nil else { return n }
            if n >= cache.count && cache.count == tokens.count { return cache.count }
            return states.last { $0.position <= n }?.position ?? 0
        }

        func state(at position: Int) -> RecurrentState? { states.last { $0.position == position }?.state }

        /// Forgets the saved states past `position`.
        mutating func keepStates(upTo position: Int) { states.removeAll { $0.position > position } }
    }

    /// Saved recurrent states per slot (each a full copy of the state: `Transformer.recurrentStateBytes`).
    static let savedStates = 4

    /// Where a hybrid model's prompt chunk after `prefilled` positions ends, so that its state is saved where a
    /// later prompt may pick it up: at multiples of `step` and before the prompt's last token (a repeated
    /// prompt runs only that token again).
    static func nextStateBoundary(after prefilled: Int, context: Int, step: Int) -> Int {
        let nextMultiple = (prefilled / step + 1) * step
        return prefilled < context - 1 ? min(nextMultiple, context - 1) : context
    }
}

/// Experts kept per row of the engine's last pass (summed over its MoE layers), for each request's `ExpertTally`.
final class RowExpertCounter: RoutingObserver {
    private(set) var perRow: [Int] = []
    let moeLayers: Int

    init(moeLayers: Int) { self.moeLayers = moeLayers }

    func begin(rows: Int) {
        perRow.removeAll(keepingCapacity: true)
        perRow.append(contentsOf: repeatElement(0, count: rows))
    }

    func observe(layer: Int, tokens: Int, k: Int, chosen: UnsafeBufferPointer<Int32>, weights: UnsafeBufferPointer<Float>) {
        guard tokens == perRow.count else { return }   // a pass the engine did not announce (a rerun after drafts)
        for t in 0..<tokens {
            var n = 0
            for j in 0..<k where chosen[t * k + j] >= 0 { n += 1 }
            perRow[t] += n
        }
    }
}
