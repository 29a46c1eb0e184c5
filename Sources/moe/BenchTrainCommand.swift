import ArgumentParser
import Foundation
import MoEFormats
import MoEKernels
import MoEModel
import MoETraining

/// `moe bench train --preset bench-small [--steps N]`: training throughput beside PyTorch's.
/// The last line, `tokens/s: X`, is a contract (scripts read it).
struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Time training steps (forward, backward, AdamW) on random tokens, beside PyTorch + transformers.",
        discussion: """
            The model is a preset (bench-small: qwen3_moe, vocab 8192, hidden 256, 4 layers, 32 experts top-4; \
            small-next: the hybrid qwen3_next); batch 16 × 256, AdamW lr 3e-4, aux loss 0.01, gradient clipping 1.0, \
            f32. With a Python that has torch (--peer-python, default ~/.cache/moe-peers/bin/python), \
            scripts/bench_train_torch.py trains the same config.json with transformers' class for it right after, and \
            the ratio is printed. `--mpi N` then runs the same global batch on N MPI ranks on this machine (mpirun -np N, \
            --threads / N threads each, batch / N sequences each, gradients all-reduced; `--expert-parallel`: the \
            experts split across the ranks) and prints its tokens/s, the time in communication and the efficiency \
            against the one process. The last line is `tokens/s: X` (swift-moe's, one process).
            """)

    @Option(help: "Model preset.") var preset: String = "bench-small"
    @Option(help: "Timed steps.") var steps: Int = 10
    @Option(help: "Untimed warm-up steps.") var warmup: Int = 2
    @Option(help: "Sequences per batch.") var batch: Int = 16
    @Option(help: "Tokens per sequence.") var seqLen: Int = 256
    @Option(help: "Worker threads.") var threads: Int = 2
    @Option(help: "Python with torch + transformers for the peer run (empty: skip the peer).")
    var peerPython: String = NSHomeDirectory() + "/.cache/moe-peers/bin/python"
    @Option(help: "Also run the same global batch on N MPI ranks of this machine (needs Open MPI's mpirun) and print the efficiency.")
    var mpi: Int?
    @Flag(help: "With --mpi: expert parallel (every MoE layer's experts split across the ranks) instead of data parallel.")
    var expertParallel = false

    func validate() throws {
        if steps < 1 || warmup < 0 || batch < 1 || seqLen < 2 || threads < 1 { throw ValidationError("steps, batch, seq-len and threads must be positive") }
        if let mpi, mpi < 2 || batch % mpi != 0 { throw ValidationError("--mpi N needs N ≥ 2 ranks that divide --batch (\(batch))") }
    }

    func run() throws {
        if MPICommunicator.launchedByMPI { return try runRank() }
        let config = try ModelPreset.config(preset)
        let model = try TrainableModel(config: config, threads: threads)
        model.initialize(seed: 1)
        let optimizer = AdamW(model.store)
        let n = batch * seqLen
        var rng = SplitMix64(seed: 7)
        let balance = BalanceLosses(auxLossCoef: 0.01)
        print("swift-moe: \(preset) (\(config.modelType)), \(model.store.parameterCount) parameters, batch \(batch) × \(seqLen), \(threads) threads")

        var times: [Double] = []
        for s in 0..<(warmup + steps) {
            // Fresh random tokens every step, as the PyTorch side does (nothing to memorise).
            let tokens = (0...n).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
            let inputs = Array(tokens[0..<n]), targets = Array(tokens[1...n])
            let start = DispatchTime.now().uptimeNanoseconds
            model.store.zeroGrads()
            let loss = try inputs.withUnsafeBufferPointer { i in
                try targets.withUnsafeBufferPointer { t in
                    try model.trainStep(batch: batch, seqLen: seqLen, inputs: i.baseAddress!, targets: t.baseAddress!, balance: balance)
                }
            }
            clipGradients(model.store, maxNorm: 1)
            optimizer.update(model.store, lr: 3e-4, pool: model.pool)
            let t = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if s >= warmup { times.append(t) }
            print(String(format: "  step %2d  loss %.4f  %.3f s%@", s + 1, loss.total, t, s < warmup ? "  (warm-up)" : ""))
        }
        let ours = Double(n * steps) / times.reduce(0, +)
        let flopsPerToken = trainingFLOPsPerToken(config, seqLen: seqLen)
        let peak = matmulPeak(threads: threads)
        let achieved = ours * flopsPerToken
        print(String(format: "swift-moe: %.1f tokens/s, %.1f GFLOP/s of model FLOPs = %.0f%% of the measured sgemm peak (%.1f GFLOP/s), peak memory %.0f MiB",
                     ours, achieved / 1e9, 100 * achieved / peak, peak / 1e9, peakResidentMiB()))

        if !peerPython.isEmpty, FileManager.default.isExecutableFile(atPath: peerPython),
           FileManager.default.fileExists(atPath: "scripts/bench_train_torch.py") {
            print("PyTorch peer (scripts/bench_train_torch.py, run from the repository root):")
            if let peer = try runPeer() {
                print(String(format: "ratio: swift-moe / PyTorch = %.2f× (%.1f vs %.1f tokens/s)", ours / peer, ours, peer))
            }
        } else {
            print("(no PyTorch peer run: needs --peer-python with torch and the repository's scripts/ in the current directory)")
        }
        if let mpi {
            let perRank = max(1, threads / mpi)
            print("MPI: \(mpi) ranks × \(perRank) thread(s), batch \(batch / mpi) × \(seqLen) each (\(expertParallel ? "expert" : "data") parallel):")
            if let many = try runRanks(mpi, threadsEach: perRank) {
                print(String(format: "MPI efficiency: %.1f vs %.1f tokens/s = %.0f%% of one process with %d threads (the ranks share this machine's cores)",
                             many, ours, 100 * many / ours, threads))
            }
        }
        print(String(format: "tokens/s: %.1f", ours))
    }

    /// One rank of `--mpi`: its share of every step's batch (its own random tokens), gradients summed across the
    /// ranks (the experts' kept with their owners under `--expert-parallel`), the same AdamW step everywhere;
    /// rank 0 prints each step, the communication and the global tokens/s.
    private func runRank() throws {
        guard let dp = try DataParallel.world(required: true) else { return }
        let share = batch / dp.ranks, n = share * seqLen
        let config = try ModelPreset.config(preset)
        let model = try TrainableModel(config: config, threads: threads)
        model.initialize(seed: 1)
        let optimizer = AdamW(model.store)
        let sharding = expertParallel ? try ExpertSharding(model: model, communicator: dp.communicator, batchTokens: n) : nil
        sharding?.install()
        if let sharding { optimizer.othersTensors = sharding.othersTensors }
        // As the trainer sums: each block's gradients as soon as its backward is done, the rest after.
        let buckets = GradientBuckets(dp.communicator, reduced: sharding?.sharedRanges ?? [0 ..< max(model.store.count, 1)])
        let grads = model.store.grads!
        model.blockGradientsDone = { buckets.start($0, grads: grads) }
        var rng = SplitMix64(seed: 7 &+ UInt64(dp.rank))
        let balance = BalanceLosses(auxLossCoef: 0.01)
        var times: [Double] = [], reduceTimes: [Double] = [], exchangeTimes: [Double] = []
        for s in 0..<(warmup + steps) {
            let tokens = (0...n).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
            let inputs = Array(tokens[0..<n]), targets = Array(tokens[1...n])
            try dp.communicator.barrier()
            let start = DispatchTime.now().uptimeNanoseconds
            model.store.zeroGrads()
            let loss = try inputs.withUnsafeBufferPointer { i in
                try targets.withUnsafeBufferPointer { t in
                    try model.trainStep(batch: share, seqLen: seqLen, inputs: i.baseAddress!, targets: t.baseAddress!, balance: balance)
                }
            }
            let reduceStart = DispatchTime.now().uptimeNanoseconds
            try buckets.finish(grads: grads)
            let reduce = Double(DispatchTime.now().uptimeNanoseconds - reduceStart) / 1e9
            // Means over the global batch: each rank's gradients were means over its share.
            MoEKernels.scale(grads, count: model.store.count, by: 1 / Float(dp.ranks))
            clipGradients([model.store], maxNorm: 1, squaredNorm: try sharding?.squaredGradientNorm(model.store))
            optimizer.update(model.store, lr: 3e-4, pool: model.pool)
            let t = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            let exchange = (sharding?.takeTraffic().milliseconds ?? 0) / 1000
            if s >= warmup { times.append(t); reduceTimes.append(reduce); exchangeTimes.append(exchange) }
            if dp.isWriter {
                print(String(format: "  step %2d  loss %.4f (rank 0)  %.3f s, all-reduce %.1f ms, all-to-all %.1f ms%@", s + 1, loss.total, t,
                             reduce * 1000, exchange * 1000, s < warmup ? "  (warm-up)" : ""))
            }
        }
        sharding?.uninstall()
        guard dp.isWriter else { return }
        let total = times.reduce(0, +)
        print(String(format: "communication: all-reduce (after the backward pass) %.1f%%, all-to-all %.1f%% of the step time (rank 0)",
                     100 * reduceTimes.reduce(0, +) / total, 100 * exchangeTimes.reduce(0, +) / total))
        print(String(format: "tokens/s: %.1f", Double(batch * seqLen * steps) / total))
    }

    /// Runs this benchmark on `ranks` MPI ranks; returns their global tokens/s (nil when mpirun fails).
    private func runRanks(_ ranks: Int, threadsEach: Int) throws -> Double? {
        guard let mpirun = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":")
                .map({ "\($0)/mpirun" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            print("  (no mpirun on PATH: install Open MPI, Debian: apt-get install openmpi-bin)")
            return nil
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: mpirun)
        p.arguments = (geteuid() == 0 ? ["--allow-run-as-root"] : []) + ["--oversubscribe", "-np", "\(ranks)", CommandLine.arguments[0],
            "bench", "train", "--preset", preset, "--steps", "\(steps)", "--warmup", "\(warmup)", "--batch", "\(batch)",
            "--seq-len", "\(seqLen)", "--threads", "\(threadsEach)", "--peer-python", ""] + (expertParallel ? ["--expert-parallel"] : [])
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        for line in text.split(separator: "\n") { print("  " + line) }
        guard p.terminationStatus == 0, let last = text.split(separator: "\n").last, last.hasPrefix("tokens/s: ") else { return nil }
        return Double(last.dropFirst("tokens/s: ".count))
    }

    /// Trains the preset's config.json through transformers (written to a temporary file for the script).
    private func runPeer() throws -> Double? {
        let configPath = NSTemporaryDirectory() + "moe-bench-train-\(getpid())-config.json"
        try JSONSerialization.data(withJSONObject: try ModelPreset.json(preset)).write(to: URL(fileURLWithPath: configPath))
        defer { try? FileManager.default.removeItem(atPath: configPath) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: peerPython)
        p.arguments = ["scripts/bench_train_torch.py", "--steps", "\(steps)", "--warmup", "\(warmup)", "--batch", "\(batch)",
                       "--seq-len", "\(seqLen)", "--threads", "\(threads)", "--config", configPath]
        let pipe = Pipe()
        p.standardOutput = pipe
        guard (try? p.run()) != nil else { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        for line in text.split(separator: "\n") { print("  " + line) }
        guard p.terminationStatus == 0, let last = text.split(separator: "\n").last, last.hasPrefix("tokens/s: ") else { return nil }
        return Double(last.dropFirst("tokens/s: ".count))
    }
}

/// Model FLOPs of one training token (PaLM's accounting): 6 × the parameters a token passes through
/// (attention projections, router, its top-k experts and any shared expert, LM head) + 12 · layers · q width ·
/// sequence length for the attention scores and values.
func trainingFLOPsPerToken(_ c: ModelConfig, seqLen: Int) -> Double {
    let h = Double(c.hiddenSize), qw = Double(c.numAttentionHeads * c.headDim), kvw = Double(c.numKeyValueHeads * c.headDim)
    var active = Double(c.vocabSize) * h
    for i in 0..<c.numHiddenLayers {
        active += h * (qw + 2 * kvw) + qw * h
        if c.isSparseLayer(i) {
            let w = Double(c.moeIntermediateSize ?? c.intermediateSize)
            active += h * Double(c.numExperts) + Double(c.numExpertsPerToken) * 3 * h * w
            if let s = c.sharedExpertIntermediateSize, s > 0 { active += 3 * h * Double(s) + h }
        } else {
            active += 3 * h * Double(c.intermediateSize)
        }
    }
    return 6 * active + 12 * Double(c.numHiddenLayers) * qw * Double(seqLen)
}

/// The best sgemm rate on a 1024³ product (FLOP/s), the peak FLOP utilisation is measured against.
func matmulPeak(threads: Int) -> Double {
    let n = 1024
    let pool = WorkerPool(threads: threads)
    let a = [Float](repeating: 0.5, count: n * n), b = a
    var c = [Float](repeating: 0, count: n * n)
    var best = Double.infinity
    for _ in 0..<4 {
        let start = DispatchTime.now().uptimeNanoseconds
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    sgemmNN(m: n, n: n, k: n, alpha: 1, a: ap.baseAddress!, lda: n, b: bp.baseAddress!, ldb: n,
                            c: cp.baseAddress!, ldc: n, accumulate: false, pool: pool)
                }
            }
        }
        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    return 2 * Double(n * n * n) / best
}

/// Peak resident memory of this process (getrusage's ru_maxrss, KiB on Linux).
func peakResidentMiB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    #if os(macOS)
    return Double(usage.ru_maxrss) / 1048576   // bytes there
    #else
    return Double(usage.ru_maxrss) / 1024
    #endif
}
