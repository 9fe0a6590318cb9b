// Nothing lost, budget never broken (issue 11): one run per output (a lock), outputs probed before
// any weight is loaded, a batch larger than the data refused, a stop acting between micro-batches,
// SIGTERM's own exit status, resume that extends a run and compares files rather than path
// strings, and flags refused before anything runs.
import Foundation
import QLoRACLI
import QLoRAIO
import QLoRAModel
import Testing
import _TestSupport
@testable import QLoRATrain
@testable import qlora_train

/// The events of a run that fails, and its error.
private func failingRun(_ config: TrainConfig) -> (error: TrainError?, planned: Bool) {
    var planned = false
    do {
        _ = try Trainer(config: config).run { event in
            if case .plan = event { planned = true }
            return .continue
        }
        return (nil, planned)
    } catch {
        return (error, planned)
    }
}

@Test func aSecondRunIntoTheSameOutputIsRefusedNamingTheFirst() throws {
    let directory = try TemporaryDirectory()
    let config = try config(directory.path, steps: 2)
    try FileManager.default.createDirectory(atPath: config.output, withIntermediateDirectories: true)
    do {
        // This process plays the first run: it holds the lock.
        let first = try LockFile(directory: config.output)
        let (error, _) = failingRun(config)
        #expect("\(error.map { "\($0)" } ?? "no error")".contains("--output \(config.output): process \(getpid()) is already writing it"))
        #expect(TrainingCheckpoint.list(output: config.output).isEmpty)
        withExtendedLifetime(first) {}
    }
    // Once the first run is gone (here: its lock released; a killed process's lock goes with it), the
    // output is free; and this run holds the lock to its end.
    var lockedDuringRun = 0
    _ = try Trainer(config: config).run { event in
        if case .step = event, (try? LockFile(directory: config.output)) == nil { lockedDuringRun += 1 }
        if case .finished = event, (try? LockFile(directory: config.output)) == nil { lockedDuringRun += 1 }
        return .continue
    }
    #expect(lockedDuringRun == 3)
    #expect(TrainingCheckpoint.list(output: config.output).map(\.step) == [2])
}

@Test func aLockFileLeftByADeadProcessDoesNotBlock() throws {
    let directory = try TemporaryDirectory()
    let config = try config(directory.path, steps: 1)
    try FileManager.default.createDirectory(atPath: config.output, withIntermediateDirectories: true)
    try Data("4194305\n".utf8).write(to: URL(fileURLWithPath: config.output + "/" + LockFile.directoryLockName))
    _ = try Trainer(config: config).run { _ in .continue }
    #expect(String(decoding: bytes(config.output + "/" + LockFile.directoryLockName), as: UTF8.self) == "\(getpid())\n")
}

/// Places that cannot take a file are found before any weight is loaded (before the plan), each
/// named with the real reason. /proc takes no new files, even for root. (The spill directory:
/// `anUnusableSpillDirectoryMattersOnlyWhenStateSpills`.)
@Test(arguments: [
    ("output", "/proc/qlora-no-such-dir/out", "/proc/qlora-no-such-dir/out"),
    ("metrics", "/proc/qlora-metrics.jsonl", "/proc/qlora-metrics.jsonl: cannot write"),
])
func unwritableOutputsAreFoundBeforeLoading(what: String, path: String, message: String) throws {
    let directory = try TemporaryDirectory()
    var config = try config(directory.path, steps: 1)
    if what == "output" { config.output = path } else { config.metricsPath = path }
    let (error, planned) = failingRun(config)
    let text = error.map { "\($0)" } ?? "no error"
    #expect(text.contains(message), "\(text)")
    #expect(!text.contains("permission"), "\(text)")
    #expect(!planned)
}

@Test func aBatchLargerThanTheDataIsRefusedUnlessRepetitionIsAsked() throws {
    let directory = try TemporaryDirectory()
    var config = try config(directory.path, steps: 1)
    config.batchSize = 200_000
    config.gradAccum = 1
    let (error, planned) = failingRun(config)
    let text = error.map { "\($0)" } ?? "no error"
    #expect(text.contains("--batch-size 200000 x --grad-accum 1 = 200000 rows per step") && text.contains("--repeat-data"), "\(text)")
    #expect(!planned)
    config.batchSize = 64
    config.repeatData = true
    let summary = try Trainer(config: config).run { _ in .continue }
    #expect(summary.steps == 1 && summary.tokens > 0)
}

/// A stop asked between micro-batches, or between layers inside one, drops the partial step and
/// saves the last complete one; the resumed run ends bitwise where an uninterrupted one does.
@Test(arguments: [TrainProgress.Phase.microBatches, .layers])
func aStopInsideAStepSavesTheLastCompleteStep(phase: TrainProgress.Phase) throws {
    let straight = try TemporaryDirectory(), stopped = try TemporaryDirectory()
    func fourMicroBatches(_ directory: String) throws -> TrainConfig {
        var config = try config(directory, steps: 4)
        (config.batchSize, config.gradAccum, config.saveEvery) = (1, 4, 100)
        return config
    }
    _ = try Trainer(config: try fourMicroBatches(straight.path)).run { _ in .continue }
    var first = try fourMicroBatches(stopped.path)
    var doneInStep3 = 0
    let summary = try Trainer(config: first).run { event in
        if case .progress(let p) = event, p.phase == phase, p.step == 3 {
            doneInStep3 = p.done
            return p.done == 2 ? .stop : .continue
        }
        return .continue
    }
    #expect(summary.interrupted && doneInStep3 == 2)
    #expect(summary.lastCheckpoint?.hasSuffix("checkpoint-2") == true)
    #expect(TrainingCheckpoint.list(output: first.output).map(\.step) == [2])
    first.resume = first.output
    _ = try Trainer(config: first).run { _ in .continue }
    #expect(bytes(straight.path + "/out/adapter_model.safetensors") == bytes(first.output + "/adapter_model.safetensors"))
}

/// SIGTERM stops a run like Ctrl-C, but exits with its own status (128 + 15), naming the checkpoint.
@Test func sigtermSavesAndExitsWith143() throws {
    let directory = try TemporaryDirectory()
    let config = try config(directory.path, steps: 400)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try trainExecutable())
    process.arguments = arguments(config)
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    while process.isRunning && TrainingCheckpoint.list(output: config.output).isEmpty { usleep(2_000) }
    kill(process.processIdentifier, SIGTERM)
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(process.terminationStatus == 143, "\(text)")
    let saved = try #require(TrainingCheckpoint.list(output: config.output).last)
    #expect(text.contains("the last checkpoint is \(saved.path)"), "\(text)")
}

@Test func aRunOverItsBudgetDoesNotExitZero() {
    var summary = TrainSummary(steps: 1, firstLoss: 1, lastLoss: 1, firstEvalLoss: nil, lastEvalLoss: nil, tokens: 1, seconds: 1,
                               peakRSSBytes: 1 << 30, budget: 1 << 30, adapterDirectory: "out", interrupted: false, lastCheckpoint: nil)
    #expect(QLoRATrainCommand.exitStatus(summary, signal: nil) == nil)
    summary.peakRSSBytes += 1
    #expect(QLoRATrainCommand.exitStatus(summary, signal: nil) == 3)
    summary.peakRSSBytes = 1
    summary.interrupted = true
    #expect(QLoRATrainCommand.exitStatus(summary, signal: SIGINT) == 130)
    #expect(QLoRATrainCommand.exitStatus(summary, signal: SIGTERM) == 143)
    summary.interrupted = false  // a signal during the answers after training
    #expect(QLoRATrainCommand.exitStatus(summary, signal: SIGTERM) == 143)
}

/// --max-steps on --resume extends a finished run; with a constant schedule the result is bitwise
/// that of one longer run. A total at or below the current step is refused.
@Test func maxStepsOnResumeExtendsTheRun() throws {
    let straight = try TemporaryDirectory(), extended = try TemporaryDirectory()
    var long = try config(straight.path, steps: 6)
    long.schedule = .constant
    _ = try Trainer(config: long).run { _ in .continue }
    var short = try config(extended.path, steps: 4)
    short.schedule = .constant
    _ = try Trainer(config: short).run { _ in .continue }
    short.resume = short.output
    short.maxSteps = 3
    #expect {
        _ = try Trainer(config: short).run { _ in .continue }
    } throws: { error in
        "\(error)".contains("is at step 4, so --max-steps 3 leaves nothing to do")
    }
    short.maxSteps = 6
    var notices: [String] = []
    let summary = try Trainer(config: short).run { event in
        if case .notice(let text) = event { notices.append(text) }
        return .continue
    }
    #expect(summary.steps == 6 && !summary.interrupted)
    #expect(notices.contains { $0.contains("--max-steps 6: the run now has 6 steps instead of 4") }, "\(notices)")
    #expect(bytes(straight.path + "/out/adapter_model.safetensors") == bytes(short.output + "/adapter_model.safetensors"))
}

/// The same model and data under other spellings or another place resume; other files at the same
/// path are refused, naming the flag.
@Test func resumeComparesFilesNotPathStrings() throws {
    let directory = try TemporaryDirectory()
    var config = try config(directory.path, steps: 2)
    let model = try useCopyOfModel(&config, in: directory.path)
    _ = try Trainer(config: config).run { _ in .continue }
    config.resume = config.output
    config.maxSteps = 3
    // Other spellings of the same path: dot segments, a trailing slash, a symbolic link.
    config.model = directory.path + "/./model/"
    _ = try Trainer(config: config).run { _ in .continue }
    try FileManager.default.createSymbolicLink(atPath: directory.path + "/link", withDestinationPath: model)
    config.model = directory.path + "/link"
    config.maxSteps = 4
    _ = try Trainer(config: config).run { _ in .continue }
    // The same files moved elsewhere.
    try FileManager.default.moveItem(atPath: model, toPath: directory.path + "/moved")
    config.model = directory.path + "/moved"
    config.maxSteps = 5
    _ = try Trainer(config: config).run { _ in .continue }
    // Another model at the first path: its config differs.
    try FileManager.default.copyItem(atPath: directory.path + "/moved", toPath: model)
    var json = try JSONSerialization.jsonObject(with: Data(bytes(model + "/config.json"))) as! [String: Any]
    json["rms_norm_eps"] = 1e-3
    try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: model + "/config.json"))
    config.model = model
    config.maxSteps = 6
    #expect {
        _ = try Trainer(config: config).run { _ in .continue }
    } throws: { error in
        "\(error)".contains("differ from what --model \(model) holds now")
    }
    // Other data at the same path.
    config.model = directory.path + "/moved"
    try writeData(config.trainData, rows: 40, seed: 2)
    #expect {
        _ = try Trainer(config: config).run { _ in .continue }
    } throws: { error in
        "\(error)".contains("--data \(config.trainData)")
    }
}

@Test(arguments: [
    (["--lr", "-1"], "--lr must be a positive number"),
    (["--weight-decay", "-0.1"], "--weight-decay"),
    (["--optim-resident-bytes", "0"], "--optim-resident-bytes must be at least 4MiB"),
    (["--batch-size", "9223372036854775807", "--grad-accum", "2"], "--batch-size and --grad-accum must be at most"),
    (["--batch-size", "65536", "--grad-accum", "65536"], "their product at most"),
    (["--weight-decay", "1e308"], "--lr x --weight-decay must be below 1"),
    (["--seq-len", "9223372036854775807"], "--seq-len must be between 2 and"),
    (["--lora-r", "9223372036854775807"], "--lora-r must be at most"),
    (["--lr", "1e39"], "--lr must be a positive number a Float holds"),
])
func negativeAndTooSmallValuesAreRefusedByName(extra: [String], expected: String) {
    let arguments = ["--model", "m", "--data", "d.jsonl", "--output", "o", "--mem-budget", "1GiB"] + extra
    do {
        _ = try QLoRATrainCommand.parseAsRoot(arguments)
        Issue.record("\(extra) was accepted")
    } catch {
        #expect(QLoRATrainCommand.message(for: error).contains(expected), "\(QLoRATrainCommand.message(for: error))")
    }
}

/// A metrics file in a directory that does not exist yet (as the demo writes it inside --output) is
/// fine: the probe looks where the directory would be created, and the run creates it.
@Test func aMetricsFileInANewDirectoryIsCreated() throws {
    let directory = try TemporaryDirectory()
    var config = try config(directory.path, steps: 1)
    config.metricsPath = config.output + "/logs/metrics.jsonl"
    _ = try Trainer(config: config).run { _ in .continue }
    #expect(String(decoding: bytes(config.metricsPath!), as: UTF8.self).split(separator: "\n").count == 1)
}

/// An unusable --spill-dir is refused when the plan spills optimizer state, and only noted when
/// nothing is planned to spill (a missing $TMPDIR used to stop every run).
@Test(arguments: ["/proc", "/no-such-spill-directory"])
func anUnusableSpillDirectoryMattersOnlyWhenStateSpills(spill: String) throws {
    let problem = try #require(OutputChecks.spillProblem(spill))
    #expect("\(problem)".hasPrefix("\(spill): cannot create the optimizer spill file ("), "\(problem)")
    let directory = try TemporaryDirectory()
    var config = try config(directory.path, steps: 1)
    config.spillDirectory = spill
    var notices: [String] = []
    _ = try Trainer(config: config).run { event in
        if case .notice(let text) = event { notices.append(text) }
        return .continue
    }
    #expect(notices.contains { $0.hasPrefix("\(spill): cannot create the optimizer spill file") && $0.contains("nothing is planned to spill") }, "\(notices)")
}

/// What a run writes never lands on what it reads (issue 11: `--metrics` naming the model file
/// emptied it; `--metrics` naming the data replaced it), nor on another run's adapter.
@Test(arguments: ["metrics is the model file", "metrics is the data", "metrics inside the model", "metrics is the adapter",
                  "output is the model", "output holds an adapter"])
func outputsNeverLandOnInputs(case name: String) throws {
    let directory = try TemporaryDirectory()
    var config = try config(directory.path, steps: 1)
    let model = try useCopyOfModel(&config, in: directory.path)
    let expected: String
    switch name {
    case "metrics is the model file":
        config.metricsPath = model + "/model.safetensors"
        expected = "--metrics \(model)/model.safetensors lies inside the --model \(model)"
    case "metrics is the data":
        config.metricsPath = config.trainData
        expected = "is the --data \(config.trainData)"
    case "metrics inside the model":
        config.metricsPath = model + "/metrics.jsonl"
        expected = "lies inside the --model \(model)"
    case "metrics is the adapter":
        config.metricsPath = config.output + "/adapter_model.safetensors"
        expected = "would be one of the run's own files"
    case "output is the model":
        config.output = model + "/"
        expected = "--output \(model)/ is the --model \(model)"
    default:
        try FileManager.default.createDirectory(atPath: config.output, withIntermediateDirectories: true)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: config.output + "/adapter_model.safetensors"))
        expected = "already holds an adapter"
    }
    let before = try FileManager.default.contentsOfDirectory(atPath: model).sorted().map { bytes(model + "/" + $0) }
    let data = bytes(config.trainData)
    let (error, planned) = failingRun(config)
    #expect("\(error.map { "\($0)" } ?? "no error")".contains(expected), "\(error.map { "\($0)" } ?? "no error")")
    #expect(!planned)
    #expect(try FileManager.default.contentsOfDirectory(atPath: model).sorted().map { bytes(model + "/" + $0) } == before, "the model changed")
    #expect(bytes(config.trainData) == data, "the data changed")
}

/// An --output inside the NF4 model's directory resumes: the run's own files do not change the
/// model's fingerprint (issue 11 review: they did, and such a run could never resume).
@Test func anOutputInsideTheModelDirectoryResumes() throws {
    let directory = try TemporaryDirectory()
    var config = try config(directory.path, steps: 2)
    let model = try useCopyOfModel(&config, in: directory.path)
    config.output = model + "/lora"
    _ = try Trainer(config: config).run { _ in .continue }
    config.resume = config.output
    config.maxSteps = 3
    let summary = try Trainer(config: config).run { _ in .continue }
    #expect(!summary.interrupted && TrainingCheckpoint.list(output: config.output).last?.step == 3)
}

/// Two runs writing one --metrics file would interleave their lines: the second is refused.
@Test func aMetricsFileInUseIsRefused() throws {
    let directory = try TemporaryDirectory()
    let path = directory.path + "/metrics.jsonl"
    do {
        let first = try MetricsLog(path: path, truncateAfter: 0)
        #expect {
            _ = try MetricsLog(path: path, truncateAfter: 0)
        } throws: { error in
            "\(error)".contains("--metrics \(path): process \(getpid()) is already writing it")
        }
        withExtendedLifetime(first) {}
    }
    _ = try MetricsLog(path: path, truncateAfter: 0)  // the first is closed
}

/// The plan is an upper bound of the peak also for a micro-batch of many tokens, where OpenBLAS's
/// packing buffers fill (issue 11 review: 160000 tokens peaked 1.5 MiB over a plan that "fit").
@Test func aLargeMicroBatchStaysUnderItsPlan() throws {
    let directory = try TemporaryDirectory()
    let config = try config(directory.path, steps: 1)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try trainExecutable())
    process.arguments = arguments(config).map { $0 == "1GiB" ? "8GiB" : $0 } + ["--batch-size", "5000", "--grad-accum", "1", "--repeat-data"]
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(process.terminationStatus == 0, "\(text)")
    // "total   2.25 GiB  of the budget 8.00 GiB"
    let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("total ") }, "\(text)")
    let words = line.split(separator: " ")
    let planned = try #require(parseByteSize(String(words[1] + words[2])))
    let metrics = String(decoding: bytes(config.metricsPath!), as: UTF8.self).split(separator: "\n")
    let peaks = metrics.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["peak_rss_bytes"] as? Int }
    let peak = try #require(peaks.max())
    #expect(text.contains("micro-batch 5000"), "\(text)")
    #expect(peak <= planned, "peak \(peak >> 20) MiB over the plan's \(planned >> 20) MiB")
}

/// A stop during an evaluation keeps that step's metrics in the checkpoint; the resumed run
/// evaluates first and writes them, so the metrics and the final adapter are those of an
/// uninterrupted run (issue 11 review: a stop in the last evaluation exited 0 without its eval loss).
@Test(arguments: [4, 8])
func aStopDuringAnEvaluationIsFinishedOnResume(step stopStep: Int) throws {
    let straight = try TemporaryDirectory(), stopped = try TemporaryDirectory()
    _ = try Trainer(config: try config(straight.path)).run { _ in .continue }
    var config = try config(stopped.path)
    let summary = try Trainer(config: config).run { event in
        if case .progress(let p) = event, p.phase == .evaluation, p.step == stopStep { return .stop }
        return .continue
    }
    #expect(summary.interrupted)
    #expect(!FileManager.default.fileExists(atPath: config.output + "/adapter_model.safetensors"))
    config.resume = config.output
    let resumed = try Trainer(config: config).run { _ in .continue }
    #expect(!resumed.interrupted)
    func evalLosses(_ path: String) -> [Int: Double] {
        var losses: [Int: Double] = [:]
        for line in String(decoding: bytes(path), as: UTF8.self).split(separator: "\n") {
            let object = try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            if let loss = object["eval_loss"] as? Double { losses[object["step"] as! Int] = loss }
        }
        return losses
    }
    #expect(evalLosses(straight.path + "/metrics.jsonl") == evalLosses(config.metricsPath!))
    #expect(String(decoding: bytes(config.metricsPath!), as: UTF8.self).split(separator: "\n").count == 8)
    #expect(bytes(straight.path + "/out/adapter_model.safetensors") == bytes(config.output + "/adapter_model.safetensors"))
    // Extended later, the finished evaluation is not done (and written) a second time.
    config.maxSteps = 10
    _ = try Trainer(config: config).run { _ in .continue }
    let steps = String(decoding: bytes(config.metricsPath!), as: UTF8.self).split(separator: "\n")
        .map { (try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["step"] as! Int }
    #expect(steps == Array(1...10))
}

/// `--resume` keeps the output checks: resuming another run's checkpoint into an output holding a
/// third run's results, or into the resumed checkpoint itself, is refused (issue 11 review: both
/// were overwritten); into a fresh output it continues there.
@Test func resumingIntoAnotherOutputKeepsItsChecks() throws {
    let directory = try TemporaryDirectory()
    var first = try config(directory.path, steps: 2)
    first.output = directory.path + "/first"
    _ = try Trainer(config: first).run { _ in .continue }
    var other = first
    other.output = directory.path + "/other"
    other.metricsPath = nil
    _ = try Trainer(config: other).run { _ in .continue }
    let otherAdapter = bytes(other.output + "/adapter_model.safetensors")
    var resumed = first
    resumed.resume = first.output + "/checkpoint-2"
    resumed.maxSteps = 3
    resumed.metricsPath = nil
    for (output, expected) in [(other.output, "already holds checkpoints"), (first.output + "/checkpoint-2", "--resume checkpoint")] {
        resumed.output = output
        let (error, planned) = failingRun(resumed)
        #expect("\(error.map { "\($0)" } ?? "no error")".contains(expected), "\(error.map { "\($0)" } ?? "no error")")
        #expect(!planned)
    }
    #expect(bytes(other.output + "/adapter_model.safetensors") == otherAdapter)
    _ = try TrainingCheckpoint.verify(first.output + "/checkpoint-2")
    resumed.output = directory.path + "/fresh"
    let summary = try Trainer(config: resumed).run { _ in .continue }
    #expect(!summary.interrupted && TrainingCheckpoint.list(output: resumed.output).map(\.step) == [3])
}

/// --metrics may not land in the checkpoint being resumed or inside a checkpoint directory, and
/// the temporary name of a rewritten file never takes a user's file (`d.partial` beside `d`).
@Test func metricsStayOutOfCheckpointsAndTemporaryNamesOutOfUserFiles() throws {
    let directory = try TemporaryDirectory()
    var config = try config(directory.path, steps: 2)
    _ = try Trainer(config: config).run { _ in .continue }
    config.resume = config.output
    config.maxSteps = 3
    for metrics in [config.output + "/checkpoint-2/trainer_state.json", config.output + "/checkpoint-3/metrics.jsonl"] {
        config.metricsPath = metrics
        let (error, _) = failingRun(config)
        let text = error.map { "\($0)" } ?? "no error"
        #expect(text.contains("--metrics \(metrics)"), "\(text)")
    }
    _ = try TrainingCheckpoint.verify(config.output + "/checkpoint-2")
    let data = bytes(config.trainData)
    try FileManager.default.copyItem(atPath: config.trainData, toPath: directory.path + "/d.partial")
    config.trainData = directory.path + "/d.partial"
    config.metricsPath = directory.path + "/d"
    config.resume = nil
    config.output = directory.path + "/out2"
    _ = try Trainer(config: config).run { _ in .continue }
    #expect(bytes(directory.path + "/d.partial") == data)
}

/// The output's lock never writes through a symbolic link planted in its place.
@Test func aSymlinkedLockFileIsNotWrittenThrough() throws {
    let directory = try TemporaryDirectory()
    let config = try config(directory.path, steps: 1)
    try FileManager.default.createDirectory(atPath: config.output, withIntermediateDirectories: true)
    try Data("precious\n".utf8).write(to: URL(fileURLWithPath: directory.path + "/victim.txt"))
    try FileManager.default.createSymbolicLink(atPath: config.output + "/" + LockFile.directoryLockName, withDestinationPath: directory.path + "/victim.txt")
    let (error, _) = failingRun(config)
    #expect(error != nil)
    #expect(String(decoding: bytes(directory.path + "/victim.txt"), as: UTF8.self) == "precious\n")
}

/// A step's target count, taken without building its rows, equals the built rows' across epochs.
@Test func aStepsTargetsAreCountedWithoutBuildingItsRows() throws {
    let directory = try TemporaryDirectory()
    let config = try config(directory.path)
    let data = try TrainingData.load(config: config, modelDirectory: modelDirectory, vocabularySize: 256)
    let rows = data.trainSequenceCount
    for (position, count) in [(0, 1), (3, rows), (rows - 1, 2 * rows + 5), (5 * rows + 2, 7)] {
        let built = data.train.sequences(from: position, count: count).reduce(0) { $0 + $1.targets.filter { $0 != -100 }.count }
        #expect(data.trainTargetCount(position: position, rows: count) == built, "position \(position), \(count) rows")
    }
}
