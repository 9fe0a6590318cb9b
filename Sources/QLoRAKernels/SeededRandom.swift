// Seeded pseudo-random numbers that every part of the project (synthetic models, benchmarks,
// tests) draws the same way: SplitMix64, and normals by Box-Muller. Not cryptographic.
#if canImport(Glibc)
import Glibc
#endif

/// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit state advanced by the golden-ratio increment.
/// tools/reference/make_fixtures.py reimplements it to produce the same test inputs.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    @usableFromInline var state: UInt64
    public init(seed: UInt64) { state = seed }

    @inlinable
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// SplitMix64's output function of one state (also the dropout mask's hash).
    @inlinable
    public static func mix(_ state: UInt64) -> UInt64 {
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Fills `out` (count values) with normal(0, std) values from a SplitMix64 seeded with `seed`:
/// Box-Muller on two 24-bit uniforms per 64-bit draw, one draw per pair of values. Overwrites `out`.
public func fillNormal(_ out: UnsafeMutablePointer<Float>, count: Int, seed: UInt64, std: Float) {
    var random = SplitMix64(seed: seed)
    var i = 0
    while i < count {
        let bits = random.next()
        let u1 = Float(bits >> 40 + 1) * 0x1p-24  // (0, 1]: log(u1) is finite
        let u2 = Float(bits & 0xFF_FFFF) * 0x1p-24
        let radius = (-2 * logf(u1)).squareRoot() * std
        let angle = 2 * Float.pi * u2
        out[i] = radius * cosf(angle)
        if i + 1 < count { out[i + 1] = radius * sinf(angle) }
        i += 2
    }
}
