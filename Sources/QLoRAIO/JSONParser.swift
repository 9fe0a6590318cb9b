// A strict JSON parser (RFC 8259) for tokenizer.json and the rows of data files: the grammar
// exactly, strings checked for UTF-8 and decoded with every escape, errors with a byte offset.
// Leaves out writing JSON and what JSONSerialization lets through beyond the grammar (trailing commas).

/// Parses one JSON text held in memory (a file, or a line of a mapped data file) into a `JSONValue`.
public struct JSONParser {
    /// Where and why parsing stopped.
    public struct SyntaxError: Error, Equatable, CustomStringConvertible {
        /// 0-based offset in the input of the byte where the problem was found.
        public let offset: Int
        public let reason: String
        /// Whether the input ended where a byte was needed.
        public let atEnd: Bool

        public init(offset: Int, reason: String, atEnd: Bool) {
            self.offset = offset
            self.reason = reason
            self.atEnd = atEnd
        }

        /// "expected ',' or ']', found 'x' at byte 12" (1-based), or "... before the end of the text".
        public var description: String { atEnd ? "\(reason) before the end of the text" : "\(reason) at byte \(offset + 1)" }
    }

    /// Arrays and objects nested deeper than this are refused rather than overflowing the stack
    /// (JSONSerialization's limit).
    public static let maxDepth = 512

    private let bytes: UnsafeRawBufferPointer
    private var position = 0

    private init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// The one JSON value in `bytes` (UTF-8 without a byte-order mark), with optional whitespace
    /// around it.
    /// - Throws: `SyntaxError` unless `bytes` is exactly one JSON value: for data after it, an
    ///   unterminated string, a control character or invalid UTF-8 in a string, a lone surrogate
    ///   escape, a number beyond Double's range, nesting deeper than `maxDepth`, ...
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(SyntaxError) -> JSONValue {
        var parser = JSONParser(bytes)
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.position == bytes.count else { throw parser.expected("the end of the text after the JSON value") }
        return value
    }

    public static func parse(_ bytes: [UInt8]) throws(SyntaxError) -> JSONValue {
        // withUnsafeBytes rethrows untyped errors; the Result keeps the type.
        try bytes.withUnsafeBytes { buffer in Result { () throws(SyntaxError) in try parse(buffer) } }.get()
    }

    private mutating func value(depth: Int) throws(SyntaxError) -> JSONValue {
        guard position < bytes.count else { throw expected("a value") }
        switch bytes[position] {
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw expected("a value")
        }
    }

    private mutating func object(depth: Int) throws(SyntaxError) -> JSONValue {
        guard depth <= Self.maxDepth else { throw error("more than \(Self.maxDepth) nested arrays and objects") }
        position += 1
        var members: [(key: String, value: JSONValue)] = []
        skipWhitespace()
        if at(UInt8(ascii: "}")) {
            position += 1
            return .object(JSONObject(members: members))
        }
        repeat {
            skipWhitespace()
            guard at(UInt8(ascii: "\"")) else { throw expected("a member name in double quotes") }
            let name = try string()
            skipWhitespace()
            guard at(UInt8(ascii: ":")) else { throw expected("':'") }
            position += 1
            skipWhitespace()
            members.append((name, try value(depth: depth)))
        } while try !closes(UInt8(ascii: "}"))
        return .object(JSONObject(members: members))
    }

    /// An array: `.integers` while every element is an integer within Int32, else `.array`.
    private mutating func array(depth: Int) throws(SyntaxError) -> JSONValue {
        guard depth <= Self.maxDepth else { throw error("more than \(Self.maxDepth) nested arrays and objects") }
        position += 1
        skipWhitespace()
        if at(UInt8(ascii: "]")) {
            position += 1
            return .integers([])
        }
        var integers: [Int32] = []
        repeat {
            skipWhitespace()
            let element = try value(depth: depth)
            guard case .integer(let integer) = element, let id = Int32(exactly: integer) else {
                var elements = integers.map { JSONValue.integer(Int64($0)) }
                integers = []
                elements.append(element)
                while try !closes(UInt8(ascii: "]")) {
                    skipWhitespace()
                    elements.append(try value(depth: depth))
                }
                return .array(elements)
            }
            integers.append(id)
        } while try !closes(UInt8(ascii: "]"))
        // Without the spare capacity of growth: the ids may be kept as a training example's tokens.
        return .integers(integers.count == integers.capacity ? integers : Array(integers[...]))
    }

    /// After an element: consumes ',' (false: another element follows) or `close` (true).
    private mutating func closes(_ close: UInt8) throws(SyntaxError) -> Bool {
        skipWhitespace()
        if at(UInt8(ascii: ",")) {
            position += 1
            return false
        }
        guard at(close) else { throw expected("',' or '\(Character(Unicode.Scalar(close)))'") }
        position += 1
        return true
    }

    private mutating func literal(_ word: StaticString, _ value: JSONValue) throws(SyntaxError) -> JSONValue {
        let count = word.utf8CodeUnitCount
        for index in 0..<count where position + index >= bytes.count || bytes[position + index] != word.utf8Start[index] {
            position += index
            throw expected("'\(word)'")
        }
        position += count
        return value
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`: `.integer` when written without
    /// fraction or exponent and within Int64, else `.double`.
    private mutating func number() throws(SyntaxError) -> JSONValue {
        let start = position
        let negative = at(UInt8(ascii: "-"))
        if negative { position += 1 }
        var magnitude: UInt64 = 0
        var fits = true
        if at(UInt8(ascii: "0")) {
            position += 1
            if atDigit() { throw error("a number with a leading zero") }
        } else {
            guard atDigit() else { throw expected("a digit") }
            while atDigit() {
                let digit = UInt64(bytes[position] &- UInt8(ascii: "0"))
                if magnitude <= (UInt64.max - 9) / 10 { magnitude = magnitude * 10 + digit } else { fits = false }
                position += 1
            }
        }
        var integral = true
        if at(UInt8(ascii: ".")) {
            integral = false
            position += 1
            try digits()
        }
        if at(UInt8(ascii: "e")) || at(UInt8(ascii: "E")) {
            integral = false
            position += 1
            if at(UInt8(ascii: "+")) || at(UInt8(ascii: "-")) { position += 1 }
            try digits()
        }
        if integral && fits && magnitude <= UInt64(Int64.max) + (negative ? 1 : 0) {
            return .integer(Int64(truncatingIfNeeded: negative ? 0 &- magnitude : magnitude))
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        guard let value = Double(text), value.isFinite else { throw error("the number \(text) is beyond the range of a Double", at: start) }
        return .double(value)
    }

    /// One or more decimal digits.
    private mutating func digits() throws(SyntaxError) {
        guard atDigit() else { throw expected("a digit") }
        while atDigit() { position += 1 }
    }

    /// A string literal (at its opening quote): UTF-8 without control characters, every escape of
    /// RFC 8259 §7 decoded, a UTF-16 surrogate pair `\uD83D\uDE00` into one scalar.
    private mutating func string() throws(SyntaxError) -> String {
        let quote = position
        position += 1
        var utf8: [UInt8] = []
        var run = position  // start of the bytes not yet copied to `utf8`
        while position < bytes.count {
            switch bytes[position] {
            case UInt8(ascii: "\""):
                let tail = UnsafeRawBufferPointer(rebasing: bytes[run..<position])
                position += 1
                // Without escapes, straight from the input.
                let text = utf8.isEmpty ? String(validating: tail, as: UTF8.self) : String(validating: utf8 + tail, as: UTF8.self)
                guard let text else { throw error("a string that is not valid UTF-8", at: quote) }
                return text
            case UInt8(ascii: "\\"):
                utf8.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[run..<position]))
                position += 1
                try unescape(into: &utf8)
                run = position
            case 0..<0x20:
                throw error("a control character (byte 0x\(hex(bytes[position]))) inside a string; write it as an escape such as \\n")
            default:
                position += 1
            }
        }
        throw SyntaxError(offset: quote, reason: "a string opened at byte \(quote + 1) that is not closed", atEnd: true)
    }

    /// Appends the character of the escape whose backslash is just before `position` to `utf8`.
    private mutating func unescape(into utf8: inout [UInt8]) throws(SyntaxError) {
        let backslash = position - 1
        guard position < bytes.count else { throw expected("an escaped character") }
        let letter = bytes[position]
        position += 1
        switch letter {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(letter)
        case UInt8(ascii: "b"): utf8.append(0x08)
        case UInt8(ascii: "f"): utf8.append(0x0C)
        case UInt8(ascii: "n"): utf8.append(0x0A)
        case UInt8(ascii: "r"): utf8.append(0x0D)
        case UInt8(ascii: "t"): utf8.append(0x09)
        case UInt8(ascii: "u"):
            var code = try hex4()
            if (0xD800..<0xDC00).contains(code) {
                guard at(UInt8(ascii: "\\")), position + 1 < bytes.count, bytes[position + 1] == UInt8(ascii: "u") else {
                    throw error("a \\u escape of a high surrogate without a low one after it", at: backslash)
                }
                position += 2
                let low = try hex4()
                guard (0xDC00..<0xE000).contains(low) else {
                    throw error("a \\u escape of a high surrogate without a low one after it", at: backslash)
                }
                code = 0x10000 + (code - 0xD800) << 10 + (low - 0xDC00)
            } else if (0xDC00..<0xE000).contains(code) {
                throw error("a \\u escape of a low surrogate without a high one before it", at: backslash)
            }
            // Not a surrogate, so a scalar.
            UTF8.encode(Unicode.Scalar(code)!) { utf8.append($0) }
        default:
            throw error("an invalid escape; JSON has \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX", at: backslash)
        }
    }

    /// The four hex digits of a `\u` escape.
    private mutating func hex4() throws(SyntaxError) -> UInt32 {
        var code: UInt32 = 0
        for _ in 0..<4 {
            guard position < bytes.count, let digit = Character(Unicode.Scalar(bytes[position])).hexDigitValue else {
                throw expected("4 hex digits after \\u")
            }
            code = code << 4 | UInt32(digit)
            position += 1
        }
        return code
    }

    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    private func at(_ byte: UInt8) -> Bool {
        position < bytes.count && bytes[position] == byte
    }

    private func atDigit() -> Bool {
        position < bytes.count && (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position])
    }

    /// "expected `what`, found 'x'" at `position`.
    @inline(never)
    private func expected(_ what: String) -> SyntaxError {
        guard position < bytes.count else { return error("expected \(what)") }
        let byte = bytes[position]
        let found = (0x21...0x7E).contains(byte) ? "'\(Character(Unicode.Scalar(byte)))'" : "byte 0x\(hex(byte))"
        return error("expected \(what), found \(found)")
    }

    @inline(never)
    private func error(_ reason: String, at offset: Int? = nil) -> SyntaxError {
        let offset = offset ?? position
        return SyntaxError(offset: offset, reason: reason, atEnd: offset >= bytes.count)
    }

    private func hex(_ byte: UInt8) -> String {
        (byte < 0x10 ? "0" : "") + String(byte, radix: 16, uppercase: true)
    }
}
