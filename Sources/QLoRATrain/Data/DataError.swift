// Why a training-data file could not be turned into examples. Every case names the file and says
// what to do; single unusable rows are collected as `BadRow`s and reported together.

/// A data file, tokenizer or chat template problem that stops reading.
public enum DataError: Error, CustomStringConvertible, Equatable {
    /// The data file cannot be opened or read; `reason` is the system's (strerror).
    case unreadable(path: String, reason: String)
    /// The data path is a directory.
    case isDirectory(path: String)
    /// The data path is neither a regular file nor a directory; `kind` says what it is ("a FIFO
    /// (named pipe)", "a character device", ...).
    case notRegularFile(path: String, kind: String)
    /// The data file is text in a wider encoding than UTF-8: `encoding` is "UTF-16" or "UTF-32"
    /// (with a byte-order mark) or one of those with its byte order ("UTF-16LE"), as iconv names them.
    case notUTF8(path: String, encoding: String)
    /// The file yields no example: it is empty or blank, or every row was bad and skipped.
    case noExamples(path: String, skipped: Int)
    /// Rows that cannot be used (with skipping off): all of them, in file order, and the number of
    /// non-blank rows in the file.
    case badRows(path: String, rows: [BadRow], total: Int)
    /// Row `line` has a form (`text`, `prompt/completion`, `messages`) that needs the model's
    /// tokenizer, and there is none.
    case noTokenizer(path: String, line: Int, form: String)
    /// The tokenizer at `tokenizer` has no end-of-sequence token, which the `text` and
    /// `prompt/completion` forms append.
    case noEOSToken(tokenizer: String)
    /// The chat template for `messages` rows cannot be determined or does not fit the tokenizer;
    /// `path` is the tokenizer_config.json (or tokenizer.json) concerned.
    case chatTemplate(path: String, reason: String)

    /// How many bad rows `badRows` lists in full.
    public static let listedBadRows = 10

    public var description: String {
        switch self {
        case .unreadable(let path, let reason):
            return "\(path): cannot read the training data: \(reason); check the path and that the file is readable"
        case .isDirectory(let path):
            return "\(path): is a directory; pass a JSONL file (one JSON object per line)"
        case .notRegularFile(let path, let kind):
            return "\(path): is \(kind), not a regular file; save the data as a JSONL file (one JSON object per line) and pass that"
        case .notUTF8(let path, let encoding):
            return "\(path): the file is \(encoding) text, but JSONL must be UTF-8; convert it with iconv -f \(encoding) -t UTF-8 \(path) > converted.jsonl"
        case .noExamples(let path, let skipped):
            return skipped == 0
                ? "\(path): no training examples: the file is empty; give one JSON object per line"
                : "\(path): no training examples: all \(skipped) rows are bad and were skipped; run without --skip-bad-rows to see why"
        case .badRows(let path, let rows, let total):
            var lines = ["\(path): \(rows.count) of \(total) rows cannot be used:"]
            lines += rows.prefix(Self.listedBadRows).map { "  \(path):\($0.line): \($0.reason)" }
            if rows.count > Self.listedBadRows { lines.append("  ... and \(rows.count - Self.listedBadRows) more") }
            lines.append("Fix these rows, or pass --skip-bad-rows to leave them out.")
            return lines.joined(separator: "\n")
        case .noTokenizer(let path, let line, let form):
            return "\(path):\(line): a '\(form)' row needs the model's tokenizer, but the model directory has no tokenizer.json; copy tokenizer.json (and tokenizer_config.json) from the base model, or give token ids as {\"input_ids\": [...]}"
        case .noEOSToken(let tokenizer):
            return "\(tokenizer): the tokenizer has no end-of-sequence token to end 'text' and 'prompt/completion' rows with; set eos_token in the tokenizer_config.json beside it"
        case .chatTemplate(let path, let reason):
            return "\(path): \(reason); pass --chat-template chatml|llama2|llama3"
        }
    }
}
