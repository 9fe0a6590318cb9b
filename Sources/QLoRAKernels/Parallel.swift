// A parallel loop over disjoint index ranges, and the wrapper that lets raw pointers cross into it.
import Dispatch

/// Carries a value (typically a raw pointer) into a `@Sendable` closure. The caller guarantees
/// that concurrent uses touch disjoint memory.
public struct UnsafeSendable<P>: @unchecked Sendable {
    public let raw: P
    @inlinable public init(_ raw: P) { self.raw = raw }
}

/// Runs `body(range)` over `0..<count` split into contiguous chunks whose length is a multiple of
/// `granularity` (except the last), on all cores. Chunks never overlap. Small work runs inline.
/// - Parameter minimumChunk: no chunk is made smaller than this many indices.
public func parallelChunks(
    count: Int, granularity: Int = 1, minimumChunk: Int = 1, _ body: @Sendable (Range<Int>) -> Void
) {
    precondition(count >= 0 && granularity > 0)
    guard count > 0 else { return }
    let workers = ProcessInfoCores.count
    let even = max(minimumChunk, (count + workers * 4 - 1) / (workers * 4))
    let chunk = (even + granularity - 1) / granularity * granularity
    let chunks = (count + chunk - 1) / chunk
    if chunks == 1 {
        body(0..<count)
        return
    }
    DispatchQueue.concurrentPerform(iterations: chunks) { index in
        let start = index * chunk
        body(start..<min(count, start + chunk))
    }
}

/// The `minimumChunk` for row-wise kernels: rows enough to hold about 32 K values, so that a chunk
/// outweighs the cost of dispatching it and small inputs run inline.
func rowsPerChunk(_ valuesPerRow: Int) -> Int { max(1, 32_768 / max(valuesPerRow, 1)) }

/// The number of cores this process may run on.
public enum ProcessInfoCores {
    public static let count: Int = {
        #if canImport(Glibc)
        let online = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return max(1, Int(online))
        #else
        return 1
        #endif
    }()
}

#if canImport(Glibc)
import Glibc
#endif
