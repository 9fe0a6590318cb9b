// A read-only memory map of a whole file, with bounds-checked access for parsers of untrusted input.
// Pages are only read when touched, so a model larger than RAM can be streamed through it.
#if canImport(Glibc)
import Glibc
#endif

/// A read-only `mmap` of a file. Every accessor checks its range against the file size.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    /// Start of the mapping; nil for an empty file.
    public let base: UnsafeRawPointer?

    public init(path: String) throws(FileError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError.cannotOpen(path: path, errno: errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FileError.cannotOpen(path: path, errno: errno) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw FileError.notRegularFile(path: path) }
        size = Int(info.st_size)
        if size == 0 {
            base = nil
            return
        }
        let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let mapped, mapped != MAP_FAILED else { throw FileError.cannotMap(path: path, errno: errno) }
        base = UnsafeRawPointer(mapped)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    /// True when `[offset, offset + count)` lies inside the file (overflow-safe).
    public func contains(offset: Int, count: Int) -> Bool {
        offset >= 0 && count >= 0 && offset <= size && count <= size - offset
    }

    /// A pointer to `count` bytes at `offset`, or nil when that range is not inside the file.
    public func bytes(at offset: Int, count: Int) -> UnsafeRawPointer? {
        guard contains(offset: offset, count: count), let base else { return count == 0 ? UnsafeRawPointer(bitPattern: 1) : nil }
        return base + offset
    }

    /// Tells the kernel that `[offset, offset + count)` will not be needed soon, so clean pages of
    /// a model already converted stop counting against the process's resident memory.
    public func release(offset: Int, count: Int) {
        guard let base, contains(offset: offset, count: count), count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset / page * page
        madvise(UnsafeMutableRawPointer(mutating: base + start), offset + count - start, MADV_DONTNEED)
    }
}

/// Errors opening, mapping, reading or writing files; each names the path and says what to do.
public enum FileError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, errno: Int32)
    case notRegularFile(path: String)
    case cannotMap(path: String, errno: Int32)
    case cannotWrite(path: String, errno: Int32)
    case cannotCreateDirectory(path: String, errno: Int32)
    case alreadyExists(path: String)
    /// The file is not what was written: a checksum differs, it is missing or malformed.
    case damaged(path: String, detail: String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let code):
            return "\(path): cannot open (\(String(cString: strerror(code)))); check that the file exists and is readable"
        case .notRegularFile(let path):
            return "\(path): not a regular file"
        case .cannotMap(let path, let code):
            return "\(path): cannot memory-map (\(String(cString: strerror(code))))"
        case .cannotWrite(let path, let code):
            return "\(path): cannot write (\(String(cString: strerror(code))))\(Self.writeHint(code))"
        case .cannotCreateDirectory(let path, let code):
            return "\(path): cannot create directory (\(String(cString: strerror(code)))); check that the parent exists and is writable"
        case .alreadyExists(let path):
            return "\(path): already exists; remove it or pass --force to replace it"
        case .damaged(let path, let detail):
            return "\(path): damaged: \(detail)"
        }
    }

    /// What to do about a failed write, by its errno.
    private static func writeHint(_ code: Int32) -> String {
        switch code {
        case ENOSPC, EDQUOT: return "; free disk space or choose another location"
        case ENOENT, ENOTDIR: return "; a directory on the way does not exist or takes no new files: create it or choose another location"
        case EACCES, EPERM: return "; check the permissions (and attributes such as chattr +i) of the location, or choose another"
        case EROFS: return "; the file system is read-only: choose another location"
        case EISDIR: return "; a directory is in the way: choose a file name"
        default: return "; choose another location"
        }
    }
}
