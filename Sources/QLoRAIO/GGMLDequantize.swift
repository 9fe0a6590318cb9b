// GGML tensor types (ggml.h numbering and block sizes) and scalar dequantization of the common
// ones into Float32, following ggml's dequantize_row_* in ggml/src/ggml-quants.c operation by
// operation, so results are bit-identical to gguf-py's gguf.quants.dequantize. Quantizing into GGML
// formats and the IQ*/TQ*/FP4 codebook formats are left out.
import QLoRAKernels

/// A tensor element type of ggml / GGUF, numbered as `enum ggml_type` in ggml.h (gguf-py
/// `GGMLQuantizationType`, gguf 0.19.0). Ids 4, 5 (removed Q4_2/Q4_3) and 31-33, 36-38 (removed
/// repacked layouts) are unassigned.
public enum GGMLType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_XXS = 16, iq2_XS = 17, iq3_XXS = 18, iq1_S = 19, iq4_NL = 20, iq3_S = 21, iq2_S = 22, iq4_XS = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_M = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39, nvfp4 = 40, q1_0 = 41

    /// ggml's name for the type, e.g. "Q4_K", "BF16".
    public var description: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"
        case .q8_1: return "Q8_1"
        case .q2_K: return "Q2_K"
        case .q3_K: return "Q3_K"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        case .q8_K: return "Q8_K"
        case .iq2_XXS: return "IQ2_XXS"
        case .iq2_XS: return "IQ2_XS"
        case .iq3_XXS: return "IQ3_XXS"
        case .iq1_S: return "IQ1_S"
        case .iq4_NL: return "IQ4_NL"
        case .iq3_S: return "IQ3_S"
        case .iq2_S: return "IQ2_S"
        case .iq4_XS: return "IQ4_XS"
        case .i8: return "I8"
        case .i16: return "I16"
        case .i32: return "I32"
        case .i64: return "I64"
        case .f64: return "F64"
        case .iq1_M: return "IQ1_M"
        case .bf16: return "BF16"
        case .tq1_0: return "TQ1_0"
        case .tq2_0: return "TQ2_0"
        case .mxfp4: return "MXFP4"
        case .nvfp4: return "NVFP4"
        case .q1_0: return "Q1_0"
        }
    }

    /// Elements per block (ggml `blck_size`); a row's length must be a multiple of it.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16, .f64, .i8, .i16, .i32, .i64: return 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_NL, .mxfp4: return 32
        case .nvfp4: return 64
        case .q1_0: return 128
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .iq2_XXS, .iq2_XS, .iq3_XXS, .iq1_S, .iq3_S, .iq2_S,
             .iq4_XS, .iq1_M, .tq1_0, .tq2_0:
            return GGMLType.superBlock
        }
    }

    /// Bytes per block (ggml `type_size`, the `sizeof(block_*)` pinned by static_asserts in ggml-common.h).
    public var typeSize: Int {
        switch self {
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .f64, .i64: return 8
        case .i8: return 1
        case .q4_0: return 18  // f16 d, u8 qs[16]
        case .q4_1: return 20  // f16 d, f16 m, u8 qs[16]
        case .q5_0: return 22  // f16 d, u8 qh[4], u8 qs[16]
        case .q5_1: return 24  // f16 d, f16 m, u8 qh[4], u8 qs[16]
        case .q8_0: return 34  // f16 d, i8 qs[32]
        case .q8_1: return 36  // f16 d, f16 s, i8 qs[32]
        case .q2_K: return 84  // u8 scales[16], u8 qs[64], f16 d, f16 dmin
        case .q3_K: return 110  // u8 hmask[32], u8 qs[64], u8 scales[12], f16 d
        case .q4_K: return 144  // f16 d, f16 dmin, u8 scales[12], u8 qs[128]
        case .q5_K: return 176  // f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]
        case .q6_K: return 210  // u8 ql[128], u8 qh[64], i8 scales[16], f16 d
        case .q8_K: return 292  // f32 d, i8 qs[256], i16 bsums[16]
        case .iq2_XXS: return 66
        case .iq2_XS: return 74
        case .iq3_XXS: return 98
        case .iq1_S: return 50
        case .iq4_NL: return 18
        case .iq3_S: return 110
        case .iq2_S: return 82
        case .iq4_XS: return 136
        case .iq1_M: return 56
        case .tq1_0: return 54
        case .tq2_0: return 66
        case .mxfp4: return 17
        case .nvfp4: return 36
        case .q1_0: return 18
        }
    }

    /// True when `ggmlDequantizeRow` handles this type.
    public var isDequantizable: Bool {
        switch self {
        case .f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K: return true
        default: return false
        }
    }

    /// The types `ggmlDequantizeRow` handles, in id order.
    public static let dequantizable: [GGMLType] = allCases.filter(\.isDequantizable)

    /// Elements in a K-quant super-block (ggml `QK_K`).
    public static let superBlock = 256

    /// Bytes of a row of `rowLength` elements, or nil when `rowLength` is negative, not a multiple
    /// of `blockSize`, or the byte count overflows `Int`.
    public func rowBytes(_ rowLength: Int) -> Int? {
        guard rowLength >= 0, rowLength % blockSize == 0 else { return nil }
        let (bytes, overflow) = (rowLength / blockSize).multipliedReportingOverflow(by: typeSize)
        return overflow ? nil : bytes
    }
}

/// Dequantizes `count` consecutive elements of a GGML tensor row into Float32, exactly as ggml's
/// `dequantize_row_<type>` (ggml-quants.c) does: the same products in the same order, with no
/// fused multiply-add, so the result is bit-identical to ggml's scalar path and to gguf-py.
///
/// Element `i` of block `b` is written to `out[b * blockSize + i]`; blocks are read from
/// `source + b * typeSize` with unaligned loads, so `source` needs no alignment.
/// - Parameters:
///   - out: `count` floats, overwritten. Must not overlap `source`.
///   - source: `count / type.blockSize * type.typeSize` bytes of blocks, little-endian.
///   - type: the block format; `type.isDequantizable` must hold.
///   - count: elements to produce.
/// - Precondition: `count >= 0`, `count % type.blockSize == 0`, `type.isDequantizable`.
public func ggmlDequantizeRow(_ out: UnsafeMutablePointer<Float>, _ source: UnsafeRawPointer, type: GGMLType, count: Int) {
    precondition(count >= 0 && count % type.blockSize == 0, "count \(count) is not a multiple of \(type)'s block size \(type.blockSize)")
    let blocks = count / type.blockSize
    switch type {
    case .f32:
        UnsafeMutableRawPointer(out).copyMemory(from: source, byteCount: 4 &* count)
    case .f16:
        for i in 0..<count { out[i] = float16BitsToFloat(source.loadUnaligned(fromByteOffset: 2 &* i, as: UInt16.self)) }
    case .bf16:
        for i in 0..<count { out[i] = bfloat16BitsToFloat(source.loadUnaligned(fromByteOffset: 2 &* i, as: UInt16.self)) }
    case .q4_0: dequantizeQ4_0(out, source, blocks: blocks)
    case .q4_1: dequantizeQ4_1(out, source, blocks: blocks)
    case .q5_0: dequantizeQ5_0(out, source, blocks: blocks)
    case .q5_1: dequantizeQ5_1(out, source, blocks: blocks)
    case .q8_0: dequantizeQ8_0(out, source, blocks: blocks)
    case .q2_K: dequantizeQ2_K(out, source, blocks: blocks)
    case .q3_K: dequantizeQ3_K(out, source, blocks: blocks)
    case .q4_K: dequantizeQ4_K(out, source, blocks: blocks)
    case .q5_K: dequantizeQ5_K(out, source, blocks: blocks)
    case .q6_K: dequantizeQ6_K(out, source, blocks: blocks)
    default:
        preconditionFailure("ggmlDequantizeRow: \(type) is not supported; supported: \(GGMLType.dequantizable)")
    }
}

// MARK: - 32-element blocks

@inline(__always)
private func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
    float16BitsToFloat(p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
}

/// Q4_0: `y[j] = ((qs[j] & 0xF) - 8) * d`, `y[j+16] = ((qs[j] >> 4) - 8) * d`.
private func dequantizeQ4_0(_ out: UnsafeMutablePointer<Float>, _ source: UnsafeRawPointer, blocks: Int) {
    for b in 0..<blocks {
        let x = source + b &* 18
        let y = out + b &* 32
        let d = half(x, 0)
        let qs = x + 2
        for j in 0..<16 {
            let q = qs.load(fromByteOffset: j, as: UInt8.self)
            y[j] = Float(Int32(q & 0x0F) &- 8) * d
            y[j &+ 16] = Float(Int32(q >> 4) &- 8) * d
        }
    }
}

/// Q4_1: `y[j] = (qs[j] & 0xF) * d + m`, `y[j+16] = (qs[j] >> 4) * d + m` (two roundings, no FMA).
private func dequantizeQ4_1(_ out: UnsafeMutablePointer<Float>, _ source: UnsafeRawPointer, blocks: Int) {
    for b in 0..<blocks {
        let x = source + b &* 20
        let y = out + b &* 32
        let d = half(x, 0)
        let m = half(x, 2)
        let qs = x + 4
        for j in 0..<16 {
            let q = qs.load(fromByteOffset: j, as: UInt8.self)
            y[j] = Float(q & 0x0F) * d + m
            y[j &+ 16] = Float(q >> 4) * d + m
        }
    }
}

/// Q5_0: the 5th bit of element j is bit j of the little-endian u32 `qh`; value `(q - 16) * d`.
private func dequantizeQ5_0(_ out: UnsafeMutablePointer<Float>, _ source: UnsafeRawPointer, blocks: Int) {
    for b in 0..<blocks {
        let x = source + b &* 22
        let y = out + b &* 32
        let d = half(x, 0)
        let qh = UInt32(littleEndian: x.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
        let qs = x + 6
        for j in 0..<16 {
            let q = qs.load(fromByteOffset: j, as: UInt8.self)
            let h0 = UInt8(truncatingIfNeeded: (qh >> UInt32(j)) << 4) & 0x10
            let h1 = UInt8(truncatingIfNeeded: qh >> UInt32(j &+ 12)) & 0x10
            y[j] = Float(Int32((q & 0x0F) | h0) &- 16) * d
            y[j &+ 16] = Float(Int32((q >> 4) | h1) &- 16) * d
        }
    }
}

/// Q5_1: as Q5_0 without the -16 offset, plus `m`: `q * d + m`.
private func dequantizeQ5_1(_ out: UnsafeMutablePointer<Float>, _ source: UnsafeRawPointer, blocks: Int) {
    for b in 0..<blocks {
        let x = source + b &* 24
        let y = out + b &* 32
        let d = half(x, 0)
        let m = half(x, 2)
        let qh = UInt32(littleEndian: x.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let qs = x + 8
        for j in 0..<16 {
            let q = qs.load(fromByteOffset: j, as: UInt8.self)
            let h0 = UInt8(truncatingIfNeeded: (qh >> UInt32(j)) << 4) & 0x10
            let h1 = UInt8(truncatingIfNeeded: qh >> UInt32(j &+ 12)) & 0x10
            y[j] = Float((q & 0x0F) | h0) * d + m
            y[j &+ 16] = Float((q >> 4) | h1) * d + m
        }
    }
}

/// Q8_0: `y[j] = qs[j] * d` with `qs` signed.
private func dequantizeQ8_0(_ out: UnsafeMutablePointer<Float>, _ source: UnsafeRawPointer, blocks: Int) {
    for b in 0..<blocks {
        let x = source + b &* 34
        let y = out + b &* 32
        let d = half(x, 0)
        let qs = x + 2
        for j in 0..<32 { y[j] = Float(qs.load(fromByteOffset: j, as: Int8.self)) * d }
    }
}

// MARK: - 256-element K-quant super-blocks

/// Q2_K: 16 groups of 16; `scales[g]` holds the 4-bit scale (low) and min (high). Element
/// `128h + 32s + l` (half h, shift s, l < 32) is `((qs[32h + l] >> 2s) & 3)` in group `8h + 2s + l/16`;
/// value `(d * sc) * q - (dmin * mn)`.
private func dequantizeQ2_K(_ out: UnsafeMutablePointer<Float>, _ source: UnsafeRawPointer, blocks: Int) {
    for b in 0..<blocks {
        let x = source + b &* 84
        var y = out + b &* 256
        let scales = x
        let d = half(x, 80)
        let dmin = half(x, 82)
        var q = x + 16
        var group = 0
        for _ in 0..<2 {
            var shift: UInt8 = 0
            for _ in 0..<4 {
                for part in 0..<2 {
                    let sc = scales.load(fromByteOffset: group, as: UInt8.self)
                    group &+= 1
                    let dl = d * Float(sc & 0x0F)
                    let ml = dmin * Float(sc >> 4)
                    let qp = q + 16 &* part
                    for l in 0..<16 {
                        y[l] = dl * Float((qp.load(fromByteOffset: l, as: UInt8.self) >> shift) & 3) - ml
                    }
                    y += 16
                }
                shift &+= 2
            }
            q += 32
        }
    }
}

/// Q3_K: 16 groups of 16 with signed 6-bit scales (low 4 bits in `scales[0..<8]` nibbles, high 2
/// bits in `scales[8..<12]`), minus 32. Element `128h + 32s + l` has low bits `(qs[32h + l] >> 2s) & 3`
/// and subtracts 4 unless bit `4h + s` of `hmask[l]` is set; value `(d * (sc - 32)) * q`.
private func dequantizeQ3_K(_ out: UnsafeMutablePointer<Float>, _ source: UnsafeRawPointer, blocks: Int) {
    for b in 0..<blocks {
        let x = source + b &* 110
        var y = out + b &* 256
        let hm = x
        var q = x + 32
        let packed = x + 96
        let dAll = half(x, 108)
        var mask: UInt8 = 1
        var group = 0
        for _ in 0..<2 {
            var shift: UInt8 = 0
            for _ in 0..<4 {
                for part in 0..<2 {
                    // 6-bit scale `group`: low nibble from byte group % 8 (high nibble when group >= 8),
                    // high two bits from byte 8 + group % 4 at bit 2 * (group / 4).
                    let low = (packed.load(fromByteOffset: group & 7, as: UInt8.self) >> (group < 8 ? 0 : 4)) & 0x0F
                    let high = (packed.load(fromByteOffset: 8 &+ (group & 3), as: UInt8.self) >> UInt8(2 &* (group >> 2))) & 3
                    let scale = Int32(low | (high << 4)) &- 32
                    group &+= 1
                    let dl = dAll * Float(scale)
                    let offset = 16 &* part
                    for l in 0..<16 {
                        let low2 = Int32((q.load(fromByteOffset: offset &+ l, as: UInt8.self) >> shift) & 3)
                        let sub: Int32 = hm.load(fromByteOffset: offset &+ l, as: UInt8.self) & mask != 0 ? 0 : 4
                        y[l] = dl * Float(low2 &- sub)
                    }
                    y += 16
                }
                shift &+= 2
                mask <<= 1
            }
            q += 32
        }
    }
}

/// The 6-bit scale and min of sub-block `j` (0..<8) of a Q4_K/Q5_K block (ggml `get_scale_min_k4`).
@inline(__always)
private func scaleMinK4(_ j: Int, _ s: UnsafeRawPointer) -> (scale: UInt8, min: UInt8) {
    if j < 4 {
        return (s.load(fromByteOffset: j, as: UInt8.self) & 63, s.load(fromByteOffset: j &+ 4, as: UInt8.self) & 63)
    }
    let packed = s.load(fromByteOffset: j &+ 4, as: UInt8.self)
    let scale = (packed & 0x0F) | ((s.load(fromByteOffset: j &- 4, as: UInt8.self) >> 6) << 4)
    let min = (packed >> 4) | ((s.load(fromByteOffset: j, as: UInt8.self) >> 6) << 4)
    return (scale, min)
}

/// Q4_K: 8 sub-blocks of 32. Sub-blocks 2i and 2i+1 share `qs[32i..<32i+32]` (low, high nibble);
/// value `(d * sc) * q - (dmin * m)`.
private func dequantizeQ4_K(_ out: UnsafeMutablePointer<Float>, _ source: UnsafeRawPointer, blocks: Int) {
    for b in 0..<blocks {
        let x = source + b &* 144
        var y = out + b &* 256
        let d = half(x, 0)
        let dmin = half(x, 2)
        let scales = x + 4
        var q = x + 16
        for pair in 0..<4 {
            let (sc1, m1) = scaleMinK4(2 &* pair, scales)
            let (sc2, m2) = scaleMinK4(2 &* pair &+ 1, scales)
            let d1 = d * Float(sc1), min1 = dmin * Float(m1)
            let d2 = d * Float(sc2), min2 = dmin * Float(m2)
            for l in 0..<32 { y[l] = d1 * Float(q.load(fromByteOffset: l, as: UInt8.self) & 0x0F) - min1 }
            for l in 0..<32 { y[32 &+ l] = d2 * Float(q.load(fromByteOffset: l, as: UInt8.self) >> 4) - min2 }
            y += 64
            q += 32
        }
    }
}

/// Q5_K: Q4_K plus a 5th bit: element l of sub-block 2i takes bit 2i of `qh[l]`, of sub-block
/// 2i+1 bit 2i+1 (adds 16).
private func dequantizeQ5_K(_ out: UnsafeMutablePointer<Float>, _ source: UnsafeRawPointer, blocks: Int) {
    for b in 0..<blocks {
        let x = source + b &* 176
        var y = out + b &* 256
        let d = half(x, 0)
        let dmin = half(x, 2)
        let scales = x + 4
        let qh = x + 16
        var ql = x + 48
        var u1: UInt8 = 1, u2: UInt8 = 2
        for pair in 0..<4 {
            let (sc1, m1) = scaleMinK4(2 &* pair, scales)
            let (sc2, m2) = scaleMinK4(2 &* pair &+ 1, scales)
            let d1 = d * Float(sc1), min1 = dmin * Float(m1)
            let d2 = d * Float(sc2), min2 = dmin * Float(m2)
            for l in 0..<32 {
                let h: UInt8 = qh.load(fromByteOffset: l, as: UInt8.self) & u1 != 0 ? 16 : 0
                y[l] = d1 * Float((ql.load(fromByteOffset: l, as: UInt8.self) & 0x0F) &+ h) - min1
            }
            for l in 0..<32 {
                let h: UInt8 = qh.load(fromByteOffset: l, as: UInt8.self) & u2 != 0 ? 16 : 0
                y[32 &+ l] = d2 * Float((ql.load(fromByteOffset: l, as: UInt8.self) >> 4) &+ h) - min2
            }
            y += 64
            ql += 32
            u1 <<= 2
            u2 <<= 2
        }
    }
}

/// Q6_K: 16 groups of 16 with signed 8-bit scales. In half h, element `128h + 32k + l` (k < 4)
/// takes low nibble `ql[64h + l + 32(k & 1)]` (high nibble for k >= 2) and bits `2k..2k+1` of
/// `qh[32h + l]`, minus 32; value `(d * sc[8h + l/16 + 2k]) * q`.
private func dequantizeQ6_K(_ out: UnsafeMutablePointer<Float>, _ source: UnsafeRawPointer, blocks: Int) {
    for b in 0..<blocks {
        let x = source + b &* 210
        var y = out + b &* 256
        var ql = x
        var qh = x + 128
        var sc = x + 192
        let d = half(x, 208)
        for _ in 0..<2 {
            for l in 0..<32 {
                let group = l >> 4
                let lo0 = ql.load(fromByteOffset: l, as: UInt8.self)
                let lo1 = ql.load(fromByteOffset: l &+ 32, as: UInt8.self)
                let hi = qh.load(fromByteOffset: l, as: UInt8.self)
                let q1 = Int32((lo0 & 0x0F) | ((hi & 3) << 4)) &- 32
                let q2 = Int32((lo1 & 0x0F) | (((hi >> 2) & 3) << 4)) &- 32
                let q3 = Int32((lo0 >> 4) | (((hi >> 4) & 3) << 4)) &- 32
                let q4 = Int32((lo1 >> 4) | (((hi >> 6) & 3) << 4)) &- 32
                y[l] = d * Float(sc.load(fromByteOffset: group, as: Int8.self)) * Float(q1)
                y[l &+ 32] = d * Float(sc.load(fromByteOffset: group &+ 2, as: Int8.self)) * Float(q2)
                y[l &+ 64] = d * Float(sc.load(fromByteOffset: group &+ 4, as: Int8.self)) * Float(q3)
                y[l &+ 96] = d * Float(sc.load(fromByteOffset: group &+ 6, as: Int8.self)) * Float(q4)
            }
            y += 128
            ql += 64
            qh += 32
            sc += 8
        }
    }
}

extension GGUFFile {
    /// Dequantizes rows `firstRow..<firstRow + rowCount` of `tensor` into `out`, row-major
    /// `(rowCount, tensor.rowLength)` Float32, straight from the memory map. Overwrites `out`.
    /// Read-only on the file, so disjoint row ranges may be dequantized concurrently.
    /// - Parameters:
    ///   - tensor: a tensor of this file.
    ///   - out: `rowCount * tensor.rowLength` floats.
    /// - Precondition: `0 <= firstRow`, `firstRow + rowCount <= tensor.rowCount`,
    ///   `tensor.type.isDequantizable` (check with `requireDequantizable` first), and the tensor's
    ///   range lies in this file.
    public func dequantizeRows(of tensor: GGUFTensorInfo, firstRow: Int, rowCount: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(firstRow >= 0 && rowCount >= 0 && firstRow <= tensor.rowCount - rowCount,
                     "rows \(firstRow)..<\(firstRow + rowCount) outside tensor '\(tensor.name)' with \(tensor.rowCount) rows")
        precondition(tensor.type.isDequantizable, "tensor '\(tensor.name)' has type \(tensor.type), which cannot be dequantized")
        guard rowCount > 0, tensor.rowLength > 0 else { return }
        guard let base = file.bytes(at: tensor.dataOffset, count: tensor.byteCount) else {
            preconditionFailure("tensor '\(tensor.name)' does not lie in \(path)")
        }
        let rowLength = tensor.rowLength
        let rowBytes = tensor.rowBytes
        for r in 0..<rowCount {
            ggmlDequantizeRow(out + r &* rowLength, base + (firstRow &+ r) &* rowBytes, type: tensor.type, count: rowLength)
        }
    }
}
