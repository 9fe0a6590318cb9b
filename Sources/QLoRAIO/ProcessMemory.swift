// The process's resident memory as the kernel counts it (/proc/self/status): what a RAM budget means.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct ProcessMemory: Sendable, Equatable {
    /// VmRSS: resident now.
    public var residentBytes: Int
    /// VmHWM: the peak of VmRSS since the process started.
    public var peakBytes: Int

    /// Reads /proc/self/status once; zeros where it cannot be read (not Linux).
    public static func current() -> ProcessMemory {
        let status = statusText()
        return ProcessMemory(residentBytes: field("VmRSS", in: status), peakBytes: field("VmHWM", in: status))
    }

    /// Gives the heap's free memory back to the system (glibc's malloc_trim), so that what a
    /// finished phase freed (parsing, tokenizing) no longer counts in the RSS.
    public static func returnFreedMemory() {
        // Swift's Glibc module leaves out malloc.h; the symbol is looked up once instead.
        typealias MallocTrim = @convention(c) (Int) -> Int32
        guard let symbol = dlsym(nil, "malloc_trim") else { return }
        _ = unsafeBitCast(symbol, to: MallocTrim.self)(0)
    }

    /// One kB field of /proc/self/status (VmRSS, VmHWM, RssAnon, ...) in bytes; 0 when absent.
    public static func statusBytes(_ name: String) -> Int { field(name, in: statusText()) }

    private static func statusText() -> String {
        // String(contentsOfFile:) fails on some /proc files (their size reads as 0): read through a handle.
        guard let handle = FileHandle(forReadingAtPath: "/proc/self/status") else { return "" }
        defer { try? handle.close() }
        return String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    }

    private static func field(_ name: String, in status: String) -> Int {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return 0 }
        return (line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) } ?? 0) * 1024
    }
}
