// Float16 / BFloat16 <-> Float32 conversions with PyTorch's rounding (round to nearest even),
// as raw-pointer kernels and scalar helpers. No allocation. Bulk float16 loops run in C (F16C).
import CQLoRAKernels

/// IEEE half bits to Float32; exact for every input, subnormals, infinities and NaN included.
@inlinable @inline(__always)
public func float16BitsToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1F
    let mantissa = UInt32(h & 0x3FF)
    if exponent == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
    if exponent != 0 { return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13)) }
    // Subnormal half: mantissa * 2^-24, exact in Float32.
    let magnitude = Float(mantissa) * Float(bitPattern: 0x3380_0000)
    return Float(bitPattern: sign | magnitude.bitPattern)
}

/// Float32 to IEEE half bits, rounding to nearest even (as `torch.Tensor.half()`); overflow gives
/// infinity, NaN a quiet NaN. Bit arithmetic: `Float16(x)` is a library call on this target.
@inlinable @inline(__always)
public func floatToFloat16Bits(_ x: Float) -> UInt16 {
    let bits = x.bitPattern
    let sign = UInt16(truncatingIfNeeded: (bits >> 16) & 0x8000)
    let magnitude = bits & 0x7FFF_FFFF
    if magnitude > 0x7F80_0000 { return sign | 0x7E00 }  // NaN
    if magnitude >= 0x477F_F000 { return sign | 0x7C00 }  // >= 65520 rounds to infinity (ties to even)
    if magnitude < 0x3880_0000 {  // below the smallest normal half: subnormal or zero
        // Adding 0.5 makes the FPU round the mantissa to the half-subnormal grid (nearest even).
        let shifted = Float(bitPattern: magnitude) + 0.5
        return sign | UInt16(truncatingIfNeeded: shifted.bitPattern &- 0x3F00_0000)
    }
    let odd = (magnitude >> 13) & 1
    let rounded = magnitude &+ 0xC800_0FFF &+ odd  // rebias exponent by -112, add rounding bias
    return sign | UInt16(truncatingIfNeeded: rounded >> 13)
}

/// BFloat16 bits to Float32 (exact).
@inlinable @inline(__always)
public func bfloat16BitsToFloat(_ b: UInt16) -> Float {
    Float(bitPattern: UInt32(b) << 16)
}

/// Float32 to BFloat16 bits, rounding to nearest even; NaN stays a quiet NaN (as c10::BFloat16).
@inlinable @inline(__always)
public func floatToBFloat16Bits(_ x: Float) -> UInt16 {
    let bits = x.bitPattern
    if x.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x0040) }
    let rounding = 0x7FFF &+ ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
}

/// The 16/32-bit float encodings of checkpoint tensors.
public enum FloatEncoding: String, Sendable, CaseIterable {
    case float32, float16, bfloat16

    public var byteWidth: Int { self == .float32 ? 4 : 2 }

    /// Decodes `count` little-endian values at `source` into `out`. Overwrites `out`.
    public func decode(_ out: UnsafeMutablePointer<Float>, _ source: UnsafeRawPointer, count: Int) {
        switch self {
        case .float32:
            UnsafeMutableRawPointer(out).copyMemory(from: source, byteCount: 4 * count)
        case .float16:
            if Int(bitPattern: source) % 2 == 0 {
                qlora_float16_to_float(out, source.assumingMemoryBound(to: UInt16.self), count)
            } else {
                for i in 0..<count { out[i] = float16BitsToFloat(source.loadUnaligned(fromByteOffset: 2 &* i, as: UInt16.self)) }
            }
        case .bfloat16:
            if Int(bitPattern: source) % 2 == 0 {
                qlora_bfloat16_to_float(out, source.assumingMemoryBound(to: UInt16.self), count)
            } else {
                for i in 0..<count { out[i] = bfloat16BitsToFloat(source.loadUnaligned(fromByteOffset: 2 &* i, as: UInt16.self)) }
            }
        }
    }

    /// Encodes `count` values into `destination` (little-endian). Overwrites.
    public func encode(_ destination: UnsafeMutableRawPointer, _ values: UnsafePointer<Float>, count: Int) {
        switch self {
        case .float32:
            destination.copyMemory(from: values, byteCount: 4 * count)
        case .float16:
            if Int(bitPattern: destination) % 2 == 0 {
                qlora_float_to_float16(destination.assumingMemoryBound(to: UInt16.self), values, count)
            } else {
                for i in 0..<count { destination.storeBytes(of: floatToFloat16Bits(values[i]), toByteOffset: 2 &* i, as: UInt16.self) }
            }
        case .bfloat16:
            for i in 0..<count { destination.storeBytes(of: floatToBFloat16Bits(values[i]), toByteOffset: 2 &* i, as: UInt16.self) }
        }
    }

    /// Rounds values in place to this encoding's precision (a round trip through it).
    public func round(_ values: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .float32: return
        case .float16: qlora_round_to_float16(values, count)
        case .bfloat16: for i in 0..<count { values[i] = bfloat16BitsToFloat(floatToBFloat16Bits(values[i])) }
        }
    }
}
