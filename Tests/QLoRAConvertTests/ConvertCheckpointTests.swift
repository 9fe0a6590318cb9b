// The converter against transformers + bitsandbytes themselves: tiny checkpoints saved by
// transformers (tools/reference/make_fixtures.py), converted by us, must equal the 4-bit
// checkpoints transformers writes for them, tensor for tensor and byte for byte.
import Foundation
import Testing
import QLoRAConvert
import QLoRAIO
import _TestSupport

struct ConvertCheckpointTests {
    @Test(arguments: ["tiny-llama", "tiny-qwen2"])
    func convertedCheckpointEqualsTransformersOwn(name: String) throws {
        let fixture = Fixture.root.appendingPathComponent(name)
        let output = try TemporaryDirectory()
        var options = ConvertOptions(output: output.path + "/out")
        options.torchThreads = 2
        let summary = try Converter.convert(HFCheckpointSource(directory: fixture.appendingPathComponent("source").path), options: options)
        #expect(summary.quantizedTensors == 14)

        let ours = try SafetensorsFile(path: options.output + "/model.safetensors")
        let theirs = try SafetensorsFile(path: fixture.appendingPathComponent("bnb-4bit/model.safetensors").path)
        #expect(Set(ours.tensors.map(\.name)) == Set(theirs.tensors.map(\.name)))
        var differing: [String] = []
        for expected in theirs.tensors {
            guard let actual = ours.tensor(named: expected.name) else { continue }
            let same = actual.dtype == expected.dtype && actual.shape == expected.shape && actual.byteCount == expected.byteCount
                && memcmp(ours.data(of: actual), theirs.data(of: expected), expected.byteCount) == 0
            if !same { differing.append("\(expected.name): ours \(actual.dtype) \(actual.shape), theirs \(expected.dtype) \(expected.shape)") }
        }
        #expect(differing.isEmpty, "\(differing.count) tensors differ: \(differing.prefix(5))")

        let ourConfig = try jsonObject(options.output + "/config.json")
        let theirConfig = try jsonObject(fixture.appendingPathComponent("bnb-4bit/config.json").path)
        let ourQuant = ourConfig["quantization_config"] as? [String: Any] ?? [:]
        let theirQuant = theirConfig["quantization_config"] as? [String: Any] ?? [:]
        #expect(Set(ourQuant.keys) == Set(theirQuant.keys))
        for key in theirQuant.keys { #expect("\(ourQuant[key] ?? "missing")" == "\(theirQuant[key]!)", "quantization_config.\(key)") }
        // transformers refuses llm_int8_threshold unless it is written as a float.
        #expect(try String(contentsOfFile: options.output + "/config.json", encoding: .utf8).contains("\"llm_int8_threshold\": 6.0"))
    }

    @Test func existingOutputIsKeptWithoutForceAndReplacedWithIt() throws {
        let directory = try TemporaryDirectory()
        let output = directory.path + "/out"
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: false)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: output + "/marker"))
        let source = try HFCheckpointSource(directory: Fixture.root.appendingPathComponent("tiny-llama/source").path)
        #expect(throws: FileError.alreadyExists(path: output)) { try Converter.convert(source, options: ConvertOptions(output: output)) }
        #expect(FileManager.default.fileExists(atPath: output + "/marker"))

        var options = ConvertOptions(output: output)
        options.force = true
        _ = try Converter.convert(source, options: options)
        #expect(!FileManager.default.fileExists(atPath: output + "/marker"))
        #expect(FileManager.default.fileExists(atPath: output + "/model.safetensors"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["out"], "no partial or replaced directory left")
    }

    @Test func missingParentDirectoriesAreCreatedAndUnwritableOnesReported() throws {
        let directory = try TemporaryDirectory()
        let source = try HFCheckpointSource(directory: Fixture.root.appendingPathComponent("tiny-llama/source").path)
        _ = try Converter.convert(source, options: ConvertOptions(output: directory.path + "/a/b/out"))
        #expect(FileManager.default.fileExists(atPath: directory.path + "/a/b/out/config.json"))
        // A parent that is a file cannot hold the output.
        try Data().write(to: URL(fileURLWithPath: directory.path + "/file"))
        #expect { try Converter.convert(source, options: ConvertOptions(output: directory.path + "/file/out")) } throws: { error in
            "\(error)".contains(directory.path + "/file") && "\(error)".contains("--output")
        }
    }

    @Test func failureMidwayLeavesNoOutputBehind() throws {
        // A NaN in the last layer's down_proj: the conversion fails after writing most tensors.
        let directory = try TemporaryDirectory()
        let source = try tinyLlamaSource(in: directory.path, patching: "model.layers.1.mlp.down_proj.weight", at: 10, with: [0xC0, 0x7F])  // bfloat16 NaN

        let output = directory.path + "/out"
        #expect {
            try Converter.convert(HFCheckpointSource(directory: source), options: ConvertOptions(output: output))
        } throws: { error in
            "\(error)".contains(source + "/model.safetensors") && "\(error)".contains("model.layers.1.mlp.down_proj.weight")
                && "\(error)".contains("NaN")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["source"])
    }

    /// A finite weight that float16 cannot hold is named as such, with the dtypes that can (it
    /// used to be reported as a NaN in a corrupt checkpoint).
    @Test func aValueBeyondFloat16IsNamedNotCalledCorrupt() throws {
        let directory = try TemporaryDirectory()
        let source = try tinyLlamaSource(in: directory.path, patching: "model.layers.0.input_layernorm.weight", at: 2, with: [0x74, 0x49])  // bfloat16 999424
        #expect {
            try Converter.convert(HFCheckpointSource(directory: source, encoding: .float16), options: ConvertOptions(output: directory.path + "/out"))
        } throws: { error in
            "\(error)" == "\(source)/model.safetensors: tensor 'model.layers.0.input_layernorm.weight' holds 999424.0, beyond the range of float16; pass --dtype bfloat16 or float32"
        }
    }

    @Test func nonFiniteGGUFWeightNamesTheFileAndTensor() throws {
        // A NaN norm: a tensor copied in 16 bit, not quantized.
        let directory = try TemporaryDirectory()
        let path = directory.path + "/model.gguf"
        writeBytes(tinyLlamaGGUF(nanTensor: "output_norm.weight"), to: path)
        #expect {
            try Converter.convert(GGUFSource(path: path), options: ConvertOptions(output: directory.path + "/out"))
        } throws: { error in
            "\(error)".contains(path) && "\(error)".contains("model.norm.weight") && "\(error)".contains("NaN")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["model.gguf"])
    }

    @Test func syntheticModelHasTheArchitecturesShapesAndNormalWeights() throws {
        let directory = try TemporaryDirectory()
        let config = directory.path + "/config.json"
        try Data("""
            {"model_type": "llama", "hidden_size": 128, "intermediate_size": 320, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "tie_word_embeddings": true}
            """.utf8).write(to: URL(fileURLWithPath: config))
        let summary = try Converter.convert(SyntheticSource(architecture: config, seed: 3), options: ConvertOptions(output: directory.path + "/out"))
        #expect(summary.quantizedTensors == 14 && summary.keptTensors == 6)
        let file = try SafetensorsFile(path: directory.path + "/out/model.safetensors")
        #expect(file.tensor(named: "model.layers.1.mlp.down_proj.weight")?.shape == [320 * 128 / 2, 1])
        #expect(file.tensor(named: "lm_head.weight") == nil)
        // NF4 of normal(0, 0.02) data: the mean error is about 0.0728 * std (bitsandbytes' bound).
        let errors = summary.errors["q_proj"]!
        #expect(errors.meanAbsError > 0.02 * 0.06 && errors.meanAbsError < 0.02 * 0.08, "\(errors.meanAbsError)")
        // The same seed gives the same bytes; another seed does not.
        let again = try Converter.convert(SyntheticSource(architecture: config, seed: 3), options: ConvertOptions(output: directory.path + "/again"))
        let other = try Converter.convert(SyntheticSource(architecture: config, seed: 4), options: ConvertOptions(output: directory.path + "/other"))
        let bytes = { (name: String) in try Data(contentsOf: URL(fileURLWithPath: directory.path + "/\(name)/model.safetensors")) }
        #expect(try bytes("out") == bytes("again") && bytes("out") != bytes("other"))
        #expect(again.quantizedTensors == other.quantizedTensors)
    }

    @Test func syntheticConfigFileIsNotOverwritten() throws {
        let directory = try TemporaryDirectory()
        let config = directory.path + "/config.json"
        try FileManager.default.copyItem(atPath: Fixture.root.appendingPathComponent("tiny-llama/source/config.json").path, toPath: config)
        var options = ConvertOptions(output: directory.path)
        options.force = true
        #expect { try Converter.convert(SyntheticSource(architecture: config, seed: 0), options: options) } throws: { error in
            "\(error)".contains("--output \(directory.path) contains the input \(config)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["config.json"])
    }

    @Test func badInputsNameTheFileAndWhatIsWrong() throws {
        let directory = try TemporaryDirectory()
        #expect { try HFCheckpointSource(directory: directory.path) } throws: { "\($0)".contains("no config.json") }
        try Data(#"{"model_type": "gpt_neox", "hidden_size": 8}"#.utf8).write(to: URL(fileURLWithPath: directory.path + "/config.json"))
        #expect { try HFCheckpointSource(directory: directory.path) } throws: { "\($0)".contains("'gpt_neox' is not supported") }
        try FileManager.default.removeItem(atPath: directory.path + "/config.json")
        try FileManager.default.copyItem(atPath: Fixture.root.appendingPathComponent("tiny-llama/source/config.json").path,
                                         toPath: directory.path + "/config.json")
        #expect { try HFCheckpointSource(directory: directory.path) } throws: { "\($0)".contains("no *.safetensors") }
        // A truncated shard.
        let shard = try Data(contentsOf: Fixture.root.appendingPathComponent("tiny-llama/source/model.safetensors"))
        try shard.prefix(shard.count - 100).write(to: URL(fileURLWithPath: directory.path + "/model.safetensors"))
        #expect { try HFCheckpointSource(directory: directory.path) } throws: { error in
            "\(error)".contains("model.safetensors") && "\(error)".contains("truncated")
        }
        #expect { try SyntheticSource(architecture: "llama-3000b", seed: 0) } throws: { "\($0)".contains("llama-7b") }
    }

    func jsonObject(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any] ?? [:]
    }
}

/// A copy of the tiny-llama checkpoint in `directory`/source with `bytes` written `offset` bytes
/// into tensor `name`'s data; returns the copy's path.
private func tinyLlamaSource(in directory: String, patching name: String, at offset: Int, with bytes: [UInt8]) throws -> String {
    let source = directory + "/source"
    try FileManager.default.copyItem(atPath: Fixture.root.appendingPathComponent("tiny-llama/source").path, toPath: source)
    let tensor = try #require(try SafetensorsFile(path: source + "/model.safetensors").tensor(named: name))
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: source + "/model.safetensors"))
    try handle.seek(toOffset: UInt64(tensor.fileOffset + offset))
    try handle.write(contentsOf: Data(bytes))
    try handle.close()
    return source
}
