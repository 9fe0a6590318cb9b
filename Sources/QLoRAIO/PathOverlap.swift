// Whether a path about to be written overlaps a path that is read: the same file or directory, a
// directory holding it, or a path inside it, compared by whole components once symlinks are
// resolved (so `/a/model2` is not inside `/a/model`, and a link is its target).
import Foundation

/// How a written path overlaps a read one.
public enum PathOverlap: Sendable, Equatable {
    /// Both name the same file or directory.
    case same
    /// The written path is an ancestor directory of the read one.
    case containsInput
    /// The written path lies below the read one.
    case insideInput

    /// The overlap of `written` (which need not exist yet) with `read`, or nil when they are apart.
    public static func between(written: String, read: String) -> PathOverlap? {
        let w = resolvedComponents(of: URL(fileURLWithPath: written).standardizedFileURL.path)
        let r = resolvedComponents(of: read)
        if w == r { return .same }
        if r.starts(with: w) { return .containsInput }
        if w.starts(with: r) { return .insideInput }
        return nil
    }

    /// "is the input X; writing it would replace the input", ... with `read` naming what is read.
    public func describe(read: String) -> String {
        let noun = read.split(separator: " ").prefix(2).joined(separator: " ")  // "the input", "the --data file"
        switch self {
        case .same: return "is \(read); writing it would replace \(noun)"
        case .containsInput: return "contains \(read); replacing it would delete \(noun)"
        case .insideInput: return "lies inside \(read); writing it would change \(noun)"
        }
    }

    /// The components of `path` below `base` (both resolved), or nil when it does not lie inside it.
    public static func components(of path: String, below base: String) -> [String]? {
        let p = resolvedComponents(of: URL(fileURLWithPath: path).standardizedFileURL.path)
        let b = resolvedComponents(of: URL(fileURLWithPath: base).standardizedFileURL.path)
        return p.count > b.count && p.starts(with: b) ? Array(p[b.count...]) : nil
    }

    /// The components of `path` (made absolute) after `realpath` of its longest existing prefix,
    /// with the rest, which does not exist yet, appended and its `.` and `..` applied.
    static func resolvedComponents(of path: String) -> [String] {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let parts = absolute.split(separator: "/").map(String.init)
        func prefix(_ count: Int) -> String { "/" + parts[..<count].joined(separator: "/") }
        var existing = parts.count
        while existing > 0 && access(prefix(existing), F_OK) != 0 { existing -= 1 }
        var components = Array(parts[..<existing])
        if let real = realpath(prefix(existing), nil) {
            components = String(cString: real).split(separator: "/").map(String.init)
            free(real)
        }
        for part in parts[existing...] where part != "." {
            if part == ".." { _ = components.popLast() } else { components.append(part) }
        }
        return components
    }
}
