// NF4 + double quantization against bitsandbytes 0.50.2 fixtures: every byte of the packed codes,
// the 8-bit absmax codes, the nested absmax, the offset, the quant_state JSON, and dequantization.
import Testing
import Foundation
import QLoRAKernels
import QLoRAQuant
import _TestSupport

struct NF4FixtureTests {
    static let fixture = try! Fixture("nf4")
    static let cases = (fixture.meta["cases"] as? [String]) ?? []

    /// The tests over `cases` pass vacuously when the manifest lists none.
    @Test func theFixtureListsItsCases() {
        #expect(Self.cases.count >= 4, "nf4 fixture cases: \(Self.cases)")
    }

    /// The fixture's input as Float32, and the dtype it was quantized from.
    static func input(_ name: String) -> ([Float], FloatEncoding) {
        let raw = fixture.bytes("\(name).input")
        let encoding: FloatEncoding = name.hasPrefix("bf16") ? .bfloat16 : name.hasPrefix("f16") ? .float16 : .float32
        let count = raw.count / encoding.byteWidth
        let values = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            raw.withUnsafeBytes { encoding.decode(buffer.baseAddress!, $0.baseAddress!, count: count) }
            initialized = count
        }
        return (values, encoding)
    }

    /// Quantizes a case in uneven chunks (multiples of the block size) to exercise streaming.
    static func quantize(_ name: String) -> (NF4TensorQuantizer, NF4QuantState) {
        let (values, encoding) = input(name)
        let shape = fixture.shape("\(name).input")
        var quantizer = NF4TensorQuantizer(shape: shape)
        values.withUnsafeBufferPointer { buffer in
            var start = 0
            var chunkBlocks = 1
            while start < values.count {
                let count = min(values.count - start, chunkBlocks * 64)
                let finite = quantizer.quantize(buffer.baseAddress! + start, count: count)
                #expect(finite)
                start += count
                chunkBlocks = chunkBlocks * 3 + 1
            }
        }
        let threads = fixture.meta["threads"] as? Int ?? 2
        return (quantizer, quantizer.finish(dtype: encoding, threads: threads))
    }

    @Test(arguments: cases)
    func packedCodesAndAbsmaxAreByteIdentical(name: String) {
        let (quantizer, state) = Self.quantize(name)
        let packed = compareBytes(quantizer.packed, Self.fixture.bytes("\(name).packed"))
        #expect(packed.passed, "packed codes: \(packed)")
        let codes = compareBytes(state.absmax.codes, Self.fixture.bytes("\(name).absmax"))
        #expect(codes.passed, "8-bit absmax codes: \(codes)")
        let nested = compare(state.absmax.nestedAbsmax, Self.fixture.floats("\(name).nested_absmax"), rtol: 0, atol: 0)
        #expect(nested.passed, "nested absmax: \(nested)")
        let offset = Self.fixture.floats("\(name).offset")[0]
        #expect(state.absmax.offset.bitPattern == offset.bitPattern, "offset \(state.absmax.offset) vs \(offset)")
        let json = String(decoding: state.quantStateJSON, as: UTF8.self)
        let expectedJSON = String(decoding: Self.fixture.bytes("\(name).quant_state"), as: UTF8.self)
        #expect(json == expectedJSON)
    }

    @Test(arguments: cases)
    func dequantizationMatchesBitsandbytes(name: String) {
        let (quantizer, state) = Self.quantize(name)
        #expect(state.blockScales(map: Self.fixture.floats("nested_quant_map")) == state.blockScales())
        var out = [Float](repeating: .nan, count: state.elementCount)
        state.dequantize(quantizer.packed, into: &out)
        // bnb dequantizes to the original dtype; the fixture holds that value widened to Float32.
        state.dtype.round(&out, count: out.count)
        let result = compare(out, Self.fixture.floats("\(name).dequantized"), rtol: 0, atol: 0)
        #expect(result.passed, "\(result)")
    }

    @Test func codeTablesMatchBitsandbytes() {
        let nf4 = compare(NF4.code, Self.fixture.floats("quant_map"), rtol: 0, atol: 0)
        #expect(nf4.passed, "NF4 code table: \(nf4)")
        let dynamic = compare(DynamicMap.signed, Self.fixture.floats("nested_quant_map"), rtol: 0, atol: 0)
        #expect(dynamic.passed, "dynamic map: \(dynamic)")
    }
}

/// The double-quant offset is torch's float32 mean; its sum is emulated bit for bit.
struct TorchSumTests {
    @Test func sumAndMeanMatchTorchForEveryLengthAndThreadCount() throws {
        let fixture = try Fixture("torch_sum")
        let lengths = fixture.values("n", as: Int64.self)
        let threads = fixture.values("threads", as: Int64.self)
        let sums = fixture.floats("sum")
        let means = fixture.floats("mean")
        var failures: [String] = []
        for i in 0..<lengths.count {
            let n = Int(lengths[i])
            let values = splitmixAbsmaxLike(seed: UInt64(n), count: n)
            let sum = TorchFloat32Sum.sum(values, count: n, threads: Int(threads[i]))
            let mean = sum / Float(n)
            if sum.bitPattern != sums[i].bitPattern || mean.bitPattern != means[i].bitPattern {
                failures.append("n=\(n) threads=\(threads[i]): sum \(sum) vs \(sums[i]), mean \(mean) vs \(means[i])")
            }
        }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
    }

    /// tools/reference/make_fixtures.py `splitmix_floats`: (1 + (bits >> 41) * 2^-23) * 0.01, exact in Float32.
    func splitmixAbsmaxLike(seed: UInt64, count: Int) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in (1 + Float(rng.next() >> 41) * 0x1p-23) * 0.01 }
    }
}
