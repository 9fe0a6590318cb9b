// Cross entropy: the fused fp32 kernel and the forward-only one against their Double twins over
// tail vocab sizes with an ignored row, and the twin's gradient against central differences.
import Testing
import QLoRAKernels
import _TestSupport

struct CrossEntropyTests {
    /// Targets in 0..<vocab with row 1 ignored (-100).
    static func targets(rows: Int, vocab: Int, seed: UInt64) -> [Int32] {
        var random = SplitMix64(seed: seed)
        var targets = (0..<rows).map { _ in Int32(random.next() % UInt64(vocab)) }
        if rows > 1 { targets[1] = crossEntropyIgnoreIndex }
        return targets
    }

    // 100 rows of 1000 exceed one chunk, so that case runs on several threads.
    @Test(arguments: tailSizes.map { (rows: 4, vocab: $0) } + [(rows: 100, vocab: 1000)])
    func kernelsMatchReference(rows: Int, vocab: Int) {
        // std 8 gives logits spanning e^±30, so the max shift matters.
        let logits = normals(rows * vocab, seed: UInt64(vocab), std: 8)
        let targets = Self.targets(rows: rows, vocab: vocab, seed: UInt64(vocab) + 1)
        let scale: Float = 1 / 3

        var losses = [Float](repeating: .nan, count: rows), dLogits = logits
        crossEntropyForwardBackward(&dLogits, &losses, targets, rows: rows, vocab: vocab, dLogitScale: scale)
        var evalLosses = [Float](repeating: .nan, count: rows)
        crossEntropyForward(&evalLosses, logits, targets, rows: rows, vocab: vocab)
        var lossesRef = [Double](repeating: .nan, count: rows), dLogitsRef = logits.asDouble
        Reference.crossEntropyForwardBackward(&dLogitsRef, &lossesRef, targets, rows: rows, vocab: vocab,
                                              dLogitScale: Double(scale))

        let lossCheck = compare(losses, lossesRef, .forward), evalCheck = compare(evalLosses, lossesRef, .forward)
        let gradientCheck = compare(dLogits, dLogitsRef, .gradient)
        #expect(lossCheck.passed, "losses: \(lossCheck)")
        #expect(evalCheck.passed, "forward-only losses: \(evalCheck)")
        #expect(gradientCheck.passed, "dLogits: \(gradientCheck)")
        if rows > 1 { #expect(losses[1] == 0 && dLogits[vocab..<2 * vocab].allSatisfy { $0 == 0 }) }
    }

    @Test func referenceGradientMatchesCentralDifferences() {
        let (rows, vocab, scale) = (3, 7, 0.5)
        let logits = normals(rows * vocab, seed: 41, std: 3).asDouble
        let targets = Self.targets(rows: rows, vocab: vocab, seed: 42)
        var losses = [Double](repeating: 0, count: rows), dLogits = logits
        Reference.crossEntropyForwardBackward(&dLogits, &losses, targets, rows: rows, vocab: vocab, dLogitScale: scale)
        // dLogits is the gradient of scale * sum_r losses[r].
        let numeric = centralDifferences(logits) { point in
            var losses = [Double](repeating: 0, count: rows)
            Reference.crossEntropyForward(&losses, point, targets, rows: rows, vocab: vocab)
            return scale * losses.reduce(0, +)
        }
        let check = compare(dLogits, numeric, .centralDifference)
        #expect(check.passed, "\(check)")
    }
}
