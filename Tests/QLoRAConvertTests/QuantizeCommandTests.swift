// The quantize command: flag validation shows usage errors; failures exit non-zero with a message
// and leave no output; a successful run writes the checkpoint.
import ArgumentParser
import Foundation
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

    @Test func shardSizesParse() {
        #expect(parseByteSize("5G") == 5_000_000_000)
        #expect(parseByteSize("500MB") == 500_000_000)
        #expect(parseByteSize("123") == 123)
        #expect(parseByteSize("0") == nil && parseByteSize("-5G") == nil && parseByteSize("G") == nil)
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
}
