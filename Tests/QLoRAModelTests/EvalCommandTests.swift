// qlora-eval refuses bad flags and bad token files with messages that name them.
import Foundation
import Testing
import _TestSupport
@testable import qlora_eval

/// The message `run()` or `validate()` throws for these arguments, or nil when it succeeds.
func evalError(_ arguments: [String]) -> String? {
    do {
        var command = try QLoRAEval.parseAsRoot(arguments)
        try command.validate()
        try command.run()
        return nil
    } catch {
        return QLoRAEval.message(for: error)
    }
}

func tinyModel() throws -> String { try Fixture("model-llama-gqa").directory.path + "/base" }

func tokenFile(_ directory: TemporaryDirectory, _ ids: [Int32], extraBytes: Int = 0) throws -> String {
    let path = directory.path + "/tokens.i32"
    var data = ids.withUnsafeBufferPointer { Data(buffer: $0) }
    data.append(Data(repeating: 0, count: extraBytes))
    try data.write(to: URL(fileURLWithPath: path))
    return path
}

@Test func perplexityRefusesBadTokenFiles() throws {
    let directory = try TemporaryDirectory(), model = try tinyModel()
    let ragged = try tokenFile(directory, [1, 2, 3], extraBytes: 2)
    let message1 = try #require(evalError(["perplexity", "--model", model, "--tokens", ragged, "--window", "2"]))
    #expect(message1.contains(ragged) && message1.contains("multiple of 4"), "\(message1)")
    let outside = try tokenFile(directory, [1, 2, 999, 4])
    let message2 = try #require(evalError(["perplexity", "--model", model, "--tokens", outside, "--window", "2"]))
    #expect(message2.contains("999") && message2.contains("256"), "\(message2)")
    let short = try tokenFile(directory, [1, 2, 3])
    let message3 = try #require(evalError(["perplexity", "--model", model, "--tokens", short, "--window", "8"]))
    #expect(message3.contains("fewer than one window"), "\(message3)")
    let message4 = try #require(evalError(["perplexity", "--model", model, "--tokens", directory.path + "/none.i32"]))
    #expect(message4.contains("none.i32"), "\(message4)")
}

@Test func flagsAreValidated() throws {
    let model = try tinyModel()
    let window = try #require(evalError(["perplexity", "--model", model, "--tokens", "x", "--window", "1"]))
    #expect(window.contains("--window"), "\(window)")
    let prompt = try #require(evalError(["generate", "--model", model, "--prompt-ids", "1,abc"]))
    #expect(prompt.contains("abc"), "\(prompt)")
    let missing = try #require(evalError(["generate", "--model", "/nonexistent/model", "--prompt-ids", "1"]))
    #expect(missing.contains("/nonexistent/model/config.json"), "\(missing)")
}

@Test func generationRunsOnATinyModel() throws {
    #expect(evalError(["generate", "--model", try tinyModel(), "--prompt-ids", "1,2,3", "--max-new-tokens", "4"]) == nil)
}
