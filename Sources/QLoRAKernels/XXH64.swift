// XXH64 (xxHash's specification) over bytes given in one piece or several: the checksums of
// spilled optimizer pages and of checkpoint files. The C core is in page_kernels.c.
import CQLoRAKernels

/// A running XXH64 hash: `update` with the bytes in order, then `digest`, which equals
/// `XXH64.hash` of all the bytes at once.
public struct XXH64 {
    private var state = qlora_xxh64_state()

    public init(seed: UInt64 = 0) { qlora_xxh64_reset(&state, seed) }

    public mutating func update(_ bytes: UnsafeRawPointer, count: Int) {
        precondition(count >= 0)
        qlora_xxh64_update(&state, bytes, count)
    }

    /// The hash of the bytes so far (the state is unchanged: more updates may follow).
    public func digest() -> UInt64 { withUnsafePointer(to: state) { qlora_xxh64_digest($0) } }

    /// The hash of `count` bytes in one call.
    public static func hash(_ bytes: UnsafeRawPointer, count: Int, seed: UInt64 = 0) -> UInt64 {
        precondition(count >= 0)
        return qlora_xxh64(bytes, count, seed)
    }
}
