// Turning `--model` into an NF4 model directory: a `quantize` output is used as it is; a Hugging
// Face float checkpoint or a GGUF file is quantized once, streaming, into `<output>/base-model-nf4`
// (reused by later runs and resumes while its source is unchanged).
import Foundation
import QLoRAConvert
import QLoRAIO
import QLoRAModel

enum ModelPreparation {
    static let quantizedName = "base-model-nf4"
    /// Written into the quantized copy: which source it was made from.
    static let sourceRecord = "swift-qlora-source.json"

    /// The NF4 model directory to train on. `beforeWriting` is called before a quantized copy is
    /// written into --output.
    static func prepare(config: TrainConfig, beforeWriting: () throws(TrainError) -> Void,
                        events: (TrainEvent) -> Void) throws(TrainError) -> String {
        let path = config.model
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw .model("--model \(path) does not exist; pass a quantize output, a Hugging Face model directory or a .gguf file")
        }
        if isDirectory.boolValue, try isQuantized(directory: path) { return path }
        let output = config.output + "/" + quantizedName
        let record = Array((PythonJSON.encode(["source": URL(fileURLWithPath: path).standardizedFileURL.path,
                                               "files": fingerprint(path, isDirectory: isDirectory.boolValue)] as [String: Any]) + "\n").utf8)
        if FileManager.default.contents(atPath: output + "/" + sourceRecord).map(Array.init) == record { return output }
        try beforeWriting()
        do {
            let source: WeightSource = isDirectory.boolValue ? try HFCheckpointSource(directory: path) : try GGUFSource(path: path)
            var options = ConvertOptions(output: output)
            options.force = true
            events(.quantizing(source: path, output: output, progress: nil))
            _ = try Converter.convert(source, options: options) { events(.quantizing(source: path, output: output, progress: $0)) }
            try AtomicOutput.replaceFile(output + "/" + sourceRecord, record)
        } catch {
            throw .model("cannot quantize --model on load: \(pathMessage(path, "\(error)"))\n"
                         + "(or quantize it yourself with `quantize --input \(path) --output <dir>` and pass that directory)")
        }
        return output
    }

    static func shape(directory: String) throws(TrainError) -> ModelShape {
        let path = directory + "/config.json"
        guard let object = configObject(path) else { throw .model("\(path): missing or not a JSON object") }
        do { return try ModelShape(config: object, path: path) } catch { throw .model(error.description) }
    }

    /// True when config.json declares bitsandbytes 4-bit weights (as `quantize` writes it).
    static func isQuantized(directory: String) throws(TrainError) -> Bool {
        let path = directory + "/config.json"
        guard let object = configObject(path) else {
            throw .model("\(path): missing or not a JSON object; --model must be a model directory with config.json, or a .gguf file")
        }
        guard let quantization = object["quantization_config"] as? [String: Any] else { return false }
        guard quantization["load_in_4bit"] as? Bool == true, (quantization["bnb_4bit_quant_type"] as? String) == "nf4" else {
            throw .model("\(path): quantization_config is not bitsandbytes NF4 4-bit; pass the original float checkpoint to quantize it")
        }
        return true
    }

    private static func configObject(_ path: String) -> [String: Any]? {
        FileManager.default.contents(atPath: path).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
    }

    /// Total bytes of the source's files with their modification times, to notice a changed source.
    private static func fingerprint(_ path: String, isDirectory: Bool) -> String {
        let manager = FileManager.default
        let files = isDirectory ? ((try? manager.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 } : [path]
        return files.map { file in
            let attributes = try? manager.attributesOfItem(atPath: file)
            let size = (attributes?[.size] as? Int) ?? 0
            let modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            return "\(URL(fileURLWithPath: file).lastPathComponent):\(size):\(Int(modified))"
        }.joined(separator: ",")
    }
}
