// Refusing an output that would overwrite the model being converted: the same path, a directory
// holding it, or a path inside it (PathOverlap).
import QLoRAIO

extension Converter {
    /// Throws `outputOverlapsInput` when `output` is one of `inputs`, contains one or lies inside one.
    /// - Parameters:
    ///   - output: `--output` as given; it is resolved as `convert` writes it.
    ///   - inputs: the source's `inputPaths`, which exist, resolved by the file system.
    static func refuseOverlap(output: String, inputs: [String]) throws(ConvertError) {
        for input in inputs {
            if let overlap = PathOverlap.between(written: output, read: input) {
                throw .outputOverlapsInput(output: output, input: input, overlap: overlap)
            }
        }
    }
}
