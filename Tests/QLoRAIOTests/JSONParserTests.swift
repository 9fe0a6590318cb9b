// The strict JSON parser of tokenizer.json and data rows: strings decode as JSONSerialization
// decodes them, numbers are integers only when written as such, arrays of token-sized integers are
// compact, and malformed input is refused saying where and why.
import Foundation
import QLoRAIO
import Testing

private func parse(_ text: String) throws -> JSONValue {
    try parse(Array(text.utf8))
}

private func parse(_ bytes: [UInt8]) throws -> JSONValue {
    try bytes.withUnsafeBytes { try JSONParser.parse($0) }
}

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
}

@Test(arguments: [
    ("[1, 2] x", "expected the end of the text after the JSON value, found 'x' at byte 8"),
    (#"{"text": "abc"} {}"#, "expected the end of the text after the JSON value, found '{' at byte 17"),
    (#"{"text": "abc"#, "a string opened at byte 10 that is not closed before the end of the text"),
    (#"{"text": "#, "expected a value before the end of the text"),
    ("[1 2]", "expected ',' or ']', found '2' at byte 4"),
    (#"{"a" 1}"#, "expected ':', found '1' at byte 6"),
    ("{a: 1}", "expected a member name in double quotes, found 'a' at byte 2"),
    ("01", "a number with a leading zero at byte 2"),
    ("1.", "expected a digit before the end of the text"),
    ("1.e5", "expected a digit, found 'e' at byte 3"),
    ("1e", "expected a digit before the end of the text"),
    (".5", "expected a value, found '.' at byte 1"),
    ("+1", "expected a value, found '+' at byte 1"),
    ("-", "expected a digit before the end of the text"),
    ("-x", "expected a digit, found 'x' at byte 2"),
    ("NaN", "expected a value, found 'N' at byte 1"),
    ("Infinity", "expected a value, found 'I' at byte 1"),
    ("1e400", "the number 1e400 is beyond the range of a Double at byte 1"),
    ("tru", "expected 'true' before the end of the text"),
    ("nul!", "expected 'null', found '!' at byte 4"),
    (#""\x""#, "an invalid escape; JSON has"),
    (#""\u12G4""#, "expected 4 hex digits after \\u, found 'G' at byte 6"),
    (#""\ud800""#, "a \\u escape of a high surrogate without a low one after it at byte 2"),
    (#""\ud800\u0041""#, "a \\u escape of a high surrogate without a low one after it at byte 2"),
    (#""ok \udc00""#, "a \\u escape of a low surrogate without a high one before it at byte 5"),
    ("\"a\tb\"", "a control character (byte 0x09) inside a string; write it as an escape such as \\n at byte 3"),
    ("", "expected a value before the end of the text"),
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
