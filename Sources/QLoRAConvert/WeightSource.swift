// Where a conversion reads weights from: a Hugging Face checkpoint, a GGUF file or seeded random
// values. Every source yields tensors under Hugging Face names, in HF orientation, as Float32 rows.
import QLoRAKernels

/// A tensor a source can produce, under its Hugging Face name.
public struct SourceTensor: Sendable {
    public let name: String
    /// HF shape, e.g. [out, in] for a linear weight.
    public let shape: [Int]
    /// Bytes this tensor occupies in the source (for the summary).
    public let sourceBytes: Int
    /// The file the tensor is read from, for error messages (the source's origin for generated weights).
    public let file: String

    public init(name: String, shape: [Int], sourceBytes: Int, file: String) {
        self.name = name
        self.shape = shape
        self.sourceBytes = sourceBytes
        self.file = file
    }

    public var elementCount: Int { shape.reduce(1, *) }
    /// Length of the last dimension: one "row".
    public var rowLength: Int { shape.last ?? 1 }
    public var rowCount: Int { elementCount / rowLength }
}

/// A model to convert. Reads must be safe to call for any row range of a listed tensor.
public protocol WeightSource: AnyObject {
    /// Human-readable origin, e.g. the file path.
    var origin: String { get }
    /// The files and directories the weights are read from, as given (symlinks not resolved); the
    /// converter refuses an output that is one of them, contains one or lies inside one. Empty when
    /// nothing is read from disk.
    var inputPaths: [String] { get }
    /// The Hugging Face `config.json` content for the output.
    var config: [String: Any] { get }
    /// The dtype the weights are stored in on output and recorded as the quantized tensors' dtype.
    var outputEncoding: FloatEncoding { get }
    var tensors: [SourceTensor] { get }
    /// Writes rows `rows` of `tensor` (rows.count * rowLength values) into `out` as Float32,
    /// already rounded to `outputEncoding`.
    func read(_ tensor: SourceTensor, rows: Range<Int>, into out: UnsafeMutablePointer<Float>) throws
    /// Called once a tensor is fully converted, so a memory-mapped source can drop its pages.
    func release(_ tensor: SourceTensor)
    /// Tokenizer and generation files to copy into the output: file name -> bytes.
    func auxiliaryFiles() throws -> [(name: String, bytes: [UInt8])]
}

extension WeightSource {
    /// Rounds `count` values read for `tensor` to the output dtype. A finite value the dtype cannot
    /// hold (beyond float16's 65504) is an error naming it, rather than an infinity reported later
    /// as a corrupt checkpoint.
    func roundToOutput(_ values: UnsafeMutablePointer<Float>, count: Int, tensor: SourceTensor) throws(ConvertError) {
        if outputEncoding == .float16, let index = (0..<count).first(where: { values[$0].isFinite && abs(values[$0]) >= float16Overflow }) {
            throw .outOfRange(path: tensor.file, tensor: tensor.name, value: values[index], dtype: outputEncoding.rawValue)
        }
        outputEncoding.round(values, count: count)
    }
}

/// The smallest magnitude float16 rounds to infinity (65504 is its largest finite value).
private let float16Overflow: Float = 65520
