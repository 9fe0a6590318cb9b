// Writing outputs so that a crash, a kill or a full disk never leaves a half-written one: files
// are fsynced, directories are built under a hidden partial name and renamed into place.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum AtomicOutput {
    /// The hidden directory an output is built in before `publish` renames it to `output`:
    /// `.<name>.partial-<pid>` beside it.
    public static func partialDirectory(for output: String) -> String {
        let url = URL(fileURLWithPath: output).standardizedFileURL
        return url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial-\(getpid())").path
    }

    /// Writes a small file completely and fsyncs it (use inside a partial directory, or through
    /// `replaceFile` for a file on its own).
    public static func writeFile(_ path: String, _ bytes: [UInt8]) throws(FileError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .cannotWrite(path: path, errno: errno) }
        defer { close(fd) }
        let code = bytes.withUnsafeBytes { pwriteFully(fd, $0.baseAddress!, count: $0.count, at: 0) }
        guard code == 0 else { throw .cannotWrite(path: path, errno: code) }
        guard fsync(fd) == 0 else { throw .cannotWrite(path: path, errno: errno) }
    }

    /// The hidden temporary name a file is written under before it is renamed to `path`:
    /// `.<name>.partial-<pid>` beside it (never a name a user's file has).
    public static func partialFile(for path: String) -> String {
        let url = URL(fileURLWithPath: path)
        return url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial-\(getpid())").path
    }

    /// Writes `path` through a temporary name, fsync and rename: readers see the old file or the
    /// new one, never a part. Errors name `path` (not the temporary name).
    public static func replaceFile(_ path: String, _ bytes: [UInt8]) throws(FileError) {
        let temporary = partialFile(for: path)
        do throws(FileError) {
            do { try writeFile(temporary, bytes) } catch .cannotWrite(_, let code) { throw .cannotWrite(path: path, errno: code) }
            guard rename(temporary, path) == 0 else { throw .cannotWrite(path: path, errno: errno) }
        } catch {
            unlink(temporary)
            throw error
        }
        syncDirectory(URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }

    /// Renames the finished `partial` directory to `output`. An existing `output` is replaced
    /// only now, so until this returns the old one is intact; without `replace`, an `output` that
    /// appeared meanwhile (another process's) is an error, checked by the rename itself.
    public static func publish(partial: String, output: String, replace: Bool = true) throws(FileError) {
        syncDirectory(partial)
        if !replace {
            guard renameNoReplace(partial, output) == 0 else {
                throw errno == EEXIST || errno == ENOTEMPTY ? .alreadyExists(path: output) : .cannotWrite(path: output, errno: errno)
            }
            syncDirectory(URL(fileURLWithPath: output).deletingLastPathComponent().path)
            return
        }
        var retired: String?
        if FileManager.default.fileExists(atPath: output) {
            let old = partial.replacingOccurrences(of: ".partial-", with: ".replaced-")
            guard rename(output, old) == 0 else { throw .cannotWrite(path: output, errno: errno) }
            retired = old
        }
        guard rename(partial, output) == 0 else { throw .cannotWrite(path: output, errno: errno) }
        syncDirectory(URL(fileURLWithPath: output).deletingLastPathComponent().path)
        if let retired { try? FileManager.default.removeItem(atPath: retired) }
    }

    /// Removes the directory `path` so that no kill leaves part of it under its name: it is first
    /// renamed to a hidden `.<name>.removed-<pid>` (which `removeStalePartials` cleans up when a
    /// kill interrupts the deletion), then deleted.
    public static func remove(directory path: String) throws(FileError) {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        let hidden = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).removed-\(getpid())").path
        guard rename(path, hidden) == 0 else { throw .cannotWrite(path: path, errno: errno) }
        syncDirectory(url.deletingLastPathComponent().path)
        try? FileManager.default.removeItem(atPath: hidden)
    }

    /// Checks that a new file can be created in `directory` (or, when it does not exist yet, in
    /// its nearest existing ancestor, where it would be created) by creating and removing a
    /// hidden probe file; so that an unwritable output is found before hours of work, not after.
    public static func probeWritable(directory: String) throws(FileError) {
        var existing = URL(fileURLWithPath: directory).standardizedFileURL
        var isDirectory: ObjCBool = false
        while !FileManager.default.fileExists(atPath: existing.path, isDirectory: &isDirectory) && existing.path != "/" {
            existing = existing.deletingLastPathComponent()
        }
        guard isDirectory.boolValue else { throw .cannotWrite(path: directory, errno: ENOTDIR) }
        let probe = existing.appendingPathComponent(".write-probe-\(getpid())").path
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .cannotWrite(path: directory, errno: errno) }
        close(fd)
        unlink(probe)
    }

    /// rename(2) that fails with EEXIST rather than replace `to` (renameat2 with RENAME_NOREPLACE;
    /// Swift's Glibc module leaves it out, so it is looked up by name).
    static func renameNoReplace(_ from: String, _ to: String) -> Int32 {
        typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
        guard let symbol = dlsym(nil, "renameat2") else {
            // Before glibc 2.28: a check, then rename (a race remains there).
            if access(to, F_OK) == 0 {
                errno = EEXIST
                return -1
            }
            return rename(from, to)
        }
        let renameNoReplaceFlag: UInt32 = 1  // RENAME_NOREPLACE
        return unsafeBitCast(symbol, to: RenameAt2.self)(AT_FDCWD, from, AT_FDCWD, to, renameNoReplaceFlag)
    }

    public static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }

    /// Removes partial (and half-replaced or half-removed) directories of `output` left by processes that are gone.
    public static func removeStalePartials(of output: String) {
        let url = URL(fileURLWithPath: output).standardizedFileURL
        removeStalePartials(in: url.deletingLastPathComponent().path) { $0 == url.lastPathComponent }
    }

    /// Removes the partial (and half-replaced or half-removed) directories in `directory` of
    /// outputs whose name `matches`, left by processes that are gone.
    public static func removeStalePartials(in directory: String, matching matches: (String) -> Bool) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(".") {
            for marker in [".partial-", ".replaced-", ".removed-"] {
                guard let range = name.range(of: marker, options: .backwards), matches(String(name[name.index(after: name.startIndex)..<range.lowerBound])),
                      let pid = Int32(name[range.upperBound...]), pid != getpid() else { continue }
                if kill(pid, 0) != 0 && errno == ESRCH { try? FileManager.default.removeItem(atPath: directory + "/" + name) }
            }
        }
    }
}
