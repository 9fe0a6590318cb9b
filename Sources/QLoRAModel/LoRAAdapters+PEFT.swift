// The adapters as PEFT files: `adapter_model.safetensors` (F32, PEFT's keys and orientation) and
// `adapter_config.json` (the LoraConfig fields PeftModel.from_pretrained needs). FORMATS.md.
import Foundation
import QLoRAIO
import QLoRAKernels

/// The fields of a PEFT `adapter_config.json` that decide the adapters' shapes and scale.
public struct PEFTAdapterConfig: Sendable, Equatable {
    public var rank: Int
    public var alpha: Float
    public var dropout: Float
    public var useRSLoRA: Bool
    public var targets: Set<Projection>

    /// Reads `<directory>/adapter_config.json`.
    public init(directory: String) throws(ModelError) {
        let path = directory + "/adapter_config.json"
        guard let data = FileManager.default.contents(atPath: path),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw .file(path: path, detail: "missing or not a JSON object; --init-adapter must be a PEFT adapter directory")
        }
        func fail(_ detail: String) -> ModelError { .file(path: path, detail: detail) }
        guard (object["peft_type"] as? String) == "LORA" else { throw fail("peft_type is \(object["peft_type"] ?? "missing"), only LORA adapters are supported") }
        guard let rank = object["r"] as? Int, rank > 0 else { throw fail("'r' is missing or not a positive integer") }
        guard let alpha = (object["lora_alpha"] as? NSNumber)?.floatValue else { throw fail("'lora_alpha' is missing") }
        if (object["use_dora"] as? Bool) == true { throw fail("DoRA adapters (use_dora) are not supported") }
        if let bias = object["bias"] as? String, bias != "none" { throw fail("bias '\(bias)' is not supported; only bias \"none\"") }
        let names: [String]
        switch object["target_modules"] {
        case let list as [String]: names = list
        case let single as String where single == "all-linear": names = Projection.allCases.map(\.rawValue)
        default: throw fail("'target_modules' must be a list of projection names (a regex is not supported)")
        }
        var targets: Set<Projection> = []
        for name in names {
            guard let projection = Projection(rawValue: name) else {
                throw fail("target module '\(name)' is not one of \(Projection.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            targets.insert(projection)
        }
        self.rank = rank
        self.alpha = alpha
        dropout = (object["lora_dropout"] as? NSNumber)?.floatValue ?? 0
        useRSLoRA = (object["use_rslora"] as? Bool) ?? false
        self.targets = targets
    }
}

extension LoRAAdapters {
    /// Writes `adapter_model.safetensors` and `adapter_config.json` into `directory` (which must
    /// exist), each through a temporary name, fsync and rename.
    /// - Parameter baseModel: `base_model_name_or_path` (the model directory the adapter belongs to).
    public func savePEFT(directory: String, baseModel: String) throws(FileError) {
        let writer = try SafetensorsWriter(path: directory + "/adapter_model.safetensors",
                                           planned: tensors.map { .init(name: $0.key, dtype: .F32, shape: $0.tensor.shape) },
                                           lateTensors: 0, longestLateName: 0)
        for (key, tensor) in tensors { try writer.write(key, bytes: tensor.values, count: 4 * tensor.count) }
        try writer.finish(metadata: ["format": "pt"])
        try AtomicOutput.replaceFile(directory + "/adapter_config.json", Array((PythonJSON.encode(peftConfig(baseModel: baseModel)) + "\n").utf8))
    }

    /// PEFT's LoraConfig as `save_pretrained` writes it (the fields FORMATS.md lists, plus defaults).
    func peftConfig(baseModel: String) -> [String: Any] {
        [
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": baseModel,
            "r": config.rank, "lora_alpha": Double(config.alpha), "lora_dropout": Double(config.dropout),
            "target_modules": config.orderedTargets.map(\.rawValue),
            "bias": "none", "use_rslora": config.useRSLoRA, "use_dora": false, "fan_in_fan_out": false,
            "inference_mode": true, "init_lora_weights": true, "modules_to_save": NSNull(),
            "layers_to_transform": NSNull(), "layers_pattern": NSNull(), "rank_pattern": [String: Any](), "alpha_pattern": [String: Any](),
            "revision": NSNull(),
        ]
    }

    /// Replaces the values with those of a PEFT adapter file (`adapter_model.safetensors`); every
    /// tensor of this set must be present with the same shape, in F32, F16 or BF16, and finite.
    public func load(peftFile path: String) throws(ModelError) {
        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: path) } catch { throw .file(path: path, detail: "\(error)") }
        for (key, tensor) in tensors {
            // PEFT saves without the adapter name; some tools keep ".default".
            guard let entry = file.tensor(named: key) ?? file.tensor(named: key.replacingOccurrences(of: ".weight", with: ".default.weight")) else {
                throw .tensor(path: path, tensor: key, detail: "missing; the adapter was made for other target modules or another model")
            }
            guard entry.shape == tensor.shape else {
                throw .tensor(path: path, tensor: key, detail: "shape \(entry.shape), expected \(tensor.shape) (rank or model differs)")
            }
            guard let encoding = entry.dtype.floatEncoding else {
                throw .tensor(path: path, tensor: key, detail: "dtype \(entry.dtype.rawValue); expected F32, F16 or BF16")
            }
            encoding.decode(tensor.values, file.data(of: entry), count: tensor.count)
            if let index = firstNonFinite(tensor.values, count: tensor.count) {
                throw .tensor(path: path, tensor: key, detail: "value \(index) is \(tensor.values[index]); the adapter is damaged or diverged and cannot be trained on")
            }
        }
    }

    /// The first adapter value that is NaN or infinite, as (PEFT key, index in the tensor); nil when all are finite.
    public func firstNonFiniteValue() -> (key: String, index: Int)? {
        for (key, tensor) in tensors {
            if let index = firstNonFinite(tensor.values, count: tensor.count) { return (key, index) }
        }
        return nil
    }
}
