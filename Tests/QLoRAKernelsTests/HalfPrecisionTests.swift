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
