// Reads a JSONL training-data file into tokenized examples, streaming it a line at a time: one
// JSON object per line, blank lines skipped, bad rows collected with their line numbers, files that
// are not UTF-8 text refused. Leaves out packing and ordering (DataStream).
#if canImport(Glibc)
import Glibc
#endif
import QLoRAIO
import QLoRATokenizer

/// Reads JSONL data files for a model.
///
/// Each non-blank line is one JSON object of one of four forms (extra keys are ignored):
/// - `{"text": "..."}`: the tokenizer's special tokens (BOS where its post-processor adds one),
///   the text, EOS (unless the encoding already ends with it); loss on every token.
/// - `{"prompt": "...", "completion": "..."}`: the prompt with the tokenizer's special tokens, then
///   the completion without them, then EOS; loss on the completion and EOS. The prompt may be empty.
/// - `{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}`: rendered by the
///   model's chat template (`ChatFormat`); loss on the assistant turns, at least one required.
/// - `{"input_ids": [...], "labels": [...]}`: taken as they are; labels default to input_ids.
///
/// A file uses one form: the first row with a recognizable form sets it and rows of another form
/// are bad (mixing loss conventions in one run is almost always a mistake). Every example must
/// train at least one token after the first (`TrainingExample.targetCount`).
public struct DatasetReader: Sendable {
    /// Longest example kept, in tokens (the sequence length when packing); nil: no limit.
    public let maxTokens: Int?
    /// Whether a longer example is cut to its first `maxTokens` tokens (else it is a bad row).
    public let truncate: Bool
    /// Whether bad rows are left out (and listed in `Dataset.skipped`) instead of stopping the read.
    public let skipBadRows: Bool
    let encoder: ExampleEncoder

    /// - Parameters:
    ///   - tokenizer: The model's tokenizer; nil when the model has none, which only `input_ids`
    ///     rows can do without. The chat template is read from the tokenizer_config.json beside it.
    ///   - vocabularySize: The model's `vocab_size`: every token id must be below it.
    ///   - chatTemplate: Overrides the family of the model's chat template (`--chat-template`).
    /// - Precondition: `vocabularySize > 0`, `maxTokens` is nil or positive.
    public init(
        tokenizer: Tokenizer?, vocabularySize: Int, chatTemplate: ChatTemplate? = nil,
        maxTokens: Int? = nil, truncate: Bool = true, skipBadRows: Bool = false
    ) {
        precondition(maxTokens.map { $0 > 0 } ?? true, "maxTokens must be positive")
        encoder = ExampleEncoder(tokenizer: tokenizer, vocabularySize: vocabularySize, chatTemplate: chatTemplate)
        self.maxTokens = maxTokens
        self.truncate = truncate
        self.skipBadRows = skipBadRows
    }

    /// The examples of the JSONL file at `path`, in file order.
    ///
    /// The file is read a line at a time (`LineReader`): besides the examples, only the row being
    /// parsed (its bytes and values) and a chunk of the file are in memory. A UTF-8 byte-order mark
    /// at the start is skipped.
    /// - Throws: `DataError.unreadable`, `.isDirectory`, `.notRegularFile` or `.notUTF8` for a path
    ///   that is not a UTF-8 text file; `.badRows` (without `skipBadRows`) listing every bad row;
    ///   `.noExamples` when none is left; `.noTokenizer`, `.noEOSToken` or `.chatTemplate` when a
    ///   row's form needs what the model lacks.
    public func read(_ path: String) throws(DataError) -> Dataset {
        let file = try Self.open(path)
        let head: [UInt8]
        do { head = try file.head(4) } catch { throw .unreadable(path: path, reason: Self.reason(error)) }
        if let encoding = Self.wideEncoding(of: head) { throw .notUTF8(path: path, encoding: encoding) }
        if head.starts(with: [0xEF, 0xBB, 0xBF]) { file.skip(3) }
        var dataset = Dataset(path: path)
        var bad: [BadRow] = []
        var fileForm: (form: ExampleEncoder.Form, line: Int)?
        var line = 0
        while true {
            let next: UnsafeRawBufferPointer?
            do { next = try file.nextLine() } catch { throw .unreadable(path: path, reason: Self.reason(error)) }
            guard let row = next else { break }
            line += 1
            guard row.contains(where: { !Self.isBlank($0) }) else { continue }
            dataset.rows += 1
            do throws(RowError) {
                let object = try Self.object(in: row)
                let form = try ExampleEncoder.form(of: object)
                if let first = fileForm, first.form != form {
                    throw .bad("a '\(form.rawValue)' row in a file of '\(first.form.rawValue)' rows (line \(first.line)); use one form per file")
                }
                fileForm = fileForm ?? (form, line)
                let (example, truncated) = try limit(try encoder.encode(object, as: form), line: line)
                dataset.examples.append(example)
                if truncated { dataset.truncated += 1 }
            } catch {
                switch error {
                case .bad(let reason): bad.append(BadRow(line: line, reason: reason))
                case .needsTokenizer(let form): throw .noTokenizer(path: path, line: line, form: form.rawValue)
                case .fatal(let error): throw error
                }
            }
        }
        if !bad.isEmpty && !skipBadRows { throw .badRows(path: path, rows: bad, total: dataset.rows) }
        dataset.skipped = bad
        guard !dataset.examples.isEmpty else { throw .noExamples(path: path, skipped: bad.count) }
        return dataset
    }

    /// The example cut to `maxTokens` (when allowed), and whether it was cut.
    private func limit(_ encoded: (tokens: [Int32], labels: [Int32]), line: Int) throws(RowError) -> (TrainingExample, Bool) {
        var example = TrainingExample(tokens: encoded.tokens, labels: encoded.labels, line: line)
        var truncated = false
        if let maxTokens, example.tokens.count > maxTokens {
            guard truncate else {
                throw .bad("\(example.tokens.count) tokens, more than the limit of \(maxTokens) (the sequence length); shorten the row or allow truncation")
            }
            // Copies, so that the row's full arrays are freed rather than kept as spare capacity.
            example = TrainingExample(tokens: Array(example.tokens.prefix(maxTokens)), labels: Array(example.labels.prefix(maxTokens)), line: line)
            truncated = true
        }
        guard example.targetCount > 0 else {
            throw .bad(truncated
                ? "no token to train on within the first \(maxTokens ?? 0) tokens (the rest is cut by truncation)"
                : "no token to train on (every label after the first is -100)")
        }
        return (example, truncated)
    }

    /// The JSON object on one line.
    private static func object(in row: UnsafeRawBufferPointer) throws(RowError) -> JSONObject {
        let value: JSONValue
        do {
            value = try JSONParser.parse(row)
        } catch {
            throw .bad("not valid JSON: \(error)")
        }
        guard case .object(let object) = value else { throw .bad("not a JSON object but \(ExampleEncoder.describe(value))") }
        return object
    }

    /// A reader of the file at `path`, once it is known to be a regular file.
    private static func open(_ path: String) throws(DataError) -> LineReader {
        var info = stat()
        guard stat(path, &info) == 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        switch info.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw .isDirectory(path: path)
        case S_IFCHR: throw .notRegularFile(path: path, kind: "a character device")
        case S_IFBLK: throw .notRegularFile(path: path, kind: "a block device")
        case S_IFIFO: throw .notRegularFile(path: path, kind: "a FIFO (named pipe)")
        case S_IFSOCK: throw .notRegularFile(path: path, kind: "a socket")
        default: throw .notRegularFile(path: path, kind: "a special file")
        }
        do { return try LineReader(path: path) } catch { throw .unreadable(path: path, reason: reason(error)) }
    }

    /// The system's words for a read failure.
    private static func reason(_ error: FileError) -> String {
        if case .cannotOpen(_, let code) = error { return String(cString: strerror(code)) }
        return error.description
    }

    /// "UTF-16" or "UTF-32" (with the byte order when there is no byte-order mark) when the file
    /// starts like JSON text in that encoding, as RFC 4627 §3 tells them apart: by its byte-order
    /// mark, or by the NUL bytes around the ASCII of the first character. Nil otherwise.
    private static func wideEncoding(of bytes: [UInt8]) -> String? {
        let head = (0..<4).map { $0 < bytes.count ? Int(bytes[$0]) : -1 }  // -1: past the end
        let ascii = 1...0x7F
        switch (head[0], head[1], head[2], head[3]) {
        case (0xFF, 0xFE, 0, 0), (0, 0, 0xFE, 0xFF): return "UTF-32"
        case (0xFF, 0xFE, _, _), (0xFE, 0xFF, _, _): return "UTF-16"
        case (0, 0, 0, ascii): return "UTF-32BE"
        case (ascii, 0, 0, 0): return "UTF-32LE"
        case (0, ascii, _, _): return "UTF-16BE"
        case (ascii, 0, _, _): return "UTF-16LE"
        default: return nil
        }
    }

    /// JSON whitespace (a line of only these is skipped).
    private static func isBlank(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
    }
}
