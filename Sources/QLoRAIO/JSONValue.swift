// One parsed JSON value (JSONParser makes them), for tokenizer.json and the rows of data files.
// Arrays of token-sized integers are stored as 4-byte Int32s rather than one enum value each;
// objects keep their members in file order with the keys exactly as written (a Swift Dictionary
// would merge two vocabulary entries that are canonically equivalent, e.g. "é" and "e\u{301}").
// Leaves out writing JSON (PythonJSON does).

/// A JSON value, in one canonical form per text: an array whose elements are all integers within
/// Int32 (the empty array included) is always `.integers`, any other array `.array`.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// A number written without fraction or exponent that fits Int64 (`-0` is 0).
    case integer(Int64)
    /// Any other number: with a fraction or an exponent (`2.0`, `1e3`), or an integer beyond Int64.
    case double(Double)
    case string(String)
    /// An array of integers within Int32, 4 bytes each (token ids).
    case integers([Int32])
    /// An array with at least one element that is not an integer within Int32.
    case array([JSONValue])
    case object(JSONObject)

    /// The member `key` of an object (the last one when repeated), nil when absent or not an object.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let object) = self else { return nil }
        return object[key]
    }

    public var isNull: Bool { if case .null = self { return true } else { return false } }
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    /// An integer written as such (no fraction or exponent) that fits Int.
    public var int: Int? { if case .integer(let i) = self { return Int(exactly: i) } else { return nil } }
    /// An integer or any other number.
    public var number: Double? {
        switch self {
        case .integer(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
    /// The elements of an array (either kind), nil for any other value.
    public var array: [JSONValue]? {
        switch self {
        case .integers(let values): return values.map { .integer(Int64($0)) }
        case .array(let values): return values
        default: return nil
        }
    }
    /// The members of an object in file order, nil for any other value.
    public var members: [(key: String, value: JSONValue)]? { if case .object(let o) = self { return o.members } else { return nil } }

    /// A short name of the value's JSON type, for error messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .integer, .double: return "a number"
        case .string: return "a string"
        case .integers, .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// The members of a JSON object in file order, repeated names kept; a lookup takes the last one
/// (as Python's `json` and serde_json do). Two objects are equal when every name looks up equal.
public struct JSONObject: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    public var members: [(key: String, value: JSONValue)]

    public init(members: [(key: String, value: JSONValue)]) { self.members = members }

    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        members = elements.map { (key: $0.0, value: $0.1) }
    }

    public subscript(key: String) -> JSONValue? { members.last { $0.key == key }?.value }

    /// The distinct names, in order of first appearance.
    public var keys: [String] {
        var seen: Set<String> = []
        return members.compactMap { seen.insert($0.key).inserted ? $0.key : nil }
    }

    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        a.keys.count == b.keys.count && a.keys.allSatisfy { b[$0] != nil && a[$0] == b[$0] }
    }
}
