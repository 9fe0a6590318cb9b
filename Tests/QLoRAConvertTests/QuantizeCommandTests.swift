// The quantize command: flag validation shows usage errors; failures exit non-zero with a message
// and leave no output; an output that would overwrite the input is refused; a successful run writes
// the checkpoint.
import ArgumentParser
import Foundation
import QLoRACLI
import QLoRAConvert
import Testing
@testable import quantize
import _TestSupport

struct QuantizeCommandTests {
    @Test(arguments: [
        ["--output", "x"],
        ["--input", "a", "--synthetic", "llama-7b", "--output", "x"],
        ["--synthetic", "llama-7b", "--output", "x", "--max-shard-size", "lots"],
        ["--synthetic", "llama-7b", "--output", "x", "--dtype", "float8"],
        ["--synthetic", "llama-7b"],
    ])
    func invalidFlagsAreRejectedBeforeAnyWork(arguments: [String]) {
        #expect(throws: (any Error).self) { _ = try Quantize.parseAsRoot(arguments) }
    }

    /// One size convention for every command (issue 12: "5G" used to be 5e9 bytes here and 5 GiB in
    /// --mem-budget): GB is decimal, as transformers' max_shard_size; G and GiB are binary.
    @Test func shardSizesParse() throws {
        #expect(parseByteSize("5GB") == 5_000_000_000 && parseByteSize("5G") == 5 << 30 && parseByteSize("5GiB") == 5 << 30)
        #expect(parseByteSize("500MB") == 500_000_000)
        #expect(parseByteSize("123") == 123)
        #expect(parseByteSize("-5G") == nil && parseByteSize("G") == nil)
        #expect(throws: (any Error).self) { try Quantize.parseAsRoot(["--synthetic", "llama-7b", "--output", "x", "--max-shard-size", "0"]) }
        let defaults = try #require(try Quantize.parseAsRoot(["--synthetic", "llama-7b", "--output", "x"]) as? Quantize)
        #expect(parseByteSize(defaults.maxShardSize) == 50_000_000_000, "transformers' default, 50 GB")
    }

    @Test func missingInputFailsWithoutOutput() throws {
        let directory = try TemporaryDirectory()
        let command = try #require(try Quantize.parseAsRoot(["--input", directory.path + "/nope.gguf", "--output", directory.path + "/out"]) as? Quantize)
        #expect { try command.run() } throws: { "\($0)".contains("does not exist") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
    }

    @Test func corruptGGUFExitsNonZeroAndLeavesNothing() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/model.gguf"
        try Data("GGUF".utf8 + [3, 0, 0, 0, 0xFF, 0xFF]).write(to: URL(fileURLWithPath: path))
        let command = try #require(try Quantize.parseAsRoot(["--input", path, "--output", directory.path + "/out"]) as? Quantize)
        #expect { try command.run() } throws: { error in (error as? ExitCode) == ExitCode(1) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["model.gguf"])
    }

    @Test func convertsACheckpointDirectory() throws {
        let directory = try TemporaryDirectory()
        let source = Fixture.root.appendingPathComponent("tiny-qwen2/source").path
        let command = try #require(try Quantize.parseAsRoot(["--input", source, "--output", directory.path + "/out", "--dtype", "bfloat16"]) as? Quantize)
        try command.run()
        let config = try String(contentsOfFile: directory.path + "/out/config.json", encoding: .utf8)
        #expect(config.contains("\"bnb_4bit_compute_dtype\": \"bfloat16\""))
    }

    /// An `--output` that is the input, contains it or lies inside it, in the forms people type it.
    /// `$DIR` is a directory holding `models/model` (tiny-llama's checkpoint), `models/model.gguf`,
    /// `link -> models/model`, and `snapshot` whose shard is a symlink into `blobs` (the Hugging Face
    /// cache's layout) and whose config.json is a symlink into `configs` (every file the converter
    /// reads counts, not only the weights); `$CWD` is the same directory written relative to the
    /// working one.
    @Test(arguments: [
        ("$DIR/models/model", "$DIR/models/model"),
        ("$DIR/models/model", "$DIR/models/model/"),
        ("$DIR/models/model", "$DIR/models/./model"),
        ("$DIR/models/model", "$CWD/models/model"),
        ("$DIR/models/model", "$DIR/link"),
        ("$DIR/link", "$DIR/models/model"),
        ("$DIR/models/model", "$DIR/models"),
        ("$DIR/models/model", "$DIR"),
        ("$DIR/models/model", "$DIR/models/model/nf4"),
        ("$DIR/models/model.gguf", "$DIR/models/model.gguf"),
        ("$DIR/models/model.gguf", "$DIR/models"),
        ("$DIR/snapshot", "$DIR/blobs"),
        ("$DIR/snapshot", "$DIR/configs"),
    ])
    func outputOverlappingTheInputIsRefusedBeforeAnythingIsWritten(input: String, output: String) throws {
        let directory = try TemporaryDirectory()
        let fileManager = FileManager.default
        try fileManager.createDirectory(atPath: directory.path + "/models", withIntermediateDirectories: false)
        try fileManager.copyItem(atPath: Fixture.root.appendingPathComponent("tiny-llama/source").path, toPath: directory.path + "/models/model")
        writeBytes(tinyLlamaGGUF(), to: directory.path + "/models/model.gguf")
        try fileManager.createSymbolicLink(atPath: directory.path + "/link", withDestinationPath: directory.path + "/models/model")
        for name in ["blobs", "snapshot", "configs"] { try fileManager.createDirectory(atPath: directory.path + "/" + name, withIntermediateDirectories: false) }
        try fileManager.copyItem(atPath: directory.path + "/models/model/config.json", toPath: directory.path + "/configs/config.json")
        try fileManager.createSymbolicLink(atPath: directory.path + "/snapshot/config.json", withDestinationPath: "../configs/config.json")
        try fileManager.copyItem(atPath: directory.path + "/models/model/model.safetensors", toPath: directory.path + "/blobs/weights")
        try fileManager.createSymbolicLink(atPath: directory.path + "/snapshot/model.safetensors", withDestinationPath: "../blobs/weights")
        let upToRoot = String(repeating: "../", count: URL(fileURLWithPath: fileManager.currentDirectoryPath).pathComponents.count - 1)
        func expand(_ template: String) -> String {
            template.replacingOccurrences(of: "$DIR", with: directory.path)
                .replacingOccurrences(of: "$CWD", with: "./" + upToRoot + directory.path.dropFirst())
        }
        let (input, output) = (expand(input), expand(output))
        let before = try snapshot(directory.path)

        let command = try #require(try Quantize.parseAsRoot(["--input", input, "--output", output, "--force"]) as? Quantize)
        #expect { try command.run() } throws: { error in (error as? ExitCode) == ExitCode(1) }
        // The library refuses it too (qlora-train quantizes on load through it), naming both paths.
        let source: WeightSource = input.hasSuffix(".gguf") ? try GGUFSource(path: input) : try HFCheckpointSource(directory: input)
        var options = ConvertOptions(output: output)
        options.force = true
        #expect { try Converter.convert(source, options: options) } throws: { error in
            "\(error)".contains("--output \(output) ") && "\(error)".contains("the input \(input)")
                && "\(error)".contains("choose an --output outside the input")
        }
        #expect(try snapshot(directory.path) == before, "the input is intact and nothing was written beside it")
        #expect(!fileManager.fileExists(atPath: Converter.partialDirectory(for: output)))
    }

    /// `model-nf4` beside `model` (or `model.gguf`) shares a string prefix with it but is not inside it.
    @Test(arguments: ["model", "model.gguf"])
    func siblingOutputIsAccepted(input name: String) throws {
        let directory = try TemporaryDirectory()
        let input = directory.path + "/" + name
        if name.hasSuffix(".gguf") {
            writeBytes(tinyLlamaGGUF(), to: input)
        } else {
            try FileManager.default.copyItem(atPath: Fixture.root.appendingPathComponent("tiny-llama/source").path, toPath: input)
        }
        let before = try snapshot(directory.path)
        let command = try #require(try Quantize.parseAsRoot(["--input", input, "--output", directory.path + "/model-nf4"]) as? Quantize)
        try command.run()
        #expect(FileManager.default.fileExists(atPath: directory.path + "/model-nf4/model.safetensors"))
        #expect(try snapshot(directory.path).filter { !$0.key.hasPrefix("model-nf4") } == before, "the input is intact")
    }

    /// Every entry under `root` by relative path: a file's bytes, a symlink's target, empty for a directory.
    func snapshot(_ root: String) throws -> [String: Data] {
        var entries: [String: Data] = [:]
        for path in try FileManager.default.subpathsOfDirectory(atPath: root) {
            let full = root + "/" + path
            switch try FileManager.default.attributesOfItem(atPath: full)[.type] as? FileAttributeType {
            case .typeRegular?: entries[path] = try Data(contentsOf: URL(fileURLWithPath: full))
            case .typeSymbolicLink?: entries[path] = Data(try FileManager.default.destinationOfSymbolicLink(atPath: full).utf8)
            default: entries[path] = Data()
            }
        }
        return entries
    }
}
