// NF4 matmul (decode a tile of the frozen weight into scratch, then sgemm) against dense sgemm on
// the same shapes, forward `Y = X W^T` and backward `dX = dY W`, on the projections (and lm_head) of
// the small training shape, SmolLM2-135M, TinyLlama-1.1B and Llama-7B at M = 256..2048 rows. Each NF4 result is first checked against
// sgemm on the dequantized weight. Output: one JSON object on stdout, a line per case on stderr.
// Usage: matmul-bench [--groups small,smollm2,tinyllama,llama7b] [--rows 256,512,1024,2048] [--runs 5]
//                     [--tile-capacity FLOATS] [--strip-width COLUMNS]
import BenchmarkSupport
import Foundation
import QLoRAKernels
import QLoRAModel
import QLoRAQuant

nonisolated(unsafe) let bench = Benchmark("matmul-bench")
func fail(_ message: String) -> Never { bench.fail(message) }

let allGroups: [String: [(out: Int, in: Int)]] = [
    "small": [(512, 512), (1376, 512), (512, 1376), (32000, 512)],
    "smollm2": [(576, 576), (192, 576), (1536, 576), (576, 1536)],
    "tinyllama": [(2048, 2048), (256, 2048), (5632, 2048), (2048, 5632)],
    "llama7b": [(4096, 4096), (11008, 4096), (4096, 11008)],
]
let groups = bench.option("--groups", "small,smollm2,tinyllama,llama7b").split(separator: ",").map(String.init)
let rowCounts = bench.option("--rows", "256,512,1024,2048").split(separator: ",").compactMap { Int($0) }
let runs = bench.intOption("--runs", 5)
let capacity = bench.intOption("--tile-capacity", TileScratch.defaultCapacity)
let stripWidth = bench.intOption("--strip-width", 1024)
do { try BLAS.load() } catch { fail("\(error)") }

func median(_ body: () -> Void) -> Double { medianSeconds(runs: runs, body) }

func normals(_ count: Int, seed: UInt64, std: Float) -> UnsafeMutablePointer<Float> {
    let pointer = UnsafeMutablePointer<Float>.allocate(capacity: count)
    fillNormal(pointer, count: count, seed: seed, std: std)
    return pointer
}

/// Largest |a - b| relative to the largest |b|.
func relativeError(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Double {
    var worst: Float = 0, scale: Float = 0
    for i in 0..<count {
        worst = max(worst, abs(a[i] - b[i]))
        scale = max(scale, abs(b[i]))
    }
    return Double(worst / scale)
}

let scratch = TileScratch(capacity: capacity)
var records: [[String: Any]] = []
for group in groups {
    guard let shapes = allGroups[group] else { fail("unknown group \(group)") }
    for (outFeatures, inFeatures) in shapes {
        let count = outFeatures * inFeatures
        let weights = normals(count, seed: UInt64(count), std: 0.02)
        var quantizer = NF4TensorQuantizer(shape: [outFeatures, inFeatures])
        guard quantizer.quantize(weights, count: count) else { fail("non-finite weights") }
        let state = quantizer.finish(dtype: .float32)
        // The dense baseline multiplies by the dequantized weight, so both compute the same product.
        state.dequantize(quantizer.packed, into: weights)
        let packed = quantizer.packed, codes = state.absmax.codes, nested = state.absmax.nestedAbsmax
        packed.withUnsafeBufferPointer { packedBuffer in
        codes.withUnsafeBufferPointer { codeBuffer in
        nested.withUnsafeBufferPointer { nestedBuffer in
            let nf4 = FrozenMatrix(rows: outFeatures, cols: inFeatures, storage: .nf4DoubleQuant(
                packed: packedBuffer.baseAddress!, scaleCodes: codeBuffer.baseAddress!, nestedScales: nestedBuffer.baseAddress!,
                offset: state.absmax.offset, map: DynamicMap.signedPointer, blockSize: state.blockSize))
            let forwardTile = TileShape.forward(rows: outFeatures, cols: inFeatures, capacity: capacity, stripWidth: stripWidth)
            let backwardTile = TileShape.backward(rows: outFeatures, cols: inFeatures, capacity: capacity)
            for m in rowCounts {
                let x = normals(m * inFeatures, seed: 7, std: 1), dy = normals(m * outFeatures, seed: 8, std: 1)
                let y = UnsafeMutablePointer<Float>.allocate(capacity: m * outFeatures), yDense = UnsafeMutablePointer<Float>.allocate(capacity: m * outFeatures)
                let dx = UnsafeMutablePointer<Float>.allocate(capacity: m * inFeatures), dxDense = UnsafeMutablePointer<Float>.allocate(capacity: m * inFeatures)
                defer { [x, dy, y, yDense, dx, dxDense].forEach { $0.deallocate() } }
                frozenMatmulForward(y, x, nf4, rows: m, scratch: scratch, tile: forwardTile)
                BLAS.sgemm(yDense, x, weights, m: m, n: outFeatures, k: inFeatures, transposeB: true)
                frozenMatmulBackward(dx, dy, nf4, rows: m, scratch: scratch)
                BLAS.sgemm(dxDense, dy, weights, m: m, n: inFeatures, k: outFeatures, transposeB: false)
                let forwardError = relativeError(y, yDense, count: m * outFeatures)
                let backwardError = relativeError(dx, dxDense, count: m * inFeatures)
                guard forwardError < 1e-5, backwardError < 1e-5 else {
                    fail("NF4 matmul differs from sgemm on the dequantized weight at \(m)x\(outFeatures)x\(inFeatures): \(forwardError), \(backwardError)")
                }
                let denseForward = median { BLAS.sgemm(yDense, x, weights, m: m, n: outFeatures, k: inFeatures, transposeB: true) }
                let nf4Forward = median { frozenMatmulForward(y, x, nf4, rows: m, scratch: scratch, tile: forwardTile) }
                let denseBackward = median { BLAS.sgemm(dxDense, dy, weights, m: m, n: inFeatures, k: outFeatures, transposeB: false) }
                let nf4Backward = median { frozenMatmulBackward(dx, dy, nf4, rows: m, scratch: scratch) }
                let flops = 2.0 * Double(m) * Double(count)
                records.append([
                    "group": group, "m": m, "out": outFeatures, "in": inFeatures, "forward_tile": [forwardTile.rows, forwardTile.cols], "backward_tile": [backwardTile.rows, backwardTile.cols],
                    "forward_dense_GFLOPs": flops / denseForward / 1e9, "forward_nf4_GFLOPs": flops / nf4Forward / 1e9,
                    "forward_slowdown": nf4Forward / denseForward - 1,
                    "backward_dense_GFLOPs": flops / denseBackward / 1e9, "backward_nf4_GFLOPs": flops / nf4Backward / 1e9,
                    "backward_slowdown": nf4Backward / denseBackward - 1,
                ])
                FileHandle.standardError.write(Data(String(
                    format: "%@ M=%d %dx%d tiles %dx%d %dx%d: forward dense %.0f nf4 %.0f GFLOP/s (%+.1f%%), backward dense %.0f nf4 %.0f (%+.1f%%)\n",
                    group, m, outFeatures, inFeatures, forwardTile.rows, forwardTile.cols, backwardTile.rows, backwardTile.cols, flops / denseForward / 1e9, flops / nf4Forward / 1e9,
                    100 * (nf4Forward / denseForward - 1), flops / denseBackward / 1e9, flops / nf4Backward / 1e9,
                    100 * (nf4Backward / denseBackward - 1)).utf8))
            }
        }
        }
        }
        weights.deallocate()
    }
}
bench.report(["tile_capacity_floats": capacity, "strip_width": stripWidth, "runs": runs, "results": records])
