// An exclusive lock that keeps two processes from writing the same output: flock(2) on a lock file,
// held until the process exits or the lock is released. The kernel drops the lock of a process
// that dies, so a lock left by a killed run is never stale.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a lock could not be taken.
public enum LockError: Error, CustomStringConvertible, Equatable {
    /// Another live process holds the lock at `path` (its id, as it wrote it; nil when unreadable).
    case held(path: String, pid: Int32?)
    case file(FileError)

    public var description: String {
        switch self {
        case .held(_, let pid):
            return "\(pid.map { "process \($0)" } ?? "another process") is already writing it; wait for it to finish (or stop it), or choose another"
        case .file(let error):
            return error.description
        }
    }
}

public final class LockFile {
    /// The lock file of an output directory.
    public static let directoryLockName = ".lock"

    public let path: String
    private let fd: Int32

    /// The lock of the directory `directory` (which must exist): `<directory>/.lock`.
    public convenience init(directory: String) throws(LockError) {
        try self.init(path: directory + "/" + Self.directoryLockName)
    }

    /// The lock of a file written beside it: `.<name>.lock` in its directory (which must exist).
    public convenience init(besideFile file: String) throws(LockError) {
        let url = URL(fileURLWithPath: file)
        try self.init(path: url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).lock").path)
    }

    /// Locks the file at `path` without waiting (creating it; a symbolic link there is refused, so
    /// the lock never writes through it), and records this process's id in it.
    public init(path: String) throws(LockError) {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .file(.cannotWrite(path: path, errno: errno)) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            var text = [UInt8](repeating: 0, count: 32)
            let count = pread(fd, &text, text.count, 0)
            close(fd)
            if code == EWOULDBLOCK {
                let pid = count > 0 ? Int32(String(decoding: text.prefix(count), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) : nil
                throw .held(path: path, pid: pid)
            }
            throw .file(.cannotWrite(path: path, errno: code))
        }
        let pid = Array("\(getpid())\n".utf8)
        guard ftruncate(fd, 0) == 0, pwriteFully(fd, pid, count: pid.count, at: 0) == 0 else {
            let code = errno
            close(fd)
            throw .file(.cannotWrite(path: path, errno: code))
        }
    }

    /// Releases the lock (the file stays: removing it would let a third process lock a new file
    /// while a second still waits on the old one).
    deinit { close(fd) }
}
