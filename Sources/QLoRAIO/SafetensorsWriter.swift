// Streaming safetensors writer: tensor sizes are declared up front so each tensor's data can be
// written at its final offset as it is produced; small variable-size tensors (JSON blobs) go after
// them. The header is written last into space reserved at the start, padded with spaces (allowed
// by the format). Data goes to a hidden partial name and is renamed into place after fsync; errors
// name the file being written, not the partial name.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class SafetensorsWriter {
    /// A tensor whose byte count is known before writing.
    public struct Planned: Sendable {
        public let name: String
        public let dtype: SafetensorsDType
        public let shape: [Int]
        public init(name: String, dtype: SafetensorsDType, shape: [Int]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
        }
        public var byteCount: Int { shape.reduce(1, *) * dtype.byteWidth }
    }

    public let path: String
    private let partialPath: String
    private let fd: Int32
    private let planned: [Planned]
    private var offsets: [String: Int] = [:]  // relative to the data section
    private let byteCounts: [String: Int]
    private var late: [(name: String, dtype: SafetensorsDType, shape: [Int], begin: Int, end: Int)] = []
    private var lateEnd: Int
    private let reservedHeader: Int
    private var finished = false

    /// - Parameters:
    ///   - planned: tensors written with `write(_:at:bytes:count:)`, laid out in this order.
    ///   - lateTensors: how many variable-size tensors will be added with `appendLate`, and the
    ///     longest name among them, to reserve header space.
    public init(path: String, planned: [Planned], lateTensors: Int, longestLateName: Int) throws(FileError) {
        self.path = path
        partialPath = AtomicOutput.partialFile(for: path)
        self.planned = planned
        var cursor = 0
        var offsets: [String: Int] = [:]
        for tensor in planned {
            offsets[tensor.name] = cursor
            cursor += tensor.byteCount
        }
        self.offsets = offsets
        byteCounts = Dictionary(planned.map { ($0.name, $0.byteCount) }, uniquingKeysWith: { first, _ in first })
        lateEnd = cursor
        // Worst case per late entry: name, dtype, a shape and two offsets of 20 digits each.
        let lateReserve = lateTensors * (longestLateName + 96)
        let plannedHeader = Self.headerJSON(entries: planned.map { ($0.name, $0.dtype, $0.shape, offsets[$0.name]!, offsets[$0.name]! + $0.byteCount) }, metadata: ["format": "pt"]).count
        reservedHeader = (plannedHeader + lateReserve + 256 + 7) / 8 * 8
        fd = open(partialPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .cannotWrite(path: path, errno: errno) }
    }

    deinit {
        if !finished {
            close(fd)
            unlink(partialPath)
        }
    }

    private var dataStart: Int { 8 + reservedHeader }

    /// Writes `count` bytes of planned tensor `name`, starting `at` bytes into it.
    public func write(_ name: String, at byteOffset: Int = 0, bytes: UnsafeRawPointer, count: Int) throws(FileError) {
        guard let base = offsets[name], let byteCount = byteCounts[name] else { preconditionFailure("tensor \(name) was not planned") }
        precondition(byteOffset >= 0 && byteOffset + count <= byteCount, "write past the end of \(name)")
        try writeFully(bytes, count: count, at: dataStart + base + byteOffset)
    }

    /// Appends a small tensor whose size was not known up front.
    public func appendLate(_ name: String, dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]) throws(FileError) {
        precondition(bytes.count == shape.reduce(1, *) * dtype.byteWidth)
        let begin = lateEnd
        try writeArray(bytes, at: dataStart + begin)
        late.append((name, dtype, shape, begin, begin + bytes.count))
        lateEnd += bytes.count
    }

    /// Writes the header, fsyncs and renames the file into place.
    public func finish(metadata: [String: String] = ["format": "pt"]) throws(FileError) {
        var entries = planned.map { ($0.name, $0.dtype, $0.shape, offsets[$0.name]!, offsets[$0.name]! + $0.byteCount) }
        entries += late.map { ($0.name, $0.dtype, $0.shape, $0.begin, $0.end) }
        var header = Self.headerJSON(entries: entries, metadata: metadata)
        precondition(header.count <= reservedHeader, "safetensors header outgrew its reservation")
        header += [UInt8](repeating: 0x20, count: reservedHeader - header.count)
        var prefix = withUnsafeBytes(of: UInt64(reservedHeader).littleEndian) { [UInt8]($0) }
        prefix += header
        try writeArray(prefix, at: 0)
        // A file of planned tensors never written would read back as zeros: make its size exact.
        guard ftruncate(fd, off_t(dataStart + lateEnd)) == 0, fsync(fd) == 0 else { throw .cannotWrite(path: path, errno: errno) }
        close(fd)
        finished = true
        guard rename(partialPath, path) == 0 else {
            let code = errno
            unlink(partialPath)
            throw .cannotWrite(path: path, errno: code)
        }
    }

    private func writeFully(_ bytes: UnsafeRawPointer, count: Int, at offset: Int) throws(FileError) {
        let code = pwriteFully(fd, bytes, count: count, at: offset)
        if code != 0 { throw .cannotWrite(path: path, errno: code) }
    }

    private func writeArray(_ bytes: [UInt8], at offset: Int) throws(FileError) {
        let code = bytes.withUnsafeBytes { pwriteFully(fd, $0.baseAddress!, count: $0.count, at: offset) }
        if code != 0 { throw .cannotWrite(path: path, errno: code) }
    }

    /// The header JSON (keys in the given order, `__metadata__` first, compact like safetensors').
    static func headerJSON(entries: [(String, SafetensorsDType, [Int], Int, Int)], metadata: [String: String]) -> [UInt8] {
        var text = "{\"__metadata__\":{"
        text += metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(separator: ",")
        text += "}"
        for (name, dtype, shape, begin, end) in entries {
            text += ",\(jsonString(name)):{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(begin),\(end)]}"
        }
        text += "}"
        return Array(text.utf8)
    }
}

/// Writes all `count` bytes at `offset`, retrying short writes; returns 0 or the errno.
public func pwriteFully(_ fd: Int32, _ bytes: UnsafeRawPointer, count: Int, at offset: Int) -> Int32 {
    var done = 0
    while done < count {
        let written = pwrite(fd, bytes + done, count - done, off_t(offset + done))
        if written < 0 {
            if errno == EINTR { continue }
            return errno
        }
        done += written
    }
    return 0
}
