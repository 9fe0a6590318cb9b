// OpenBLAS through the run-time loader: results against a plain triple loop, and the kernel
// choice (the loader must pick the fast kernels on CPUs with AVX-512 or AVX2, unasked).
import Testing
import QLoRAKernels
import _TestSupport
#if canImport(Glibc)
import Glibc
#endif

struct BLASTests {
    @Test(arguments: [(1, 1, 1), (3, 5, 7), (17, 33, 65), (64, 48, 176)], [true, false])
    func sgemmMatchesTripleLoop(shape: (Int, Int, Int), transposeB: Bool) throws {
        try BLAS.load()
        let (m, n, k) = shape
        var rng = SplitMix64(seed: UInt64(m * 1000 + n * 10 + k))
        let a = (0..<(m * k)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 1000 }
        let b = (0..<(k * n)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 1000 }
        var c = [Float](repeating: 1, count: m * n)
        BLAS.sgemm(&c, a, b, m: m, n: n, k: k, transposeB: transposeB, beta: 0.5)
        var expected = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0
                for p in 0..<k { sum += Double(a[i * k + p]) * Double(transposeB ? b[j * k + p] : b[p * n + j]) }
                expected[i * n + j] = Float(sum + 0.5)
            }
        }
        // Float32 accumulation of k products of magnitude <= 1: allow k ulps of the sum's scale.
        let result = compare(c, expected, rtol: 1e-5, atol: Double(k) * 1.2e-7)
        #expect(result.passed, "\(result)")
    }

    @Test func fastKernelsAreChosenWithoutTheUserAsking() throws {
        let name = try BLAS.coreName()
        #expect(BLAS.describe().contains(name))
        // Only when the loader chose (a user's OPENBLAS_CORETYPE wins).
        guard BLAS.describe().contains("chosen by cpu features") else { return }
        let flags = cpuFlags()
        if ["avx512f", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(flags.contains) {
            let expected = flags.contains("avx512_bf16") ? "Cooperlake" : "SkylakeX"
            #expect(name.lowercased() == expected.lowercased(), "OpenBLAS runs \(name) kernels on an AVX-512 CPU")
        } else if flags.contains("avx2") && flags.contains("fma") {
            #expect(name == "Haswell", "OpenBLAS runs \(name) kernels on an AVX2 CPU")
        }
    }

    func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return [] }
        let line = text.split(separator: "\n").first { $0.hasPrefix("flags") } ?? ""
        return Set(line.split(separator: " ").map(String.init))
    }
}

import Foundation
