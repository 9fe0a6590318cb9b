// The process's resident memory as the kernel counts it (/proc/self/status): what the budget means.
import Foundation

public struct ProcessMemory: Sendable, Equatable {
    /// VmRSS: resident now.
    public var residentBytes: Int
    /// VmHWM: the peak of VmRSS since the process started.
    public var peakBytes: Int

    /// Reads /proc/self/status; zeros where it cannot be read (not Linux).
    public static func current() -> ProcessMemory {
        // String(contentsOfFile:) fails on /proc files (their size reads as 0): read through a handle.
        guard let handle = FileHandle(forReadingAtPath: "/proc/self/status") else { return ProcessMemory(residentBytes: 0, peakBytes: 0) }
        defer { try? handle.close() }
        let text = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
        func field(_ name: String) -> Int {
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return 0 }
            let kib = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) } ?? 0
            return kib * 1024
        }
        return ProcessMemory(residentBytes: field("VmRSS"), peakBytes: field("VmHWM"))
    }
}

/// Parses a byte size: "2GiB", "1.5G", "512MiB", "800M", "1048576" (K/M/G/T are binary, as in
/// `--mem-budget 2GiB`; "GB" is decimal). Nil when it is not a size.
public func parseByteSize(_ text: String) -> Int? {
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    let digits = trimmed.prefix { $0.isNumber || $0 == "." }
    guard let value = Double(digits), value >= 0 else { return nil }
    let k = 1024.0
    let units: [String: Double] = ["": 1, "B": 1, "K": k, "KIB": k, "KB": 1e3, "M": k * k, "MIB": k * k, "MB": 1e6,
                                   "G": k * k * k, "GIB": k * k * k, "GB": 1e9, "T": k * k * k * k, "TIB": k * k * k * k, "TB": 1e12]
    guard let scale = units[trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces).uppercased()] else { return nil }
    let bytes = value * scale
    return bytes < 9e18 ? Int(bytes) : nil
}
