// A strict JSON reader for tokenizer.json. Not Foundation's JSONSerialization: objects keep their
// members as an ordered list with the keys exactly as written (a Swift Dictionary would merge two
// vocabulary entries that are canonically equivalent, e.g. "é" and "e\u{301}"), and a syntax error
// reports its byte offset. Leaves out everything tokenizer.json does not need (no writer).

/// One parsed JSON value.
enum TokenizerJSON: Sendable {
    case null
    case bool(Bool)
    /// A number written without fraction or exponent that fits an Int.
    case int(Int)
    case double(Double)
    case string(String)
    case array([TokenizerJSON])
    /// Members in file order; duplicate keys are kept (lookups take the last, as serde_json does).
    case object([(key: String, value: TokenizerJSON)])

    /// The member `key` of an object (the last one when repeated), nil when absent or not an object.
    subscript(key: String) -> TokenizerJSON? {
        guard case .object(let members) = self else { return nil }
        return members.last { $0.key == key }?.value
    }

    var isNull: Bool { if case .null = self { return true } else { return false } }
    var string: String? { if case .string(let s) = self { return s } else { return nil } }
    var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    var int: Int? { if case .int(let i) = self { return i } else { return nil } }
    var array: [TokenizerJSON]? { if case .array(let a) = self { return a } else { return nil } }
    var members: [(key: String, value: TokenizerJSON)]? { if case .object(let m) = self { return m } else { return nil } }
    /// An int, or a double with an integral value (serde accepts `1.0` for no integer field, but
    /// Python writers never produce that; kept strict).
    var number: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// A short name of the value's JSON type, for error messages.
    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// Parses `bytes` (UTF-8) as one JSON document.
    /// - Throws: `TokenizerJSONParseError` with the byte offset and what was expected there.
    static func parse(_ bytes: [UInt8]) throws(TokenizerJSONParseError) -> TokenizerJSON {
        try bytes.withUnsafeBufferPointer { buffer throws(TokenizerJSONParseError) in
            var parser = Parser(bytes: buffer)
            parser.skipWhitespace()
            let value = try parser.value(depth: 0)
            parser.skipWhitespace()
            if parser.position != buffer.count { throw parser.error("unexpected data after the JSON value") }
            return value
        }
    }

}

/// Where and why `TokenizerJSON.parse` stopped.
struct TokenizerJSONParseError: Error {
    let offset: Int
    let reason: String
}

private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var position = 0
        /// Nesting deeper than this is refused rather than overflowing the stack.
        static let maxDepth = 256

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        @inline(never)
        func error(_ reason: String) -> TokenizerJSONParseError {
            TokenizerJSONParseError(offset: position, reason: position >= bytes.count ? "\(reason) (the file ends here: truncated?)" : reason)
        }

        mutating func skipWhitespace() {
            while position < bytes.count {
                switch bytes[position] {
                case 0x20, 0x09, 0x0A, 0x0D: position += 1
                default: return
                }
            }
        }

        mutating func expect(_ literal: StaticString, _ value: TokenizerJSON) throws(TokenizerJSONParseError) -> TokenizerJSON {
            let count = literal.utf8CodeUnitCount
            guard position + count <= bytes.count else { throw error("expected '\(literal)'") }
            for i in 0..<count where bytes[position + i] != literal.utf8Start[i] { throw error("expected '\(literal)'") }
            position += count
            return value
        }

        mutating func value(depth: Int) throws(TokenizerJSONParseError) -> TokenizerJSON {
            guard depth < Self.maxDepth else { throw error("nesting deeper than \(Self.maxDepth)") }
            guard position < bytes.count else { throw error("expected a value") }
            switch bytes[position] {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try expect("true", .bool(true))
            case UInt8(ascii: "f"): return try expect("false", .bool(false))
            case UInt8(ascii: "n"): return try expect("null", .null)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
            default: throw error("expected a value, found byte 0x\(String(bytes[position], radix: 16))")
            }
        }

        mutating func object(depth: Int) throws(TokenizerJSONParseError) -> TokenizerJSON {
            position += 1
            var members: [(key: String, value: TokenizerJSON)] = []
            skipWhitespace()
            if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
                position += 1
                return .object(members)
            }
            while true {
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw error("expected a member name") }
                let key = try string()
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw error("expected ':'") }
                position += 1
                skipWhitespace()
                members.append((key, try value(depth: depth + 1)))
                skipWhitespace()
                guard position < bytes.count else { throw error("expected ',' or '}'") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "}") { position += 1; return .object(members) }
                throw error("expected ',' or '}'")
            }
        }

        mutating func array(depth: Int) throws(TokenizerJSONParseError) -> TokenizerJSON {
            position += 1
            var elements: [TokenizerJSON] = []
            skipWhitespace()
            if position < bytes.count, bytes[position] == UInt8(ascii: "]") {
                position += 1
                return .array(elements)
            }
            while true {
                skipWhitespace()
                elements.append(try value(depth: depth + 1))
                skipWhitespace()
                guard position < bytes.count else { throw error("expected ',' or ']'") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "]") { position += 1; return .array(elements) }
                throw error("expected ',' or ']'")
            }
        }

        mutating func number() throws(TokenizerJSONParseError) -> TokenizerJSON {
            let start = position
            var integral = true
            if bytes[position] == UInt8(ascii: "-") { position += 1 }
            while position < bytes.count {
                let b = bytes[position]
                if b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") || b == UInt8(ascii: "+") || b == UInt8(ascii: "-") {
                    position += 1
                } else if b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") {
                    integral = false
                    position += 1
                } else {
                    break
                }
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
            if integral, let value = Int(text) { return .int(value) }
            guard let value = Double(text), value.isFinite else {
                position = start
                throw error("'\(text)' is not a number")
            }
            return .double(value)
        }

        /// A string literal; the input must be valid UTF-8 and escapes well formed (a lone
        /// surrogate is refused, as serde_json does).
        mutating func string() throws(TokenizerJSONParseError) -> String {
            position += 1
            let start = position
            // Fast path: no escapes.
            while position < bytes.count {
                let b = bytes[position]
                if b == UInt8(ascii: "\"") {
                    guard let s = String(validating: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self) else {
                        throw error("a string is not valid UTF-8")
                    }
                    position += 1
                    return s
                }
                if b == UInt8(ascii: "\\") { break }
                if b < 0x20 { throw error("a control character inside a string") }
                position += 1
            }
            var out: [UInt8] = Array(bytes[start..<position])
            while true {
                guard position < bytes.count else { throw error("an unterminated string") }
                let b = bytes[position]
                if b == UInt8(ascii: "\"") {
                    position += 1
                    guard let s = String(validating: out, as: UTF8.self) else { throw error("a string is not valid UTF-8") }
                    return s
                }
                if b < 0x20 { throw error("a control character inside a string") }
                if b != UInt8(ascii: "\\") {
                    out.append(b)
                    position += 1
                    continue
                }
                position += 1
                guard position < bytes.count else { throw error("an unterminated escape") }
                let e = bytes[position]
                position += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code) {
                        guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") else {
                            throw error("a lone UTF-16 surrogate escape")
                        }
                        position += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("a lone UTF-16 surrogate escape") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(code) {
                        throw error("a lone UTF-16 surrogate escape")
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw error("an invalid \\u escape") }
                    out.append(contentsOf: String(Character(scalar)).utf8)
                default:
                    throw error("an invalid escape '\\\(Character(Unicode.Scalar(e)))'")
                }
            }
        }

        mutating func hex4() throws(TokenizerJSONParseError) -> UInt32 {
            guard position + 4 <= bytes.count else { throw error("a truncated \\u escape") }
            var code: UInt32 = 0
            for _ in 0..<4 {
                let b = bytes[position]
                let digit: UInt32
                switch b {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(b - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(b - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(b - UInt8(ascii: "A") + 10)
                default: throw error("a bad \\u escape")
                }
                code = code << 4 | digit
                position += 1
            }
            return code
        }
    }
