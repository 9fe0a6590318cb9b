// The page codec and its C helpers: byte-plane shuffle against a scalar reference over awkward
// sizes, the zero test, XXH64 against reference values, the double sum of squares, and each
// encoding's round trip, including bytes that are not a valid page.
import CQLoRAKernels
@testable import QLoRAOptim
import Testing
import _TestSupport

let tailSizes = [1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 63, 65, 127, 129, 1000]

func randomFloats(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var random = SplitMix64(seed: seed)
    return (0..<count).map { _ in (Float(random.next() >> 40) * 0x1p-24 - 0.5) * scale }
}

@Test(arguments: tailSizes)
func shuffleMatchesReferenceAndRoundTrips(_ count: Int) {
    let values = randomFloats(count, seed: UInt64(count))
    var planes = [UInt8](repeating: 0, count: 4 * count)
    qlora_shuffle_bytes(&planes, values, count)
    // Reference: plane b holds byte b (little-endian) of every value, in order.
    var expected = [UInt8](repeating: 0, count: 4 * count)
    for (i, value) in values.enumerated() {
        for b in 0..<4 { expected[b * count + i] = UInt8(truncatingIfNeeded: value.bitPattern >> (8 * b)) }
    }
    #expect(planes == expected)
    var back = [Float](repeating: .nan, count: count)
    qlora_unshuffle_bytes(&back, planes, count)
    #expect(back.map(\.bitPattern) == values.map(\.bitPattern))
}

@Test(arguments: tailSizes)
func zeroTestSeesEveryByte(_ count: Int) {
    var bytes = [UInt8](repeating: 0, count: count)
    #expect(qlora_all_zero(bytes, count) == 1)
    for position in 0..<count {
        bytes[position] = 0x80
        #expect(qlora_all_zero(bytes, count) == 0, "byte \(position) of \(count)")
        bytes[position] = 0
    }
}

@Test func xxh64MatchesReferenceValues() {
    // From python-xxhash 3 (the reference C implementation); the first three are also in xxHash's documentation.
    let cases: [([UInt8], UInt64, UInt64)] = [
        ([], 0, 0xEF46_DB37_51D8_E999),
        (Array("a".utf8), 0, 0xD24E_C4F1_A98C_6E5B),
        (Array("abc".utf8), 0, 0x44BC_2CF5_AD77_0999),
        (Array((0..<3).flatMap { _ in (0..<256).map { UInt8($0) } }), 0, 0x8E03_C838_C596_036F),
        (Array((0..<100).map { UInt8($0) }), 12345, 0x028B_A1AE_2DE4_DE27),
        (Array("0123456789abcdefghijklmnopqrstuvwxyz012".utf8), 7, 0x1B9E_196D_7B8A_AEF8),
    ]
    for (bytes, seed, expected) in cases {
        let found = bytes.withUnsafeBytes { qlora_xxh64($0.baseAddress, bytes.count, seed) }
        #expect(found == expected, "\(bytes.count) bytes, seed \(seed): \(String(found, radix: 16))")
    }
}

@Test(arguments: tailSizes)
func sumOfSquaresMatchesDouble(_ count: Int) {
    let values = randomFloats(count, seed: 99 + UInt64(count), scale: 1e3)
    let expected = values.reduce(0.0) { $0 + Double($1) * Double($1) }
    let found = qlora_sum_squares(values, count)
    // Exact products; only the order of about `count` double additions differs.
    #expect(abs(found - expected) <= 1e-15 * Double(count) * expected, "\(found) vs \(expected)")
}

struct CodecCase: CustomStringConvertible, Sendable {
    let name: String
    let encoding: PageEncoding
    var description: String { name }
}

@Test(arguments: [CodecCase(name: "zeros", encoding: .zero), CodecCase(name: "smooth moments", encoding: .shuffledLZ4),
                  CodecCase(name: "random bits", encoding: .raw)])
func pageCodecRoundTrips(_ c: CodecCase) {
    let pageBytes = 16384, count = pageBytes / 4
    var page = [Float](repeating: 0, count: count)
    var random = SplitMix64(seed: 5)
    switch c.encoding {
    case .zero: break
    // A second-moment-like page: small positive values of similar size, so exponent bytes repeat.
    case .shuffledLZ4: for i in 0..<count { page[i] = 1e-6 * (1 + Float(i % 97) / 97) }
    case .raw: for i in 0..<count { page[i] = Float(bitPattern: UInt32(truncatingIfNeeded: random.next())) }
    }
    let codec = PageCodec(pageBytes: pageBytes)
    defer { codec.deallocate() }
    var stored = [UInt8](repeating: 0, count: pageBytes)
    let (encoding, storedBytes) = page.withUnsafeBytes { p in stored.withUnsafeMutableBytes { codec.encode(p.baseAddress!, into: $0.baseAddress!) } }
    #expect(encoding == c.encoding)
    switch encoding {
    case .zero: #expect(storedBytes == 0)
    case .raw: #expect(storedBytes == pageBytes)
    case .shuffledLZ4: #expect(storedBytes < pageBytes / 4, "smooth page stored in \(storedBytes) bytes")
    }
    var back = [Float](repeating: .nan, count: count)
    let decoded = stored.withUnsafeBytes { s in back.withUnsafeMutableBytes { codec.decode(encoding, s.baseAddress!, storedBytes: storedBytes, into: $0.baseAddress!) } }
    #expect(decoded)
    #expect(back.map(\.bitPattern) == page.map(\.bitPattern))
}

@Test func pageCodecRejectsBytesThatAreNotAPage() {
    let pageBytes = 16384
    let codec = PageCodec(pageBytes: pageBytes)
    defer { codec.deallocate() }
    var random = SplitMix64(seed: 11)
    let garbage = (0..<pageBytes).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    var out = [UInt8](repeating: 0, count: pageBytes)
    garbage.withUnsafeBytes { g in
        out.withUnsafeMutableBytes { o in
            for stored in [1, 100, 5000, pageBytes - 1] {
                #expect(!codec.decode(.shuffledLZ4, g.baseAddress!, storedBytes: stored, into: o.baseAddress!), "\(stored) garbage bytes decoded")
            }
            #expect(!codec.decode(.raw, g.baseAddress!, storedBytes: pageBytes - 4, into: o.baseAddress!))
            #expect(!codec.decode(.zero, g.baseAddress!, storedBytes: 8, into: o.baseAddress!))
        }
    }
}
