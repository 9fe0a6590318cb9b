// The IO edge of the model's architecture: a Hugging Face config.json decoded into ModelShape,
// validated, and the Hugging Face names of the weights it implies.
import Foundation

extension ModelShape {
    /// model_type values whose weights follow the Llama layout.
    public static let supportedModelTypes = ["llama", "qwen2", "mistral"]

    /// Decodes the Llama-family fields of a config.json object (`path` names it in errors).
    public init(config: [String: Any], path: String) throws(ModelConfigError) {
        func int(_ key: String) throws(ModelConfigError) -> Int {
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

extension RoPEConfig {
    /// Decodes `rope_scaling` (or transformers 5's `rope_parameters`) of a config.json.
    init(theta: Double, scaling object: Any?, path: String,
         number: (String, [String: Any]) -> Double?) throws(ModelConfigError) {
        self.theta = theta
        guard let object = object as? [String: Any] else {
            scaling = .none
            return
        }
        let kind = (object["rope_type"] as? String) ?? (object["type"] as? String) ?? "default"
        func required(_ key: String) throws(ModelConfigError) -> Double {
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

/// Why a config.json does not describe a model this engine runs; names the file and what to do.
public enum ModelConfigError: Error, CustomStringConvertible, Equatable {
    case badConfig(path: String, detail: String)
    case unsupportedArchitecture(path: String, name: String, supported: [String])

    public var description: String {
        switch self {
        case .badConfig(let path, let detail): return "\(path): \(detail)"
        case .unsupportedArchitecture(let path, let name, let supported):
            return "\(path): architecture '\(name)' is not supported; supported: \(supported.joined(separator: ", "))"
        }
    }
}
