// TEMPORARY until the batched decode lands: delete on merge.
import MoEModel
extension Transformer {
    func decode(_ tokens: [Int], caches: [KVCache]) throws -> UnsafeMutableBufferPointer<Float> {
        let V = config.vocabSize
        let out = UnsafeMutableBufferPointer<Float>.allocate(capacity: tokens.count * V)
        for (i, t) in tokens.enumerated() {
            let l = try forward([t], cache: caches[i], logitsFor: .last)
            (out.baseAddress! + i * V).update(from: l.baseAddress!, count: V)
        }
        return out
    }
}
