// Reading a text file a line at a time through one growing buffer (pread): memory is the longest
// line plus a chunk, and a file that changes while it is read (truncated, rewritten) is read as it
// is at each moment, where a memory map would end the process with SIGBUS.
#if canImport(Glibc)
import Glibc
#endif

public final class LineReader {
    public let path: String
    private let fd: Int32
    private var buffer: UnsafeMutableRawPointer
    private var capacity: Int
    /// Bytes of `buffer` that hold file data, and where the next line starts in them.
    private var filled = 0, start = 0
    private var offset = 0
    private var atEnd = false
    private static let chunk = 1 << 20

    /// Opens `path` (a regular file: the caller checks the kind).
    public init(path: String) throws(FileError) {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpen(path: path, errno: errno) }
        capacity = Self.chunk
        buffer = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit {
        close(fd)
        buffer.deallocate()
    }

    /// Up to `count` bytes at the start of the file, without moving the reader.
    public func head(_ count: Int) throws(FileError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let read = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, count, 0) }
        guard read >= 0 else { throw .cannotOpen(path: path, errno: errno) }
        return Array(bytes.prefix(read))
    }

    /// Skips `count` bytes (a byte-order mark) before the first line.
    public func skip(_ count: Int) { offset += count }

    /// The next line without its "\n", valid until the next call; nil at the end of the file.
    public func nextLine() throws(FileError) -> UnsafeRawBufferPointer? {
        while true {
            let pending = UnsafeRawBufferPointer(start: buffer + start, count: filled - start)
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                defer { start += newline + 1 }
                return UnsafeRawBufferPointer(rebasing: pending[..<newline])
            }
            if atEnd {
                guard !pending.isEmpty else { return nil }
                start = filled
                return pending
            }
            try fill()
        }
    }

    /// Moves the unread bytes to the front (growing the buffer when a line outgrows it) and reads
    /// the next chunk after them.
    private func fill() throws(FileError) {
        let pending = filled - start
        if start > 0 {
            buffer.copyMemory(from: buffer + start, byteCount: pending)
            (filled, start) = (pending, 0)
        }
        if capacity - filled < Self.chunk {
            let larger = UnsafeMutableRawPointer.allocate(byteCount: max(2 * capacity, filled + Self.chunk), alignment: 64)
            larger.copyMemory(from: buffer, byteCount: filled)
            buffer.deallocate()
            buffer = larger
            capacity = max(2 * capacity, filled + Self.chunk)
        }
        while true {
            let read = pread(fd, buffer + filled, capacity - filled, off_t(offset))
            if read < 0 {
                if errno == EINTR { continue }
                throw .cannotOpen(path: path, errno: errno)
            }
            if read == 0 { atEnd = true }
            filled += read
            offset += read
            return
        }
    }
}
