// Which tensors the converter quantizes, and why a conversion stops. (The architecture itself,
// ModelShape, is the model's: QLoRAModel/ModelShape.swift.)
import Foundation
import QLoRAIO
import QLoRAModel

/// Linear weights of the decoder layers are quantized; embeddings, lm_head, norms and biases are not
/// (transformers' `BitsAndBytesConfig` default: lm_head is skipped).
public func isQuantizedLinear(_ name: String, shape: [Int]) -> Bool {
    guard shape.count == 2, name.hasPrefix("model.layers."), name.hasSuffix(".weight") else { return false }
    let projections = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                       "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    return projections.contains { name.hasSuffix(".\($0).weight") }
}

/// Why a conversion stopped; each names the file or tensor and what to do.
public enum ConvertError: Error, CustomStringConvertible {
    case badConfig(path: String, detail: String)
    case unsupportedArchitecture(path: String, name: String, supported: [String])
    case missingTensor(path: String, tensor: String)
    case shapeMismatch(path: String, tensor: String, expected: [Int], found: [Int])
    case unsupportedDType(path: String, tensor: String, dtype: String)
    case nonFinite(path: String, tensor: String)
    /// A finite value the output dtype cannot hold (`--dtype float16` and |value| > 65504).
    case outOfRange(path: String, tensor: String, value: Float, dtype: String)
    case input(path: String, detail: String)
    case output(path: String, detail: String)
    case outputOverlapsInput(output: String, input: String, overlap: PathOverlap)

    public var description: String {
        switch self {
        case .badConfig(let path, let detail): return "\(path): \(detail)"
        case .unsupportedArchitecture(let path, let name, let supported):
            return "\(path): architecture '\(name)' is not supported; supported: \(supported.joined(separator: ", "))"
        case .missingTensor(let path, let tensor):
            return "\(path): tensor '\(tensor)' is missing; the checkpoint is incomplete or not a Llama-family model"
        case .shapeMismatch(let path, let tensor, let expected, let found):
            return "\(path): tensor '\(tensor)' has shape \(found) but config.json implies \(expected)"
        case .unsupportedDType(let path, let tensor, let dtype):
            return "\(path): tensor '\(tensor)' has dtype \(dtype); only F32, F16 and BF16 weights can be converted"
        case .nonFinite(let path, let tensor):
            return "\(path): tensor '\(tensor)' contains NaN or infinite values; the checkpoint is corrupt"
        case .outOfRange(let path, let tensor, let value, let dtype):
            return "\(path): tensor '\(tensor)' holds \(value), beyond the range of \(dtype); pass --dtype bfloat16 or float32"
        case .input(let path, let detail): return pathMessage(path, detail)
        case .output(let path, let detail): return pathMessage(path, detail)
        case .outputOverlapsInput(let output, let input, let overlap):
            return "--output \(output) \(overlap.describe(read: "the input \(input)")) (paths compared with symlinks followed); choose an --output outside the input"
        }
    }
}
