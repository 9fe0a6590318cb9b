// JSON written the way Python's json.dumps writes it, so files we emit read back in Python with
// the same types: a float stays a float ("6.0", not "6"), in repr's shortest round-trip digits.
import Foundation

public enum PythonJSON {
    /// Python's `repr(float)`: shortest round-trip digits (Swift's `description` uses the same
    /// algorithm and exponent style, e.g. "1e-05"); integral values get ".0".
    public static func float(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "Infinity" : "-Infinity" }
        let text = value.description
        return text.contains(".") || text.contains("e") ? text : text + ".0"
    }

    /// Serializes a JSON object made of dictionaries, arrays, strings, numbers (Swift or
    /// NSNumber from JSONSerialization: integers stay integers, floats stay floats), booleans and
    /// NSNull, with sorted keys and 2-space indentation.
    public static func encode(_ value: Any, indent: Int = 0) -> String {
        let pad = String(repeating: "  ", count: indent + 1), close = String(repeating: "  ", count: indent)
        switch value {
        case let dictionary as [String: Any]:
            if dictionary.isEmpty { return "{}" }
            let items = dictionary.keys.sorted().map { "\(pad)\(jsonString($0)): \(encode(dictionary[$0]!, indent: indent + 1))" }
            return "{\n" + items.joined(separator: ",\n") + "\n\(close)}"
        case let array as [Any]:
            if array.isEmpty { return "[]" }
            return "[\n" + array.map { pad + encode($0, indent: indent + 1) }.joined(separator: ",\n") + "\n\(close)]"
        case let string as String:
            return jsonString(string)
        case is NSNull:
            return "null"
        case let bool as Bool where !(value is NSNumber):
            return bool ? "true" : "false"
        case let number as NSNumber:
            switch String(cString: number.objCType) {
            case "c", "B": return number.boolValue ? "true" : "false"
            case "f", "d": return float(number.doubleValue)
            default: return number.stringValue
            }
        case let integer as Int:
            return String(integer)
        case let double as Double:
            return float(double)
        default:
            return jsonString(String(describing: value))
        }
    }
}

/// A JSON string literal (quotes and escapes).
public func jsonString(_ value: String) -> String {
    var out = "\""
    for scalar in value.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
        }
    }
    return out + "\""
}
