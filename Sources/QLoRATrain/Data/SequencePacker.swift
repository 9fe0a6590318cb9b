// Packs examples into fixed-length rows (greedy, in order) and turns labels into next-token
// targets that never cross from one example into the next. Leaves out ordering (DataStream).
import QLoRAModel

/// Packs `TrainingExample`s into `PackedSequence`s of `seqLen` tokens.
public struct SequencePacker: Sendable {
    public let seqLen: Int
    /// Token id written on padding positions (their targets are -100, so any id in the vocabulary
    /// works; EOS is customary).
    public let padTokenId: Int32
    /// Several examples per row (greedy first-fit in order) or one.
    public let packing: Bool

    /// - Precondition: `seqLen > 0`.
    public init(seqLen: Int, padTokenId: Int32, packing: Bool = true) {
        precondition(seqLen > 0, "seqLen must be positive")
        self.seqLen = seqLen
        self.padTokenId = padTokenId
        self.packing = packing
    }

    /// The rows of `examples` in order: with packing, an example goes into the current row when it
    /// fits in what is left of it, else it starts a new row; without, each has a row of its own.
    /// - Precondition: every example has 1...seqLen tokens (read with `maxTokens: seqLen`).
    public func pack(_ examples: [TrainingExample]) -> [PackedSequence] {
        var rows: [PackedSequence] = []
        var row = emptyRow()
        var examplesInRow: Int32 = 0
        func finish() {
            for t in row.filled..<seqLen { row.sequenceIds[t] = examplesInRow }
            rows.append(row)
            row = emptyRow()
            examplesInRow = 0
        }
        for example in examples {
            let n = example.tokens.count
            precondition((1...seqLen).contains(n), "example of line \(example.line) has \(n) tokens; the packer takes 1...\(seqLen)")
            if examplesInRow > 0 && (!packing || n > seqLen - row.filled) { finish() }
            let start = row.filled
            for i in 0..<n {
                row.tokens[start + i] = example.tokens[i]
                row.targets[start + i] = i + 1 < n ? example.labels[i + 1] : TokenBatch.ignore
                row.sequenceIds[start + i] = examplesInRow
            }
            row.filled += n
            examplesInRow += 1
        }
        if examplesInRow > 0 { finish() }
        return rows
    }

    private func emptyRow() -> PackedSequence {
        PackedSequence(tokens: [Int32](repeating: padTokenId, count: seqLen),
                       targets: [Int32](repeating: TokenBatch.ignore, count: seqLen),
                       sequenceIds: [Int32](repeating: 0, count: seqLen), filled: 0)
    }
}
