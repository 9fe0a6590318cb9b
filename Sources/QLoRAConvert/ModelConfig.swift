// The subset of a Hugging Face Llama-family config.json the converter needs, validated, plus the
// architectures it accepts and which tensors it quantizes.
import Foundation
import QLoRAIO

/// Shapes of a Llama-family decoder, read from `config.json`.
public struct ModelShape: Sendable, Equatable {
    public var modelType: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var vocabSize: Int
    public var tiedEmbeddings: Bool
    public var attentionBias: Bool
    /// Llama's `mlp_bias`: biases on gate, up and down projections.
    public var mlpBias: Bool
    public var rmsNormEps: Float
    public var rope: RoPEConfig

    /// model_type values whose weights follow the Llama layout.
    public static let supportedModelTypes = ["llama", "qwen2", "mistral"]

    public init(config: [String: Any], path: String) throws(ConvertError) {
        func int(_ key: String) throws(ConvertError) -> Int {
            guard let value = config[key] as? Int, value > 0 else {
                throw .badConfig(path: path, detail: "'\(key)' is missing or not a positive integer")
            }
            return value
        }
        guard let type = config["model_type"] as? String else { throw .badConfig(path: path, detail: "'model_type' is missing") }
        guard Self.supportedModelTypes.contains(type) else {
            throw .unsupportedArchitecture(path: path, name: type, supported: Self.supportedModelTypes)
        }
        modelType = type
        hiddenSize = try int("hidden_size")
        intermediateSize = try int("intermediate_size")
        layers = try int("num_hidden_layers")
        heads = try int("num_attention_heads")
        kvHeads = (config["num_key_value_heads"] as? Int) ?? heads
        headDim = (config["head_dim"] as? Int) ?? hiddenSize / heads
        vocabSize = try int("vocab_size")
        tiedEmbeddings = (config["tie_word_embeddings"] as? Bool) ?? false
        attentionBias = (config["attention_bias"] as? Bool) ?? (type == "qwen2")
        mlpBias = (config["mlp_bias"] as? Bool) ?? false
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw .badConfig(path: path, detail: "num_attention_heads \(heads) is not a multiple of num_key_value_heads \(kvHeads)")
        }
        func number(_ key: String, in object: [String: Any] = config) -> Double? {
            (object[key] as? Double) ?? (object[key] as? Int).map(Double.init)
        }
        rmsNormEps = Float(number("rms_norm_eps") ?? 1e-6)
        // transformers 5 writes `rope_parameters` {rope_type, rope_theta, ...}; older configs have
        // `rope_theta` and `rope_scaling` at the top level.
        let parameters = config["rope_parameters"] as? [String: Any]
        let theta = number("rope_theta") ?? parameters.flatMap { number("rope_theta", in: $0) } ?? 10_000
        rope = try RoPEConfig(theta: theta, scaling: config["rope_scaling"] ?? parameters, path: path, number: number)
    }

    /// The Hugging Face names and shapes of every weight, in checkpoint order.
    public var tensorShapes: [(name: String, shape: [Int])] {
        var list: [(String, [Int])] = [("model.embed_tokens.weight", [vocabSize, hiddenSize])]
        let q = heads * headDim, kv = kvHeads * headDim
        for layer in 0..<layers {
            let p = "model.layers.\(layer)."
            list.append((p + "input_layernorm.weight", [hiddenSize]))
            list.append((p + "self_attn.q_proj.weight", [q, hiddenSize]))
            list.append((p + "self_attn.k_proj.weight", [kv, hiddenSize]))
            list.append((p + "self_attn.v_proj.weight", [kv, hiddenSize]))
            if attentionBias {
                list.append((p + "self_attn.q_proj.bias", [q]))
                list.append((p + "self_attn.k_proj.bias", [kv]))
                list.append((p + "self_attn.v_proj.bias", [kv]))
            }
            list.append((p + "self_attn.o_proj.weight", [hiddenSize, q]))
            list.append((p + "post_attention_layernorm.weight", [hiddenSize]))
            list.append((p + "mlp.gate_proj.weight", [intermediateSize, hiddenSize]))
            list.append((p + "mlp.up_proj.weight", [intermediateSize, hiddenSize]))
            list.append((p + "mlp.down_proj.weight", [hiddenSize, intermediateSize]))
            if mlpBias {
                list.append((p + "mlp.gate_proj.bias", [intermediateSize]))
                list.append((p + "mlp.up_proj.bias", [intermediateSize]))
                list.append((p + "mlp.down_proj.bias", [hiddenSize]))
            }
        }
        list.append(("model.norm.weight", [hiddenSize]))
        if !tiedEmbeddings { list.append(("lm_head.weight", [vocabSize, hiddenSize])) }
        return list
    }

    public var parameterCount: Int { tensorShapes.reduce(0) { $0 + $1.shape.reduce(1, *) } }
}

/// Rotary position embedding parameters (transformers `modeling_rope_utils`).
public struct RoPEConfig: Sendable, Equatable {
    public enum Scaling: Sendable, Equatable {
        case none
        /// Positions divided by `factor` (transformers "linear").
        case linear(factor: Double)
        /// Llama 3.1 frequency-dependent scaling (transformers `_compute_llama3_parameters`).
        case llama3(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalMaxPositions: Int)
    }

    public var theta: Double
    public var scaling: Scaling

    public init(theta: Double, scaling: Scaling = .none) {
        self.theta = theta
        self.scaling = scaling
    }

    init(theta: Double, scaling object: Any?, path: String,
         number: (String, [String: Any]) -> Double?) throws(ConvertError) {
        self.theta = theta
        guard let object = object as? [String: Any] else {
            scaling = .none
            return
        }
        let kind = (object["rope_type"] as? String) ?? (object["type"] as? String) ?? "default"
        func required(_ key: String) throws(ConvertError) -> Double {
            guard let value = number(key, object), value > 0 else {
                throw .badConfig(path: path, detail: "rope_scaling '\(kind)' needs a positive '\(key)'")
            }
            return value
        }
        switch kind {
        case "default": scaling = .none
        case "linear": scaling = .linear(factor: try required("factor"))
        case "llama3":
            scaling = .llama3(factor: try required("factor"), lowFrequencyFactor: try required("low_freq_factor"),
                              highFrequencyFactor: try required("high_freq_factor"),
                              originalMaxPositions: Int(try required("original_max_position_embeddings")))
        default:
            throw .badConfig(path: path, detail: "rope_scaling type '\(kind)' is not supported (supported: default, linear, llama3)")
        }
    }
}

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
    case noWeights(path: String)
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
        case .noWeights(let path):
            return "\(path): no *.safetensors files found (PyTorch .bin checkpoints are not supported; convert them to safetensors first)"
        case .input(let path, let detail): return pathMessage(path, detail)
        case .output(let path, let detail): return pathMessage(path, detail)
        case .outputOverlapsInput(let output, let input, let overlap):
            return "--output \(output) \(overlap.describe(read: "the input \(input)")) (paths compared with symlinks followed); choose an --output outside the input"
        }
    }
}
