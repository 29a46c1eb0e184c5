import Foundation
import MoEKernels

/// Expert parallelism over MPI (`--expert-parallel N`, N = the MPI ranks): rank r owns experts r·E/N ..< (r+1)·E/N
/// of every MoE layer. After routing, each rank sends the rows of its tokens (one per chosen expert, already sorted
/// by expert) to the experts' owners (`MPI_Alltoallv`); the owners run their experts over the rows of every rank and
/// send the outputs back to be combined. The backward pass mirrors it: d(output) rows go to the owners, d(input)
/// rows come back. The rest of the model is data parallel (`DataParallel`, whose micro-batch split it shares).
///
/// An expert's gradient is whole on its owner (it saw every rank's rows), so it is not all-reduced: the all-reduce
/// carries the rest of the model, and each rank's optimizer steps the rest and its own experts. Every rank still
/// holds all weights (their storage is not sharded): its copies of other ranks' experts go stale, and `synchronise`
/// brings them (and, for checkpoints, their optimizer moments) from their owners before validation, checkpoints and
/// the end of a run, so rank 0 then holds the same model as the others, and checkpoints resume with any N.
public final class ExpertSharding {
    let communicator: MPICommunicator
    let layers: [MoELayer]
    /// The flat ranges of the store that are not routed experts (all-reduced every step), and those that are.
    public let sharedRanges: [Range<Int>]
    let expertRanges: [Range<Int>]
    /// Expert tensors (their offsets) another rank owns: this rank's optimizer leaves them alone.
    public let othersTensors: Set<Int>
    /// Expert tensors this rank owns.
    let ownTensors: Set<Int>
    /// What the layers' exchanges sent since the last `takeTraffic()`, and the time they took.
    let traffic = ExchangeTraffic()

    /// The exchanges of every MoE layer of `model` (`install` puts them in). Refuses a model without experts, experts that do not
    /// split evenly, and a batch whose exchange would exceed MPI's 32-bit counts.
    public init(model: TrainableModel, communicator: MPICommunicator, batchTokens: Int) throws {
        let N = communicator.size, layers = model.moeLayers
        guard let first = layers.first else {
            throw TrainingError.badArgument("--expert-parallel needs a mixture-of-experts model (\(model.config.modelType) here has no routed experts)")
        }
        guard first.experts % N == 0 else {
            throw TrainingError.badArgument("--expert-parallel: \(first.experts) experts per layer do not split evenly across \(N) ranks")
        }
        // Every rank's rows for one owner arrive in one exchange of at most N · tokens · k rows of `hidden` floats.
        guard N * batchTokens * first.topK * first.hidden <= Int(Int32.max) else {
            throw TrainingError.badArgument("--expert-parallel: a micro-batch of \(batchTokens) tokens exceeds MPI's 32-bit counts in one exchange: lower --batch or --seq-len")
        }
        self.communicator = communicator
        self.layers = layers
        let store = model.store
        var owner: [Int: Int] = [:]   // expert tensor offset → owning rank
        for layer in layers {
            let per = layer.experts / N
            for e in 0..<layer.experts {
                var offsets = [layer.expertWeights[e].gate, layer.expertWeights[e].up, layer.expertWeights[e].down]
                if let b = layer.expertBiases?[e] { offsets += [b.gate, b.up, b.down] }
                for o in offsets { owner[o] = e / per }
            }
        }
        othersTensors = Set(owner.filter { $0.value != communicator.rank }.keys)
        ownTensors = Set(owner.filter { $0.value == communicator.rank }.keys)
        // Contiguous runs of one kind (alignment padding goes with the run before it).
        var shared: [Range<Int>] = [], experts: [Range<Int>] = []
        let tensors = store.tensors.sorted { $0.offset < $1.offset }
        for (i, t) in tensors.enumerated() {
            let end = i + 1 < tensors.count ? tensors[i + 1].offset : max(store.count, 1)
            let isExpert = owner[t.offset] != nil
            if isExpert, let last = experts.last, last.upperBound == t.offset { experts[experts.count - 1] = last.lowerBound ..< end }
            else if !isExpert, let last = shared.last, last.upperBound == t.offset { shared[shared.count - 1] = last.lowerBound ..< end }
            else if isExpert { experts.append(t.offset ..< end) }
            else { shared.append(t.offset ..< end) }
        }
        sharedRanges = shared; expertRanges = experts
        let traffic = self.traffic
        exchanges = layers.map { ExpertExchange(communicator, experts: $0.experts, traffic: traffic) }
    }

    private let exchanges: [ExpertExchange]

    /// Puts the exchanges in the MoE layers: from here on every rank must run the same passes in step.
    public func install() { for (layer, x) in zip(layers, exchanges) { layer.exchange = x } }

    /// Removes the exchanges: the model runs every expert itself again (its weights synchronised first).
    public func uninstall() { for layer in layers { layer.exchange = nil } }

    /// Runs `body` with every expert local (rank 0's validation while the others wait; weights synchronised).
    func locally<T>(_ body: () throws -> T) rethrows -> T {
        uninstall()
        defer { install() }
        return try body()
    }

    /// The squared global gradient norm: the shared part (the same on every rank once `sharedRanges` are summed) plus
    /// every rank's own experts.
    public func squaredGradientNorm(_ store: ParameterStore) throws -> Double {
        var own = [MoETraining.squaredGradientNorm([store]) { ownTensors.contains($0.offset) }]
        try communicator.sumInPlace(&own)
        return own[0] + MoETraining.squaredGradientNorm([store]) { !ownTensors.contains($0.offset) && !othersTensors.contains($0.offset) }
    }

    /// Brings every rank's copies of the experts from their owners: each rank zeroes the experts it does not own
    /// in `buffer` (the weights, or an optimizer moment of the same layout), then the expert ranges are summed.
    func synchronise(_ buffer: UnsafeMutablePointer<Float>, store: ParameterStore) throws {
        for t in store.tensors where othersTensors.contains(t.offset) { (buffer + t.offset).update(repeating: 0, count: t.count) }
        for r in expertRanges { try communicator.sumInPlace(buffer + r.lowerBound, count: r.count) }
    }

    /// Bytes sent by the layers' exchanges and the milliseconds they took since the last call.
    public func takeTraffic() -> (bytes: Int, milliseconds: Double) {
        defer { traffic.bytes = 0; traffic.seconds = 0 }
        return (traffic.bytes, traffic.seconds * 1000)
    }
}

/// What the exchanges of all layers sent (one counter per run; the layers run one after another).
final class ExchangeTraffic {
    var bytes = 0
    var seconds = 0.0
}

/// One MoE layer's exchange with the experts' owners. `plan` learns, from this rank's rows sorted by expert,
/// how many rows go to each owner and how many arrive from each rank for each local expert (an all-to-all of
/// counts); `toOwners` then moves rows there, ordered by local expert, and `fromOwners` moves rows of that order
/// back. The plan of a forward pass serves its backward pass.
final class ExpertExchange {
    let communicator: MPICommunicator
    let experts: Int
    /// This rank's experts.
    let local: Range<Int>
    private let traffic: ExchangeTraffic
    /// Rows this rank sends to each rank, and receives from each.
    private var sendRows: [Int] = [], receiveRows: [Int] = []
    /// Where each local expert's rows start among the received rows, ordered by expert (local.count + 1 entries).
    private(set) var localOffsets: [Int] = [0]
    /// Received row r (ordered by source rank, then expert) → its row ordered by expert, then source rank.
    private var expertOrder: [Int] = []
    private let bySource = Floats()

    init(_ communicator: MPICommunicator, experts: Int, traffic: ExchangeTraffic) {
        self.communicator = communicator; self.experts = experts; self.traffic = traffic
        let per = experts / communicator.size
        local = communicator.rank * per ..< (communicator.rank + 1) * per
    }

    /// Rows received for the local experts.
    var receivedRows: Int { localOffsets.last ?? 0 }

    /// Learns the exchange of rows sorted by expert: `offsets[e] ..< offsets[e + 1]` are expert e's (E + 1 entries).
    func plan(offsets: [Int]) {
        let N = communicator.size, per = local.count
        var counts = [Int32](repeating: 0, count: experts)
        for e in 0..<experts { counts[e] = Int32(offsets[e + 1] - offsets[e]) }
        let received: [Int]
        do { received = try communicator.exchange(counts).map(Int.init) } catch { communicator.abort("expert exchange: \(error)") }
        sendRows = (0..<N).map { d in offsets[(d + 1) * per] - offsets[d * per] }
        receiveRows = (0..<N).map { s in received[s * per ..< (s + 1) * per].reduce(0, +) }
        localOffsets = [Int](repeating: 0, count: per + 1)
        for j in 0..<per { localOffsets[j + 1] = localOffsets[j] + (0..<N).reduce(0) { $0 + received[$1 * per + j] } }
        expertOrder = []
        expertOrder.reserveCapacity(localOffsets[per])
        var before = [Int](repeating: 0, count: per)   // rows of local expert j from earlier sources
        for s in 0..<N {
            for j in 0..<per {
                let n = received[s * per + j]
                for i in 0..<n { expertOrder.append(localOffsets[j] + before[j] + i) }
                before[j] += n
            }
        }
    }

    /// Sends `rows` (this rank's, sorted by expert; `width` floats each) to the experts' owners; `into` receives the
    /// rows for this rank's experts, ordered by expert (`localOffsets`).
    func toOwners(_ rows: UnsafePointer<Float>, width: Int, into out: UnsafeMutablePointer<Float>) {
        let buffer = bySource.reserve(max(receivedRows * width, 1))
        exchange(rows, sendRows, into: buffer, receiveRows, width: width)
        for (r, to) in expertOrder.enumerated() { (out + to * width).update(from: buffer + r * width, count: width) }
    }

    /// The inverse of `toOwners`: rows ordered by local expert go back to the ranks that sent them, landing in
    /// `into` in the order those ranks sent them.
    func fromOwners(_ rows: UnsafePointer<Float>, width: Int, into out: UnsafeMutablePointer<Float>) {
        let buffer = bySource.reserve(max(receivedRows * width, 1))
        for (r, from) in expertOrder.enumerated() { (buffer + r * width).update(from: rows + from * width, count: width) }
        exchange(buffer, receiveRows, into: out, sendRows, width: width)
    }

    private func exchange(_ send: UnsafePointer<Float>, _ sendRows: [Int], into receive: UnsafeMutablePointer<Float>, _ receiveRows: [Int],
                          width: Int) {
        let started = Date()
        do {
            try communicator.exchange(send, counts: sendRows.map { $0 * width }, into: receive, counts: receiveRows.map { $0 * width })
        } catch { communicator.abort("expert exchange: \(error)") }
        traffic.seconds += Date().timeIntervalSince(started)
        traffic.bytes += (sendRows.reduce(0, +) - sendRows[communicator.rank]) * width * 4   // what leaves this rank
    }
}
