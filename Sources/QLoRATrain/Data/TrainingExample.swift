// One tokenized training example as read from a data file, before packing. Leaves out the shift to
// next-token targets, which SequencePacker does.
import QLoRAModel

/// Token ids with Hugging Face labels: `labels[i] == tokens[i]` where the loss is taken on that
/// token, `TokenBatch.ignore` (-100) where it is not.
///
/// Nothing predicts the first token, so `labels[0]` never produces a loss: a usable example has a
/// label other than -100 at some index ≥ 1.
public struct TrainingExample: Sendable, Equatable {
    /// Input ids, each in [0, vocabulary size).
    public var tokens: [Int32]
    /// Same length as `tokens`: the id to learn at each position, or -100.
    public var labels: [Int32]
    /// 1-based line of the row in its JSONL file.
    public var line: Int

    public init(tokens: [Int32], labels: [Int32], line: Int) {
        precondition(tokens.count == labels.count, "labels must have one entry per token")
        self.tokens = tokens
        self.labels = labels
        self.line = line
    }

    /// Positions with a loss after the shift to next-token targets: labels[1...] that are not -100.
    public var targetCount: Int { labels.dropFirst().reduce(0) { $0 + ($1 == TokenBatch.ignore ? 0 : 1) } }
}
