// Blockwise NF4 quantize / dequantize kernels on raw pointers, bit-exact with bitsandbytes 0.50.2
// (`backends/default/ops.py` quantize_4bit, `cpu_ops.cpp` dequantizeBlockwise4bitCpu).
// Each has a scalar twin in `Reference`; the fast loops are C (CQLoRAKernels, vectorized by
// clang). Double quantization of the absmax values lives in DoubleQuant.swift.
import CQLoRAKernels
import QLoRAKernels

/// Quantizes `count` values to NF4: one absmax per `blockSize` run, two codes per byte.
///
/// Math (bnb): full blocks use `s = clamp(x * (1 / max(absmax, 1e-38)), -1, 1)`; a trailing partial
/// block uses `s = clamp(x / max(absmax, 1e-38), -1, 1)` and stores the clamped absmax. The code is
/// the number of `NF4.boundaries` strictly below `s`. Element 2i goes to the high nibble of byte i.
/// An odd count pads the last low nibble with `NF4.zeroNibble`.
/// - Parameters:
///   - packed: `(count + 1) / 2` bytes, overwritten.
///   - absmax: `ceil(count / blockSize)` floats, overwritten.
///   - input: `count` floats (a whole tensor, or a chunk that starts on a block boundary).
/// - Returns: false when `input` holds a NaN or an infinity (outputs are then unspecified).
/// - Precondition: `blockSize` is positive and even.
@discardableResult
public func nf4Quantize(
    _ packed: UnsafeMutablePointer<UInt8>, _ absmax: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>,
    count: Int, blockSize: Int
) -> Bool {
    precondition(blockSize > 0 && blockSize % 2 == 0 && blockSize <= 4096 && count >= 0)
    let fullBlocks = count / blockSize
    var finite = qlora_nf4_quantize_blocks(packed, absmax, input, fullBlocks, blockSize) == 0
    let tail = count - fullBlocks * blockSize
    if tail > 0 {
        finite = Reference.quantizeTailBlock(packed, absmax + fullBlocks, input + fullBlocks * blockSize, count: tail,
                                             byteOffset: fullBlocks * blockSize / 2) && finite
    }
    return finite
}

/// Dequantizes NF4: `out[i] = NF4.code[nibble(i)] * absmax[i / blockSize]`, the product in Float32
/// (as bnb's `dequantizeBlockwise4bitCpu`). Overwrites `out` (`count` floats); no aliasing.
public func nf4Dequantize(
    _ out: UnsafeMutablePointer<Float>, _ packed: UnsafePointer<UInt8>, _ absmax: UnsafePointer<Float>,
    count: Int, blockSize: Int
) {
    precondition(blockSize > 0 && blockSize % 2 == 0 && count >= 0)
    NF4.code.withUnsafeBufferPointer { qlora_nf4_dequantize(out, packed, absmax, $0.baseAddress!, count, blockSize) }
}

/// Scalar twins of the NF4 kernels, written for clarity; tests check the fast paths against them.
/// The block scales of an NF4 tensor: plain Float32 absmax values, or bnb's double quantization
/// (8-bit codes into `map`, times a nested Float32 scale per `nestedBlockSize` codes, plus `offset`).
public enum NF4BlockScales {
    case plain(UnsafePointer<Float>)
    case doubleQuantized(codes: UnsafePointer<UInt8>, nested: UnsafePointer<Float>, offset: Float, map: UnsafePointer<Float>, nestedBlockSize: Int)
}

/// Dequantizes the tile `W[rows, cols]` of an NF4 matrix `width` columns wide (blocks of `blockSize`
/// over the flattened row-major tensor, so a block may straddle rows) into `out` (rows.count,
/// cols.count) row-major; block scales are decoded on the fly. Overwrites `out`; the same products
/// as `nf4Dequantize` (double-quantized scales decoded as `DoubleQuantizedAbsmax.decode`), so
/// identical bits.
public func nf4DecodeTile(
    _ out: UnsafeMutablePointer<Float>, packed: UnsafePointer<UInt8>, scales: NF4BlockScales, width: Int,
    rows: Range<Int>, cols: Range<Int>, blockSize: Int
) {
    precondition(rows.lowerBound >= 0 && cols.lowerBound >= 0 && cols.upperBound <= width && blockSize > 0 && blockSize % 2 == 0)
    switch scales {
    case .plain(let absmax):
        qlora_nf4_decode_tile(out, packed, nil, absmax, 0, nil, 1, NF4.codePointer, width, rows.lowerBound, rows.count,
                              cols.lowerBound, cols.count, blockSize)
    case .doubleQuantized(let codes, let nested, let offset, let map, let nestedBlockSize):
        precondition(nestedBlockSize > 0)
        qlora_nf4_decode_tile(out, packed, codes, nested, offset, map, nestedBlockSize, NF4.codePointer, width, rows.lowerBound,
                              rows.count, cols.lowerBound, cols.count, blockSize)
    }
}

extension Reference {
    /// Scalar twin of `nf4DecodeTile`: each element on its own, its block's scale decoded for it.
    public static func nf4DecodeTile(
        _ out: UnsafeMutablePointer<Float>, packed: UnsafePointer<UInt8>, scales: NF4BlockScales, width: Int,
        rows: Range<Int>, cols: Range<Int>, blockSize: Int
    ) {
        for (r, row) in rows.enumerated() {
            for (c, col) in cols.enumerated() {
                let i = row * width + col, block = i / blockSize
                let scale: Float = switch scales {
                case .plain(let absmax): absmax[block]
                case .doubleQuantized(let codes, let nested, let offset, let map, let nestedBlockSize):
                    map[Int(codes[block])] * nested[block / nestedBlockSize] + offset
                }
                let byte = packed[i / 2]
                out[r * cols.count + c] = NF4.code[Int(i % 2 == 0 ? byte >> 4 : byte & 15)] * scale
            }
        }
    }

    /// Scalar twin of `nf4Quantize`.
    @discardableResult
    public static func nf4Quantize(
        _ packed: UnsafeMutablePointer<UInt8>, _ absmax: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>,
        count: Int, blockSize: Int
    ) -> Bool {
        precondition(blockSize > 0 && blockSize % 2 == 0 && count >= 0)
        var finite = true
        let fullBlocks = count / blockSize
        for block in 0..<fullBlocks {
            let x = input + block * blockSize
            var blockMax: Float = 0
            for i in 0..<blockSize {
                if !x[i].isFinite { finite = false }
                blockMax = max(blockMax, abs(x[i]))
            }
            absmax[block] = blockMax
            let reciprocal = 1 / max(blockMax, NF4.minimumAbsmax)
            for i in stride(from: 0, to: blockSize, by: 2) {
                let high = nf4Code(scaled: x[i] * reciprocal)
                let low = nf4Code(scaled: x[i + 1] * reciprocal)
                packed[(block * blockSize + i) / 2] = high << 4 | low
            }
        }
        let tail = count - fullBlocks * blockSize
        if tail > 0 {
            finite = quantizeTailBlock(packed, absmax + fullBlocks, input + fullBlocks * blockSize, count: tail,
                                       byteOffset: fullBlocks * blockSize / 2) && finite
        }
        return finite
    }

    /// Scalar twin of `nf4Dequantize`.
    public static func nf4Dequantize(
        _ out: UnsafeMutablePointer<Float>, _ packed: UnsafePointer<UInt8>, _ absmax: UnsafePointer<Float>,
        count: Int, blockSize: Int
    ) {
        for i in 0..<count {
            let byte = packed[i / 2]
            let nibble = i % 2 == 0 ? byte >> 4 : byte & 15
            out[i] = NF4.code[Int(nibble)] * absmax[i / blockSize]
        }
    }

    /// The NF4 code of a value already divided by its absmax: clamp to [-1, 1], then count the
    /// boundaries strictly below it (a loop over the table, unlike the unrolled `nf4Bucket`).
    static func nf4Code(scaled: Float) -> UInt8 {
        let s = min(max(scaled, -1), 1)
        var code: UInt8 = 0
        for boundary in NF4.boundaries where boundary < s { code += 1 }
        return code
    }

    /// bnb's rule for the last, partial block: the absmax is clamped before it is stored, and the
    /// values are divided by it (not multiplied by its reciprocal).
    static func quantizeTailBlock(
        _ packed: UnsafeMutablePointer<UInt8>, _ absmax: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
        count: Int, byteOffset: Int
    ) -> Bool {
        var finite = true
        var blockMax: Float = 0
        for i in 0..<count {
            if !x[i].isFinite { finite = false }
            blockMax = max(blockMax, abs(x[i]))
        }
        let divisor = max(blockMax, NF4.minimumAbsmax)
        absmax[0] = divisor
        for i in stride(from: 0, to: count, by: 2) {
            let high = nf4Code(scaled: x[i] / divisor)
            let low = i + 1 < count ? nf4Code(scaled: x[i + 1] / divisor) : NF4.zeroNibble
            packed[byteOffset + i / 2] = high << 4 | low
        }
        return finite
    }
}
