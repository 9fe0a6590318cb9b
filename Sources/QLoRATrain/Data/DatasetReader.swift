// Reads a JSONL training-data file into tokenized examples: one JSON object per line, blank lines
// skipped, bad rows collected with their line numbers. Leaves out packing and ordering (DataStream).
import Foundation
import QLoRAIO

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
    /// - Throws: `DataError.unreadable`; `.badRows` (without `skipBadRows`) listing every bad row;
    ///   `.noExamples` when none is left; `.noTokenizer`, `.noEOSToken` or `.chatTemplate` when a
    ///   row's form needs what the model lacks.
    public func read(_ path: String) throws(DataError) -> Dataset {
        let bytes: Data
        do {
            bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .unreadable(path: path, reason: error.localizedDescription)
        }
        var dataset = Dataset(path: path)
        var bad: [BadRow] = []
        var fileForm: (form: ExampleEncoder.Form, line: Int)?
        for (index, line) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated()
        where line.contains(where: { !Self.isBlank($0) }) {
            dataset.rows += 1
            do throws(RowError) {
                let object = try Self.parse(line)
                let form = try ExampleEncoder.form(of: object)
                if let first = fileForm, first.form != form {
                    throw .bad("a '\(form.rawValue)' row in a file of '\(first.form.rawValue)' rows (line \(first.line)); use one form per file")
                }
                fileForm = fileForm ?? (form, index + 1)
                let (example, truncated) = try limit(try encoder.encode(object, as: form), line: index + 1)
                dataset.examples.append(example)
                if truncated { dataset.truncated += 1 }
            } catch {
                switch error {
                case .bad(let reason): bad.append(BadRow(line: index + 1, reason: reason))
                case .needsTokenizer(let form): throw .noTokenizer(path: path, line: index + 1, form: form.rawValue)
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
            example.tokens.removeLast(example.tokens.count - maxTokens)
            example.labels.removeLast(example.labels.count - maxTokens)
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
    private static func parse(_ line: Data.SubSequence) throws(RowError) -> [String: Any] {
        let value: Any
        do {
            value = try JSONSerialization.jsonObject(with: Data(line), options: [.fragmentsAllowed])
        } catch {
            let reason = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? error.localizedDescription
            throw .bad("not valid JSON: \(reason)")
        }
        guard let object = value as? [String: Any] else { throw .bad("not a JSON object but \(ExampleEncoder.describe(value))") }
        return object
    }

    /// JSON whitespace (a line of only these is skipped).
    private static func isBlank(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
    }
}
