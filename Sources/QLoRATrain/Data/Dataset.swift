// What DatasetReader made of one JSONL file: the examples in file order and what was left out.

/// The examples of a data file and the counts a run reports.
public struct Dataset: Sendable, Equatable {
    /// The file read.
    public var path: String
    /// Usable examples, in file order.
    public var examples: [TrainingExample] = []
    /// Bad rows left out (only with `skipBadRows`; otherwise reading throws `DataError.badRows`).
    public var skipped: [BadRow] = []
    /// Examples cut to `maxTokens` tokens.
    public var truncated = 0
    /// Non-blank lines of the file.
    public var rows = 0

    public init(path: String) {
        self.path = path
    }
}
