// The streaming XXH64 equals the one-shot hash (itself checked against xxHash's reference values in
// QLoRAOptimTests) however the bytes are split, including pieces that straddle 32-byte stripes.
import QLoRAKernels
import Testing
import _TestSupport

@Test(arguments: [0, 1, 7, 31, 32, 33, 63, 64, 65, 1000, 4099])
func streamingXXH64EqualsOneShot(length: Int) {
    var random = SplitMix64(seed: UInt64(length) + 11)
    let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    bytes.withUnsafeBytes { buffer in
        let whole = XXH64.hash(buffer.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, count: length, seed: 5)
        for pieceLength in [1, 3, 17, 32, 40] {
            var hasher = XXH64(seed: 5)
            var offset = 0
            while offset < length {
                let count = min(pieceLength, length - offset)
                hasher.update(buffer.baseAddress! + offset, count: count)
                offset += count
            }
            #expect(hasher.digest() == whole, "\(length) bytes in pieces of \(pieceLength)")
        }
    }
}
