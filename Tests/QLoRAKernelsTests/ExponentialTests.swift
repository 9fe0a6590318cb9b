// The kernels' vectorizable exp against glibc's expf (correctly rounded in practice), in ulp of
// glibc's result. Measured max error: 1 ulp, over every float in [-110, 90] for each of the
// three target_clones builds (AVX-512, AVX2+FMA, baseline); the test samples every 4099th float.
import Testing
import QLoRAKernels
#if canImport(Glibc)
import Glibc
#endif

struct ExponentialTests {
    /// The largest error of the exhaustive measurement (see the top of the file).
    static let maxUlp: Float = 1

    @Test func expfIsWithinOneUlpOfGlibc() {
        var inputs: [Float] = []
        // Every 4099th bit pattern of each sign, so every binade is covered, small ones included.
        for bits in stride(from: UInt32(0), through: Float(88.72).bitPattern, by: 4099) { inputs.append(Float(bitPattern: bits)) }
        for bits in stride(from: UInt32(0), through: Float(103.9).bitPattern, by: 4099) { inputs.append(-Float(bitPattern: bits)) }
        var outputs = [Float](repeating: 0, count: inputs.count)
        exponential(&outputs, inputs, count: inputs.count)
        var worst: Float = 0, worstInput: Float = 0
        for (x, actual) in zip(inputs, outputs) {
            let expected = expf(x)
            let ulps = abs(actual - expected) / expected.ulp
            if !(ulps <= worst) { (worst, worstInput) = (ulps, x) }
        }
        #expect(worst <= Self.maxUlp, "max error \(worst) ulp at x = \(worstInput): \(exp(Double(worstInput)))")
    }

    @Test func specialValues() {
        let inputs: [Float] = [0, -0, 1, -1, .infinity, -.infinity, .nan, 88.8, 100, 1e30, -104, -150, -1e30,
                               -87.3, -100, -103.2]
        var outputs = [Float](repeating: 0, count: inputs.count)
        exponential(&outputs, inputs, count: inputs.count)
        #expect(outputs[0] == 1 && outputs[1] == 1)
        #expect(abs(outputs[2] - Float(M_E)) <= Float(M_E).ulp && abs(outputs[3] - expf(-1)) <= expf(-1).ulp)
        #expect(outputs[4] == .infinity && outputs[5] == 0 && outputs[6].isNaN)
        #expect(outputs[7] == .infinity && outputs[8] == .infinity && outputs[9] == .infinity)
        #expect(outputs[10] == 0 && outputs[11] == 0 && outputs[12] == 0)
        // Subnormal results round once, to within a couple of least-subnormal steps.
        for i in 13..<16 {
            #expect(abs(outputs[i] - expf(inputs[i])) <= 2 * Float.leastNonzeroMagnitude, "e^\(inputs[i])")
        }
    }
}
