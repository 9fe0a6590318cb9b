import Testing
import QLoRAKernels

// Every half and bfloat16 bit pattern must decode to the value Swift's own Float16 gives, and
// encoding must round to nearest even exactly as Float16(Float) does.
@Test func float16DecodeMatchesSwiftFloat16ForAllBitPatterns() {
    var mismatches = 0
    for bits in 0...UInt16.max {
        let expected = Float(Float16(bitPattern: bits))
        let actual = float16BitsToFloat(bits)
        if expected.isNaN ? !actual.isNaN : expected.bitPattern != actual.bitPattern { mismatches += 1 }
    }
    #expect(mismatches == 0)
}

@Test func bfloat16RoundsToNearestEven() {
    // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties go to the even mantissa (1.0).
    #expect(floatToBFloat16Bits(1 + 0x1p-8) == 0x3F80)
    // 1.0078125 + 2^-8 is halfway between 1.0078125 (odd mantissa) and 1.015625: rounds up.
    #expect(floatToBFloat16Bits(1.0078125 + 0x1p-8) == 0x3F82)
    #expect(floatToBFloat16Bits(-2.5) == 0xC020)
    #expect(bfloat16BitsToFloat(floatToBFloat16Bits(.infinity)) == .infinity)
    #expect(bfloat16BitsToFloat(floatToBFloat16Bits(.nan)).isNaN)
}

@Test func float16EncodeMatchesSwiftFloat16OnEveryHalfNeighbourhood() {
    // For every half value: itself, the midpoints to its neighbours, and one ulp either side of
    // them, so every rounding boundary and tie is hit; plus large, tiny and special values.
    var inputs: [Float] = [0, -0, .infinity, -.infinity, 65504, 65519.99, 65520, 1e10, -1e10, 1e-8, 5.96e-8, 2.98e-8, 2.99e-8]
    for bits in UInt16(0)...0x7BFF {
        let value = Float(Float16(bitPattern: bits))
        let next = Float(Float16(bitPattern: bits + 1))
        let middle = (value + next) / 2
        inputs += [value, middle, middle.nextUp, middle.nextDown, -middle]
    }
    var mismatches: [Float] = []
    for x in inputs where floatToFloat16Bits(x) != Float16(x).bitPattern {
        if mismatches.count < 5 { mismatches.append(x) }
    }
    #expect(mismatches.isEmpty, "first mismatches: \(mismatches.map { "\($0) -> \(floatToFloat16Bits($0)) vs \(Float16($0).bitPattern)" })")
    #expect(floatToFloat16Bits(.nan) & 0x7E00 == 0x7E00)
}

/// The bulk (C, F16C) float16 paths against the scalar helpers on every half neighbourhood.
@Test func bulkFloat16ConversionsMatchScalar() {
    var inputs: [Float] = [0, -0, .infinity, -.infinity, 65504, 65520, 1e-8, 3e-8]
    for bits in stride(from: UInt16(0), through: 0x7BFF, by: 7) {
        let value = Float(Float16(bitPattern: bits))
        inputs += [value, value.nextUp, -value.nextDown]
    }
    var rounded = inputs
    FloatEncoding.float16.round(&rounded, count: rounded.count)
    var encoded = [UInt16](repeating: 0, count: inputs.count)
    encoded.withUnsafeMutableBytes { FloatEncoding.float16.encode($0.baseAddress!, inputs, count: inputs.count) }
    var decoded = [Float](repeating: 0, count: inputs.count)
    encoded.withUnsafeBytes { FloatEncoding.float16.decode(&decoded, $0.baseAddress!, count: inputs.count) }
    var mismatches = 0
    for i in inputs.indices {
        let expectedBits = floatToFloat16Bits(inputs[i])
        if encoded[i] != expectedBits || rounded[i].bitPattern != float16BitsToFloat(expectedBits).bitPattern
            || decoded[i].bitPattern != float16BitsToFloat(expectedBits).bitPattern { mismatches += 1 }
    }
    #expect(mismatches == 0)
}
