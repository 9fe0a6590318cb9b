// A Hugging Face checkpoint directory: config.json, one or more *.safetensors (with
// model.safetensors.index.json when sharded) in F32/F16/BF16, and tokenizer files.
import Foundation
import QLoRAIO
import QLoRAModel
import QLoRAKernels

public final class HFCheckpointSource: WeightSource {
    public let origin: String
    /// The directory and every file in it: shards, config.json, tokenizer files (which may be
    /// symlinks elsewhere, as in the Hugging Face cache, where they point into `blobs/`).
    public let inputPaths: [String]
    public let config: [String: Any]
    public let outputEncoding: FloatEncoding
    public let tensors: [SourceTensor]
    private let located: [String: (file: SafetensorsFile, entry: SafetensorsTensor, encoding: FloatEncoding)]

    /// Files copied beside the weights when present.
    static let auxiliaryNames = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                 "generation_config.json", "tokenizer.model", "chat_template.jinja"]

    /// - Parameter encoding: the output dtype; nil keeps the checkpoint's (`torch_dtype`).
    public init(directory: String, encoding: FloatEncoding? = nil) throws {
        origin = directory
        let configPath = directory + "/config.json"
        guard FileManager.default.fileExists(atPath: configPath) else {
            throw ConvertError.input(path: directory, detail: "no config.json; --input must be a Hugging Face model directory or a .gguf file")
        }
        guard let data = FileManager.default.contents(atPath: configPath),
              let object = try? JSONSerialization.jsonObject(with: data), let config = object as? [String: Any] else {
            throw ConvertError.badConfig(path: configPath, detail: "not a JSON object")
        }
        let shape = try ModelShape(config: config, path: configPath)
        self.config = config

        let files = try SafetensorsShards.files(in: directory)
        let everyFile = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).map { directory + "/" + $0 }
        inputPaths = [directory] + Set(everyFile + files).sorted()
        var entries: [String: (SafetensorsFile, SafetensorsTensor)] = [:]
        for path in files {
            let file = try SafetensorsFile(path: path)
            for entry in file.tensors { entries[entry.name] = (file, entry) }
        }
        var located: [String: (SafetensorsFile, SafetensorsTensor, FloatEncoding)] = [:]
        var tensors: [SourceTensor] = []
        for (name, expected) in shape.tensorShapes {
            guard let (file, entry) = entries[name] else { throw ConvertError.missingTensor(path: directory, tensor: name) }
            guard entry.shape == expected else {
                throw ConvertError.shapeMismatch(path: file.path, tensor: name, expected: expected, found: entry.shape)
            }
            guard let encoding = entry.dtype.floatEncoding else {
                throw ConvertError.unsupportedDType(path: file.path, tensor: name, dtype: entry.dtype.rawValue)
            }
            located[name] = (file, entry, encoding)
            tensors.append(SourceTensor(name: name, shape: expected, sourceBytes: entry.byteCount, file: file.path))
        }
        self.tensors = tensors
        self.located = located
        let declared = (config["torch_dtype"] as? String) ?? (config["dtype"] as? String)
        outputEncoding = encoding ?? declared.flatMap(FloatEncoding.init(rawValue:)) ?? located["model.embed_tokens.weight"]!.2
    }

    public func read(_ tensor: SourceTensor, rows: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
        let (file, entry, encoding) = located[tensor.name]!
        let start = rows.lowerBound * tensor.rowLength
        let count = rows.count * tensor.rowLength
        encoding.decode(out, file.data(of: entry) + start * encoding.byteWidth, count: count)
        if encoding != outputEncoding { try roundToOutput(out, count: count, tensor: tensor) }
    }

    public func release(_ tensor: SourceTensor) {
        let (file, entry, _) = located[tensor.name]!
        file.file.release(offset: entry.fileOffset, count: entry.byteCount)
    }

    public func auxiliaryFiles() throws -> [(name: String, bytes: [UInt8])] {
        Self.auxiliaryNames.compactMap { name in
            FileManager.default.contents(atPath: origin + "/" + name).map { (name, [UInt8]($0)) }
        }
    }
}
