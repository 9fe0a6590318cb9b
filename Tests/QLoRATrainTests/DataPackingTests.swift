// Packing, the seeded data stream, the validation split and the summary, against hand-worked
// expectations and properties computed independently of the packer.
import QLoRAModel
import Testing
import _TestSupport
@testable import QLoRATrain

private let I = TokenBatch.ignore

/// Examples of 3, 4, 2 and 8 tokens (ids 10+, 20+, 30+, 40+), some labels masked.
private let handExamples = [
    TrainingExample(tokens: [10, 11, 12], labels: [I, 11, 12], line: 1),
    TrainingExample(tokens: [20, 21, 22, 23], labels: [20, I, 22, 23], line: 2),
    TrainingExample(tokens: [30, 31], labels: [30, 31], line: 3),
    TrainingExample(tokens: [40, 41, 42, 43, 44, 45, 46, 47], labels: [I, I, I, I, I, 45, 46, 47], line: 4),
]

@Test func packsGreedilyInOrderAndShiftsWithinExamples() {
    let rows = SequencePacker(seqLen: 8, padTokenId: 0).pack(handExamples)
    // 3 + 4 fill 7 of 8; the 2-token example does not fit the last slot, so it starts row 1; the
    // 8-token example then needs a row of its own.
    #expect(rows == [
        PackedSequence(tokens: [10, 11, 12, 20, 21, 22, 23, 0], targets: [11, 12, I, I, 22, 23, I, I], sequenceIds: [0, 0, 0, 1, 1, 1, 1, 2], filled: 7),
        PackedSequence(tokens: [30, 31, 0, 0, 0, 0, 0, 0], targets: [31, I, I, I, I, I, I, I], sequenceIds: [0, 0, 1, 1, 1, 1, 1, 1], filled: 2),
        PackedSequence(tokens: [40, 41, 42, 43, 44, 45, 46, 47], targets: [I, I, I, I, 45, 46, 47, I], sequenceIds: [0, 0, 0, 0, 0, 0, 0, 0], filled: 8),
    ])
}

@Test func withoutPackingEachExampleHasARow() {
    let rows = SequencePacker(seqLen: 8, padTokenId: 2, packing: false).pack(handExamples)
    #expect(rows.map(\.tokens) == [
        [10, 11, 12, 2, 2, 2, 2, 2], [20, 21, 22, 23, 2, 2, 2, 2], [30, 31, 2, 2, 2, 2, 2, 2], [40, 41, 42, 43, 44, 45, 46, 47],
    ])
    #expect(rows.map(\.targets) == [
        [11, 12, I, I, I, I, I, I], [I, 22, 23, I, I, I, I, I], [31, I, I, I, I, I, I, I], [I, I, I, I, 45, 46, 47, I],
    ])
    #expect(rows.map(\.filled) == [3, 4, 2, 8])
}

@Test func batchPositionsRestartAtEachPackedExample() {
    let stream = DataStream(examples: handExamples, packer: SequencePacker(seqLen: 8, padTokenId: 0), shuffle: false, seed: 1)
    let batch = stream.batch(from: 0, rows: 2)
    #expect(batch.batch == 2 && batch.seqLen == 8)
    #expect(batch.positions == [0, 1, 2, 0, 1, 2, 3, 0, /* row 1 */ 0, 1, 0, 1, 2, 3, 4, 5])
    #expect(batch.segmentStarts == [0, 0, 0, 3, 3, 3, 3, 7, /* row 1 */ 0, 0, 2, 2, 2, 2, 2, 2])
    #expect(batch.targets == [11, 12, I, I, 22, 23, I, I, 31, I, I, I, I, I, I, I])
    #expect(batch.targetCount == 5)
}

/// `count` examples of 1...maxLength random tokens with random masked labels, from SplitMix64.
private func randomExamples(count: Int, maxLength: Int, seed: UInt64) -> [TrainingExample] {
    var random = SplitMix64(seed: seed)
    return (0..<count).map { index in
        let length = 1 + Int(random.next() % UInt64(maxLength))
        let tokens = (0..<length).map { _ in Int32(random.next() % 1000) }
        let labels = tokens.map { random.next() % 3 == 0 ? I : $0 }
        return TrainingExample(tokens: tokens, labels: labels, line: index + 1)
    }
}

@Test(arguments: [true, false])
func noTargetCrossesAnExampleBoundary(packing: Bool) {
    let examples = randomExamples(count: 200, maxLength: 16, seed: 7)
    let rows = SequencePacker(seqLen: 16, padTokenId: 0, packing: packing).pack(examples)
    var targets = 0
    for row in rows {
        for t in 0..<16 where row.targets[t] != I {
            // A target is the next token of the same example.
            #expect(t + 1 < row.filled && row.sequenceIds[t + 1] == row.sequenceIds[t] && row.targets[t] == row.tokens[t + 1])
            targets += 1
        }
        #expect(row.tokens[row.filled...].allSatisfy { $0 == 0 })
    }
    // Every example's tokens appear once, in order, and every label after the first is a target.
    #expect(rows.flatMap { $0.tokens.prefix($0.filled) } == examples.flatMap(\.tokens))
    #expect(targets == examples.reduce(0) { $0 + $1.labels.dropFirst().filter { $0 != I }.count })
    #expect(packing ? rows.count < examples.count : rows.count == examples.count)
}

@Test func streamWithoutShuffleKeepsFileOrderAndWrapsEpochs() {
    let packer = SequencePacker(seqLen: 8, padTokenId: 0)
    let stream = DataStream(examples: handExamples, packer: packer, shuffle: false, seed: 3)
    let rows = packer.pack(handExamples)
    #expect(stream.count == 3 && stream.sequences == rows)
    #expect(stream.order(epoch: 5) == [0, 1, 2])
    #expect(stream.sequences(from: 2, count: 4) == [rows[2], rows[0], rows[1], rows[2]])
}

@Test func shuffledStreamIsDeterministicPerSeed() {
    let examples = randomExamples(count: 60, maxLength: 8, seed: 11)
    let packer = SequencePacker(seqLen: 8, padTokenId: 0, packing: false)
    let a = DataStream(examples: examples, packer: packer, seed: 42)
    let b = DataStream(examples: examples, packer: packer, seed: 42)
    let c = DataStream(examples: examples, packer: packer, seed: 43)
    let span = 3 * a.count + 5
    #expect(a.sequences(from: 0, count: span) == b.sequences(from: 0, count: span))
    #expect(a.batch(from: 97, rows: 4) == b.batch(from: 97, rows: 4))
    #expect(a.sequences != c.sequences)
    #expect(a.order(epoch: 0) != c.order(epoch: 0))
    // Each epoch visits every row once, in an order of its own.
    for epoch in 0..<3 { #expect(a.order(epoch: epoch).sorted() == Array(0..<a.count)) }
    #expect(a.order(epoch: 0) != a.order(epoch: 1))
    // Positions index epochs back to back.
    let second = a.order(epoch: 1)
    #expect(a.sequences(from: a.count + 3, count: 2) == [a.sequences[second[3]], a.sequences[second[4]]])
}

@Test func exampleShuffleIsTheDocumentedFisherYates() {
    // Fisher–Yates from the top, j = high 64 bits of next() * (i + 1), on SplitMix64 seeded with
    // seed ^ SplitMix64(seed: 0).next() (stream 0: the example order).
    let examples = randomExamples(count: 10, maxLength: 4, seed: 5)
    let seed: UInt64 = 1234
    var key = SplitMix64(seed: 0)
    var random = SplitMix64(seed: seed ^ key.next())
    var expected = examples
    for i in stride(from: expected.count - 1, to: 0, by: -1) {
        expected.swapAt(i, Int(random.next().multipliedFullWidth(by: UInt64(i + 1)).high))
    }
    let packer = SequencePacker(seqLen: 4, padTokenId: 0, packing: false)
    #expect(DataStream(examples: examples, packer: packer, seed: seed).sequences == packer.pack(expected))
    #expect(expected != examples)
}

@Test(arguments: [(0, 0.05, 0), (1, 0.5, 0), (2, 0.05, 1), (10, 0.05, 1), (100, 0.05, 5), (41, 0.1, 4), (3, 0.9, 2), (100, 0, 0)])
func validationCount(examples: Int, fraction: Double, expected: Int) {
    #expect(DataSplit.validCount(examples: examples, fraction: fraction) == expected)
}

@Test func validationSplitIsSeededAndDisjoint() {
    let examples = randomExamples(count: 100, maxLength: 4, seed: 9)
    let split = DataSplit(examples, validFraction: 0.05, seed: 1)
    #expect(split.train.count == 95 && split.valid.count == 5)
    #expect((split.train + split.valid).map(\.line).sorted() == Array(1...100))
    #expect(split.train.map(\.line) == split.train.map(\.line).sorted())
    #expect(split.valid.map(\.line) == split.valid.map(\.line).sorted())
    #expect(DataSplit(examples, validFraction: 0.05, seed: 1).valid == split.valid)
    #expect(DataSplit(examples, validFraction: 0.05, seed: 2).valid != split.valid)
    #expect(DataSplit(examples, validFraction: 0, seed: 1).train == examples)
}

@Test func summaryCountsTokensTargetsAndPacking() {
    let stream = DataStream(examples: handExamples, packer: SequencePacker(seqLen: 8, padTokenId: 0), shuffle: false, seed: 0)
    let summary = DataSummary(stream: stream, skipped: 2, truncated: 1)
    // 17 example tokens in 3 rows of 8; targets: 2 + 2 + 1 + 3.
    #expect(summary.examples == 4 && summary.skipped == 2 && summary.truncated == 1)
    #expect(summary.tokens == 17 && summary.targetTokens == 8 && summary.sequences == 3 && summary.seqLen == 8)
    #expect(abs(summary.packingEfficiency - 17.0 / 24.0) < 1e-12)
    #expect(summary.description == "4 examples (2 skipped, 1 truncated), 17 tokens (8 trained) in 3 sequences of 8, 70.8% filled")
    #expect(handExamples.map(\.targetCount) == [2, 2, 1, 3])
}
