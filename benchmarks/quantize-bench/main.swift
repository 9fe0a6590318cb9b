// NF4 quantize / dequantize throughput on the projection shapes of SmolLM2-135M, TinyLlama-1.1B and
// Llama-7B, the same shapes and operations as tools/bench_bnb.py measures for bitsandbytes, plus
// sgemm with the OpenBLAS kernels our loader picks. Every result is first checked against the
// scalar Reference kernels. Output: one JSON object on stdout.
import BenchmarkSupport
import Foundation
import QLoRAKernels
import QLoRAQuant

nonisolated(unsafe) let bench = Benchmark("quantize-bench")

let groups: [String: [(Int, Int)]] = [
    "smollm2": [(576, 576), (1536, 576), (576, 1536), (192, 576)],
    "tinyllama": [(2048, 2048), (5632, 2048), (2048, 5632), (256, 2048)],
    "llama7b": [(4096, 4096), (11008, 4096), (4096, 11008)],
]
let order = ["smollm2", "tinyllama", "llama7b"]
let runs = 7

/// Median wall time of `runs` calls after two warm-up calls.
func median(_ body: () -> Void) -> Double { medianSeconds(runs: runs, warmup: 2, body) }

/// Normal(0, 0.02) values (the distribution tools/bench_bnb.py uses).
func normals(_ count: Int, seed: UInt64) -> [Float] {
    [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
        fillNormal(buffer.baseAddress!, count: count, seed: seed, std: 0.02)
        initialized = count
    }
}

func fail(_ message: String) -> Never { bench.fail(message) }

var records: [[String: Any]] = []
for group in order {
    for (rows, columns) in groups[group]! {
        let n = rows * columns
        let weights = normals(n, seed: UInt64(n))
        // Check against the scalar reference before timing.
        var quantizer = NF4TensorQuantizer(shape: [rows, columns])
        guard weights.withUnsafeBufferPointer({ quantizer.quantize($0.baseAddress!, count: n) }) else { fail("non-finite input") }
        var refPacked = [UInt8](repeating: 0, count: (n + 1) / 2), refAbsmax = [Float](repeating: 0, count: (n + 63) / 64)
        Reference.nf4Quantize(&refPacked, &refAbsmax, weights, count: n, blockSize: 64)
        guard refPacked == quantizer.packed, refAbsmax == quantizer.absmax else { fail("quantize differs from Reference at \(rows)x\(columns)") }
        let state = quantizer.finish(dtype: .float32)
        var out = [Float](repeating: 0, count: n), refOut = out
        state.dequantize(quantizer.packed, into: &out)
        Reference.nf4Dequantize(&refOut, quantizer.packed, state.blockScales(), count: n, blockSize: 64)
        guard out == refOut else { fail("dequantize differs from Reference at \(rows)x\(columns)") }

        let quantizeSeconds = median {
            var q = NF4TensorQuantizer(shape: [rows, columns])
            _ = weights.withUnsafeBufferPointer { q.quantize($0.baseAddress!, count: n) }
            blackHole(q.finish(dtype: .float32))
        }
        let dequantizeSeconds = median {
            quantizer.packed.withUnsafeBufferPointer { state.dequantize($0.baseAddress!, into: &out) }
            blackHole(out[n - 1])
        }
        records.append([
            "group": group, "shape": [rows, columns], "n": n,
            "quantize_s": quantizeSeconds, "quantize_GBps": Double(4 * n) / quantizeSeconds / 1e9,
            "quantize_Mparams_per_s": Double(n) / quantizeSeconds / 1e6,
            "dequantize_s": dequantizeSeconds, "dequantize_Gelem_per_s": Double(n) / dequantizeSeconds / 1e9,
        ])
        FileHandle.standardError.write(Data(String(format: "%@ %dx%d: quantize %.2f GB/s, dequantize %.2f G elem/s\n",
                                                   group, rows, columns, Double(4 * n) / quantizeSeconds / 1e9,
                                                   Double(n) / dequantizeSeconds / 1e9).utf8))
    }
}

// sgemm with the kernels our loader picked (OPENBLAS_CORETYPE=Prescott in the environment shows
// Debian's default instead).
var sgemm: [[String: Any]] = []
for (m, n, k) in [(1024, 2048, 2048), (1024, 4096, 4096)] {
    let a = normals(m * k, seed: 1), b = normals(n * k, seed: 2)
    var c = [Float](repeating: 0, count: m * n)
    let seconds = median { BLAS.sgemm(&c, a, b, m: m, n: n, k: k, transposeB: true) }
    sgemm.append(["shape": [m, n, k], "seconds": seconds, "GFLOPs": 2 * Double(m * n * k) / seconds / 1e9])
    FileHandle.standardError.write(Data(String(format: "sgemm %dx%dx%d: %.1f GFLOP/s\n", m, n, k, 2 * Double(m * n * k) / seconds / 1e9).utf8))
}

bench.report(["runs": runs, "records": records, "sgemm": sgemm])
