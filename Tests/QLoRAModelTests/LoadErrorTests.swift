// Bad model directories and adapters give errors that name the file or tensor, never a crash.
import Foundation
import QLoRAModel
import Testing
import _TestSupport

/// A copy of a fixture model directory whose config.json was edited by `edit`.
func editedModel(_ base: String, _ edit: (inout [String: Any]) -> Void) throws -> TemporaryDirectory {
    let source = try Fixture("model-llama-gqa").directory.appendingPathComponent(base).path
    let directory = try TemporaryDirectory()
    for name in try FileManager.default.contentsOfDirectory(atPath: source) {
        try FileManager.default.copyItem(atPath: source + "/" + name, toPath: directory.path + "/" + name)
    }
    let configPath = directory.path + "/config.json"
    var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as! [String: Any]
    edit(&config)
    try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
    return directory
}

func loadError(_ directory: String) -> String? {
    do {
        _ = try LlamaWeights(directory: directory)
        return nil
    } catch {
        return error.description
    }
}

@Test func missingConfigNamesTheDirectory() throws {
    let directory = try TemporaryDirectory()
    let message = try #require(loadError(directory.path))
    #expect(message.contains(directory.path + "/config.json") && message.contains("--model"), "\(message)")
}

@Test(arguments: ["base", "base-nf4"])
func shapesThatDisagreeWithConfigNameTheTensor(_ base: String) throws {
    let directory = try editedModel(base) { $0["intermediate_size"] = 192 }
    let message = try #require(loadError(directory.path))
    #expect(message.contains("model.layers.0.mlp.gate_proj.weight") && message.contains("192"), "\(message)")
}

@Test func unknownRopeScalingIsRefused() throws {
    let directory = try editedModel("base") { $0["rope_parameters"] = ["rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0] }
    let message = try #require(loadError(directory.path))
    #expect(message.contains("yarn") && message.contains("llama3"), "\(message)")
}

@Test func unknownArchitectureIsRefused() throws {
    let directory = try editedModel("base") { $0["model_type"] = "gpt2" }
    let message = try #require(loadError(directory.path))
    #expect(message.contains("gpt2") && message.contains("llama"), "\(message)")
}

@Test func adapterOfAnotherRankIsRefusedByName() throws {
    let fixture = try Fixture("model-llama-gqa")
    let weights = try LlamaWeights(directory: fixture.directory.path + "/base")
    let adapters = LoRAAdapters(shape: weights.shape, config: LoRAConfig(rank: 8))
    let path = fixture.directory.path + "/adapter/adapter_model.safetensors"
    #expect {
        try adapters.load(peftFile: path)
    } throws: { error in
        let message = "\(error)"
        return message.contains(path) && message.contains("lora_A") && message.contains("[4, 64]")
    }
}
