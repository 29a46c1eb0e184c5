import ArgumentParser
import Foundation
import MoEKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `moe bench gemm`: the Linear/GEMM kernels beside OpenBLAS (loaded at run time, benchmark only).
struct BenchGEMM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "GEMM GFLOP/s beside OpenBLAS.",
        discussion: """
            Times `linear` (x·Wᵀ, nn.Linear layout) for the shapes of the bench model (tokens × out × in) with f32 and \
            bf16 weights, and a 2048³ f32 product, beside OpenBLAS cblas_sgemm (row-major, NoTrans × Trans, f32) — \
            cblas_sgemv for the 1-token lines. GEMV lines also give the GB/s of weights read. OpenBLAS is loaded with \
            dlopen("libopenblas.so.0") (apt-get install -y libopenblas-dev).
            """)

    @Option(help: "Threads (default: active processors).")
    var threads: Int = WorkerPool.defaultThreadCount

    @Option(name: .customLong("repeat"), help: "Timed repetitions per shape (best is reported).")
    var repetitions: Int = 5

    @Option(help: "Bytes read by the memory bandwidth measurement.")
    var bandwidthBytes: Int = 1 << 30

    @Option(help: ArgumentHelp("Time only the batched-decode shapes (LM head t×151936×1024, expert t×256×1024 and "
                               + "t×1024×256, bf16 and f32) for these token counts, e.g. 1,4,8,16.", valueName: "t,t,..."))
    var decodeBatches: String?

    func validate() throws {
        if let decodeBatches {
            guard !parsedDecodeBatches(decodeBatches).isEmpty else { throw ValidationError("--decode-batches: a list like 1,4,8,16") }
        }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard repetitions >= 1 else { throw ValidationError("--repeat must be at least 1") }
    }

    func run() throws {
        let pool = WorkerPool(threads: threads)
        let blas = OpenBLAS.load()
        print("moe bench gemm: \(threads) thread(s), best of \(repetitions)")
        let bw = measureReadBandwidth(pool: pool, bytes: bandwidthBytes)
        print(String(format: "memory read bandwidth: %.1f GB/s (%d MiB buffer)", bw, bandwidthBytes >> 20))
        if let blas {
            blas.setThreads(Int32(threads))
            print("OpenBLAS: \(blas.path)")
        } else {
            print("OpenBLAS was not found (libopenblas.so.0); install with `apt-get install -y libopenblas-dev`")
        }
        print(pad("shape (t×out×in)", 20) + pad("weights", 8) + lpad("ours GF/s", 11) + lpad("BLAS GF/s", 11)
              + lpad("ratio", 8) + lpad("ours GB/s", 11) + lpad("BLAS GB/s", 11))

        if let decodeBatches {
            // Weights read once per call whatever t is, so the GB/s column is comparable across t.
            for (o, i) in [(151936, 1024), (256, 1024), (1024, 256)] {
                for type in [ElementType.bf16, .f32] {
                    for t in parsedDecodeBatches(decodeBatches) { bench(t, o, i, type, pool, blas, bandwidthColumn: true) }
                }
            }
            return
        }
        let shapes: [(Int, Int, Int)] = [(512, 1024, 1024), (512, 256, 1024), (64, 256, 1024), (64, 1024, 256),
                                         (1, 151936, 1024)]
        for (t, o, i) in shapes {
            for type in [ElementType.f32, .bf16] { bench(t, o, i, type, pool, blas) }
        }
        bench(2048, 2048, 2048, .f32, pool, blas)
    }

    private func parsedDecodeBatches(_ list: String) -> [Int] {
        let counts = list.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        return counts.allSatisfy { $0 >= 1 } ? counts : []
    }

    private func bench(_ tokens: Int, _ outs: Int, _ ins: Int, _ type: ElementType, _ pool: WorkerPool,
                       _ blas: OpenBLAS?, bandwidthColumn: Bool = false) {
        var rng = SplitMix(seed: UInt64(tokens &* 31 &+ outs &* 7 &+ ins))
        let wf = UnsafeMutablePointer<Float>.allocate(capacity: outs * ins)
        let x = UnsafeMutablePointer<Float>.allocate(capacity: tokens * ins)
        let y = UnsafeMutablePointer<Float>.allocate(capacity: tokens * outs)
        defer { wf.deallocate(); x.deallocate(); y.deallocate() }
        for j in 0..<(outs * ins) { wf[j] = rng.uniform() }
        for j in 0..<(tokens * ins) { x[j] = rng.uniform() }
        y.initialize(repeating: 0, count: tokens * outs)
        var wb: UnsafeMutablePointer<UInt16>? = nil
        if type == .bf16 {
            wb = .allocate(capacity: outs * ins)
            floatToBF16(wf, wb!, count: outs * ins)
        }
        defer { wb?.deallocate() }
        let w = WeightMatrix(base: type == .bf16 ? UnsafeRawPointer(wb!) : UnsafeRawPointer(wf),
                             rows: outs, cols: ins, type: type)
        let flops = 2.0 * Double(tokens) * Double(outs) * Double(ins)
        let ours = bestTime(repetitions) {
            linear(x, ldx: ins, tokens: tokens, w, into: y, ldo: outs, pool: pool)
        }
        var theirs: Double? = nil
        if let blas {
            theirs = bestTime(repetitions) {
                if tokens == 1 {
                    blas.sgemv(outs, ins, wf, x, y)
                } else {
                    blas.sgemmNT(tokens, outs, ins, x, wf, y)
                }
            }
        }
        var line = pad("\(tokens)×\(outs)×\(ins)", 20) + pad(type == .bf16 ? "bf16" : "f32", 8)
        line += lpad(String(format: "%.1f", flops / ours / 1e9), 11)
        if let theirs {
            line += lpad(String(format: "%.1f", flops / theirs / 1e9), 11)
            line += lpad(String(format: "%.2f", theirs / ours), 8)
        } else {
            line += lpad("-", 11) + lpad("-", 8)
        }
        if tokens == 1 || bandwidthColumn {
            line += lpad(String(format: "%.1f", Double(outs * ins * type.byteSize) / ours / 1e9), 11)
            if let theirs { line += lpad(String(format: "%.1f", Double(outs * ins * 4) / theirs / 1e9), 11) }
        }
        print(line)
    }
}

private func bestTime(_ reps: Int, _ body: () -> Void) -> Double {
    body()   // warm-up (page faults, packing buffers, thread wake-up)
    let clock = ContinuousClock()
    var best = Double.infinity
    // Short kernels are timed over enough calls to reach ~20 ms per sample.
    let start0 = clock.now
    body()
    let once = seconds(start0.duration(to: clock.now))
    let inner = max(1, min(10_000, Int(0.02 / max(once, 1e-7))))
    for _ in 0..<reps {
        let start = clock.now
        for _ in 0..<inner { body() }
        best = min(best, seconds(start.duration(to: clock.now)) / Double(inner))
    }
    return best
}

private func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}

private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
private func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? " " + s : String(repeating: " ", count: n - s.count) + s }

private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
}

/// OpenBLAS entry points resolved with dlopen/dlsym (never linked).
private struct OpenBLAS {
    typealias SGEMM = @convention(c) (Int32, Int32, Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32,
                                      UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32) -> Void
    typealias SGEMV = @convention(c) (Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32,
                                      UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32) -> Void
    typealias SetThreads = @convention(c) (Int32) -> Void
    let path: String
    let gemm: SGEMM
    let gemv: SGEMV
    let setNumThreads: SetThreads?

    static let rowMajor: Int32 = 101, noTrans: Int32 = 111, trans: Int32 = 112

    static func load() -> OpenBLAS? {
        for name in ["libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"] {
            guard let h = dlopen(name, RTLD_NOW | RTLD_LOCAL) else { continue }
            guard let g = dlsym(h, "cblas_sgemm"), let v = dlsym(h, "cblas_sgemv") else { continue }
            let t = dlsym(h, "openblas_set_num_threads")
            return OpenBLAS(path: name, gemm: unsafeBitCast(g, to: SGEMM.self), gemv: unsafeBitCast(v, to: SGEMV.self),
                            setNumThreads: t.map { unsafeBitCast($0, to: SetThreads.self) })
        }
        return nil
    }

    func setThreads(_ n: Int32) { setNumThreads?(n) }

    /// y[t×o] = x[t×i] · W[o×i]ᵀ
    func sgemmNT(_ t: Int, _ o: Int, _ i: Int, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                 _ y: UnsafeMutablePointer<Float>) {
        gemm(Self.rowMajor, Self.noTrans, Self.trans, Int32(t), Int32(o), Int32(i), 1, x, Int32(i), w, Int32(i),
             0, y, Int32(o))
    }

    /// y[o] = W[o×i] · x[i]
    func sgemv(_ o: Int, _ i: Int, _ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        gemv(Self.rowMajor, Self.noTrans, Int32(o), Int32(i), 1, w, Int32(i), x, 1, 0, y, 1)
    }
}
