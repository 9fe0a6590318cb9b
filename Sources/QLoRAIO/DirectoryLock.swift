// An exclusive lock on an output directory, so that two processes never write into the same one:
// flock(2) on a lock file inside it, held until the process exits or the lock is released. The
// kernel drops the lock of a process that dies, so a lock left by a killed run is never stale.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a directory could not be locked.
public enum DirectoryLockError: Error, CustomStringConvertible, Equatable {
    /// Another live process holds the lock (its id, as it wrote it; nil when unreadable).
    case held(directory: String, pid: Int32?)
    case file(FileError)

    public var description: String {
        switch self {
        case .held(let directory, let pid):
            let owner = pid.map { "process \($0)" } ?? "another process"
            return "\(directory): \(owner) is already writing into this directory; wait for it to finish (or stop it), or choose another directory"
        case .file(let error):
            return error.description
        }
    }
}

public final class DirectoryLock {
    public static let fileName = ".lock"
    public let directory: String
    private let fd: Int32

    /// Locks `directory` (which must exist) without waiting, recording this process's id in the
    /// lock file.
    public init(directory: String) throws(DirectoryLockError) {
        self.directory = directory
        let path = directory + "/" + Self.fileName
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .file(.cannotWrite(path: path, errno: errno)) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            var text = [UInt8](repeating: 0, count: 32)
            let count = pread(fd, &text, text.count, 0)
            close(fd)
            if code == EWOULDBLOCK {
                let pid = count > 0 ? Int32(String(decoding: text.prefix(count), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) : nil
                throw .held(directory: directory, pid: pid)
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
