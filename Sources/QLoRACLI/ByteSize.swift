// Byte sizes as every command takes them (--mem-budget, --optim-resident-bytes, --max-shard-size):
// one convention, with the units explicit.
import Foundation

/// Parses a byte size: "2GiB", "1.5G", "512MiB", "800M", "50GB", "1048576". K, M, G, T and KiB,
/// MiB, GiB, TiB are binary (2^10 ...); KB, MB, GB, TB are decimal (10^3 ..., transformers'
/// `max_shard_size`). Nil when it is not a size (or is beyond 8 EiB).
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
