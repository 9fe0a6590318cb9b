// The SIMD NF4 kernels against their scalar twins over awkward sizes, and the quantization error
// of NF4 on normal data against bitsandbytes' own published bound.
import Testing
import CQLoRAKernels
import QLoRAKernels
import QLoRAQuant
import _TestSupport

struct NF4KernelTests {
    static let tailSizes = [1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 127, 128, 129, 191, 1000, 4099]

    static func normals(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            fillNormal(buffer.baseAddress!, count: count, seed: seed, std: scale)
            initialized = count
        }
    }

    /// Tiles of matrices whose width is no multiple of the block (blocks straddle rows), with plain
    /// and double-quantized scales, equal the scalar twin bit for bit.
    @Test(arguments: [(3, 7), (5, 176), (4, 64), (9, 65), (2, 300)], [false, true])
    func decodedTilesEqualReference(shape: (rows: Int, width: Int), doubleQuantized: Bool) {
        let count = shape.rows * shape.width, blockSize = 64, blocks = (count + blockSize - 1) / blockSize
        let input = Self.normals(count, seed: UInt64(count))
        var packed = [UInt8](repeating: 0, count: (count + 1) / 2), absmax = [Float](repeating: 0, count: blocks)
        nf4Quantize(&packed, &absmax, input, count: count, blockSize: blockSize)
        var random = SplitMix64(seed: 3)
        let codes = (0..<blocks).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let map = (0..<256).map { Float($0) / 255 }, nested = Self.normals((blocks + 255) / 256, seed: 9).map(abs)
        for (rows, cols) in [(0..<shape.rows, 0..<shape.width), (1..<shape.rows, 1..<shape.width), (shape.rows - 1..<shape.rows, shape.width / 2..<shape.width)] {
            var tile = [Float](repeating: .nan, count: rows.count * cols.count), expected = tile
            absmax.withUnsafeBufferPointer { a in codes.withUnsafeBufferPointer { c in nested.withUnsafeBufferPointer { n in map.withUnsafeBufferPointer { m in
                let scales: NF4BlockScales = doubleQuantized
                    ? .doubleQuantized(codes: c.baseAddress!, nested: n.baseAddress!, offset: 0.0123, map: m.baseAddress!, nestedBlockSize: 256)
                    : .plain(a.baseAddress!)
                nf4DecodeTile(&tile, packed: packed, scales: scales, width: shape.width, rows: rows, cols: cols, blockSize: blockSize)
                Reference.nf4DecodeTile(&expected, packed: packed, scales: scales, width: shape.width, rows: rows, cols: cols, blockSize: blockSize)
            } } } }
            #expect(tile.map(\.bitPattern) == expected.map(\.bitPattern), "\(shape) rows \(rows) cols \(cols)")
        }
    }

    @Test(arguments: tailSizes, [64, 128])
    func simdQuantizeEqualsReference(count: Int, blockSize: Int) {
        let input = Self.normals(count, seed: UInt64(count * 31 + blockSize))
        let blocks = (count + blockSize - 1) / blockSize
        var packed = [UInt8](repeating: 0xAA, count: (count + 1) / 2), absmax = [Float](repeating: -1, count: blocks)
        var refPacked = packed, refAbsmax = absmax
        #expect(nf4Quantize(&packed, &absmax, input, count: count, blockSize: blockSize))
        #expect(Reference.nf4Quantize(&refPacked, &refAbsmax, input, count: count, blockSize: blockSize))
        let bytes = compareBytes(packed, refPacked)
        #expect(bytes.passed, "\(bytes)")
        #expect(compare(absmax, refAbsmax, rtol: 0, atol: 0).passed)

        var out = [Float](repeating: .nan, count: count), refOut = out
        nf4Dequantize(&out, packed, absmax, count: count, blockSize: blockSize)
        Reference.nf4Dequantize(&refOut, packed, absmax, count: count, blockSize: blockSize)
        let values = compare(out, refOut, rtol: 0, atol: 0)
        #expect(values.passed, "\(values)")
    }

    /// Values on and one ulp around every bucket boundary: the C kernel's literal boundaries must
    /// be `NF4.boundaries` exactly, ties going to the lower code.
    @Test func boundaryValuesMatchReference() {
        var input: [Float] = [1]
        for boundary in NF4.boundaries { input += [boundary, boundary.nextUp, boundary.nextDown] }
        input += [Float](repeating: 0, count: 64 - input.count % 64)
        var packed = [UInt8](repeating: 0, count: input.count / 2), absmax = [Float](repeating: 0, count: input.count / 64)
        var refPacked = packed, refAbsmax = absmax
        nf4Quantize(&packed, &absmax, input, count: input.count, blockSize: 64)
        Reference.nf4Quantize(&refPacked, &refAbsmax, input, count: input.count, blockSize: 64)
        let bytes = compareBytes(packed, refPacked)
        #expect(bytes.passed, "\(bytes)")
    }

    /// Every dequantization path this CPU can run (scalar, AVX2, AVX-512) against the reference.
    @Test(arguments: tailSizes)
    func everyDequantizePathEqualsReference(count: Int) {
        let input = Self.normals(count, seed: UInt64(count))
        var packed = [UInt8](repeating: 0, count: (count + 1) / 2), absmax = [Float](repeating: 0, count: (count + 63) / 64)
        nf4Quantize(&packed, &absmax, input, count: count, blockSize: 64)
        var expected = [Float](repeating: .nan, count: count)
        Reference.nf4Dequantize(&expected, packed, absmax, count: count, blockSize: 64)
        for isa in 0...Int(qlora_best_isa()) {
            var out = [Float](repeating: .nan, count: count)
            NF4.code.withUnsafeBufferPointer { qlora_nf4_dequantize_isa(Int32(isa), &out, packed, absmax, $0.baseAddress!, count, 64) }
            let result = compare(out, expected, rtol: 0, atol: 0)
            #expect(result.passed, "instruction set \(isa): \(result)")
        }
    }

    @Test func nonFiniteInputIsReported() {
        for bad in [Float.nan, .infinity, -.infinity] {
            for position in [0, 63, 64, 100] {
                var input = Self.normals(130, seed: 5)
                input[position] = bad
                var packed = [UInt8](repeating: 0, count: 65), absmax = [Float](repeating: 0, count: 3)
                #expect(!nf4Quantize(&packed, &absmax, input, count: 130, blockSize: 64), "\(bad) at \(position)")
            }
        }
    }

    /// bitsandbytes tests/test_functional.py: NF4 on randn(1024, 1024), blocksize 64, has mean
    /// absolute error 0.072792 with std 0.000074 over seeds; allow 7 std above.
    @Test func meanAbsoluteErrorOnNormalDataIsWithinBitsandbytesBound() {
        let count = 1024 * 1024
        let input = Self.normals(count, seed: 42)
        var quantizer = NF4TensorQuantizer(shape: [1024, 1024])
        _ = input.withUnsafeBufferPointer { quantizer.quantize($0.baseAddress!, count: count) }
        let state = quantizer.finish(dtype: .float32)
        var out = [Float](repeating: 0, count: count)
        nf4Dequantize(&out, quantizer.packed, state.blockScales(), count: count, blockSize: 64)
        var errorSum = 0.0
        for i in 0..<count { errorSum += Double(abs(out[i] - input[i])) }
        let meanError = errorSum / Double(count)
        let bound = 0.072792 + 7 * 0.000074
        #expect(meanError < bound, "mean |error| \(meanError) vs bound \(bound)")
        #expect(meanError > 0.05, "error suspiciously small: \(meanError)")
    }

    @Test func formatConstantsArePinned() {
        #expect(NF4.code.count == 16 && NF4.code[7] == 0 && NF4.code[0] == -1 && NF4.code[15] == 1)
        #expect(NF4.boundaries.count == 15)
        #expect(DynamicMap.signed.count == 256)
        #expect(MemoryLayout<SIMD2<Float>>.size == 8)
    }
}

import Foundation
