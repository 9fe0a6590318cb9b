// A data-file row that cannot become a training example, and why.

/// One rejected row: its 1-based line in the file and a short reason ("'text' is empty").
public struct BadRow: Sendable, Equatable {
    public var line: Int
    public var reason: String

    public init(line: Int, reason: String) {
        self.line = line
        self.reason = reason
    }
}
