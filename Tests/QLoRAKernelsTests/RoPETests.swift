// RoPE: the fp32 kernels against their Double twins over tail sizes of headDim / 2, and the
// twins' backward against central differences of their forward.
import Testing
import QLoRAKernels
import _TestSupport
#if canImport(Glibc)
import Glibc
#endif

struct RoPETests {
    /// cos and sin tables (maxPositions, headDim / 2) of the angles p * 10000^(-2i / headDim).
    static func tables(maxPositions: Int, headDim: Int) -> (cos: [Float], sin: [Float]) {
        let half = headDim / 2
        var cosTable: [Float] = [], sinTable: [Float] = []
        for p in 0..<maxPositions {
            for i in 0..<half {
                let angle = Double(p) * pow(10_000, -2 * Double(i) / Double(headDim))
                cosTable.append(Float(cos(angle)))
                sinTable.append(Float(sin(angle)))
            }
        }
        return (cosTable, sinTable)
    }

    static func positions(rows: Int, maxPositions: Int, seed: UInt64) -> [Int32] {
        var random = SplitMix64(seed: seed)
        return (0..<rows).map { _ in Int32(random.next() % UInt64(maxPositions)) }
    }

    // 700 rows of 3 heads of 34 exceed one chunk, so that case runs on several threads.
    @Test(arguments: tailSizes.map { (rows: 5, half: $0) } + [(rows: 700, half: 17)])
    func kernelsMatchReference(rows: Int, half: Int) {
        let (heads, headDim, maxPositions) = (3, 2 * half, 50)
        let count = rows * heads * headDim
        let (cosTable, sinTable) = Self.tables(maxPositions: maxPositions, headDim: headDim)
        let positions = Self.positions(rows: rows, maxPositions: maxPositions, seed: UInt64(half))
        let x = normals(count, seed: UInt64(half) + 1), dOut = normals(count, seed: UInt64(half) + 2)

        var out = x, dx = dOut
        ropeForward(&out, positions, cosTable, sinTable, rows: rows, heads: heads, headDim: headDim, maxPositions: maxPositions)
        ropeBackward(&dx, positions, cosTable, sinTable, rows: rows, heads: heads, headDim: headDim, maxPositions: maxPositions)
        var outRef = x.asDouble, dxRef = dOut.asDouble
        Reference.ropeForward(&outRef, positions, cosTable.asDouble, sinTable.asDouble, rows: rows, heads: heads,
                              headDim: headDim, maxPositions: maxPositions)
        Reference.ropeBackward(&dxRef, positions, cosTable.asDouble, sinTable.asDouble, rows: rows, heads: heads,
                               headDim: headDim, maxPositions: maxPositions)

        let outCheck = compare(out, outRef, .forward), dxCheck = compare(dx, dxRef, .gradient)
        #expect(outCheck.passed, "out: \(outCheck)")
        #expect(dxCheck.passed, "dx: \(dxCheck)")
    }

    @Test func referenceBackwardMatchesCentralDifferences() {
        let (rows, heads, headDim, maxPositions) = (4, 2, 6, 9)
        let count = rows * heads * headDim
        // Arbitrary tables (not unit rotations), so a transposition mistake cannot hide.
        let cosTable = normals(maxPositions * headDim / 2, seed: 21).asDouble
        let sinTable = normals(maxPositions * headDim / 2, seed: 22).asDouble
        let positions = Self.positions(rows: rows, maxPositions: maxPositions, seed: 23)
        let x = normals(count, seed: 24).asDouble, lossWeights = normals(count, seed: 25).asDouble

        var dx = lossWeights
        Reference.ropeBackward(&dx, positions, cosTable, sinTable, rows: rows, heads: heads, headDim: headDim,
                               maxPositions: maxPositions)
        let numeric = centralDifferences(x) { point in
            var out = point
            Reference.ropeForward(&out, positions, cosTable, sinTable, rows: rows, heads: heads, headDim: headDim,
                                  maxPositions: maxPositions)
            return weightedSum(out, lossWeights)
        }
        let check = compare(dx, numeric, .centralDifference)
        #expect(check.passed, "\(check)")
    }
}
