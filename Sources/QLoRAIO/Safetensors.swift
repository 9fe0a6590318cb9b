// Reading Hugging Face safetensors files from a memory map, validating everything an untrusted
// file can lie about. Writing is in SafetensorsWriter.swift. Format: ../../shared FORMATS.md.
import Foundation
import QLoRAKernels

/// Element types of safetensors tensors.
public enum SafetensorsDType: String, Sendable, CaseIterable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E4M3, F8_E5M2

    public var byteWidth: Int {
        switch self {
        case .F64, .I64, .U64: return 8
        case .F32, .I32, .U32: return 4
        case .F16, .BF16, .I16, .U16: return 2
        case .I8, .U8, .BOOL, .F8_E4M3, .F8_E5M2: return 1
        }
    }

    /// The float encoding of F32, F16 and BF16 tensors; nil for every other type.
    public var floatEncoding: FloatEncoding? {
        switch self {
        case .F32: return .float32
        case .F16: return .float16
        case .BF16: return .bfloat16
        default: return nil
        }
    }
}

/// One tensor's entry in a safetensors header.
public struct SafetensorsTensor: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    /// Absolute byte offset of the data in the file.
    public let fileOffset: Int
    public let byteCount: Int
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A safetensors file, memory-mapped; construction validates the header completely.
public struct SafetensorsFile: Sendable {
    /// Larger headers are rejected (the Rust reference library's limit is 100 MB).
    public static let maximumHeaderBytes = 100_000_000

    public let path: String
    public let file: MappedFile
    /// Tensors in order of their data offsets.
    public let tensors: [SafetensorsTensor]
    public let metadata: [String: String]
    private let index: [String: Int]

    public init(path: String) throws(SafetensorsError) {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw .file(error) }
        try self.init(file: file)
    }

    public init(file: MappedFile) throws(SafetensorsError) {
        let path = file.path
        self.path = path
        self.file = file
        guard let lengthBytes = file.bytes(at: 0, count: 8) else {
            throw .truncated(path: path, detail: "the file has \(file.size) bytes, fewer than the 8-byte header length")
        }
        let headerLength = UInt64(littleEndian: lengthBytes.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(Self.maximumHeaderBytes) else {
            throw .badHeader(path: path, detail: "header length \(headerLength) exceeds \(Self.maximumHeaderBytes) bytes; not a safetensors file?")
        }
        guard let headerBytes = file.bytes(at: 8, count: Int(headerLength)) else {
            throw .truncated(path: path, detail: "header of \(headerLength) bytes runs past the end of the \(file.size)-byte file")
        }
        let dataStart = 8 + Int(headerLength)
        let dataSize = file.size - dataStart
        let header = Data(bytes: headerBytes, count: Int(headerLength))
        guard let object = try? JSONSerialization.jsonObject(with: header), let entries = object as? [String: Any] else {
            throw .badHeader(path: path, detail: "the header is not a JSON object")
        }
        // JSONSerialization keeps one of two equal keys silently; a file naming a tensor twice is corrupt.
        if let duplicate = Self.duplicateTopLevelKey(UnsafeRawBufferPointer(start: headerBytes, count: Int(headerLength))) {
            throw .badTensor(path: path, tensor: duplicate, detail: "the header names this tensor twice; the file is corrupt")
        }
        var metadata: [String: String] = [:]
        var tensors: [SafetensorsTensor] = []
        for (name, value) in entries {
            if name == "__metadata__" {
                guard let pairs = value as? [String: Any] else { throw .badHeader(path: path, detail: "__metadata__ is not an object") }
                for (key, item) in pairs {
                    guard let text = item as? String else { throw .badHeader(path: path, detail: "__metadata__[\(key)] is not a string") }
                    metadata[key] = text
                }
                continue
            }
            tensors.append(try Self.parseEntry(name: name, value: value, path: path, dataStart: dataStart, dataSize: dataSize))
        }
        tensors.sort { ($0.fileOffset, $0.byteCount) < ($1.fileOffset, $1.byteCount) }
        var end = dataStart
        for tensor in tensors where tensor.byteCount > 0 {
            guard tensor.fileOffset >= end else {
                throw .overlap(path: path, tensor: tensor.name, detail: "its data starts at byte \(tensor.fileOffset - dataStart) of the data section, inside the previous tensor (which ends at \(end - dataStart))")
            }
            end = tensor.fileOffset + tensor.byteCount
        }
        self.tensors = tensors
        self.metadata = metadata
        var index: [String: Int] = [:]
        for (i, tensor) in tensors.enumerated() { index[tensor.name] = i }
        self.index = index
    }

    private static func parseEntry(name: String, value: Any, path: String, dataStart: Int, dataSize: Int) throws(SafetensorsError) -> SafetensorsTensor {
        guard let fields = value as? [String: Any] else { throw .badTensor(path: path, tensor: name, detail: "entry is not an object") }
        guard let dtypeName = fields["dtype"] as? String, let dtype = SafetensorsDType(rawValue: dtypeName) else {
            throw .badTensor(path: path, tensor: name, detail: "unknown dtype \(String(describing: fields["dtype"] ?? "missing")); supported: \(SafetensorsDType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let shapeValues = fields["shape"] as? [Any], let shape = integers(shapeValues), shape.allSatisfy({ $0 >= 0 }) else {
            throw .badTensor(path: path, tensor: name, detail: "shape is not a list of non-negative integers")
        }
        guard let offsetValues = fields["data_offsets"] as? [Any], let offsets = integers(offsetValues), offsets.count == 2,
              offsets[0] >= 0, offsets[0] <= offsets[1] else {
            throw .badTensor(path: path, tensor: name, detail: "data_offsets is not [begin, end] with begin <= end")
        }
        guard offsets[1] <= dataSize else {
            throw .truncated(path: path, detail: "tensor '\(name)' ends at byte \(offsets[1]) of the data section, which has only \(dataSize) bytes; the file is incomplete, download or convert it again")
        }
        var elements = 1
        for dimension in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw .badTensor(path: path, tensor: name, detail: "shape \(shape) overflows") }
            elements = product
        }
        let (expectedBytes, overflow) = elements.multipliedReportingOverflow(by: dtype.byteWidth)
        guard !overflow, expectedBytes == offsets[1] - offsets[0] else {
            throw .badTensor(path: path, tensor: name, detail: "\(dtype.rawValue) \(shape) needs \(overflow ? "too many" : String(expectedBytes)) bytes but data_offsets span \(offsets[1] - offsets[0])")
        }
        return SafetensorsTensor(name: name, dtype: dtype, shape: shape, fileOffset: dataStart + offsets[0], byteCount: expectedBytes)
    }

    /// The first key that occurs twice at the top level of a valid JSON object, scanning strings
    /// and nesting depth (the text has already been parsed, so it is well formed).
    static func duplicateTopLevelKey(_ json: UnsafeRawBufferPointer) -> String? {
        var seen = Set<String>()
        var depth = 0
        var i = 0
        var expectKey = false
        while i < json.count {
            let byte = json[i]
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                expectKey = depth == 1 && byte == UInt8(ascii: "{")
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
            case UInt8(ascii: ","):
                expectKey = depth == 1
            case UInt8(ascii: "\""):
                var end = i + 1
                while end < json.count && json[end] != UInt8(ascii: "\"") { end += json[end] == UInt8(ascii: "\\") ? 2 : 1 }
                if expectKey {
                    let raw = String(decoding: UnsafeRawBufferPointer(rebasing: json[(i + 1)..<min(end, json.count)]), as: UTF8.self)
                    // Decode escapes the way the parser did, so "a" and "\u0061" count as equal.
                    let key = (try? JSONSerialization.jsonObject(with: Data("\"\(raw)\"".utf8), options: .fragmentsAllowed) as? String) ?? raw
                    if !seen.insert(key).inserted { return key }
                    expectKey = false
                }
                i = end
            default:
                break
            }
            i += 1
        }
        return nil
    }

    /// Integers from JSON numbers, rejecting fractions, booleans and values beyond Int.
    private static func integers(_ values: [Any]) -> [Int]? {
        var result: [Int] = []
        for value in values {
            guard let number = value as? NSNumber, String(cString: number.objCType) != "c" else { return nil }  // "c": a JSON boolean
            let double = number.doubleValue
            guard double.rounded() == double, abs(double) < 9.0e15 else { return nil }
            result.append(number.intValue)
        }
        return result
    }

    public func tensor(named name: String) -> SafetensorsTensor? {
        index[name].map { tensors[$0] }
    }

    /// The tensor's bytes; valid while this file is alive. Bounds were checked at open.
    public func data(of tensor: SafetensorsTensor) -> UnsafeRawPointer {
        file.bytes(at: tensor.fileOffset, count: tensor.byteCount)!
    }
}

/// Why a safetensors file was rejected; each names the file (and tensor) and what to do.
public enum SafetensorsError: Error, CustomStringConvertible {
    case file(FileError)
    case truncated(path: String, detail: String)
    case badHeader(path: String, detail: String)
    case badTensor(path: String, tensor: String, detail: String)
    case overlap(path: String, tensor: String, detail: String)

    public var description: String {
        switch self {
        case .file(let error): return error.description
        case .truncated(let path, let detail): return "\(path): truncated: \(detail)"
        case .badHeader(let path, let detail): return "\(path): invalid safetensors header: \(detail)"
        case .badTensor(let path, let tensor, let detail): return "\(path): tensor '\(tensor)': \(detail)"
        case .overlap(let path, let tensor, let detail): return "\(path): tensor '\(tensor)' overlaps another: \(detail); the file is corrupt"
        }
    }
}
