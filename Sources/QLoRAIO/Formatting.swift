// Sizes and durations as the commands print them.
import Foundation

/// "812 MiB", "1.50 GiB": binary units, as budgets are given; three significant figures.
public func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes), unit = 0
    while abs(value) >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: abs(value) >= 100 ? "%.0f %@" : "%.2f %@", value, units[unit])
}

/// "3m07s", "1h05m".
public func formatSeconds(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%dh%02dm", s / 3600, s % 3600 / 60) : String(format: "%dm%02ds", s / 60, s % 60)
}

/// "<path>: <detail>", naming the path once: when `detail` is another error's text that already
/// starts with the path or a file inside it (a reader's own error, wrapped), it is left as it is.
public func pathMessage(_ path: String, _ detail: String) -> String {
    detail.hasPrefix(path + ":") || detail.hasPrefix(path + "/") ? detail : "\(path): \(detail)"
}
