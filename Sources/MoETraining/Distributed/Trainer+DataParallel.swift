import Foundation

extension Trainer {
    /// Data parallel: sums this step's gradients (of what the optimizer steps, and of the jointly trained models),
    /// loss parts, tokens, metrics and expert counts across ranks; each rank's parts are already scaled by the
    /// global accumulation, so the sums are the one-process step's.
    func sumAcrossRanks(_ dp: DataParallel, stepStarted: Date, loss: inout LossBreakdown, tokens: inout Int, metrics: inout [String: Double],
                        load: inout [[Int]]) throws {
        let started = Date()
        var reduced = jointlyTrained.reduce(0) { $0 + $1.model.store.count }
        if let buckets { reduced += try buckets.finish(grads: trainedStore.grads) } else { try dp.sumGradients(trainedStore); reduced += trainedStore.count }
        for j in jointlyTrained { try dp.sumGradients(j.model.store) }
        // The ranks' metrics may differ in name (a rank whose micro-batches reuse a rollout has no sampling speed):
        // summed over the union of names, a missing one as 0 — as the one process's average over micro-batches.
        let names = try dp.communicator.gather(Array(metrics.keys.sorted().joined(separator: "\n").utf8))
        let keys = Set(names.flatMap { String(decoding: $0, as: UTF8.self).split(separator: "\n").map(String.init) }).sorted()
        var values = [loss.crossEntropy, loss.aux, loss.z, loss.total, loss.sequenceAux, Double(loss.tokens), Double(tokens)]
            + keys.map { metrics[$0] ?? 0 } + load.joined().map(Double.init)
        try dp.communicator.sumInPlace(&values)
        // What the all-reduces carried (each rank's buffer; a ring sends 2(N−1)/N of it) and the time they took after
        // the backward pass (what the block-by-block start did not hide), waiting for the slowest rank included; under expert parallelism also what this rank's token exchanges
        // sent to others and their time (inside the forward and backward passes, so not counted as compute).
        metrics["allreduce_bytes"] = Double(reduced * 4 + values.count * 8)
        metrics["allreduce_ms"] = Date().timeIntervalSince(started) * 1000
        var exchangeMilliseconds = 0.0
        if let traffic = experts?.takeTraffic() {
            metrics["alltoall_bytes"] = Double(traffic.bytes); metrics["alltoall_ms"] = traffic.milliseconds
            exchangeMilliseconds = traffic.milliseconds
        }
        metrics["compute_ms"] = started.timeIntervalSince(stepStarted) * 1000 - exchangeMilliseconds
        loss.crossEntropy = values[0]; loss.aux = values[1]; loss.z = values[2]; loss.total = values[3]; loss.sequenceAux = values[4]
        loss.tokens = Int(values[5]); tokens = Int(values[6])
        for (i, k) in keys.enumerated() { metrics[k] = values[7 + i] }
        var i = 7 + keys.count
        for layer in load.indices { for e in load[layer].indices { load[layer][e] = Int(values[i]); i += 1 } }
    }
}
