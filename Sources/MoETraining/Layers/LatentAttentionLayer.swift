import Foundation
import MoEKernels
import MoEModel

/// Multi-head latent attention (DeepSeek-V2/V3) for training, as `LatentAttention` computes it for inference but
/// with the keys and values expanded (every position is a query here, so nothing is saved by staying in latent
/// space):
///
///     q  = q_proj(x)  or  q_b_proj(rmsnorm(q_a_proj(x)))       [N, heads·(nope + rope)]
///     c, kRope = kv_a_proj_with_mqa(x);  c = rmsnorm(c)         [N, kvLora], [N, rope] (shared by the heads)
///     kNope_h, v_h = kv_b_proj(c)                               [N, heads·(nope + v)]
///     out = o_proj(softmax(scale·[q_nope | rope(q_rope)]·[kNope | rope(kRope)]ᵀ + mask)·v)
///
/// Backward runs the same steps in reverse; the rotary key's gradient is the sum over the heads that share it.
final class LatentAttentionLayer: TrainableAttention {
    let heads: Int, hidden: Int
    let l: LatentAttentionLayout
    /// transformers' RMSNorm default for q_a_layernorm and kv_a_layernorm (not the config's eps).
    let latentEps: Float = 1e-6
    // Offsets into the parameter store.
    let q: Int?, qA: Int?, qABias: Int?, qANorm: Int?, qB: Int?
    let kvA: Int, kvABias: Int?, kvANorm: Int, kvB: Int, o: Int, oBias: Int?

    // Saved activations.
    let input = Floats(), qLow = Floats(), qLowNormed = Floats(), qLowRstd = Floats()
    let qs = Floats(), compressed = Floats(), latent = Floats(), latentRstd = Floats(), expanded = Floats()
    let keys = Floats(), values = Floats(), probs = Floats(), attended = Floats()
    // Backward scratch.
    let dAttended = Floats(), dq = Floats(), dk = Floats(), dv = Floats(), dProbs = Floats(), dExpanded = Floats()
    let dCompressed = Floats(), dLatent = Floats(), dqLow = Floats()

    var qkDim: Int { l.nopeDim + l.ropeDim }
    var qWidth: Int { heads * qkDim }
    var expandedWidth: Int { heads * (l.nopeDim + l.valueDim) }
    var attention: CausalAttention {
        CausalAttention(heads: heads, kvHeads: heads, qkDim: qkDim, valueDim: l.valueDim, scale: Float(l.softmaxScale))
    }

    init(_ store: ParameterStore, prefix: String, hidden: Int, heads: Int, layout l: LatentAttentionLayout) {
        self.heads = heads; self.hidden = hidden; self.l = l
        let qw = heads * (l.nopeDim + l.ropeDim)
        if let rank = l.qLoraRank {
            q = nil
            qA = store.add("\(prefix).q_a_proj.weight", shape: [rank, hidden], decay: true)
            qABias = l.bias ? store.add("\(prefix).q_a_proj.bias", shape: [rank], decay: false) : nil
            qANorm = store.add("\(prefix).q_a_layernorm.weight", shape: [rank], decay: false)
            qB = store.add("\(prefix).q_b_proj.weight", shape: [qw, rank], decay: true)
        } else {
            q = store.add("\(prefix).q_proj.weight", shape: [qw, hidden], decay: true)
            qA = nil; qABias = nil; qANorm = nil; qB = nil
        }
        kvA = store.add("\(prefix).kv_a_proj_with_mqa.weight", shape: [l.cachedWidth, hidden], decay: true)
        kvABias = l.bias ? store.add("\(prefix).kv_a_proj_with_mqa.bias", shape: [l.cachedWidth], decay: false) : nil
        kvANorm = store.add("\(prefix).kv_a_layernorm.weight", shape: [l.kvLoraRank], decay: false)
        kvB = store.add("\(prefix).kv_b_proj.weight", shape: [heads * (l.nopeDim + l.valueDim), l.kvLoraRank], decay: true)
        o = store.add("\(prefix).o_proj.weight", shape: [hidden, heads * l.valueDim], decay: true)
        oBias = l.bias ? store.add("\(prefix).o_proj.bias", shape: [hidden], decay: false) : nil
    }

    func forward(_ x: UnsafePointer<Float>, batch B: Int, seqLen T: Int, rope: RopeTable, store: ParameterStore,
                 into out: UnsafeMutablePointer<Float>, accumulate: Bool, pool: WorkerPool) {
        let n = B * T, w = store.values!
        let nope = l.nopeDim, ropeDim = l.ropeDim, rank = l.kvLoraRank, D = l.cachedWidth, vd = l.valueDim
        let qw = qWidth, ew = expandedWidth, headRows = nope + vd
        let xs = input.reserve(n * hidden)
        xs.update(from: x, count: n * hidden)
        let qp = qs.reserve(n * qw)
        if let qA, let qB, let qANorm, let rankQ = l.qLoraRank {
            let low = qLow.reserve(n * rankQ), normed = qLowNormed.reserve(n * rankQ)
            linearForward(xs, rows: n, inputs: hidden, outputs: rankQ, weight: w + qA, bias: qABias.map { w + $0 }, into: low, pool: pool)
            rmsNormForward(low, rows: n, dim: rankQ, weight: w + qANorm, eps: latentEps, into: normed, rstd: qLowRstd.reserve(n), pool: pool)
            linearForward(normed, rows: n, inputs: rankQ, outputs: qw, weight: w + qB, bias: nil, into: qp, pool: pool)
        } else if let q {
            linearForward(xs, rows: n, inputs: hidden, outputs: qw, weight: w + q, bias: nil, into: qp, pool: pool)
        }
        let ckv = compressed.reserve(n * D), c = latent.reserve(n * rank)
        linearForward(xs, rows: n, inputs: hidden, outputs: D, weight: w + kvA, bias: kvABias.map { w + $0 }, into: ckv, pool: pool)
        // The latent, normalised (rows of D floats: copied out to rank-wide rows first).
        let raw = dLatent.reserve(n * rank)
        for t in 0..<n { (raw + t * rank).update(from: ckv + t * D, count: rank) }
        rmsNormForward(raw, rows: n, dim: rank, weight: w + kvANorm, eps: latentEps, into: c, rstd: latentRstd.reserve(n), pool: pool)
        rope.rotate(qp, rows: n, seqLen: T, rowStride: qw, offset: nope, heads: heads, headStride: qkDim,
                    interleaved: l.interleavedRope, inverse: false, pool: pool)
        rope.rotate(ckv, rows: n, seqLen: T, rowStride: D, offset: rank, heads: 1, headStride: ropeDim,
                    interleaved: l.interleavedRope, inverse: false, pool: pool)
        let kv = expanded.reserve(n * ew)
        linearForward(c, rows: n, inputs: rank, outputs: ew, weight: w + kvB, bias: nil, into: kv, pool: pool)
        // Per-head keys [kNope_h | kRope] and values.
        let kp = keys.reserve(n * qw), vp = values.reserve(n * heads * vd)
        for t in 0..<n {
            for h in 0..<heads {
                (kp + t * qw + h * qkDim).update(from: kv + t * ew + h * headRows, count: nope)
                (kp + t * qw + h * qkDim + nope).update(from: ckv + t * D + rank, count: ropeDim)
                (vp + t * heads * vd + h * vd).update(from: kv + t * ew + h * headRows + nope, count: vd)
            }
        }
        let att = attended.reserve(n * heads * vd)
        attention.forward(q: qp, k: kp, v: vp, batch: B, seqLen: T, probs: probs.reserve(B * heads * T * T), into: att, pool: pool)
        linearForward(att, rows: n, inputs: heads * vd, outputs: hidden, weight: w + o, bias: oBias.map { w + $0 }, into: out,
                      accumulate: accumulate, pool: pool)
    }

    func backward(_ dOut: UnsafePointer<Float>, batch B: Int, seqLen T: Int, rope: RopeTable, store: ParameterStore,
                  inputGrad dx: UnsafeMutablePointer<Float>, accumulate: Bool, pool: WorkerPool) {
        let n = B * T, w = store.values!, g = store.grads!
        let nope = l.nopeDim, ropeDim = l.ropeDim, rank = l.kvLoraRank, D = l.cachedWidth, vd = l.valueDim
        let qw = qWidth, ew = expandedWidth, headRows = nope + vd
        let dAtt = dAttended.reserve(n * heads * vd)
        linearBackward(dOut, x: attended.pointer, rows: n, inputs: heads * vd, outputs: hidden, weight: w + o, weightGrad: g + o,
                       biasGrad: oBias.map { g + $0 }, inputGrad: dAtt, accumulateInput: false, pool: pool)
        let dqp = dq.reserve(n * qw), dkp = dk.zeroed(n * qw), dvp = dv.zeroed(n * heads * vd)
        attention.backward(dAtt, q: qs.pointer, k: keys.pointer, v: values.pointer, probs: probs.pointer, batch: B, seqLen: T,
                           dq: dqp, dk: dkp, dv: dvp, scratch: dProbs.reserve(B * heads * T * T), pool: pool)
        // Back to kv_b_proj's output and the compressed row: kNope and v per head; kRope summed over the heads.
        let dkv = dExpanded.reserve(n * ew), dckv = dCompressed.zeroed(n * D)
        for t in 0..<n {
            for h in 0..<heads {
                (dkv + t * ew + h * headRows).update(from: dkp + t * qw + h * qkDim, count: nope)
                (dkv + t * ew + h * headRows + nope).update(from: dvp + t * heads * vd + h * vd, count: vd)
                axpy(1, dkp + t * qw + h * qkDim + nope, dckv + t * D + rank, count: ropeDim)
            }
        }
        rope.rotate(dckv, rows: n, seqLen: T, rowStride: D, offset: rank, heads: 1, headStride: ropeDim,
                    interleaved: l.interleavedRope, inverse: true, pool: pool)
        rope.rotate(dqp, rows: n, seqLen: T, rowStride: qw, offset: nope, heads: heads, headStride: qkDim,
                    interleaved: l.interleavedRope, inverse: true, pool: pool)
        let dc = dLatent.reserve(n * rank)
        linearBackward(dkv, x: latent.pointer, rows: n, inputs: rank, outputs: ew, weight: w + kvB, weightGrad: g + kvB,
                       biasGrad: nil, inputGrad: dc, accumulateInput: false, pool: pool)
        // The latent's norm (its input: the first rank floats of the compressed rows, copied out again).
        let rawRows = dqLow.reserve(n * rank)
        let ckv = compressed.pointer
        for t in 0..<n { (rawRows + t * rank).update(from: ckv + t * D, count: rank) }
        rmsNormBackward(dc, x: rawRows, rows: n, dim: rank, weight: w + kvANorm, rstd: latentRstd.pointer,
                        weightGrad: g + kvANorm, inputGrad: dc, accumulate: false, pool: pool)
        for t in 0..<n { (dckv + t * D).update(from: dc + t * rank, count: rank) }
        let xs = input.pointer
        linearBackward(dckv, x: xs, rows: n, inputs: hidden, outputs: D, weight: w + kvA, weightGrad: g + kvA,
                       biasGrad: kvABias.map { g + $0 }, inputGrad: dx, accumulateInput: accumulate, pool: pool)
        if let qA, let qB, let qANorm, let rankQ = l.qLoraRank {
            let dLow = dqLow.reserve(n * rankQ)
            linearBackward(dqp, x: qLowNormed.pointer, rows: n, inputs: rankQ, outputs: qw, weight: w + qB, weightGrad: g + qB,
                           biasGrad: nil, inputGrad: dLow, accumulateInput: false, pool: pool)
            rmsNormBackward(dLow, x: qLow.pointer, rows: n, dim: rankQ, weight: w + qANorm, rstd: qLowRstd.pointer,
                            weightGrad: g + qANorm, inputGrad: dLow, accumulate: false, pool: pool)
            linearBackward(dLow, x: xs, rows: n, inputs: hidden, outputs: rankQ, weight: w + qA, weightGrad: g + qA,
                           biasGrad: qABias.map { g + $0 }, inputGrad: dx, accumulateInput: true, pool: pool)
        } else if let q {
            linearBackward(dqp, x: xs, rows: n, inputs: hidden, outputs: qw, weight: w + q, weightGrad: g + q,
                           biasGrad: nil, inputGrad: dx, accumulateInput: true, pool: pool)
        }
    }
}
