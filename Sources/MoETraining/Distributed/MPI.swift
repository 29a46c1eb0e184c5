import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Open MPI's C API, found at run time: `libmpi.so.40` is opened only when the process was started by `mpirun`
/// (or `--distributed` asks for it), so building swift-moe and running it on one machine need no MPI.
/// `MOE_MPI_LIBRARY` names another library file. One communicator, `MPI_COMM_WORLD`, initialised once per process
/// and finalised at exit (mpirun counts a process that exits without `MPI_Finalize` as failed).
public final class MPICommunicator: @unchecked Sendable {
    public let rank: Int
    public let size: Int

    private typealias InitFn = @convention(c) (UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32
    private typealias CommQueryFn = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> Int32
    private typealias AllreduceFn = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, UnsafeMutableRawPointer?,
                                                    UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32
    private typealias BarrierFn = @convention(c) (UnsafeMutableRawPointer?) -> Int32
    private typealias IallreduceFn = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, UnsafeMutableRawPointer?,
                                                     UnsafeMutableRawPointer?, UnsafeMutableRawPointer?,
                                                     UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32
    private typealias WaitallFn = @convention(c) (Int32, UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutableRawPointer?) -> Int32
    private typealias TestallFn = @convention(c) (Int32, UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutablePointer<Int32>?,
                                                  UnsafeMutableRawPointer?) -> Int32
    private typealias AllgatherFn = @convention(c) (UnsafeRawPointer?, Int32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, Int32,
                                                    UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32
    private typealias AllgathervFn = @convention(c) (UnsafeRawPointer?, Int32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?,
                                                     UnsafePointer<Int32>?, UnsafePointer<Int32>?, UnsafeMutableRawPointer?,
                                                     UnsafeMutableRawPointer?) -> Int32
    private typealias GathervFn = @convention(c) (UnsafeRawPointer?, Int32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?,
                                                  UnsafePointer<Int32>?, UnsafePointer<Int32>?, UnsafeMutableRawPointer?, Int32,
                                                  UnsafeMutableRawPointer?) -> Int32
    private typealias AlltoallFn = @convention(c) (UnsafeRawPointer?, Int32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, Int32,
                                                   UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32
    private typealias AlltoallvFn = @convention(c) (UnsafeRawPointer?, UnsafePointer<Int32>?, UnsafePointer<Int32>?, UnsafeMutableRawPointer?,
                                                    UnsafeMutableRawPointer?, UnsafePointer<Int32>?, UnsafePointer<Int32>?,
                                                    UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32
    private typealias FinalizeFn = @convention(c) () -> Int32
    private typealias AbortFn = @convention(c) (UnsafeMutableRawPointer?, Int32) -> Int32

    private let allreduceFn: AllreduceFn
    private let barrierFn: BarrierFn
    private let abortFn: AbortFn
    private let alltoallFn: AlltoallFn
    private let allgatherFn: AllgatherFn
    private let allgathervFn: AllgathervFn
    private let gathervFn: GathervFn
    private let iallreduceFn: IallreduceFn
    private let waitallFn: WaitallFn
    private let testallFn: TestallFn
    private let alltoallvFn: AlltoallvFn
    /// Open MPI's handles are the addresses of its predefined objects.
    private let world, float, double, int, byte, sum: UnsafeMutableRawPointer

    /// Whether an MPI launcher started this process (Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE, PMIx-based
    /// launchers PMIX_RANK).
    public static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil
    }

    nonisolated(unsafe) private static var shared: Result<MPICommunicator, TrainingError>?
    private static let lock = NSLock()

    /// The world communicator when this process runs under MPI (`required`, or started by a launcher); nil
    /// otherwise. Throws, with what to install, when MPI is asked for and its library cannot be loaded.
    public static func world(required: Bool) throws -> MPICommunicator? {
        guard required || launchedByMPI else { return nil }
        lock.lock(); defer { lock.unlock() }
        if shared == nil { shared = Result { try MPICommunicator() }.mapError { $0 as? TrainingError ?? .badArgument("\($0)") } }
        return try shared!.get()
    }

    private init() throws {
        let path = ProcessInfo.processInfo.environment["MOE_MPI_LIBRARY"] ?? "libmpi.so.40"
        // RTLD_GLOBAL: Open MPI's own plugins resolve libmpi's symbols against the process.
        guard let library = dlopen(path, RTLD_NOW | RTLD_GLOBAL) else {
            let why = dlerror().map { String(cString: $0) } ?? "not found"
            throw TrainingError.badArgument("distributed training needs Open MPI's \(path) (\(why)): install it (Debian: apt-get install openmpi-bin) or run without mpirun and --distributed")
        }
        func symbol(_ name: String) throws -> UnsafeMutableRawPointer {
            guard let s = dlsym(library, name) else { throw TrainingError.badArgument("\(path) has no \(name): Open MPI 4 or later is needed") }
            return s
        }
        let initialize = unsafeBitCast(try symbol("MPI_Init"), to: InitFn.self)
        let initialized = unsafeBitCast(try symbol("MPI_Initialized"), to: (@convention(c) (UnsafeMutablePointer<Int32>?) -> Int32).self)
        let commRank = unsafeBitCast(try symbol("MPI_Comm_rank"), to: CommQueryFn.self)
        let commSize = unsafeBitCast(try symbol("MPI_Comm_size"), to: CommQueryFn.self)
        allreduceFn = unsafeBitCast(try symbol("MPI_Allreduce"), to: AllreduceFn.self)
        barrierFn = unsafeBitCast(try symbol("MPI_Barrier"), to: BarrierFn.self)
        abortFn = unsafeBitCast(try symbol("MPI_Abort"), to: AbortFn.self)
        alltoallFn = unsafeBitCast(try symbol("MPI_Alltoall"), to: AlltoallFn.self)
        allgatherFn = unsafeBitCast(try symbol("MPI_Allgather"), to: AllgatherFn.self)
        allgathervFn = unsafeBitCast(try symbol("MPI_Allgatherv"), to: AllgathervFn.self)
        gathervFn = unsafeBitCast(try symbol("MPI_Gatherv"), to: GathervFn.self)
        iallreduceFn = unsafeBitCast(try symbol("MPI_Iallreduce"), to: IallreduceFn.self)
        waitallFn = unsafeBitCast(try symbol("MPI_Waitall"), to: WaitallFn.self)
        testallFn = unsafeBitCast(try symbol("MPI_Testall"), to: TestallFn.self)
        alltoallvFn = unsafeBitCast(try symbol("MPI_Alltoallv"), to: AlltoallvFn.self)
        finalizeAtExit = unsafeBitCast(try symbol("MPI_Finalize"), to: FinalizeFn.self)
        world = try symbol("ompi_mpi_comm_world")
        float = try symbol("ompi_mpi_float")
        double = try symbol("ompi_mpi_double")
        int = try symbol("ompi_mpi_int")
        byte = try symbol("ompi_mpi_byte")
        sum = try symbol("ompi_mpi_op_sum")
        var done: Int32 = 0
        _ = initialized(&done)
        if done == 0 {
            guard initialize(nil, nil) == 0 else { throw TrainingError.badArgument("MPI_Init failed") }
            atexit { _ = finalizeAtExit?() }
        }
        var r: Int32 = 0, s: Int32 = 0
        _ = commRank(world, &r)
        _ = commSize(world, &s)
        rank = Int(r); size = Int(s)
    }

    /// Sums `count` floats across ranks in place (every rank ends with the sum).
    public func sumInPlace(_ values: UnsafeMutablePointer<Float>, count: Int) throws {
        try reduce(UnsafeMutableRawPointer(values), count: count, type: float, stride: MemoryLayout<Float>.stride)
    }

    /// Sums `values` across ranks in place.
    public func sumInPlace(_ values: inout [Double]) throws {
        let n = values.count
        try values.withUnsafeMutableBufferPointer {
            try reduce(UnsafeMutableRawPointer($0.baseAddress!), count: n, type: double, stride: MemoryLayout<Double>.stride)
        }
    }

    /// Starts summing `count` floats across ranks in place (`MPI_Iallreduce`); the sum is there once `wait`
    /// has returned for `requests`, which collects the handles. The buffer must stay untouched until then.
    public func startSum(_ values: UnsafeMutablePointer<Float>, count: Int, requests: inout [UnsafeMutableRawPointer?]) throws {
        let inPlace = UnsafeRawPointer(bitPattern: 1)
        var done = 0
        while done < count {
            let n = min(count - done, 1 << 30)
            var request: UnsafeMutableRawPointer?
            guard iallreduceFn(inPlace, values + done, Int32(n), float, sum, world, &request) == 0 else {
                throw TrainingError.badArgument("MPI_Iallreduce failed")
            }
            requests.append(request)
            done += n
        }
    }

    /// Lets started sums move on (Open MPI progresses non-blocking collectives inside MPI calls).
    public func progress(_ requests: inout [UnsafeMutableRawPointer?]) {
        var flag: Int32 = 0
        _ = testallFn(Int32(requests.count), &requests, &flag, nil)   // nil: MPI_STATUSES_IGNORE
    }

    /// Waits for every started sum of `requests`, then empties it.
    public func wait(_ requests: inout [UnsafeMutableRawPointer?]) throws {
        defer { requests.removeAll() }
        guard requests.isEmpty || waitallFn(Int32(requests.count), &requests, nil) == 0 else { throw TrainingError.badArgument("MPI_Waitall failed") }
    }

    /// Ends every rank of the job with `message` (`MPI_Abort`), for a failure inside a collective sequence that this
    /// rank cannot leave alone: the others would wait in a collective it skips. (Open MPI ends the job the same way
    /// on its own errors.)
    public func abort(_ message: String) -> Never {
        FileHandle.standardError.write(Data("error: rank \(rank): \(message)\n".utf8))
        _ = abortFn(world, 1)
        exit(1)
    }

    /// Waits until every rank has reached this point.
    public func barrier() throws {
        guard barrierFn(world) == 0 else { throw TrainingError.badArgument("MPI_Barrier failed") }
    }

    /// Every rank's `bytes`, in rank order.
    public func gather(_ bytes: [UInt8]) throws -> [[UInt8]] {
        var mine = Int32(bytes.count), counts = [Int32](repeating: 0, count: size)
        guard allgatherFn(&mine, 1, int, &counts, 1, int, world) == 0 else { throw TrainingError.badArgument("MPI_Allgather failed") }
        var displacements = [Int32](repeating: 0, count: size)
        for r in 1..<max(size, 1) { displacements[r] = displacements[r - 1] + counts[r - 1] }
        var all = [UInt8](repeating: 0, count: Int(counts.reduce(0, +)))
        let status = bytes.withUnsafeBufferPointer { b in
            all.withUnsafeMutableBufferPointer { a in
                allgathervFn(b.baseAddress, mine, byte, a.baseAddress, counts, displacements, byte, world)
            }
        }
        guard status == 0 else { throw TrainingError.badArgument("MPI_Allgatherv failed") }
        return (0..<size).map { Array(all[Int(displacements[$0]) ..< Int(displacements[$0] + counts[$0])]) }
    }

    /// Every rank's share of `buffer` everywhere: rank r holds `shares[r]` (contiguous, in rank order) and receives
    /// the others' (`MPI_Allgatherv` in place).
    public func gatherInPlace(_ buffer: UnsafeMutablePointer<Float>, shares: [Range<Int>]) throws {
        guard shares.count == size, let last = shares.last, last.upperBound <= Int(Int32.max) else {
            throw TrainingError.badArgument("MPI_Allgatherv: \(shares.count) shares for \(size) ranks, or more than 2³¹ floats")
        }
        let counts = shares.map { Int32($0.count) }, displacements = shares.map { Int32($0.lowerBound) }
        let inPlace = UnsafeRawPointer(bitPattern: 1)
        guard allgathervFn(inPlace, 0, float, buffer, counts, displacements, float, world) == 0 else {
            throw TrainingError.badArgument("MPI_Allgatherv failed")
        }
    }

    /// Every rank's share on rank 0: rank r sends `share` (`shares[r].count` floats), rank 0 receives them all into
    /// `whole` at `shares` (`MPI_Gatherv`; `whole` is read on rank 0 only).
    public func gatherOnRankZero(_ share: UnsafePointer<Float>, into whole: UnsafeMutablePointer<Float>?, shares: [Range<Int>]) throws {
        guard shares.count == size, let last = shares.last, last.upperBound <= Int(Int32.max) else {
            throw TrainingError.badArgument("MPI_Gatherv: \(shares.count) shares for \(size) ranks, or more than 2³¹ floats")
        }
        let counts = shares.map { Int32($0.count) }, displacements = shares.map { Int32($0.lowerBound) }
        guard gathervFn(share, counts[rank], float, whole, counts, displacements, float, 0, world) == 0 else {
            throw TrainingError.badArgument("MPI_Gatherv failed")
        }
    }

    /// All-to-all of equal parts: `values` holds `size` parts of `values.count / size` integers, part d for rank d;
    /// returns the parts the ranks sent this one, part s from rank s.
    public func exchange(_ values: [Int32]) throws -> [Int32] {
        let part = values.count / size
        precondition(part * size == values.count, "exchange: \(values.count) values do not split into \(size) parts")
        var received = [Int32](repeating: 0, count: values.count)
        let status = values.withUnsafeBufferPointer { sb in
            received.withUnsafeMutableBufferPointer { rb in
                alltoallFn(sb.baseAddress, Int32(part), int, rb.baseAddress, Int32(part), int, world)
            }
        }
        guard status == 0 else { throw TrainingError.badArgument("MPI_Alltoall failed") }
        return received
    }

    /// All-to-all of floats in contiguous parts: `sendCounts[d]` floats of `send` (in rank order) go to rank d,
    /// `receiveCounts[s]` floats from rank s land in `receive` (in rank order). Every count must fit MPI's 32 bits.
    public func exchange(_ send: UnsafePointer<Float>, counts sendCounts: [Int], into receive: UnsafeMutablePointer<Float>,
                         counts receiveCounts: [Int]) throws {
        func layout(_ counts: [Int]) throws -> (counts: [Int32], displacements: [Int32]) {
            guard counts.count == size, counts.reduce(0, +) <= Int(Int32.max) else {
                throw TrainingError.badArgument("MPI_Alltoallv: \(counts.reduce(0, +)) floats for \(counts.count) of \(size) ranks do not fit one exchange")
            }
            var displacements = [Int32](repeating: 0, count: size), at = 0
            for (r, c) in counts.enumerated() { displacements[r] = Int32(at); at += c }
            return (counts.map { Int32($0) }, displacements)
        }
        let s = try layout(sendCounts), r = try layout(receiveCounts)
        guard alltoallvFn(send, s.counts, s.displacements, float, receive, r.counts, r.displacements, float, world) == 0 else {
            throw TrainingError.badArgument("MPI_Alltoallv failed")
        }
    }

    /// MPI counts are 32-bit: a long buffer goes in pieces. `MPI_IN_PLACE` is Open MPI's `(void *) 1`.
    private func reduce(_ buffer: UnsafeMutableRawPointer, count: Int, type: UnsafeMutableRawPointer, stride: Int) throws {
        let inPlace = UnsafeRawPointer(bitPattern: 1)
        var done = 0
        while done < count {
            let n = min(count - done, 1 << 30)
            guard allreduceFn(inPlace, buffer + done * stride, Int32(n), type, sum, world) == 0 else {
                throw TrainingError.badArgument("MPI_Allreduce failed")
            }
            done += n
        }
    }
}

/// `MPI_Finalize`, called at exit once MPI is initialised (a C callback cannot capture).
nonisolated(unsafe) private var finalizeAtExit: (@convention(c) () -> Int32)?
