// The counts a run prints once about its data: examples, what was left out, tokens and packing.
import Foundation
import QLoRAModel

/// What a `DataStream` holds, with the reader's skip and truncation counts.
public struct DataSummary: Sendable, Equatable, CustomStringConvertible {
    public var examples: Int
    /// Bad rows left out by `skipBadRows`.
    public var skipped: Int
    /// Examples cut to the sequence length.
    public var truncated: Int
    /// Example tokens (padding excluded).
    public var tokens: Int
    /// Positions with a loss.
    public var targetTokens: Int
    public var sequences: Int
    public var seqLen: Int

    public init(stream: DataStream, skipped: Int, truncated: Int) {
        examples = stream.exampleCount
        self.skipped = skipped
        self.truncated = truncated
        tokens = stream.sequences.reduce(0) { $0 + $1.filled }
        targetTokens = stream.sequences.reduce(0) { total, row in total + row.targets.reduce(0) { $0 + ($1 == TokenBatch.ignore ? 0 : 1) } }
        sequences = stream.count
        seqLen = stream.seqLen
    }

    /// Example tokens / (sequences × seqLen): the share of computed positions that are not padding.
    public var packingEfficiency: Double { Double(tokens) / Double(max(1, sequences * seqLen)) }

    /// "1200 examples (3 skipped, 5 truncated), 340000 tokens (200000 trained) in 180 sequences of 2048, 92.3% filled".
    public var description: String {
        String(format: "%d examples (%d skipped, %d truncated), %d tokens (%d trained) in %d sequences of %d, %.1f%% filled",
               examples, skipped, truncated, tokens, targetTokens, sequences, seqLen, packingEfficiency * 100)
    }
}
