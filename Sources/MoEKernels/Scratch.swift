#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A per-thread, 64-byte aligned scratch buffer that only ever grows (packing buffers of the GEMM).
final class ThreadScratch {
    private(set) var pointer: UnsafeMutableRawPointer? = nil
    private(set) var capacity = 0

    @inline(__always)
    func floats(_ count: Int) -> UnsafeMutablePointer<Float> {
        let bytes = count &* 4
        if bytes > capacity { grow(bytes) }
        return pointer.unsafelyUnwrapped.assumingMemoryBound(to: Float.self)
    }

    @inline(__always)
    func bytes(_ count: Int) -> UnsafeMutableRawPointer {
        if count > capacity { grow(count) }
        return pointer.unsafelyUnwrapped
    }

    @inline(never)
    private func grow(_ bytes: Int) {
        pointer?.deallocate()
        let cap = max(bytes, capacity * 2, 1 << 16)
        pointer = UnsafeMutableRawPointer.allocate(byteCount: cap, alignment: 64)
        capacity = cap
    }

    deinit { pointer?.deallocate() }

    /// The calling thread's scratch buffer.
    @inline(__always)
    static var current: ThreadScratch { slot(scratchKey) }

    /// A second buffer per thread: the GEMM's packed A strip (transposed-A products), beside its packed B.
    static var packedA: ThreadScratch { slot(packedAKey) }

    /// A third buffer per thread: quantised weight rows dequantised for the f32 kernels (`quantizedLinear`).
    static var dequantized: ThreadScratch { slot(dequantizedKey) }

    /// A fourth: activations rounded to int8 for the integer kernels (`quantizedLinear`).
    static var activations: ThreadScratch { slot(activationsKey) }

    @inline(__always)
    private static func slot(_ key: pthread_key_t) -> ThreadScratch {
        if let p = pthread_getspecific(key) {
            return Unmanaged<ThreadScratch>.fromOpaque(p).takeUnretainedValue()
        }
        return make(key)
    }

    @inline(never)
    private static func make(_ key: pthread_key_t) -> ThreadScratch {
        let s = ThreadScratch()
        pthread_setspecific(key, Unmanaged.passRetained(s).toOpaque())
        return s
    }
}

#if canImport(Darwin)
private func releaseScratch(_ p: UnsafeMutableRawPointer) {
    Unmanaged<ThreadScratch>.fromOpaque(p).release()
}
#else
private func releaseScratch(_ p: UnsafeMutableRawPointer?) {
    if let p { Unmanaged<ThreadScratch>.fromOpaque(p).release() }
}
#endif

private func makeKey() -> pthread_key_t {
    var key = pthread_key_t()
    pthread_key_create(&key, releaseScratch)
    return key
}

private let scratchKey = makeKey()
private let packedAKey = makeKey()
private let dequantizedKey = makeKey()
private let activationsKey = makeKey()
