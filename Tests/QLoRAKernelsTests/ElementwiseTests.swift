// The elementwise kernels against plain Swift over tail counts: adds accumulate exactly, a bias adds
// to every row, and dropout's mask equals its scalar twin bit for bit, in place too, keeps about
// 1 - p of the values, and the same call on a gradient applies the same mask.
import Testing
import QLoRAKernels
import _TestSupport

@Test(arguments: tailSizes)
func addsAccumulateExactly(count: Int) {
    let x = normals(count, seed: UInt64(count)), y = normals(count, seed: UInt64(count) + 1)
    var sum = y
    addInPlace(&sum, x, count: count)
    #expect(sum == zip(y, x).map { $0 + $1 })
    let rows = 3
    let bias = normals(count, seed: 7), matrix = normals(rows * count, seed: 8)
    var biased = matrix
    addRowBias(&biased, bias, rows: rows, cols: count)
    #expect(biased == matrix.enumerated().map { $0.element + bias[$0.offset % max(1, count)] })
}

@Test(arguments: tailSizes + [100_003])
func dropoutMatchesItsTwinAndItsBackwardAppliesTheSameMask(count: Int) {
    let input = normals(count, seed: UInt64(count))
    for (p, first) in [(Float(0.1), UInt64(0)), (0.5, 12_345), (0.05, 1 << 40)] {
        var out = [Float](repeating: .nan, count: count), expected = [Float](repeating: .nan, count: count)
        dropout(&out, input, count: count, p: p, seed: 99, first: first)
        Reference.dropout(&expected, input, count: count, p: p, seed: 99, first: first)
        #expect(out.map(\.bitPattern) == expected.map(\.bitPattern), "p \(p), first \(first)")
        var inPlace = input
        inPlace.withUnsafeMutableBufferPointer { dropout($0.baseAddress!, $0.baseAddress!, count: count, p: p, seed: 99, first: first) }
        #expect(inPlace.map(\.bitPattern) == out.map(\.bitPattern))
        // The backward: the same call on a gradient zeroes the same positions and scales the rest alike.
        let gradient = [Float](repeating: 1, count: count)
        var dInput = [Float](repeating: 0, count: count)
        dropout(&dInput, gradient, count: count, p: p, seed: 99, first: first)
        #expect(zip(out, dInput).allSatisfy { ($0 == 0) == ($1 == 0) })
        #expect(dInput.allSatisfy { $0 == 0 || $0 == 1 / (1 - p) })
        if count >= 10_000 {
            let kept = Double(dInput.filter { $0 != 0 }.count) / Double(count)
            #expect(abs(kept - Double(1 - p)) < 0.02, "kept \(kept) of p \(p)")
        }
    }
}

/// The double-precision reductions against their scalar twins: the sum of squares to the last few
/// bits (the kernel sums in eight partial sums), the absolute error's maximum exactly and its sum to
/// float round-off (the kernel sums 4096 values in float before adding them in double).
@Test(arguments: tailSizes + [100_003])
func reductionsMatchTheirTwins(count: Int) {
    let a = normals(count, seed: UInt64(count)), b = normals(count, seed: UInt64(count) + 1)
    let squares = sumOfSquares(a, count: count), expectedSquares = Reference.sumOfSquares(a, count: count)
    #expect(abs(squares - expectedSquares) <= 1e-12 * max(1, expectedSquares), "\(squares) vs \(expectedSquares)")
    var sum = 1.0, maximum: Float = 0.25, expectedSum = 1.0, expectedMaximum: Float = 0.25
    accumulateAbsoluteError(a, b, count: count, sum: &sum, maximum: &maximum)
    Reference.accumulateAbsoluteError(a, b, count: count, sum: &expectedSum, maximum: &expectedMaximum)
    #expect(maximum == expectedMaximum)
    #expect(abs(sum - expectedSum) <= 1e-6 * expectedSum, "\(sum) vs \(expectedSum)")
}
