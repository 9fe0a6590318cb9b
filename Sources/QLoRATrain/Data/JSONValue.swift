// One parsed JSON value of a data row (JSONParser makes them). Arrays of token-sized integers are
// stored as 4-byte Int32s rather than one enum value each; leaves out writing JSON.

/// A JSON value, in one canonical form per text: an array whose elements are all integers within
/// Int32 (the empty array included) is always `.integers`, any other array `.array`.
enum JSONValue: Sendable, Equatable {
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
    /// Members by name; of a repeated name the last one counts (as in Python's `json`).
    case object([String: JSONValue])

    /// The elements of an array (either kind), nil for any other value.
    var elements: [JSONValue]? {
        switch self {
        case .integers(let values): return values.map { .integer(Int64($0)) }
        case .array(let values): return values
        default: return nil
        }
    }
}
