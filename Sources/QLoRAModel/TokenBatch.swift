// One batch of token sequences in the layout the model consumes: B rows of T tokens, each row
// possibly holding several packed examples that must not see each other.

/// (B, T) row-major Int32 arrays.
public struct TokenBatch: Sendable, Equatable {
    public let batch: Int
    public let seqLen: Int
    /// Input token ids.
    public var tokens: [Int32]
    /// The token to predict at each position, or `TokenBatch.ignore` for no loss there.
    public var targets: [Int32]
    /// Position of each token within its example (restarts at 0 for each packed example).
    public var positions: [Int32]
    /// Index within the row of the first token of the token's example: attention sees
    /// segmentStarts[t] ... t only.
    public var segmentStarts: [Int32]

    /// PyTorch's `ignore_index`.
    public static let ignore: Int32 = -100

    /// - Parameter sequenceIds: (B, T) example index of each token; consecutive equal ids form one
    ///   example. Nil means one example per row. Positions restart at each example.
    public init(batch: Int, seqLen: Int, tokens: [Int32], targets: [Int32], sequenceIds: [Int32]? = nil) {
        precondition(batch > 0 && seqLen > 0 && tokens.count == batch * seqLen && targets.count == tokens.count)
        precondition(sequenceIds == nil || sequenceIds!.count == tokens.count)
        self.batch = batch
        self.seqLen = seqLen
        self.tokens = tokens
        self.targets = targets
        positions = [Int32](repeating: 0, count: tokens.count)
        segmentStarts = positions
        for row in 0..<batch {
            var start = 0
            for t in 0..<seqLen {
                let i = row * seqLen + t
                if let ids = sequenceIds, t > 0, ids[i] != ids[i - 1] { start = t }
                segmentStarts[i] = Int32(start)
                positions[i] = Int32(t - start)
            }
        }
    }

    /// Positions where a loss is taken.
    public var targetCount: Int { targets.reduce(0) { $0 + ($1 == Self.ignore ? 0 : 1) } }
}
