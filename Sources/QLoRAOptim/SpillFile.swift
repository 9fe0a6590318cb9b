// The file that spilled pages live in: one fixed slot per page (a page's raw size, so any
// encoding fits), space reserved up front so that a full disk is an error at creation rather
// than a SIGBUS in the middle of training, mapped shared with mmap. It is unlinked as soon as it
// is created, so it disappears when the process exits, however it exits.
import CQLoRAKernels
#if canImport(Glibc)
import Glibc
#endif

final class SpillFile {
    let directory: String
    let slotBytes: Int
    let slots: Int
    /// True when the directory is on tmpfs or ramfs: spilling there frees no RAM.
    let inMemoryFileSystem: Bool
    /// The open file (tests reach it through /proc/self/fd to damage it).
    let descriptor: Int32
    private let base: UnsafeMutableRawPointer

    init(directory: String, slotBytes: Int, slots: Int) throws(OptimizerError) {
        precondition(slotBytes > 0 && slotBytes % 4096 == 0 && slots > 0)
        self.directory = directory
        self.slotBytes = slotBytes
        self.slots = slots
        var template = Array("\(directory)/qlora-spill-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw .spillDirectory(path: directory, errno: errno) }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let size = slotBytes * slots
        let reserved = posix_fallocate(fd, 0, off_t(size))
        guard reserved == 0 else {
            close(fd)
            if reserved == ENOSPC || reserved == EFBIG || reserved == EDQUOT { throw .spillDiskFull(directory: directory, bytes: size) }
            throw .spillIO(directory: directory, operation: "space reservation", errno: reserved)
        }
        let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let mapped, mapped != MAP_FAILED else {
            let code = errno
            close(fd)
            throw .spillIO(directory: directory, operation: "mmap", errno: code)
        }
        base = mapped
        descriptor = fd
        inMemoryFileSystem = qlora_fd_on_memory_filesystem(fd) != 0
    }

    deinit {
        munmap(base, slotBytes * slots)
        close(descriptor)
    }

    func slot(_ index: Int) -> UnsafeMutableRawPointer {
        precondition(index >= 0 && index < slots)
        return base + index * slotBytes
    }

    /// Drops the slot's pages from this process's memory map, so the spilled bytes stop counting
    /// in its RSS; written data stays in the file (the kernel writes dirty pages back).
    func release(_ index: Int) {
        madvise(slot(index), slotBytes, MADV_DONTNEED)
    }

    /// Throws unless the file still covers slot `index` (a truncated file would SIGBUS on read).
    func checkCovers(_ index: Int) throws(OptimizerError) {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw .spillIO(directory: directory, operation: "fstat", errno: errno) }
        let needed = (index + 1) * slotBytes
        if Int(info.st_size) < needed {
            throw .spillCorrupt(directory: directory, page: index, detail: "the file was truncated to \(info.st_size) bytes, \(needed) needed")
        }
    }
}
