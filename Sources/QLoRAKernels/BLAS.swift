// OpenBLAS sgemm with the kernels chosen for this CPU (see COpenBLAS.h for how they are chosen).
// Loading is lazy and happens once; nothing here allocates.
import COpenBLAS

/// Row-major single-precision matrix products through OpenBLAS.
public enum BLAS {
    /// Loads OpenBLAS on first use and uses every core; a missing library is a clear error.
    public static func load() throws(BLASError) {
        var message = [CChar](repeating: 0, count: 512)
        if qlora_blas_load(&message, message.count) != 0 {
            throw BLASError.unavailable(String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
    }

    /// `C = alpha * op(A) op(B) + beta * C`, all row-major. `op(A)` is (M, K): `A` is (M, K), or
    /// (K, M) when `transposeA`; `op(B)` is (K, N): `B` is (N, K) when `transposeB`, else (K, N);
    /// `C` is (M, N). Leading dimensions default to the dense row lengths; pass them to work on
    /// sub-matrices. Overwrites `C` when `beta == 0`, accumulates otherwise.
    /// Loads OpenBLAS on first use; call `load()` first to handle a missing library as an error.
    /// - Precondition: OpenBLAS can be loaded; `C` does not alias `A` or `B`.
    public static func sgemm(
        _ c: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
        m: Int, n: Int, k: Int, transposeA: Bool = false, transposeB: Bool, alpha: Float = 1, beta: Float = 0,
        lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil
    ) {
        let lda = lda ?? (transposeA ? m : k), ldb = ldb ?? (transposeB ? k : n), ldc = ldc ?? n
        precondition(m > 0 && n > 0 && k > 0 && m <= Int(Int32.max) && n <= Int(Int32.max) && k <= Int(Int32.max))
        precondition(lda >= (transposeA ? m : k) && ldb >= (transposeB ? k : n) && ldc >= n && max(lda, ldb, ldc) <= Int(Int32.max))
        precondition(qlora_blas_load(nil, 0) == 0, "OpenBLAS is not available: call BLAS.load() to get the reason")
        let noTrans = Int32(QLORA_CBLAS_NO_TRANS), trans = Int32(QLORA_CBLAS_TRANS)
        qlora_sgemm(
            Int32(QLORA_CBLAS_ROW_MAJOR), transposeA ? trans : noTrans, transposeB ? trans : noTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// A line for verbose output: kernel family, where the choice came from, threads, build.
    public static func describe() -> String {
        do { try load() } catch { return "OpenBLAS: \(error)" }
        return "OpenBLAS kernels \(String(cString: qlora_blas_core_name())) (chosen by \(String(cString: qlora_blas_core_source()))), "
            + "\(qlora_blas_get_threads()) threads, build: \(String(cString: qlora_blas_config()))"
    }

    /// The threads OpenBLAS computes with.
    public static func threads() throws(BLASError) -> Int {
        try load()
        return Int(qlora_blas_get_threads())
    }

    /// The kernel family OpenBLAS runs, e.g. "SkylakeX".
    public static func coreName() throws(BLASError) -> String {
        try load()
        return String(cString: qlora_blas_core_name())
    }
}

public enum BLASError: Error, CustomStringConvertible {
    case unavailable(String)
    public var description: String {
        switch self { case .unavailable(let message): return message }
    }
}
