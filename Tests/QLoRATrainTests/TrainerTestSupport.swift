// Shared by the trainer tests: the tiny fixture model, pre-tokenized data of a learnable pattern,
// a small run's config, and running the `qlora-train` executable on it.
import Foundation
import QLoRAIO
import QLoRAModel
import Testing
import _TestSupport
@testable import QLoRATrain

let modelDirectory = fixturesDirectory("model-llama-gqa").path + "/base-nf4"

/// Rows of a repeating pattern the model can learn: `start, start + step, ...` mod 256, with the
/// first quarter masked like a prompt.
func writeData(_ path: String, rows: Int, seed: Int) throws {
    var lines: [String] = []
    for row in 0..<rows {
        let length = 12 + (row * 7 + seed) % 20, start = (row * 37 + seed) % 256, step = 1 + row % 3
        let ids = (0..<length).map { (start + $0 * step) % 256 }
        let labels = ids.enumerated().map { $0.offset < length / 4 ? -100 : $0.element }
        lines.append("{\"input_ids\": \(ids), \"labels\": \(labels)}")
    }
    try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
}

func config(_ directory: String, steps: Int = 8) throws -> TrainConfig {
    try writeData(directory + "/train.jsonl", rows: 40, seed: 1)
    try writeData(directory + "/valid.jsonl", rows: 8, seed: 5)
    var config = TrainConfig(model: modelDirectory, trainData: directory + "/train.jsonl", output: directory + "/out", memoryBudget: 2 << 30)
    config.validData = directory + "/valid.jsonl"
    config.seqLen = 32
    config.batchSize = 2
    config.gradAccum = 2
    config.maxSteps = steps
    config.learningRate = 1e-2
    config.lora = LoRAConfig(rank: 4, alpha: 8, dropout: 0.1, seed: 3)
    config.metricsPath = directory + "/metrics.jsonl"
    config.evalEvery = 4
    config.saveEvery = 2
    return config
}

/// Points `config` at a copy of the fixture model in `directory`/model, which a test may change; returns its path.
func useCopyOfModel(_ config: inout TrainConfig, in directory: String) throws -> String {
    let model = directory + "/model"
    try FileManager.default.copyItem(atPath: modelDirectory, toPath: model)
    config.model = model
    return model
}

/// The file's bytes; a missing file is a test failure (two missing files must not compare equal).
func bytes(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else {
        Issue.record("\(path) does not exist", sourceLocation: sourceLocation)
        return []
    }
    return Array(data)
}

/// The `qlora-train` executable built beside the test runner.
func trainExecutable() throws -> String {
    let path = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("qlora-train").path
    guard FileManager.default.isExecutableFile(atPath: path) else { throw TemporaryDirectory.Missing(path: path) }
    return path
}

extension TemporaryDirectory {
    struct Missing: Error { let path: String }
}

func arguments(_ config: TrainConfig) -> [String] {
    ["--model", config.model, "--data", config.trainData, "--valid-data", config.validData!, "--output", config.output,
     "--mem-budget", "1GiB", "--seq-len", "\(config.seqLen)", "--batch-size", "\(config.batchSize)", "--grad-accum", "\(config.gradAccum)",
     "--max-steps", "\(config.maxSteps!)", "--lr", "\(config.learningRate)", "--lora-r", "\(config.lora.rank)",
     "--lora-alpha", "\(config.lora.alpha)", "--lora-dropout", "\(config.lora.dropout)", "--seed", "\(config.lora.seed)",
     "--eval-every", "\(config.evalEvery!)", "--save-every", "1", "--metrics", config.metricsPath!]
}

/// Runs qlora-train on `config` (resuming from its output when that exists). With `killAt`, it is
/// SIGKILLed `delay` seconds after its newest checkpoint reaches that step. Returns whether it was killed.
@discardableResult
func runTrainProcess(_ config: TrainConfig, killAt step: Int? = nil, delay: Double = 0) throws -> Bool {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try trainExecutable())
    process.arguments = arguments(config) + (FileManager.default.fileExists(atPath: config.output) ? ["--resume", config.output] : [])
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    var killed = false
    if let step {
        while process.isRunning && (TrainingCheckpoint.list(output: config.output).last?.step ?? 0) < step { usleep(1_000) }
        usleep(UInt32(delay * 1e6))
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            killed = true
        }
    }
    process.waitUntilExit()
    if !killed { #expect(process.terminationStatus == 0) }
    return killed
}
