// One row of seqLen tokens as the model trains on it: examples back to back, then padding.

/// A packed row: (seqLen,) arrays, example tokens first (`filled` of them), padding after.
public struct PackedSequence: Sendable, Equatable {
    /// Token ids; padding positions hold the pad id.
    public var tokens: [Int32]
    /// `targets[t]` = the example's `labels[t + 1]` within the same example, `TokenBatch.ignore`
    /// (-100) at each example's last position and on padding.
    public var targets: [Int32]
    /// Index of the example within the row (0, 1, ...), padding one more, so attention and
    /// positions restart per example (`TokenBatch(sequenceIds:)`).
    public var sequenceIds: [Int32]
    /// Positions holding example tokens (the rest is padding).
    public var filled: Int

    public init(tokens: [Int32], targets: [Int32], sequenceIds: [Int32], filled: Int) {
        precondition(tokens.count == targets.count && tokens.count == sequenceIds.count && (0...tokens.count).contains(filled))
        self.tokens = tokens
        self.targets = targets
        self.sequenceIds = sequenceIds
        self.filled = filled
    }
}
