// Reads GGUF, llama.cpp's model file (versions 2 and 3, little-endian): the header, the typed
// metadata and the tensor directory, each checked against the file size, so that a corrupt or
// hostile file fails with a hint and never crashes. Tensor bytes stay in the memory map.
// Writing GGUF, version 1 and big-endian files are left out.

/// A GGUF metadata value type, numbered as `enum gguf_type` (gguf.h; gguf-py `GGUFValueType`).
public enum GGUFValueType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    public var description: String {
        switch self {
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .uint16: return "uint16"
        case .int16: return "int16"
        case .uint32: return "uint32"
        case .int32: return "int32"
        case .float32: return "float32"
        case .bool: return "bool"
        case .string: return "string"
        case .array: return "array"
        case .uint64: return "uint64"
        case .int64: return "int64"
        case .float64: return "float64"
        }
    }

    /// Bytes of one value on disk; for strings and arrays, the smallest possible encoding
    /// (an empty string is its u64 length, an empty array its u32 type and u64 count).
    var minimumSize: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64, .string: return 8
        case .array: return 12
        }
    }
}

/// One GGUF metadata value. Strings are decoded as UTF-8, invalid sequences replaced by U+FFFD.
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
    /// An array with its element type (kept so that an empty array still has one).
    case array(GGUFValueType, [GGUFValue])

    public var type: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .uint64: return .uint64
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        }
    }

    /// The value of any integer type when it fits in `Int`; nil for other types.
    public var intValue: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(exactly: v)
        default: return nil
        }
    }

    /// The value of a float32 or float64; nil for other types.
    public var doubleValue: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return nil
        }
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The elements of an array; nil for other types.
    public var arrayValue: [GGUFValue]? {
        if case .array(_, let elements) = self { return elements }
        return nil
    }
}

/// Where one tensor lives in a GGUF file and how it is laid out.
///
/// GGUF lists dimensions innermost first (ggml `ne[]`): `dimensions[0]` is contiguous, so an HF
/// `[out, in]` matrix has `dimensions == [in, out]`, `rowLength == in`, `rowCount == out`.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// ggml `ne[0..<n_dims]`, innermost (contiguous) first; 1 to 4 entries, each >= 0.
    public let dimensions: [Int]
    public let type: GGMLType
    /// Absolute byte offset of the first block in the file (data section start + stored offset).
    public let dataOffset: Int
    /// Bytes of tensor data: `rowCount * rowBytes`.
    public let byteCount: Int
    /// Rows: the product of `dimensions[1...]` (1 for a vector).
    public let rowCount: Int
    /// All elements: `rowLength * rowCount`.
    public let elementCount: Int
    /// Bytes of one row: `rowLength / type.blockSize * type.typeSize`.
    public let rowBytes: Int

    /// Elements in one row: `dimensions[0]`, a multiple of `type.blockSize`.
    public var rowLength: Int { dimensions[0] }
}

/// A parsed, validated GGUF file. The tensor data is reached through the memory map `file`.
///
/// Guarantees after `init` returns: every tensor has 1...4 dimensions, a known type, a row length
/// that is a multiple of the type's block size, an element and byte count that fit in `Int`, an
/// offset aligned to `alignment`, and a data range inside the file that overlaps no other tensor;
/// tensor names and metadata keys are unique.
public struct GGUFFile: Sendable {
    public let path: String
    /// 2 or 3 (2 and 3 differ only in that 3 may be big-endian, which is rejected).
    public let version: UInt32
    /// All key/value pairs.
    public let metadata: [String: GGUFValue]
    /// The metadata keys in file order.
    public let metadataKeys: [String]
    /// Tensors in file (directory) order.
    public let tensors: [GGUFTensorInfo]
    /// `general.alignment`, or 32 when absent.
    public let alignment: Int
    /// Absolute offset of the data section (the end of the header, rounded up to `alignment`).
    public let dataSectionOffset: Int
    /// The memory map; kept open for the lifetime of this value.
    public let file: MappedFile
    private let tensorIndex: [String: Int]

    /// GGUF magic "GGUF" as a little-endian u32.
    public static let magic: UInt32 = 0x4655_4747
    public static let defaultAlignment = 32
    public static let supportedVersions: ClosedRange<UInt32> = 2...3
    /// ggml `GGML_MAX_DIMS`.
    public static let maxDimensions = 4
    /// Deepest array nesting accepted (llama.cpp accepts none; gguf-py reads nested arrays).
    static let maxArrayDepth = 2
    /// Memory bounds for a hostile header, far above real models (a 262k vocabulary, its scores,
    /// types and 500k merges are about 1.3M array elements and 20 MB of header):
    /// the header (metadata + tensor directory) must end within this many bytes, ...
    public static let maxHeaderBytes = 1 << 28
    /// ... all metadata arrays together hold at most this many elements (each is a `GGUFValue`), ...
    public static let maxMetadataElements = 1 << 24
    /// ... and there are at most this many tensors.
    public static let maxTensors = 1 << 20

    /// Maps and parses the file at `path`.
    /// - Throws: `GGUFError` naming the path (and the key or tensor) with a hint.
    public init(path: String) throws(GGUFError) {
        let mapped: MappedFile
        do { mapped = try MappedFile(path: path) } catch { throw .file(error) }
        var reader = GGUFReader(file: mapped)

        let magic = try reader.u32("the magic number")
        guard magic == GGUFFile.magic else { throw .badMagic(path: path, found: magic) }
        let version = try reader.u32("the version")
        guard GGUFFile.supportedVersions.contains(version) else { throw .unsupportedVersion(path: path, version: version) }
        let tensorCount = try reader.count("the tensor count", minimumItemSize: 32, limit: GGUFFile.maxTensors)
        let kvCount = try reader.count("the metadata count", minimumItemSize: 13, limit: GGUFFile.maxMetadataElements)

        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        metadata.reserveCapacity(kvCount)
        keys.reserveCapacity(kvCount)
        for entry in 0..<kvCount {
            let key = try reader.string("the key of metadata entry \(entry)")
            let rawType = try reader.u32("the type of metadata '\(key)'")
            guard let type = GGUFValueType(rawValue: rawType) else { throw .unknownValueType(path: path, key: key, type: rawType) }
            let value = try reader.value(of: type, key: key, depth: 0)
            guard metadata.updateValue(value, forKey: key) == nil else { throw .duplicateKey(path: path, key: key) }
            keys.append(key)
        }

        var alignment = GGUFFile.defaultAlignment
        if let value = metadata["general.alignment"] {
            guard let a = value.intValue, a > 0, a <= 1 << 30, a & (a - 1) == 0 else {
                throw .badMetadata(path: path, key: "general.alignment", reason: "must be a power of two, got \(value)")
            }
            alignment = a
        }

        var infos: [(name: String, dims: [Int], type: GGMLType, offset: UInt64)] = []
        infos.reserveCapacity(tensorCount)
        var index: [String: Int] = [:]
        index.reserveCapacity(tensorCount)
        for i in 0..<tensorCount {
            let name = try reader.string("the name of tensor \(i)")
            guard index.updateValue(i, forKey: name) == nil else { throw .duplicateTensor(path: path, tensor: name) }
            let nDims = try reader.u32("the dimension count of tensor '\(name)'")
            guard nDims >= 1, nDims <= UInt32(GGUFFile.maxDimensions) else {
                throw .badTensorShape(path: path, tensor: name, reason: "\(nDims) dimensions (1 to \(GGUFFile.maxDimensions) allowed)")
            }
            var dims: [Int] = []
            dims.reserveCapacity(Int(nDims))
            for d in 0..<Int(nDims) {
                let ne = try reader.u64("dimension \(d) of tensor '\(name)'")
                guard let n = Int(exactly: ne) else {
                    throw .badTensorShape(path: path, tensor: name, reason: "dimension \(d) is \(ne)")
                }
                dims.append(n)
            }
            let rawType = try reader.u32("the type of tensor '\(name)'")
            guard let type = GGMLType(rawValue: rawType) else { throw .unknownTensorType(path: path, tensor: name, type: rawType) }
            let offset = try reader.u64("the data offset of tensor '\(name)'")
            infos.append((name, dims, type, offset))
        }

        // The data section starts at the next multiple of `alignment` (gguf.cpp GGML_PAD).
        let headerEnd = reader.offset
        let (padded, overflow) = headerEnd.addingReportingOverflow(alignment - 1)
        guard !overflow else { throw .truncated(path: path, what: "the data section", offset: headerEnd, needed: alignment, fileSize: mapped.size) }
        let dataStart = padded / alignment * alignment

        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(infos.count)
        for info in infos {
            tensors.append(try GGUFFile.validate(info, dataStart: dataStart, alignment: alignment, file: mapped))
        }
        try GGUFFile.checkOverlaps(tensors, path: path)

        self.path = path
        self.version = version
        self.metadata = metadata
        self.metadataKeys = keys
        self.tensors = tensors
        self.alignment = alignment
        self.dataSectionOffset = dataStart
        self.file = mapped
        self.tensorIndex = index
    }

    /// Checks one directory entry's shape, type, byte count and data range.
    private static func validate(
        _ info: (name: String, dims: [Int], type: GGMLType, offset: UInt64), dataStart: Int, alignment: Int, file: MappedFile
    ) throws(GGUFError) -> GGUFTensorInfo {
        let path = file.path
        // Products are checked left to right so no partial product can trap (a 0 later does not hide an overflow).
        func checkedProduct(_ dims: ArraySlice<Int>) -> Int? {
            var product = 1
            for n in dims {
                let (p, overflow) = product.multipliedReportingOverflow(by: n)
                if overflow { return nil }
                product = p
            }
            return product
        }
        guard let elements = checkedProduct(info.dims[...]), let rowCount = checkedProduct(info.dims.dropFirst()) else {
            throw .badTensorShape(path: path, tensor: info.name, reason: "\(info.dims) has more elements than fit in 64 bits")
        }
        let rowLength = info.dims[0]
        guard let rowBytes = info.type.rowBytes(rowLength) else {
            throw .rowNotBlockMultiple(path: path, tensor: info.name, rowLength: rowLength, type: info.type)
        }
        let (byteCount, bytesOverflow) = rowBytes.multipliedReportingOverflow(by: rowCount)
        guard !bytesOverflow else {
            throw .badTensorShape(path: path, tensor: info.name, reason: "\(info.dims) of \(info.type) is more bytes than fit in 64 bits")
        }
        guard info.offset % UInt64(alignment) == 0 else {
            throw .misalignedTensor(path: path, tensor: info.name, offset: info.offset, alignment: alignment)
        }
        // end = dataStart + offset + byteCount, in UInt64 with saturation for the message.
        let (start, o1) = UInt64(dataStart).addingReportingOverflow(info.offset)
        let (end, o2) = start.addingReportingOverflow(UInt64(byteCount))
        guard !o1, !o2, end <= UInt64(file.size), let absolute = Int(exactly: start) else {
            throw .truncatedTensor(path: path, tensor: info.name, end: (o1 || o2) ? UInt64.max : end, fileSize: file.size)
        }
        return GGUFTensorInfo(
            name: info.name, dimensions: info.dims, type: info.type, dataOffset: absolute, byteCount: byteCount,
            rowCount: rowCount, elementCount: elements, rowBytes: rowBytes
        )
    }

    /// Rejects two tensors whose non-empty data ranges intersect.
    private static func checkOverlaps(_ tensors: [GGUFTensorInfo], path: String) throws(GGUFError) {
        let sorted = tensors.filter { $0.byteCount > 0 }.sorted { $0.dataOffset < $1.dataOffset }
        guard sorted.count > 1 else { return }
        for i in 1..<sorted.count where sorted[i - 1].dataOffset + sorted[i - 1].byteCount > sorted[i].dataOffset {
            throw .overlappingTensors(path: path, first: sorted[i - 1].name, second: sorted[i].name)
        }
    }

    /// The tensor called `name`, or nil.
    public func tensor(named name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// The value stored under `key`, or nil.
    public func value(_ key: String) -> GGUFValue? { metadata[key] }

    /// A string value; nil when absent or not a string.
    public func string(_ key: String) -> String? { metadata[key]?.stringValue }

    /// An integer value of any integer type that fits in `Int`; nil when absent, not an integer, or too large.
    public func int(_ key: String) -> Int? { metadata[key]?.intValue }

    /// A float32 or float64 value; nil when absent or of another type.
    public func float(_ key: String) -> Double? { metadata[key]?.doubleValue }

    /// A bool value; nil when absent or of another type.
    public func bool(_ key: String) -> Bool? { metadata[key]?.boolValue }

    /// An array of strings; nil when absent, not an array, or of another element type.
    public func stringArray(_ key: String) -> [String]? {
        guard case .array(.string, let elements)? = metadata[key] else { return nil }
        return elements.compactMap(\.stringValue)
    }

    /// An array of integers of one integer type; nil when absent, of another type, or when an element does not fit in `Int`.
    public func intArray(_ key: String) -> [Int]? {
        guard case .array(let type, let elements)? = metadata[key], type != .array else { return nil }
        var result: [Int] = []
        result.reserveCapacity(elements.count)
        for element in elements {
            guard let v = element.intValue else { return nil }
            result.append(v)
        }
        return result
    }

    /// An array of float32 or float64; nil when absent or of another type.
    public func floatArray(_ key: String) -> [Double]? {
        guard case .array(let type, let elements)? = metadata[key], type == .float32 || type == .float64 else { return nil }
        return elements.compactMap(\.doubleValue)
    }

    /// An array of bools; nil when absent or of another type.
    public func boolArray(_ key: String) -> [Bool]? {
        guard case .array(.bool, let elements)? = metadata[key] else { return nil }
        return elements.compactMap(\.boolValue)
    }

    /// `general.architecture`, e.g. "llama", "qwen2".
    public var architecture: String? { string("general.architecture") }

    /// Throws `unsupportedTensorType` unless `ggmlDequantizeRow` handles the tensor's type.
    public func requireDequantizable(_ tensor: GGUFTensorInfo) throws(GGUFError) {
        guard tensor.type.isDequantizable else { throw .unsupportedTensorType(path: path, tensor: tensor.name, type: tensor.type) }
    }
}

/// A bounds-checked cursor over the mapped bytes. Every read checks the remaining size first, and
/// the header may not extend past `GGUFFile.maxHeaderBytes`.
struct GGUFReader {
    let file: MappedFile
    var offset = 0
    /// Array elements read so far, against `GGUFFile.maxMetadataElements`.
    var elements = 0
    /// Where the header must end: the file size or `GGUFFile.maxHeaderBytes`, whichever is smaller.
    let end: Int

    init(file: MappedFile) {
        self.file = file
        end = min(file.size, GGUFFile.maxHeaderBytes)
    }

    var remaining: Int { end - offset }

    @inline(never)
    func tooLong(_ what: String, _ count: Int) -> GGUFError {
        count <= file.size - offset
            ? .headerTooLarge(path: file.path, what: what, limit: GGUFFile.maxHeaderBytes)
            : .truncated(path: file.path, what: what, offset: offset, needed: count, fileSize: file.size)
    }

    mutating func bytes(_ count: Int, _ what: @autoclosure () -> String) throws(GGUFError) -> UnsafeRawPointer {
        guard count <= remaining, let p = file.bytes(at: offset, count: count) else { throw tooLong(what(), count) }
        offset += count
        return p
    }

    mutating func u8(_ what: @autoclosure () -> String) throws(GGUFError) -> UInt8 {
        try bytes(1, what()).load(as: UInt8.self)
    }

    mutating func u16(_ what: @autoclosure () -> String) throws(GGUFError) -> UInt16 {
        UInt16(littleEndian: try bytes(2, what()).loadUnaligned(as: UInt16.self))
    }

    mutating func u32(_ what: @autoclosure () -> String) throws(GGUFError) -> UInt32 {
        UInt32(littleEndian: try bytes(4, what()).loadUnaligned(as: UInt32.self))
    }

    mutating func u64(_ what: @autoclosure () -> String) throws(GGUFError) -> UInt64 {
        UInt64(littleEndian: try bytes(8, what()).loadUnaligned(as: UInt64.self))
    }

    /// A u64 count of items that each take at least `minimumItemSize` bytes, capped by what is
    /// left of the file and by `limit`.
    mutating func count(_ what: @autoclosure () -> String, minimumItemSize: Int, limit: Int) throws(GGUFError) -> Int {
        let raw = try u64(what())
        let fits = UInt64(max(0, remaining) / minimumItemSize)
        guard raw <= fits else { throw .countTooLarge(path: file.path, what: what(), count: raw, limit: Int(fits)) }
        guard raw <= UInt64(limit) else { throw .countTooLarge(path: file.path, what: what(), count: raw, limit: limit) }
        return Int(raw)
    }

    /// A u64-length-prefixed string; invalid UTF-8 is replaced, never trapped on.
    mutating func string(_ what: @autoclosure () -> String) throws(GGUFError) -> String {
        let length = try u64(what())
        guard length <= UInt64(max(0, remaining)) else { throw tooLong(what(), Int(clamping: length)) }
        let count = Int(length)
        let p = try bytes(count, what())
        return String(decoding: UnsafeRawBufferPointer(start: p, count: count), as: UTF8.self)
    }

    mutating func value(of type: GGUFValueType, key: String, depth: Int) throws(GGUFError) -> GGUFValue {
        let what = "the value of metadata '\(key)'"
        switch type {
        case .uint8: return .uint8(try u8(what))
        case .int8: return .int8(Int8(bitPattern: try u8(what)))
        case .uint16: return .uint16(try u16(what))
        case .int16: return .int16(Int16(bitPattern: try u16(what)))
        case .uint32: return .uint32(try u32(what))
        case .int32: return .int32(Int32(bitPattern: try u32(what)))
        case .uint64: return .uint64(try u64(what))
        case .int64: return .int64(Int64(bitPattern: try u64(what)))
        case .float32: return .float32(Float(bitPattern: try u32(what)))
        case .float64: return .float64(Double(bitPattern: try u64(what)))
        case .bool: return .bool(try u8(what) != 0)
        case .string: return .string(try string(what))
        case .array:
            guard depth < GGUFFile.maxArrayDepth else {
                throw .badMetadata(path: file.path, key: key, reason: "arrays nested deeper than \(GGUFFile.maxArrayDepth) levels")
            }
            let rawType = try u32("the element type of metadata '\(key)'")
            guard let elementType = GGUFValueType(rawValue: rawType) else { throw .unknownValueType(path: file.path, key: key, type: rawType) }
            let n = try count("the element count of metadata '\(key)'", minimumItemSize: elementType.minimumSize,
                              limit: GGUFFile.maxMetadataElements - elements)
            elements += n
            var elements: [GGUFValue] = []
            elements.reserveCapacity(n)
            for _ in 0..<n { elements.append(try value(of: elementType, key: key, depth: depth + 1)) }
            return .array(elementType, elements)
        }
    }
}

/// Errors reading a GGUF file; each names the path (and the key or tensor) and says what to do.
public enum GGUFError: Error, CustomStringConvertible, Equatable {
    case file(FileError)
    case badMagic(path: String, found: UInt32)
    case unsupportedVersion(path: String, version: UInt32)
    /// The header ends before `what` (at `offset`, `needed` bytes) could be read.
    case truncated(path: String, what: String, offset: Int, needed: Int, fileSize: Int)
    /// A count in the header claims more items than the rest of the file could hold, or than the
    /// memory bounds (`GGUFFile.maxTensors`, `maxMetadataElements`) allow.
    case countTooLarge(path: String, what: String, count: UInt64, limit: Int)
    /// The header (metadata and tensor directory) runs past `GGUFFile.maxHeaderBytes`.
    case headerTooLarge(path: String, what: String, limit: Int)
    case unknownValueType(path: String, key: String, type: UInt32)
    case duplicateKey(path: String, key: String)
    /// A metadata value is absent where required, of the wrong type, or out of range.
    case badMetadata(path: String, key: String, reason: String)
    case duplicateTensor(path: String, tensor: String)
    case badTensorShape(path: String, tensor: String, reason: String)
    case unknownTensorType(path: String, tensor: String, type: UInt32)
    /// A known type this package cannot dequantize.
    case unsupportedTensorType(path: String, tensor: String, type: GGMLType)
    case rowNotBlockMultiple(path: String, tensor: String, rowLength: Int, type: GGMLType)
    case misalignedTensor(path: String, tensor: String, offset: UInt64, alignment: Int)
    /// The tensor's data would end past the end of the file (`end == UInt64.max` when the sum overflows).
    case truncatedTensor(path: String, tensor: String, end: UInt64, fileSize: Int)
    case overlappingTensors(path: String, first: String, second: String)
    case unsupportedTokenizer(path: String, model: String)

    private static let corrupt = "the file is corrupt or not a GGUF model; fetch it again or re-export it with llama.cpp's convert_hf_to_gguf.py"

    public var description: String {
        let supported = GGMLType.dequantizable.map(\.description).joined(separator: ", ")
        switch self {
        case .file(let error):
            return error.description
        case .badMagic(let path, let found):
            return "\(path): not a GGUF file (magic 0x\(String(found, radix: 16)), expected 0x\(String(GGUFFile.magic, radix: 16)) \"GGUF\"); pass a .gguf model file"
        case .unsupportedVersion(let path, let version):
            let hint = GGUFFile.supportedVersions.contains(version.byteSwapped) ? "this is a big-endian GGUF; convert it on a little-endian machine" :
                version == 1 ? "GGUF v1 predates llama.cpp's 2023 format; re-convert the model with a current convert_hf_to_gguf.py" :
                Self.corrupt
            return "\(path): unsupported GGUF version \(version) (supported: 2 and 3); \(hint)"
        case .truncated(let path, let what, let offset, let needed, let fileSize):
            return "\(path): truncated: \(what) at byte \(offset) needs \(needed) bytes but the file has \(fileSize) bytes; the download is incomplete, fetch it again"
        case .countTooLarge(let path, let what, let count, let limit):
            return "\(path): \(what) is \(count), but at most \(limit) are possible there; the file is truncated or corrupt: fetch it again, or re-export it with llama.cpp's convert_hf_to_gguf.py"
        case .headerTooLarge(let path, let what, let limit):
            return "\(path): \(what) lies past the first \(limit) bytes, more header than any real model has; \(Self.corrupt)"
        case .unknownValueType(let path, let key, let type):
            return "\(path): metadata '\(key)' has unknown value type \(type) (known: 0-12); \(Self.corrupt)"
        case .duplicateKey(let path, let key):
            return "\(path): metadata key '\(key)' appears twice; \(Self.corrupt)"
        case .badMetadata(let path, let key, let reason):
            return "\(path): metadata '\(key)': \(reason); re-export the model with llama.cpp's convert_hf_to_gguf.py"
        case .duplicateTensor(let path, let tensor):
            return "\(path): tensor '\(tensor)' appears twice; \(Self.corrupt)"
        case .badTensorShape(let path, let tensor, let reason):
            return "\(path): tensor '\(tensor)': bad shape: \(reason); \(Self.corrupt)"
        case .unknownTensorType(let path, let tensor, let type):
            return "\(path): tensor '\(tensor)' has unknown ggml type \(type); supported types: \(supported); re-quantize the model to one of them with llama-quantize"
        case .unsupportedTensorType(let path, let tensor, let type):
            return "\(path): tensor '\(tensor)' has type \(type) (ggml type \(type.rawValue)), which cannot be dequantized here; supported types: \(supported); re-quantize the model to one of them with llama-quantize"
        case .rowNotBlockMultiple(let path, let tensor, let rowLength, let type):
            return "\(path): tensor '\(tensor)': row length \(rowLength) is not a multiple of \(type)'s block size \(type.blockSize), so its byte count is inconsistent with its type; \(Self.corrupt)"
        case .misalignedTensor(let path, let tensor, let offset, let alignment):
            return "\(path): tensor '\(tensor)': data offset \(offset) is not a multiple of the alignment \(alignment); \(Self.corrupt)"
        case .truncatedTensor(let path, let tensor, let end, let fileSize):
            let endText = end == UInt64.max ? "beyond 2^64" : "at byte \(end)"
            return "\(path): truncated: tensor '\(tensor)' data ends \(endText) but the file has \(fileSize) bytes; the download is incomplete, fetch it again"
        case .overlappingTensors(let path, let first, let second):
            return "\(path): tensors '\(first)' and '\(second)' overlap in the file; \(Self.corrupt)"
        case .unsupportedTokenizer(let path, let model):
            return "\(path): tokenizer.ggml.model '\(model)' is not supported (supported: gpt2 byte-level BPE, and llama SentencePiece BPE except for gemma/phi3 models); convert from the Hugging Face checkpoint instead, which has tokenizer.json"
        }
    }
}
