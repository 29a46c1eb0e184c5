/// A growable f32 buffer reused across forward passes, so the hot path allocates only when a longer input
/// than any before arrives.
final class ScratchBuffer: @unchecked Sendable {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init(_ capacity: Int = 0) {
        self.capacity = max(capacity, 16)
        pointer = .allocate(capacity: self.capacity)
    }

    deinit { pointer.deallocate() }

    /// At least `count` floats (contents are not kept when it grows).
    @inline(__always)
    func reserve(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            // Grow geometrically: the attention buffers grow by one position per decoded token.
            pointer.deallocate()
            capacity = max(count, capacity * 2)
            pointer = .allocate(capacity: capacity)
        }
        return pointer
    }
}

/// The activations of one forward pass, named by what they hold. Sized by the token count of the pass.
final class Workspace: @unchecked Sendable {
    let hidden = ScratchBuffer()      // residual stream [T, hidden]
    let normed = ScratchBuffer()      // normalised input of a sub-layer [T, hidden]
    let query = ScratchBuffer()       // [T, heads·headDim]
    let key = ScratchBuffer()         // [T, kvHeads·headDim]
    let value = ScratchBuffer()       // [T, kvHeads·headDim]
    let attention = ScratchBuffer()   // attention output before o_proj [T, heads·headDim]
    let queryLowRank = ScratchBuffer() // latent attention: q_a_proj's output [T, q_lora_rank]
    let latentQuery = ScratchBuffer()  // latent attention: absorbed queries [T, heads·(kv_lora_rank + rope)]
    let latentOutput = ScratchBuffer() // latent attention: weighted latents [T, heads·kv_lora_rank]
    let scores = ScratchBuffer()      // attention probabilities [heads, chunk, positions]
    let windowKeys = ScratchBuffer()  // sliding-window prefill: the ring's keys, then the pass's [positions, kvWidth]
    let windowValues = ScratchBuffer()
    let ropeCos = ScratchBuffer()     // [T, rotaryDim/2]
    let ropeSin = ScratchBuffer()
    let gate = ScratchBuffer()        // MLP / expert gate projection [rows, width]
    let up = ScratchBuffer()          // MLP / expert up projection [rows, width]
    let mlpOut = ScratchBuffer()      // an MLP's output before it is weighted [rows, hidden]
    let routerLogits = ScratchBuffer() // [T, experts]
    let expertInput = ScratchBuffer() // tokens gathered for one expert [rows, hidden]
    let logits = ScratchBuffer()      // [rows asked for, vocab]
    let finalNormed = ScratchBuffer() // [rows asked for, hidden]
    let joined = ScratchBuffer()      // multi-token prediction: [enorm(Emb(next token)); hnorm(h)] [T, 2·hidden]
    let linearMixed = ScratchBuffer() // Gated DeltaNet: projections [T, q | k | v | z | b | a]
    var routing = Routing()
}

/// Which experts each token chose, grouped by expert (a counting sort), reused between passes.
struct Routing {
    var chosen: [Int32] = []          // [T, k] expert ids (−1: dropped by the token's budget)
    var weights: [Float] = []         // [T, k] routing weights
    var offsets: [Int] = []           // [experts + 1] start of each expert's group in `order`
    var order: [Int32] = []           // flat (token·k + slot) entries sorted by expert; the first `entries` are used
    var entries = 0                   // entries kept (T·k without a budget)
    var budgets: [ExpertBudget] = []  // [T] each token's budget; empty: every token spends its k
    var hit: [Int] = []               // experts chosen by at least one token, ascending
    var choice: [Float] = []          // [experts] one token's scores for choosing
    var groupScores: [Float] = []     // [groups] one token's expert-group ranks
    var topScores: [Float] = []       // [k] one token's best choice scores so far, descending
    var topExperts: [Int32] = []      // [k] their experts
}
