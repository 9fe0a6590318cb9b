// Reads the golden fixtures written by tools/reference/make_fixtures.py: a data.bin blob and a
// manifest.json mapping each array name to dtype, shape, byte offset and byte count.
import Foundation

/// One fixture group (a folder under Tests/Fixtures).
public struct Fixture: @unchecked Sendable {
    public struct Entry: Decodable {
        public let dtype: String
        public let shape: [Int]
        public let offset: Int
        public let bytes: Int
    }
    private struct Manifest: Decodable {
        let tensors: [String: Entry]
    }

    public let directory: URL
    public let entries: [String: Entry]
    public let meta: [String: Any]
    private let data: Data

    /// The folder holding the fixture groups, found relative to this source file.
    public static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    public init(_ group: String) throws {
        directory = Self.root.appendingPathComponent(group)
        let manifestData = try Data(contentsOf: directory.appendingPathComponent("manifest.json"))
        entries = try JSONDecoder().decode(Manifest.self, from: manifestData).tensors
        let object = try JSONSerialization.jsonObject(with: manifestData) as? [String: Any]
        meta = object?["meta"] as? [String: Any] ?? [:]
        data = try Data(contentsOf: directory.appendingPathComponent("data.bin"))
    }

    public func entry(_ name: String) -> Entry {
        guard let entry = entries[name] else { preconditionFailure("fixture \(directory.lastPathComponent) has no '\(name)'; re-run tools/reference/make_fixtures.py") }
        return entry
    }

    public func bytes(_ name: String) -> [UInt8] {
        let e = entry(name)
        return [UInt8](data[data.startIndex + e.offset ..< data.startIndex + e.offset + e.bytes])
    }

    /// Little-endian values of a fixed-width type (Float, UInt16, Int64, ...).
    public func values<T: FixedWidthIntegerOrFloat>(_ name: String, as _: T.Type) -> [T] {
        let raw = bytes(name)
        let count = raw.count / MemoryLayout<T>.size
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            raw.withUnsafeBytes { source in
                for i in 0..<count { buffer[i] = source.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self) }
            }
            initialized = count
        }
    }

    public func floats(_ name: String) -> [Float] { values(name, as: Float.self) }
    public func shape(_ name: String) -> [Int] { entry(name).shape }
}

/// Marker for the plain little-endian value types fixtures hold.
public protocol FixedWidthIntegerOrFloat: BitwiseCopyable {}
extension Float: FixedWidthIntegerOrFloat {}
extension UInt16: FixedWidthIntegerOrFloat {}
extension Int64: FixedWidthIntegerOrFloat {}
extension UInt8: FixedWidthIntegerOrFloat {}
extension Int32: FixedWidthIntegerOrFloat {}
