// The checksums of the files of an output directory (a training checkpoint): one line per file,
// "<XXH64 as 16 hex digits>  <name>", the format of xxHash's `xxh64sum`, so that
// `xxh64sum -c checksums.xxh64` checks a directory too. Files are hashed as read back from disk.
import Foundation
import QLoRAKernels
#if canImport(Glibc)
import Glibc
#endif

public enum ChecksumManifest {
    public static let fileName = "checksums.xxh64"

    /// The XXH64 of the file at `path`, read in 1 MiB pieces with `pread` (no mapping, so the
    /// process's RSS does not grow with the file).
    public static func checksum(of path: String) throws(FileError) -> UInt64 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpen(path: path, errno: errno) }
        defer { close(fd) }
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        var hasher = XXH64()
        var offset = 0
        while true {
            let count = pread(fd, buffer, chunk, off_t(offset))
            if count < 0 {
                if errno == EINTR { continue }
                throw .cannotOpen(path: path, errno: errno)
            }
            if count == 0 { break }
            hasher.update(buffer, count: count)
            offset += count
        }
        return hasher.digest()
    }

    /// Writes the manifest of the files `names` of `directory`, each hashed as it is on disk now,
    /// fsynced. Write it last: its presence says the files before it are complete.
    public static func write(directory: String, names: [String]) throws(FileError) {
        var text = ""
        for name in names.sorted() {
            text += hex(try checksum(of: directory + "/" + name)) + "  " + name + "\n"
        }
        try AtomicOutput.writeFile(directory + "/" + fileName, Array(text.utf8))
    }

    /// Checks every file the manifest of `directory` lists against its checksum; returns their names.
    /// - Throws: `FileError.damaged` naming the first file that is missing or differs, or the
    ///   manifest itself when it is missing or malformed; `cannotOpen` for a file that exists but
    ///   cannot be read (which says nothing about its bytes).
    /// - Parameter required: names the manifest must list (a manifest cut short verifies less).
    @discardableResult
    public static func verify(directory: String, required: [String] = []) throws(FileError) -> [String] {
        let path = directory + "/" + fileName
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .damaged(path: path, detail: "missing, so the files beside it cannot be verified")
        }
        var names: [String] = []
        for (index, line) in String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated() {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].count == 16, let expected = UInt64(parts[0], radix: 16), parts[1].hasPrefix(" "),
                  case let name = String(parts[1].dropFirst()), !name.isEmpty, !name.contains("/") else {
                throw .damaged(path: path, detail: "line \(index + 1) is not '<16 hex digits>  <file name>'")
            }
            let file = directory + "/" + name
            let found: UInt64
            do { found = try checksum(of: file) } catch {
                // A file that is gone is damage; one that cannot be read now (permissions, I/O) is not.
                guard case .cannotOpen(_, let code) = error, code == ENOENT else { throw error }
                throw .damaged(path: file, detail: "listed in \(fileName) but missing")
            }
            guard found == expected else {
                throw .damaged(path: file, detail: "its XXH64 checksum is \(hex(found)), \(fileName) says \(hex(expected)): the file changed after it was written")
            }
            names.append(name)
        }
        guard !names.isEmpty else { throw .damaged(path: path, detail: "lists no file") }
        if let missing = required.first(where: { !names.contains($0) }) {
            throw .damaged(path: path, detail: "does not list \(missing), so it cannot be verified")
        }
        return names
    }

    /// `value` as 16 lowercase hex digits (xxHash's canonical form).
    public static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
