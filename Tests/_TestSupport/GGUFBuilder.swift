// A test-only GGUF writer: builds small, valid GGUF files in memory (header, typed metadata,
// tensor directory, aligned data) that tests then corrupt on purpose. Not a general writer.
import Foundation
import QLoRAIO

/// Builds GGUF bytes. Tensor data is laid out in order, each blob starting at a multiple of the
/// alignment; `offsetOverride` writes a different directory offset to make broken files.
public struct GGUFBuilder {
    public struct Tensor {
        public var name: String
        /// ne[], innermost first, written as u64.
        public var dimensions: [UInt64]
        public var type: UInt32
        public var data: [UInt8]
        /// When set, written as the tensor's offset instead of where its data really is.
        public var offsetOverride: UInt64?

        public init(name: String, dimensions: [UInt64], type: UInt32, data: [UInt8], offsetOverride: UInt64? = nil) {
            self.name = name
            self.dimensions = dimensions
            self.type = type
            self.data = data
            self.offsetOverride = offsetOverride
        }
    }

    public var magic: UInt32 = 0x4655_4747
    public var version: UInt32 = 3
    /// Metadata in file order; add `general.alignment` here to change the alignment.
    public var metadata: [(key: String, value: GGUFValue)] = []
    public var tensors: [Tensor] = []
    /// Raw bytes written after each key's type, replacing the encoded value (for unknown types).
    public var rawValues: [String: (type: UInt32, bytes: [UInt8])] = [:]

    public init() {}

    public var alignment: Int {
        metadata.first { $0.key == "general.alignment" }?.value.intValue ?? 32
    }

    /// Adds a tensor whose data is `count` bytes of a repeating pattern.
    public mutating func addTensor(_ name: String, _ dimensions: [UInt64], type: GGMLType, fill: UInt8 = 0x11) {
        let rowBytes = Int(dimensions[0]) / type.blockSize * type.typeSize
        let rows = dimensions.dropFirst().reduce(1) { $0 * Int($1) }
        tensors.append(Tensor(name: name, dimensions: dimensions, type: type.rawValue,
                              data: [UInt8](repeating: fill, count: rowBytes * rows)))
    }

    public func build() -> [UInt8] {
        var out: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func string(_ s: String) {
            u64(UInt64(s.utf8.count))
            out.append(contentsOf: s.utf8)
        }
        func value(_ v: GGUFValue) {
            switch v {
            case .uint8(let x): out.append(x)
            case .int8(let x): out.append(UInt8(bitPattern: x))
            case .uint16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .int16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .uint32(let x): u32(x)
            case .int32(let x): u32(UInt32(bitPattern: x))
            case .uint64(let x): u64(x)
            case .int64(let x): u64(UInt64(bitPattern: x))
            case .float32(let x): u32(x.bitPattern)
            case .float64(let x): u64(x.bitPattern)
            case .bool(let x): out.append(x ? 1 : 0)
            case .string(let s): string(s)
            case .array(let type, let elements):
                u32(type.rawValue)
                u64(UInt64(elements.count))
                for e in elements { value(e) }
            }
        }

        u32(magic)
        u32(version)
        u64(UInt64(tensors.count))
        u64(UInt64(metadata.count))
        for (key, v) in metadata {
            string(key)
            if let raw = rawValues[key] {
                u32(raw.type)
                out.append(contentsOf: raw.bytes)
            } else {
                u32(v.type.rawValue)
                value(v)
            }
        }
        let align = alignment
        var offsets: [UInt64] = []
        var cursor = 0
        for t in tensors {
            offsets.append(UInt64(cursor))
            cursor = (cursor + t.data.count + align - 1) / align * align
        }
        for (i, t) in tensors.enumerated() {
            string(t.name)
            u32(UInt32(t.dimensions.count))
            for d in t.dimensions { u64(d) }
            u32(t.type)
            u64(t.offsetOverride ?? offsets[i])
        }
        while out.count % align != 0 { out.append(0) }
        let dataStart = out.count
        for (i, t) in tensors.enumerated() {
            while out.count < dataStart + Int(offsets[i]) { out.append(0) }
            out.append(contentsOf: t.data)
        }
        return out
    }
}

/// A fresh path in the temporary directory; the caller removes it.
public func temporaryPath(_ suffix: String = ".gguf") -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("qlora-\(UUID().uuidString)\(suffix)").path
}

/// Writes `bytes` to `path`, replacing it.
public func writeBytes(_ bytes: [UInt8], to path: String) {
    let written = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    precondition(written, "cannot write \(path)")
}

/// `Tests/Fixtures/<subdirectory>` located from a test source file's `#filePath`.
public func fixturesDirectory(_ subdirectory: String, filePath: String = #filePath) -> URL {
    var url = URL(fileURLWithPath: filePath)
    while url.lastPathComponent != "Tests" && url.path != "/" { url.deleteLastPathComponent() }
    return url.appendingPathComponent("Fixtures").appendingPathComponent(subdirectory)
}
