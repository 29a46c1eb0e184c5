import MoEFormats
import MoEKernels

/// Sizes that matter for running a model: parameters in total and per token, bytes read per decoded token,
/// memory needed. Counted from the loaded layers, so what is reported is what runs.
public struct ModelSummary: Sendable {
    public var totalParameters = 0
    /// Parameters a token goes through: everything but the experts it did not choose (the embedding
    /// table counts whole, as is customary).
    public var activeParameters = 0
    /// Bytes of weights read to decode one token: one embedding row, attention, norms, routers, the k chosen
    /// experts (+ shared), and the LM head.
    public var bytesPerToken = 0
    /// The part of `bytesPerToken` that is routed experts: the k chosen in every MoE layer.
    public var expertBytesPerToken = 0
    /// Bytes of one routed expert's three matrices, summed over the MoE layers (all of a layer's experts are alike).
    public var bytesPerExpertAcrossLayers = 0
    public var weightBytes = 0
    public var kvCacheBytes = 0
    public var moeLayers = 0
    public var denseLayers = 0

    /// Expert bytes read per decoded token when `expertsRun` experts ran over `tokens` decoded tokens (as
    /// `ExpertUsageCounter` counts them; all MoE layers' experts taken as alike).
    public func expertBytesRead(expertsRun: Int, tokens: Int) -> Double {
        moeLayers == 0 || tokens == 0 ? 0
            : Double(expertsRun) / Double(tokens) * Double(bytesPerExpertAcrossLayers) / Double(moeLayers)
    }

    public init(_ model: Transformer) {
        func size(_ m: WeightMatrix) -> (params: Int, bytes: Int) { (m.rows * m.cols, m.rows * m.rowBytes) }
        func add(_ m: WeightMatrix, active: Bool = true, read: Bool = true) {
            let s = size(m)
            totalParameters += s.params; weightBytes += s.bytes
            if active { activeParameters += s.params }
            if read { bytesPerToken += s.bytes }
        }
        func addVector(_ v: [Float]?) {
            guard let v else { return }
            totalParameters += v.count; activeParameters += v.count
            weightBytes += v.count * 4; bytesPerToken += v.count * 4
        }
        func addMLP(_ m: MLP, active: Bool) { for w in [m.gate, m.up, m.down] { add(w, active: active, read: active) } }

        add(model.embedding, read: false)
        bytesPerToken += model.embedding.rowBytes
        for layer in model.layers {
            addVector(layer.inputNorm); addVector(layer.postAttentionNorm)
            switch layer.attention {
            case .grouped(let a):
                for w in [a.q, a.k, a.v, a.o] { add(w) }
                for v in [a.qBias, a.kBias, a.vBias, a.oBias, a.qNormWeight, a.kNormWeight] { addVector(v) }
            case .latent(let a):
                for w in [a.q, a.qA, a.qB, a.kvA, a.o].compactMap({ $0 }) + a.kvB { add(w) }
                for v in [a.qABias, a.qANorm, a.kvABias, a.kvANorm, a.oBias] { addVector(v) }
            case .linear(let a):
                for w in a.projections + [a.outProj] { add(w) }
                for v in [a.conv, a.dtBias, a.dtBias, a.normWeight] { addVector(v) }   // (A_log: as many as dt_bias)
            }
            switch layer.feedForward {
            case .dense(let mlp):
                denseLayers += 1
                addMLP(mlp, active: true)
            case .moe(let block):
                moeLayers += 1
                add(block.router.weight)
                addVector(block.router.selectionBias)
                for e in block.experts { addMLP(e, active: false) }
                // k of the experts are active per token (all have the same shape).
                if let e = block.experts.first {
                    let per = [e.gate, e.up, e.down].map(size)
                    activeParameters += block.topK * per.reduce(0) { $0 + $1.params }
                    bytesPerToken += block.topK * per.reduce(0) { $0 + $1.bytes }
                    expertBytesPerToken += block.topK * per.reduce(0) { $0 + $1.bytes }
                    bytesPerExpertAcrossLayers += per.reduce(0) { $0 + $1.bytes }
                }
                if let s = block.sharedExpert { addMLP(s, active: true) }
                addVector(block.sharedExpertGate)
            }
        }
        addVector(model.finalNorm)
        if model.lmHead.base == model.embedding.base {
            bytesPerToken += size(model.lmHead).bytes
        } else {
            add(model.lmHead)
        }
        kvCacheBytes = model.contextLength * model.kvBytesPerToken + model.recurrentStateBytes
    }

    /// Weights + a full-context KV cache + the largest activations (logits of one row, attention scores).
    public func memoryNeeded(_ model: Transformer, promptTokens: Int = 512) -> Int {
        let c = model.config
        let activations = 4 * (c.vocabSize + promptTokens * (6 * c.hiddenSize + 2 * max(c.intermediateSize, c.moeIntermediateSize ?? 0))
                               + c.numAttentionHeads * min(promptTokens, 128) * model.contextLength)
        return weightBytes + kvCacheBytes + activations
    }
}
