// Refusing an output that would overwrite the model being converted: the same path, a directory
// holding it, or a path inside it, compared by whole components once symlinks are resolved.
import Foundation

/// How an output path overlaps an input path.
public enum PathOverlap: Sendable, Equatable {
    /// Both name the same file or directory.
    case same
    /// The output is an ancestor directory of the input.
    case containsInput
    /// The output lies below the input.
    case insideInput
}

extension Converter {
    /// Throws `outputOverlapsInput` when `output` is one of `inputs`, contains one or lies inside
    /// one. Components are compared, not strings, so `/a/model-nf4` is not inside `/a/model`.
    /// - Parameters:
    ///   - output: `--output` as given; it is resolved as `convert` writes it (lexically standardized,
    ///     then with the symlinks of its existing part followed).
    ///   - inputs: the source's `inputPaths`, which exist, resolved by the file system.
    static func refuseOverlap(output: String, inputs: [String]) throws(ConvertError) {
        let written = resolvedComponents(of: URL(fileURLWithPath: output).standardizedFileURL.path)
        for input in inputs {
            let read = resolvedComponents(of: input)
            let overlap: PathOverlap
            if written == read {
                overlap = .same
            } else if read.starts(with: written) {
                overlap = .containsInput
            } else if written.starts(with: read) {
                overlap = .insideInput
            } else {
                continue
            }
            throw .outputOverlapsInput(output: output, input: input, overlap: overlap)
        }
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
