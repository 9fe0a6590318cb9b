// Reading data files as streams (issue 11): JSONParser against JSONSerialization's decoding, paths
// that are not UTF-8 JSONL files, and the memory a 10-million-token row takes in qlora-train.
import Foundation
import Testing
import _TestSupport
@testable import QLoRATrain

private func parse(_ text: String) throws -> JSONValue {
    try parse(Array(text.utf8))
}

private func parse(_ bytes: [UInt8]) throws -> JSONValue {
    try bytes.withUnsafeBytes { try JSONParser.parse($0) }
}

// MARK: - The parser

@Test(arguments: [
    #""plain ascii""#,
    #""\"\\\/\b\f\n\r\t""#,
    #""\u0000\u001f\u007F\u0080\u00e9\u07FF\u0800\uFFFF""#,
    #""\ud83d\ude00 \uD834\uDD1E \uDBFF\uDFFF \ud800\udc00""#,
    #""é, 日本語, 😀 and e\u0301 written out""#,
    #""line\u2028separator\u2029 and \ufeffBOM""#,
    #""a\\u0041 is not an escape, \\\"quoted\\\"""#,
    #""""#,
])
func stringsDecodeAsJSONSerializationDoes(literal: String) throws {
    let expected = try #require(try JSONSerialization.jsonObject(with: Data(literal.utf8), options: .fragmentsAllowed) as? String)
    guard case .string(let decoded) = try parse(literal) else {
        Issue.record("\(literal) is not a string")
        return
    }
    // Scalar by scalar: String's == would let canonically equivalent strings pass.
    #expect(Array(decoded.unicodeScalars) == Array(expected.unicodeScalars), "\(literal)")
}

@Test(arguments: [
    ("0", JSONValue.integer(0)),
    ("-0", .integer(0)),
    ("42", .integer(42)),
    ("-7", .integer(-7)),
    ("9223372036854775807", .integer(.max)),
    ("-9223372036854775808", .integer(.min)),
    ("9223372036854775808", .double(9223372036854775808)),
    ("99999999999999999999", .double(1e20)),
    ("1.5", .double(1.5)),
    ("2.0", .double(2)),
    ("-0.25", .double(-0.25)),
    ("1e30", .double(1e30)),
    ("1E+2", .double(100)),
    ("25e-1", .double(2.5)),
    ("0.1", .double(0.1)),
    ("1e-400", .double(0)),
])
func numbersAreIntegersOnlyWhenWrittenAsSuch(text: String, expected: JSONValue) throws {
    #expect(try parse(text) == expected)
    let inArray: JSONValue = if case .integer(let integer) = expected, let id = Int32(exactly: integer) { .integers([id]) } else { .array([expected]) }
    #expect(try parse(" [\(text)] ") == inArray)
    // The same value as JSONSerialization's, where it has one.
    if let number = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed) as? NSNumber {
        switch expected {
        case .integer(let integer): #expect(number.int64Value == integer)
        case .double(let double): #expect(number.doubleValue == double)
        default: Issue.record("\(expected) is not a number")
        }
    }
}

@Test func arraysOfTokenSizedIntegersAreStoredAsInt32() throws {
    #expect(try parse("[]") == .integers([]))
    #expect(try parse("[1, -2, 2147483647, -2147483648]") == .integers([1, -2, .max, .min]))
    #expect(try parse("[1, 2147483648]") == .array([.integer(1), .integer(2147483648)]))
    #expect(try parse(#"[1, 1.5, "a", true, null, [], {}]"#)
        == .array([.integer(1), .double(1.5), .string("a"), .bool(true), .null, .integers([]), .object([:])]))
    #expect(try parse(" [ [ 3 ] , [ ] ] ") == .array([.integers([3]), .integers([])]))
    // A repeated member keeps the last value, as JSONSerialization and Python's json do.
    #expect(try parse(#"{"a": 1, "b": {"c": null}, "a": [2]}"#) == .object(["a": .integers([2]), "b": .object(["c": .null])]))
    #expect(ExampleEncoder.describe(try parse("-0.0")) == "the number -0.0")
    #expect(ExampleEncoder.describe(try parse("1e30")) == "the number 1e+30")
}

@Test(arguments: [
    ("[1, 2] x", "expected the end of the row after the JSON value, found 'x' at byte 8"),
    (#"{"text": "abc"} {}"#, "expected the end of the row after the JSON value, found '{' at byte 17"),
    (#"{"text": "abc"#, "a string that is not closed at byte 10"),
    (#"{"text": "#, "expected a value before the end of the row"),
    ("[1 2]", "expected ',' or ']', found '2' at byte 4"),
    (#"{"a" 1}"#, "expected ':', found '1' at byte 6"),
    ("{a: 1}", "expected a member name in double quotes, found 'a' at byte 2"),
    ("01", "a number with a leading zero at byte 2"),
    ("1.", "expected a digit before the end of the row"),
    ("1.e5", "expected a digit, found 'e' at byte 3"),
    ("1e", "expected a digit before the end of the row"),
    (".5", "expected a value, found '.' at byte 1"),
    ("+1", "expected a value, found '+' at byte 1"),
    ("-", "expected a digit before the end of the row"),
    ("-x", "expected a digit, found 'x' at byte 2"),
    ("NaN", "expected a value, found 'N' at byte 1"),
    ("Infinity", "expected a value, found 'I' at byte 1"),
    ("1e400", "the number 1e400 is beyond the range of a Double at byte 1"),
    ("tru", "expected 'true' before the end of the row"),
    ("nul!", "expected 'null', found '!' at byte 4"),
    (#""\x""#, "an invalid escape; JSON has"),
    (#""\u12G4""#, "expected 4 hex digits after \\u, found 'G' at byte 6"),
    (#""\ud800""#, "a \\u escape of a high surrogate without a low one after it at byte 2"),
    (#""\ud800\u0041""#, "a \\u escape of a high surrogate without a low one after it at byte 2"),
    (#""ok \udc00""#, "a \\u escape of a low surrogate without a high one before it at byte 5"),
    ("\"a\tb\"", "a control character (byte 0x09) inside a string; write it as an escape such as \\n at byte 3"),
    ("", "expected a value before the end of the row"),
    (String(repeating: "[", count: 513) + String(repeating: "]", count: 513), "more than 512 nested arrays and objects at byte 513"),
])
func malformedJSONIsRefusedWithWhereAndWhy(text: String, reason: String) throws {
    #expect(throws: (any Error).self, "JSONSerialization refuses it too") {
        try JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed)
    }
    #expect {
        _ = try parse(text)
    } throws: { error in
        "\(error)".hasPrefix(reason)
    }
}

@Test func nestingUpToTheLimitIsAccepted() throws {
    let depth = JSONParser.maxDepth
    let nested = try parse(String(repeating: "[", count: depth) + String(repeating: "]", count: depth))
    #expect(nested != .null)
}

@Test(arguments: [
    [0x22, 0xFF, 0x22],  // a byte never in UTF-8
    [0x22, 0xC0, 0x80, 0x22],  // overlong NUL
    [0x22, 0xED, 0xA0, 0x80, 0x22],  // a surrogate encoded as UTF-8
    [0x22, 0x61, 0xE9, 0x22],  // Latin-1 é
    [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // beyond U+10FFFF
    [0x22, 0x5C, 0x6E, 0xE2, 0x82, 0x22],  // truncated after an escape
] as [[UInt8]])
func invalidUTF8InAStringIsRefused(bytes: [UInt8]) {
    #expect(throws: (any Error).self, "JSONSerialization refuses it too") {
        try JSONSerialization.jsonObject(with: Data(bytes), options: .fragmentsAllowed)
    }
    #expect(throws: JSONParser.SyntaxError(offset: 0, reason: "a string that is not valid UTF-8", atEnd: false)) { _ = try parse(bytes) }
}

@Test func trailingGarbageAndCommasAreBadRows() throws {
    let file = try DataFile(lines: [#"{"input_ids": [1, 2]}"#, #"{"input_ids": [1, 2]} x"#, #"{"input_ids": [1, 2,]}"#, #"{"input_ids": [1, 2], }"#])
    let error = dataError { _ = try DatasetReader(tokenizer: nil, vocabularySize: 10).read(file.path) }
    #expect(error == .badRows(path: file.path, rows: [
        BadRow(line: 2, reason: "not valid JSON: expected the end of the row after the JSON value, found 'x' at byte 23"),
        BadRow(line: 3, reason: "not valid JSON: expected a value, found ']' at byte 21"),
        BadRow(line: 4, reason: "not valid JSON: expected a member name in double quotes, found '}' at byte 23"),
    ], total: 4))
}

// MARK: - Paths that are not UTF-8 JSONL files

private let reader = DatasetReader(tokenizer: nil, vocabularySize: 10)

@Test func aDirectoryIsRefusedWithWhatToPass() throws {
    let directory = try TemporaryDirectory()
    let error = dataError { _ = try reader.read(directory.path) }
    #expect(error == .isDirectory(path: directory.path))
    #expect(error?.description == "\(directory.path): is a directory; pass a JSONL file (one JSON object per line)")
}

@Test func devNullAndFIFOsAreNotRegularFiles() throws {
    let devNull = dataError { _ = try reader.read("/dev/null") }
    #expect(devNull == .notRegularFile(path: "/dev/null", kind: "a character device"))
    #expect(devNull?.description.hasPrefix("/dev/null: is a character device, not a regular file; save the data as a JSONL file") == true)

    let directory = try TemporaryDirectory()
    let fifo = directory.path + "/data.jsonl"
    #expect(mkfifo(fifo, 0o600) == 0)
    #expect(dataError { _ = try reader.read(fifo) } == .notRegularFile(path: fifo, kind: "a FIFO (named pipe)"))
}

@Test func aMissingFileReportsTheSystemError() throws {
    let directory = try TemporaryDirectory()
    let missing = directory.path + "/none.jsonl"
    let error = dataError { _ = try reader.read(missing) }
    #expect(error == .unreadable(path: missing, reason: "No such file or directory"))
    #expect(error?.description == "\(missing): cannot read the training data: No such file or directory; check the path and that the file is readable")
}

/// `text` in code units of `width` bytes (2: UTF-16, 4: UTF-32), little- or big-endian.
private func encoded(_ text: String, width: Int, bigEndian: Bool) -> [UInt8] {
    let units: [UInt32] = width == 2 ? text.utf16.map(UInt32.init) : text.unicodeScalars.map(\.value)
    return units.flatMap { unit in
        let bytes = (0..<width).map { UInt8(truncatingIfNeeded: unit >> (8 * $0)) }
        return bigEndian ? bytes.reversed() : bytes
    }
}

private let row = "{\"input_ids\": [1, 2]}\n"

@Test(arguments: [
    ("UTF-16", encoded("\u{FEFF}" + row, width: 2, bigEndian: false)),
    ("UTF-16", encoded("\u{FEFF}" + row, width: 2, bigEndian: true)),
    ("UTF-16LE", encoded(row, width: 2, bigEndian: false)),
    ("UTF-16BE", encoded("\n" + row, width: 2, bigEndian: true)),
    ("UTF-32", encoded("\u{FEFF}" + row, width: 4, bigEndian: false)),
    ("UTF-32", encoded("\u{FEFF}" + row, width: 4, bigEndian: true)),
    ("UTF-32LE", encoded(row, width: 4, bigEndian: false)),
    ("UTF-32BE", encoded(" " + row, width: 4, bigEndian: true)),
])
func utf16AndUTF32FilesSayHowToConvert(encoding: String, bytes: [UInt8]) throws {
    let directory = try TemporaryDirectory()
    let path = directory.path + "/data.jsonl"
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    let error = dataError { _ = try reader.read(path) }
    #expect(error == .notUTF8(path: path, encoding: encoding))
    #expect(error?.description == "\(path): the file is \(encoding) text, but JSONL must be UTF-8; convert it with iconv -f \(encoding) -t UTF-8 \(path) > converted.jsonl")
}

@Test func aUTF8ByteOrderMarkIsSkipped() throws {
    let file = try DataFile("\u{FEFF}{\"input_ids\": [1, 2]}\n\u{FEFF}{\"input_ids\": [3, 4]}\n")
    let first = dataError { _ = try reader.read(file.path) }
    // Only at the start of the file: within it, it is a character where JSON allows none.
    #expect(first == .badRows(path: file.path, rows: [BadRow(line: 2, reason: "not valid JSON: expected a value, found byte 0xEF at byte 1")], total: 2))
    let dataset = try DatasetReader(tokenizer: nil, vocabularySize: 10, skipBadRows: true).read(file.path)
    #expect(dataset.examples == [TrainingExample(tokens: [1, 2], labels: [1, 2], line: 1)])
}

// MARK: - Memory

/// One row of 10 000 128 token ids (`i % 256`, 45.7 MB of text) trains with `--mem-budget 400MiB`:
/// the peak RSS the executable reports stays under it. Reading it with JSONSerialization took
/// over 1 GiB (issue 11). Measured in a child process, away from the tests running in this one.
@Test func aTenMillionTokenRowIsReadWithinTheBudget() throws {
    let directory = try TemporaryDirectory()
    let data = directory.path + "/big.jsonl", metrics = directory.path + "/metrics.jsonl"
    let period = (0..<256).map { "\($0)" }.joined(separator: ", ")
    let block = Data(Array(repeating: period, count: 1_000).joined(separator: ", ").utf8)
    try Data().write(to: URL(fileURLWithPath: data))
    let file = try FileHandle(forWritingTo: URL(fileURLWithPath: data))
    try file.write(contentsOf: Data(#"{"input_ids": ["#.utf8))
    for index in 0..<39 { try file.write(contentsOf: Data((index == 0 ? "" : ", ").utf8) + block) }
    try file.write(contentsOf: Data((Array(repeating: ", " + period, count: 63).joined() + "]}\n").utf8))
    try file.close()

    let process = Process()
    process.executableURL = URL(fileURLWithPath: try trainExecutable())
    process.arguments = ["--model", modelDirectory, "--data", data, "--output", directory.path + "/out",
                         "--mem-budget", "400MiB", "--max-steps", "1", "--seq-len", "32", "--batch-size", "1", "--valid-fraction", "0",
                         "--metrics", metrics]
    let output = Pipe(), errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let stdout = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(process.terminationStatus == 0, "\(stderr)")
    #expect(stdout.contains("Data: 1 examples (0 skipped, 1 truncated), 32 tokens"), "\(stdout)")
    let line = try #require(String(decoding: try Data(contentsOf: URL(fileURLWithPath: metrics)), as: UTF8.self).split(separator: "\n").first)
    let peak = try #require((try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["peak_rss_bytes"] as? Int)
    #expect(peak < 400 << 20, "peak RSS \(peak) bytes")
}
