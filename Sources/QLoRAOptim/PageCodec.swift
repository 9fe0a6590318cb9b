// How one page of optimizer state is stored when spilled: an all-zero page as a flag with no
// bytes, otherwise its float32 values split into byte planes and compressed with LZ4, or the
// raw bytes when LZ4 would save less than 1/32 (dense moments compress ~1.1x at best).
import CLZ4
import CQLoRAKernels
#if canImport(Glibc)
import Glibc
#endif

public enum PageEncoding: UInt8, Sendable {
    case zero, raw, shuffledLZ4
}

/// Encoder and decoder of pages of `pageBytes` bytes (float32 values), with its own scratch of
/// `pageBytes` bytes for the byte planes. One codec per thread.
struct PageCodec {
    let pageBytes: Int
    private let planes: UnsafeMutableRawPointer

    init(pageBytes: Int) {
        precondition(pageBytes > 0 && pageBytes % 4 == 0 && pageBytes < Int(Int32.max))
        self.pageBytes = pageBytes
        planes = .allocate(byteCount: pageBytes, alignment: 64)
    }

    func deallocate() { planes.deallocate() }

    /// Encodes `page` into `destination` (capacity `pageBytes`); returns the encoding and the
    /// number of bytes written (0 for a zero page, which writes nothing).
    func encode(_ page: UnsafeRawPointer, into destination: UnsafeMutableRawPointer) -> (PageEncoding, Int) {
        if qlora_all_zero(page, pageBytes) != 0 { return (.zero, 0) }
        qlora_shuffle_bytes(planes.assumingMemoryBound(to: UInt8.self), page.assumingMemoryBound(to: Float.self), pageBytes / 4)
        let worthwhile = Int32(pageBytes - pageBytes / 32)
        let stored = LZ4_compress_default(planes.assumingMemoryBound(to: CChar.self), destination.assumingMemoryBound(to: CChar.self),
                                          Int32(pageBytes), worthwhile)
        if stored > 0 { return (.shuffledLZ4, Int(stored)) }
        destination.copyMemory(from: page, byteCount: pageBytes)
        return (.raw, pageBytes)
    }

    /// Decodes `storedBytes` bytes of `source` into `page` (`pageBytes`); false when they are not
    /// a valid encoding of one page.
    func decode(_ encoding: PageEncoding, _ source: UnsafeRawPointer, storedBytes: Int, into page: UnsafeMutableRawPointer) -> Bool {
        switch encoding {
        case .zero:
            guard storedBytes == 0 else { return false }
            page.initializeMemory(as: UInt8.self, repeating: 0, count: pageBytes)
        case .raw:
            guard storedBytes == pageBytes else { return false }
            page.copyMemory(from: source, byteCount: pageBytes)
        case .shuffledLZ4:
            guard storedBytes > 0 && storedBytes < pageBytes else { return false }
            let produced = LZ4_decompress_safe(source.assumingMemoryBound(to: CChar.self), planes.assumingMemoryBound(to: CChar.self),
                                               Int32(storedBytes), Int32(pageBytes))
            guard produced == Int32(pageBytes) else { return false }
            qlora_unshuffle_bytes(page.assumingMemoryBound(to: Float.self), planes.assumingMemoryBound(to: UInt8.self), pageBytes / 4)
        }
        return true
    }
}
