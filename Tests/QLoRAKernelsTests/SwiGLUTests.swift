// SwiGLU: the fp32 kernels against their Double twins over tail counts (the backward also in place,
// as the model runs it), and the twins' backward against central differences of their forward.
import Testing
import QLoRAKernels
import _TestSupport

struct SwiGLUTests {
    /// gate values with std 4 plus saturating ones, where e^-g overflows or underflows.
    static func gate(_ count: Int, seed: UInt64) -> [Float] {
        var gate = normals(count, seed: seed, std: 4)
        let extremes: [Float] = [-100, 100, -30, 30, -88.5, 0]
        for i in 0..<min(count, extremes.count) { gate[count - 1 - i] = extremes[i] }
        return gate
    }

    // 100_003 values exceed one chunk, so that case runs on several threads.
    @Test(arguments: tailSizes + [100_003])
    func kernelsMatchReference(count: Int) {
        let gate = Self.gate(count, seed: UInt64(count)), up = normals(count, seed: UInt64(count) + 1)
        let dOut = normals(count, seed: UInt64(count) + 2)

        var out = [Float](repeating: 0, count: count)
        swigluForward(&out, gate, up, count: count)
        var dGate = [Float](repeating: 0, count: count), dUp = [Float](repeating: 0, count: count)
        swigluBackward(&dGate, &dUp, dOut, gate, up, count: count)
        var outRef = [Double](repeating: 0, count: count)
        Reference.swigluForward(&outRef, gate.asDouble, up.asDouble, count: count)
        var dGateRef = [Double](repeating: 0, count: count), dUpRef = [Double](repeating: 0, count: count)
        Reference.swigluBackward(&dGateRef, &dUpRef, dOut.asDouble, gate.asDouble, up.asDouble, count: count)

        let outCheck = compare(out, outRef, .forward)
        let dGateCheck = compare(dGate, dGateRef, .gradient), dUpCheck = compare(dUp, dUpRef, .gradient)
        #expect(outCheck.passed, "out: \(outCheck)")
        #expect(dGateCheck.passed, "dGate: \(dGateCheck)")
        #expect(dUpCheck.passed, "dUp: \(dUpCheck)")

        // In place (dGate = gate, dUp = up) gives the same bits.
        var gateInPlace = gate, upInPlace = up
        gateInPlace.withUnsafeMutableBufferPointer { g in
            upInPlace.withUnsafeMutableBufferPointer { u in
                swigluBackward(g.baseAddress!, u.baseAddress!, dOut, g.baseAddress!, u.baseAddress!, count: count)
            }
        }
        #expect(gateInPlace == dGate && upInPlace == dUp, "in-place backward differs from out-of-place")
    }

    @Test func referenceBackwardMatchesCentralDifferences() {
        let count = 17
        let gate = Self.gate(count, seed: 31).asDouble.map { max(min($0, 20), -20) }  // keep e^-g's curvature moderate
        let up = normals(count, seed: 32).asDouble, lossWeights = normals(count, seed: 33).asDouble
        var dGate = [Double](repeating: 0, count: count), dUp = [Double](repeating: 0, count: count)
        Reference.swigluBackward(&dGate, &dUp, lossWeights, gate, up, count: count)
        func loss(_ gate: [Double], _ up: [Double]) -> Double {
            var out = [Double](repeating: 0, count: count)
            Reference.swigluForward(&out, gate, up, count: count)
            return weightedSum(out, lossWeights)
        }
        let dGateCheck = compare(dGate, centralDifferences(gate) { loss($0, up) }, .centralDifference)
        let dUpCheck = compare(dUp, centralDifferences(up) { loss(gate, $0) }, .centralDifference)
        #expect(dGateCheck.passed, "dGate: \(dGateCheck)")
        #expect(dUpCheck.passed, "dUp: \(dUpCheck)")
    }
}
