// RMSNorm: the fp32 kernels against their Double twins over tail sizes (the backward accumulating
// onto a nonzero gradient), and the twins' backward against central differences of their forward.
import Testing
import QLoRAKernels
import _TestSupport

struct RMSNormTests {
    static let eps: Float = 1e-5

    // 300 rows of 129 exceed one chunk, so that case runs on several threads.
    @Test(arguments: tailSizes.map { (rows: 3, dim: $0) } + [(rows: 300, dim: 129)])
    func kernelsMatchReference(rows: Int, dim: Int) {
        let seed = UInt64(dim * 1000 + rows)
        let inp = normals(rows * dim, seed: seed, std: 2)
        let weight = normals(dim, seed: seed + 1)
        let dOut = normals(rows * dim, seed: seed + 2)
        let dInpStart = normals(rows * dim, seed: seed + 3)

        var out = [Float](repeating: 0, count: rows * dim), rstd = [Float](repeating: 0, count: rows)
        rmsNormForward(&out, &rstd, inp, weight, rows: rows, dim: dim, eps: Self.eps)
        var dInp = dInpStart
        rmsNormBackward(&dInp, dOut, inp, weight, rstd, rows: rows, dim: dim)

        var outRef = [Double](repeating: 0, count: rows * dim), rstdRef = [Double](repeating: 0, count: rows)
        Reference.rmsNormForward(&outRef, &rstdRef, inp.asDouble, weight.asDouble, rows: rows, dim: dim, eps: Double(Self.eps))
        var dInpRef = dInpStart.asDouble
        Reference.rmsNormBackward(&dInpRef, dOut.asDouble, inp.asDouble, weight.asDouble, rstdRef, rows: rows, dim: dim)

        let outCheck = compare(out, outRef, .forward), rstdCheck = compare(rstd, rstdRef, .forward)
        let dInpCheck = compare(dInp, dInpRef, .gradient)
        #expect(outCheck.passed, "out: \(outCheck)")
        #expect(rstdCheck.passed, "rstd: \(rstdCheck)")
        #expect(dInpCheck.passed, "dInp (accumulated): \(dInpCheck)")
    }

    @Test func referenceBackwardMatchesCentralDifferences() {
        let (rows, dim) = (3, 7)
        let inp = normals(rows * dim, seed: 11).asDouble, weight = normals(dim, seed: 12).asDouble
        let lossWeights = normals(rows * dim, seed: 13).asDouble
        func forward(_ x: [Double]) -> (out: [Double], rstd: [Double]) {
            var out = [Double](repeating: 0, count: rows * dim), rstd = [Double](repeating: 0, count: rows)
            Reference.rmsNormForward(&out, &rstd, x, weight, rows: rows, dim: dim, eps: 1e-5)
            return (out, rstd)
        }
        var dInp = [Double](repeating: 0, count: rows * dim)
        Reference.rmsNormBackward(&dInp, lossWeights, inp, weight, forward(inp).rstd, rows: rows, dim: dim)
        let numeric = centralDifferences(inp) { weightedSum(forward($0).out, lossWeights) }
        let check = compare(dInp, numeric, .centralDifference)
        #expect(check.passed, "\(check)")
    }
}
