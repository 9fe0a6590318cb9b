// DatasetReader: each row form against Hugging Face's tokenization (Tests/Fixtures/chat), every
// kind of bad row with its line, skipping, truncation and the whole-file errors.
import Foundation
import QLoRAIO
import QLoRATokenizer
import QLoRAModel
import Testing
import _TestSupport
@testable import QLoRATrain

@Test func textRowsAreBOSTextEOSWithLossEverywhere() throws {
    let cases = try requireChatCases()
    let file = try DataFile(lines: try cases.text.map { try jsonLine(["text": $0.text]) })
    let dataset = try DatasetReader(tokenizer: try requireSmolTokenizer(), vocabularySize: smolVocabularySize).read(file.path)
    #expect(dataset.examples.count == cases.text.count && dataset.rows == cases.text.count)
    for (example, fixture) in zip(dataset.examples, cases.text) {
        #expect(example.tokens == fixture.tokens, "line \(example.line)")
        #expect(example.labels == fixture.labels, "line \(example.line)")
    }
    #expect(dataset.skipped.isEmpty && dataset.truncated == 0)
}

@Test func promptCompletionRowsTrainTheCompletionOnly() throws {
    let cases = try requireChatCases()
    let file = try DataFile(lines: try cases.prompt_completion.map { try jsonLine(["prompt": $0.prompt, "completion": $0.completion, "id": 7]) })
    let dataset = try DatasetReader(tokenizer: try requireSmolTokenizer(), vocabularySize: smolVocabularySize).read(file.path)
    #expect(dataset.examples.count == cases.prompt_completion.count)
    for (example, fixture) in zip(dataset.examples, cases.prompt_completion) {
        #expect(example.tokens == fixture.tokens, "line \(example.line)")
        #expect(example.labels == fixture.labels, "line \(example.line)")
    }
}

@Test func tokenIdRowsAreTakenAsTheyAre() throws {
    // Blank lines and CRLF endings do not shift the line numbers.
    let file = try DataFile("{\"input_ids\": [1, 2, 3]}\r\n\n  \t\n{\"input_ids\": [5, 6, 0, 9], \"labels\": [-100, 6, -100, 9]}\n")
    let dataset = try DatasetReader(tokenizer: nil, vocabularySize: 10).read(file.path)
    #expect(dataset.examples == [
        TrainingExample(tokens: [1, 2, 3], labels: [1, 2, 3], line: 1),
        TrainingExample(tokens: [5, 6, 0, 9], labels: [-100, 6, -100, 9], line: 4),
    ])
    #expect(dataset.rows == 2)
    #expect(dataset.examples.map(\.targetCount) == [2, 2])
}

/// A file of a good row of the form, a blank line and `row`: reading must report exactly line 3
/// with a reason containing `reason`.
private func expectBadRow(_ row: String, after good: String, reason: String, reader: DatasetReader,
                          sourceLocation: SourceLocation = #_sourceLocation) throws {
    let file = try DataFile(lines: [good, "", row])
    let error = dataError { _ = try reader.read(file.path) }
    guard case .badRows(let path, let rows, let total)? = error else {
        Issue.record("expected a bad row for \(row), got \(String(describing: error))", sourceLocation: sourceLocation)
        return
    }
    #expect(path == file.path && total == 2 && rows.map(\.line) == [3], sourceLocation: sourceLocation)
    #expect(rows.first?.reason.contains(reason) == true, "\(rows.first?.reason ?? "") lacks \(reason)", sourceLocation: sourceLocation)
    #expect(error!.description.contains("\(file.path):3: \(rows.first?.reason ?? "")"), sourceLocation: sourceLocation)
    #expect(error!.description.contains("--skip-bad-rows"), sourceLocation: sourceLocation)
}

@Test(arguments: [
    (#"{"text": "#, "not valid JSON"),
    ("[1, 2]", "not a JSON object but an array"),
    (#""text""#, "not a JSON object but a string"),
    (#"{"foo": 1, "bar": 2}"#, "no 'text', 'prompt'/'completion', 'messages' or 'input_ids' field (found 'bar', 'foo')"),
    (#"{"text": 5}"#, "'text' must be a string, not the number 5"),
    (#"{"text": true}"#, "'text' must be a string, not a boolean"),
    (#"{"text": ""}"#, "'text' is empty"),
    (#"{"text": "a", "messages": []}"#, "fields of several forms (text, messages); use one form per row"),
    (#"{"prompt": "a", "completion": "b"}"#, "a 'prompt/completion' row in a file of 'text' rows (line 1); use one form per file"),
])
func badTextRows(row: String, reason: String) throws {
    let reader = DatasetReader(tokenizer: try requireSmolTokenizer(), vocabularySize: smolVocabularySize)
    try expectBadRow(row, after: #"{"text": "fine"}"#, reason: reason, reader: reader)
}

@Test(arguments: [
    (#"{"prompt": "p"}"#, "no 'completion' field"),
    (#"{"completion": "c"}"#, "no 'prompt' field"),
    (#"{"prompt": "p", "completion": ""}"#, "'completion' is empty"),
    (#"{"prompt": null, "completion": "c"}"#, "'prompt' must be a string, not null"),
])
func badPromptCompletionRows(row: String, reason: String) throws {
    let reader = DatasetReader(tokenizer: try requireSmolTokenizer(), vocabularySize: smolVocabularySize)
    try expectBadRow(row, after: #"{"prompt": "p", "completion": "c"}"#, reason: reason, reader: reader)
}

@Test(arguments: [
    (#"{"messages": [{"role": "user", "content": "hi"}]}"#, "no assistant message: nothing to train on"),
    (#"{"messages": []}"#, "no assistant message"),
    (#"{"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]}"#, "messages[0].role 'tool' is not one of system, user, assistant"),
    (#"{"messages": [{"role": "user", "content": ["x"]}]}"#, "messages[0].content must be a string, not an array"),
    (#"{"messages": [{"content": "x"}]}"#, "no messages[0].role field"),
    (#"{"messages": ["hi"]}"#, "messages[0] must be an object, not a string"),
    (#"{"messages": {"role": "user"}}"#, "'messages' must be an array of {\"role\", \"content\"} objects, not an object"),
])
func badMessageRows(row: String, reason: String) throws {
    let reader = DatasetReader(tokenizer: try requireSmolTokenizer(), vocabularySize: smolVocabularySize)
    try expectBadRow(row, after: #"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"#,
                     reason: reason, reader: reader)
}

@Test(arguments: [
    (#"{"input_ids": [1, 1.5]}"#, "input_ids[1] is the number 1.5, not an integer"),
    (#"{"input_ids": [1, 1e30]}"#, "input_ids[1] is the number 1e+30, not an integer"),
    (#"{"input_ids": [1, 2.0]}"#, "input_ids[1] is the number 2"),
    (#"{"input_ids": [1, 99999999999999999999]}"#, "not an integer"),
    (#"{"input_ids": [1, true]}"#, "input_ids[1] is a boolean, not an integer"),
    (#"{"input_ids": [1, "2"]}"#, "input_ids[1] is a string, not an integer"),
    (#"{"input_ids": "1 2"}"#, "'input_ids' must be an array of integers, not a string"),
    (#"{"input_ids": []}"#, "'input_ids' is empty"),
    (#"{"input_ids": [1, 100]}"#, "token id 100 at position 1 is outside the model's vocabulary [0, 100)"),
    (#"{"input_ids": [-1, 2]}"#, "token id -1 at position 0 is outside the model's vocabulary [0, 100)"),
    (#"{"input_ids": [1, 3000000000]}"#, "input_ids[1] = 3000000000 is outside the vocabulary [0, 100)"),
    (#"{"input_ids": [1, 2], "labels": [1]}"#, "'labels' has 1 entries but 'input_ids' has 2"),
    (#"{"input_ids": [1, 2], "labels": [1, -5]}"#, "labels[1] = -5 is neither -100 nor an id of the vocabulary [0, 100)"),
    (#"{"input_ids": [1, 2], "labels": [1, 100]}"#, "labels[1] = 100 is neither -100"),
    (#"{"input_ids": [1, 2], "labels": [1, -100]}"#, "no token to train on (every label after the first is -100)"),
    (#"{"input_ids": [7]}"#, "no token to train on"),
    (#"{"input_ids": [1, 2, 3, 4, 5, 6]}"#, "6 tokens, more than the limit of 5 (the sequence length)"),
])
func badTokenIdRows(row: String, reason: String) throws {
    let reader = DatasetReader(tokenizer: nil, vocabularySize: 100, maxTokens: 5, truncate: false)
    try expectBadRow(row, after: #"{"input_ids": [1, 2, 3]}"#, reason: reason, reader: reader)
}

@Test func badRowsAreListedUpToTenWithACount() throws {
    let file = try DataFile(lines: [#"{"input_ids": [1, 2]}"#] + (0..<12).map { #"{"input_ids": [1, \#(200 + $0)]}"# })
    let error = try #require(dataError { _ = try DatasetReader(tokenizer: nil, vocabularySize: 100).read(file.path) })
    guard case .badRows(_, let rows, let total) = error else { Issue.record("\(error)"); return }
    #expect(rows.map(\.line) == Array(2...13) && total == 13)
    let lines = error.description.split(separator: "\n")
    #expect(lines.first == "\(file.path): 12 of 13 rows cannot be used:")
    #expect(lines.filter { $0.hasPrefix("  \(file.path):") }.count == 10)
    #expect(lines.contains("  \(file.path):11: token id 209 at position 1 is outside the model's vocabulary [0, 100)"))
    #expect(!lines.contains { $0.hasPrefix("  \(file.path):12:") })
    #expect(lines.contains("  ... and 2 more"))
    #expect(lines.last == "Fix these rows, or pass --skip-bad-rows to leave them out.")
}

@Test func skippingDropsBadRowsAndCountsThem() throws {
    let file = try DataFile(lines: [#"{"input_ids": [1, 2]}"#, "oops", #"{"input_ids": [3, 4]}"#, #"{"input_ids": [5]}"#, #"{"input_ids": [6, 7]}"#])
    let dataset = try DatasetReader(tokenizer: nil, vocabularySize: 10, skipBadRows: true).read(file.path)
    #expect(dataset.examples.map(\.line) == [1, 3, 5])
    #expect(dataset.skipped.map(\.line) == [2, 4])
    #expect(dataset.rows == 5)

    let allBad = try DataFile(lines: ["oops", #"{"input_ids": [5]}"#])
    let error = dataError { _ = try DatasetReader(tokenizer: nil, vocabularySize: 10, skipBadRows: true).read(allBad.path) }
    #expect(error == .noExamples(path: allBad.path, skipped: 2))
    #expect(error?.description.contains("all 2 rows are bad") == true)
}

@Test func truncationKeepsTheFirstTokens() throws {
    let cases = try requireChatCases()
    let tokenizer = try requireSmolTokenizer()
    let long = try #require(cases.text.last)
    let file = try DataFile(lines: [try jsonLine(["text": long.text]), try jsonLine(["text": "ok"])])
    let dataset = try DatasetReader(tokenizer: tokenizer, vocabularySize: smolVocabularySize, maxTokens: 5).read(file.path)
    #expect(dataset.examples[0].tokens == Array(long.tokens.prefix(5)))
    #expect(dataset.examples[0].labels == Array(long.labels.prefix(5)))
    #expect(dataset.examples[1].tokens.count < 5)
    #expect(dataset.truncated == 1)

    // A conversation whose assistant turn lies past the cut has nothing left to train.
    let chat = try #require(cases.chat.first)
    let chatFile = try DataFile(lines: [try jsonLine(["messages": chat.messages.map { ["role": $0.role, "content": $0.content] }])])
    let error = dataError { _ = try DatasetReader(tokenizer: tokenizer, vocabularySize: smolVocabularySize, maxTokens: 8).read(chatFile.path) }
    #expect(error == .badRows(path: chatFile.path, rows: [BadRow(line: 1, reason: "no token to train on within the first 8 tokens (the rest is cut by truncation)")], total: 1))
}

@Test func wholeFileErrorsNameThePath() throws {
    let directory = try TemporaryDirectory()
    let missing = (directory.path as NSString).appendingPathComponent("none.jsonl")
    guard case .unreadable(let path, _)? = dataError({ _ = try DatasetReader(tokenizer: nil, vocabularySize: 10).read(missing) }) else {
        Issue.record("a missing file must be unreadable")
        return
    }
    #expect(path == missing)

    for text in ["", "\n \n\t\r\n"] {
        let empty = try DataFile(text)
        let error = dataError { _ = try DatasetReader(tokenizer: nil, vocabularySize: 10).read(empty.path) }
        #expect(error == .noExamples(path: empty.path, skipped: 0))
        #expect(error?.description == "\(empty.path): no training examples: the file is empty; give one JSON object per line")
    }
}

@Test func formsThatNeedATokenizerSaySo() throws {
    let file = try DataFile(lines: [#"{"input_ids": [1, 2]}"#, #"{"text": "a"}"#])
    let mixed = dataError { _ = try DatasetReader(tokenizer: nil, vocabularySize: 10).read(file.path) }
    #expect(mixed == .badRows(path: file.path, rows: [BadRow(line: 2, reason: "a 'text' row in a file of 'input_ids' rows (line 1); use one form per file")], total: 2))

    let text = try DataFile(lines: ["", #"{"text": "a"}"#])
    let error = dataError { _ = try DatasetReader(tokenizer: nil, vocabularySize: 10).read(text.path) }
    #expect(error == .noTokenizer(path: text.path, line: 2, form: "text"))
    #expect(error?.description.contains("the model directory has no tokenizer.json") == true)

    let chat = try DataFile(lines: [#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}"#])
    #expect(dataError { _ = try DatasetReader(tokenizer: nil, vocabularySize: 10).read(chat.path) } == .noTokenizer(path: chat.path, line: 1, form: "messages"))
}

@Test func textNeedsAnEOSAndChatATemplate() throws {
    // The bare tokenizer fixture has no tokenizer_config.json beside it: no EOS, no chat template.
    let bare = try Tokenizer(path: fixturesDirectory("tokenizer").appendingPathComponent("smollm2.tokenizer.json").path)
    let text = try DataFile(lines: [#"{"text": "a"}"#])
    #expect(dataError { _ = try DatasetReader(tokenizer: bare, vocabularySize: smolVocabularySize).read(text.path) } == .noEOSToken(tokenizer: bare.path))

    let chat = try DataFile(lines: [#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}"#])
    let error = try #require(dataError { _ = try DatasetReader(tokenizer: bare, vocabularySize: smolVocabularySize).read(chat.path) })
    #expect(error == .chatTemplate(path: fixturesDirectory("tokenizer").appendingPathComponent("tokenizer_config.json").path,
                                   reason: "no tokenizer_config.json with a chat_template"))
    #expect(error.description.hasSuffix("; pass --chat-template chatml|llama2|llama3"))

    // With --chat-template chatml it renders without a default system turn.
    let dataset = try DatasetReader(tokenizer: bare, vocabularySize: smolVocabularySize, chatTemplate: .chatml).read(chat.path)
    let im_start: Int32 = 1, im_end: Int32 = 2, newline: Int32 = 198
    #expect(dataset.examples[0].tokens.first == im_start)
    #expect(dataset.examples[0].tokens.suffix(2) == [im_end, newline])
    #expect(dataset.examples[0].targetCount == 2)  // "b" and <|im_end|>
}
