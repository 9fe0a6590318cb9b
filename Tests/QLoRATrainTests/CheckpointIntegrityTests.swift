// Nothing lost (issue 11): checkpoints are checksummed and verified, damaged or non-finite ones are
// never trained from, a non-finite value never replaces a good adapter or checkpoint, the last good
// checkpoint named is a verified one, and removing old checkpoints never leaves half of one.
import Foundation
import QLoRAIO
import QLoRAKernels
import QLoRAModel
import Testing
import _TestSupport
@testable import QLoRATrain

/// Flips one bit of the file at `path`, `fromEnd` bytes before its end (inside the tensor data).
private func flipBit(_ path: String, fromEnd: Int = 100) throws {
    var data = bytes(path)
    data[data.count - fromEnd] ^= 0x10
    try Data(data).write(to: URL(fileURLWithPath: path))
}

/// Writes `value` over the first float of tensor `name` in a safetensors file, then rewrites the
/// checkpoint's checksum manifest, as if a checkpoint had been written holding it.
private func plant(_ value: Float, tensor name: String, file path: String) throws {
    let file = try SafetensorsFile(path: path)
    let offset = try #require(file.tensor(named: name)).fileOffset
    var data = bytes(path)
    withUnsafeBytes(of: value.bitPattern.littleEndian) { data.replaceSubrange(offset..<offset + 4, with: $0) }
    try Data(data).write(to: URL(fileURLWithPath: path))
    let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
    let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0 != ChecksumManifest.fileName }
    try ChecksumManifest.write(directory: directory, names: names)
}

private func run(_ config: TrainConfig, notices: inout [String]) throws -> TrainSummary {
    var seen: [String] = []
    defer { notices = seen }
    return try Trainer(config: config).run { event in
        if case .notice(let text) = event { seen.append(text) }
        return .continue
    }
}

@Test func everyCheckpointFileIsChecksummed() throws {
    let directory = try TemporaryDirectory()
    _ = try Trainer(config: try config(directory.path, steps: 2)).run { _ in .continue }
    let checkpoint = directory.path + "/out/checkpoint-2"
    let listed = try ChecksumManifest.verify(directory: checkpoint)
    #expect(Set(listed) == ["adapter_model.safetensors", "adapter_config.json", TrainingCheckpoint.optimizerFile, TrainingCheckpoint.stateFile])
    // The manifest's lines are XXH64 of the files' bytes, in xxh64sum's format.
    let manifest = String(decoding: bytes(checkpoint + "/" + ChecksumManifest.fileName), as: UTF8.self)
    let state = bytes(checkpoint + "/" + TrainingCheckpoint.stateFile)
    let expected = ChecksumManifest.hex(state.withUnsafeBytes { XXH64.hash($0.baseAddress!, count: $0.count) })
    #expect(manifest.contains("\(expected)  \(TrainingCheckpoint.stateFile)\n"), "\(manifest)")
}

/// A flipped bit in the newest checkpoint is detected: resuming from the output passes over it
/// (saying so) to the intact older one and still ends bitwise where an uninterrupted run does;
/// naming the damaged checkpoint itself is refused, naming the intact one.
@Test func aFlippedBitInACheckpointIsDetected() throws {
    let straight = try TemporaryDirectory(), damaged = try TemporaryDirectory()
    _ = try Trainer(config: try config(straight.path, steps: 6)).run { _ in .continue }
    var first = try config(damaged.path, steps: 6)
    _ = try Trainer(config: first).run { event in
        if case .saved(let step, _) = event, step == 4 { return .stop }
        return .continue
    }
    let out = damaged.path + "/out"
    try flipBit(out + "/checkpoint-4/" + TrainingCheckpoint.optimizerFile)
    first.resume = out + "/checkpoint-4"
    #expect {
        _ = try Trainer(config: first).run { _ in .continue }
    } throws: { error in
        let text = "\(error)"
        return text.contains("checkpoint-4/optimizer.safetensors: damaged") && text.contains("--resume \(out)/checkpoint-2")
    }
    first.resume = out
    var notices: [String] = []
    let summary = try run(first, notices: &notices)
    #expect(notices.contains { $0.contains("passed over \(out)/checkpoint-4") && $0.contains("XXH64") }, "\(notices)")
    #expect(!summary.interrupted)
    #expect(bytes(straight.path + "/out/adapter_model.safetensors") == bytes(out + "/adapter_model.safetensors"))
    #expect(bytes(straight.path + "/out/checkpoint-6/optimizer.safetensors") == bytes(out + "/checkpoint-6/optimizer.safetensors"))
}

/// A checkpoint that holds a NaN (checksums intact, as if it had been written so) is refused with
/// the tensor and index named, and the good adapter in the output is left as it was.
@Test(arguments: ["exp_avg_sq", "adapter"])
func aCheckpointHoldingANaNIsRefused(where place: String) throws {
    let directory = try TemporaryDirectory()
    var config = try config(directory.path, steps: 4)
    _ = try Trainer(config: config).run { _ in .continue }
    let out = directory.path + "/out", adapter = bytes(out + "/adapter_model.safetensors")
    let key = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
    if place == "adapter" {
        try plant(.nan, tensor: key, file: out + "/checkpoint-4/adapter_model.safetensors")
    } else {
        try plant(.nan, tensor: "exp_avg_sq", file: out + "/checkpoint-4/" + TrainingCheckpoint.optimizerFile)
    }
    config.resume = out + "/checkpoint-4"
    config.maxSteps = 6
    #expect {
        _ = try Trainer(config: config).run { _ in .continue }
    } throws: { error in
        let text = "\(error)"
        return text.contains("tensor '\(place == "adapter" ? key : "exp_avg_sq")' value 0 is nan") && text.contains("--resume \(out)/checkpoint-2")
    }
    #expect(bytes(out + "/adapter_model.safetensors") == adapter, "the good adapter was replaced")
    #expect(TrainingCheckpoint.list(output: out).map(\.step) == [2, 4])
    // Resuming from the output passes over it to the intact one.
    config.resume = out
    var notices: [String] = []
    _ = try run(config, notices: &notices)
    #expect(notices.contains { $0.hasPrefix("passed over \(out)/checkpoint-4: ") && $0.contains("value 0 is nan") }, "\(notices)")
}

/// A NaN eval loss stops the run like a NaN training loss, before anything of that step is saved;
/// the checkpoint named is one that verifies.
@Test func aNonFiniteEvalLossStopsTheRun() throws {
    let directory = try TemporaryDirectory()
    var config = try config(directory.path, steps: 20)
    config.evalEvery = 1
    config.saveEvery = 1
    config.learningRate = 1e30  // the first update blows the adapters up; the loss before it is finite
    config.maxGradNorm = nil
    var steps = 0
    #expect {
        _ = try Trainer(config: config).run { event in
            if case .step = event { steps += 1 }
            return .continue
        }
    } throws: { error in
        guard case TrainError.nonFinite(let what, let step, nil) = error else { return false }
        return what == "the eval loss" && step == 1 && "\(error)".contains("no checkpoint was saved yet")
    }
    #expect(steps == 0)
    #expect(TrainingCheckpoint.list(output: config.output).isEmpty)
    #expect(!FileManager.default.fileExists(atPath: config.output + "/adapter_model.safetensors"))
}

/// After a NaN loss, the checkpoint the error names verifies (checksums, finite values).
@Test func theLastGoodCheckpointNamedIsVerified() throws {
    let directory = try TemporaryDirectory()
    var config = try config(directory.path, steps: 20)
    config.saveEvery = 1
    config.learningRate = 1e30
    config.maxGradNorm = nil
    var named: String?
    do {
        _ = try Trainer(config: config).run { _ in .continue }
        Issue.record("the run did not diverge")
    } catch .nonFiniteLoss(_, let checkpoint), .nonFinite(_, _, let checkpoint) {
        named = checkpoint
    }
    #expect(named != nil, "a checkpoint was saved before the divergence")
    if let named { _ = try TrainingCheckpoint.verify(named) }  // checksums, and every value finite
}

/// A rotation killed half-way leaves a hidden `.removed-` directory, not a checkpoint: it is not
/// listed, and a later run cleans it up. A half-deleted checkpoint of an older version is passed
/// over with a note.
@Test func removedCheckpointsNeverLookWhole() throws {
    let directory = try TemporaryDirectory()
    var config = try config(directory.path, steps: 4)
    _ = try Trainer(config: config).run { _ in .continue }
    let out = directory.path + "/out"
    // Old checkpoints were removed through the hidden name.
    #expect(TrainingCheckpoint.list(output: out).map(\.step) == [2, 4])
    // A deletion killed after the rename, by a process that is gone (pid 2^22 + 1 is above pid_max's default).
    let leftover = out + "/.checkpoint-1.removed-4194305"
    try FileManager.default.createDirectory(atPath: leftover, withIntermediateDirectories: true)
    try Data("{}".utf8).write(to: URL(fileURLWithPath: leftover + "/" + TrainingCheckpoint.stateFile))
    // An older tool's deletion killed half-way: files gone but the directory kept its name.
    try FileManager.default.copyItem(atPath: out + "/checkpoint-4", toPath: out + "/checkpoint-5")
    try FileManager.default.removeItem(atPath: out + "/checkpoint-5/" + TrainingCheckpoint.optimizerFile)
    config.resume = out
    config.maxSteps = 6
    var notices: [String] = []
    _ = try run(config, notices: &notices)
    #expect(notices.contains { $0.contains("passed over \(out)/checkpoint-5") && $0.contains("optimizer.safetensors") }, "\(notices)")
    #expect(!FileManager.default.fileExists(atPath: leftover), "the stale removal was cleaned up")
    let hidden = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasPrefix(".") && $0 != LockFile.directoryLockName }
    #expect(hidden.isEmpty, "\(hidden)")
}

/// Whatever damaged the newest checkpoint, resuming from the output says which checkpoint it used
/// and why it passed over the newest (issue 11: a truncated trainer_state.json used to be refused
/// without naming the intact older checkpoint, a deleted one to be skipped silently).
@Test(arguments: ["truncated state", "deleted state", "deleted manifest", "flipped adapter bit"])
func aDamagedNewestCheckpointIsPassedOverSayingWhy(damage: String) throws {
    let directory = try TemporaryDirectory()
    var config = try config(directory.path, steps: 4)
    _ = try Trainer(config: config).run { _ in .continue }
    let newest = directory.path + "/out/checkpoint-4"
    switch damage {
    case "truncated state":
        let state = bytes(newest + "/" + TrainingCheckpoint.stateFile)
        try Data(state.prefix(state.count / 2)).write(to: URL(fileURLWithPath: newest + "/" + TrainingCheckpoint.stateFile))
    case "deleted state": try FileManager.default.removeItem(atPath: newest + "/" + TrainingCheckpoint.stateFile)
    case "deleted manifest": try FileManager.default.removeItem(atPath: newest + "/" + ChecksumManifest.fileName)
    default: try flipBit(newest + "/adapter_model.safetensors")
    }
    config.resume = config.output
    var notices: [String] = [], resumedFrom: String?
    _ = try Trainer(config: config).run { event in
        if case .notice(let text) = event { notices.append(text) }
        if case .resumed(_, let checkpoint) = event { resumedFrom = checkpoint }
        return .continue
    }
    #expect(resumedFrom == directory.path + "/out/checkpoint-2")
    #expect(notices.contains { $0.hasPrefix("passed over \(newest): ") && $0.contains("damaged") }, "\(notices)")
}

/// Checkpoints written before checksums existed (trainer state version 1, no manifest) still resume,
/// checked for finite values and with a note saying so; a manifest cut short does not pass.
@Test func checkpointsWithoutChecksumsFromAnEarlierVersionResume() throws {
    let directory = try TemporaryDirectory()
    var config = try config(directory.path, steps: 2)
    _ = try Trainer(config: config).run { _ in .continue }
    let checkpoint = directory.path + "/out/checkpoint-2"
    // As qlora-train 0.5 wrote it.
    try FileManager.default.removeItem(atPath: checkpoint + "/" + ChecksumManifest.fileName)
    let state = String(decoding: bytes(checkpoint + "/" + TrainingCheckpoint.stateFile), as: UTF8.self)
    try state.replacingOccurrences(of: "\"version\": 2", with: "\"version\": 1").write(toFile: checkpoint + "/" + TrainingCheckpoint.stateFile, atomically: true, encoding: .utf8)
    config.resume = config.output
    config.maxSteps = 3
    var notices: [String] = []
    let summary = try run(config, notices: &notices)
    #expect(!summary.interrupted)
    #expect(notices.contains { $0.contains("has no \(ChecksumManifest.fileName)") && $0.contains("checked finite") }, "\(notices)")
    // A manifest that lists fewer files than a checkpoint has is damage, not a pass.
    let newest = directory.path + "/out/checkpoint-3"
    let manifest = String(decoding: bytes(newest + "/" + ChecksumManifest.fileName), as: UTF8.self)
    try String(manifest.split(separator: "\n").first! + "\n").write(toFile: newest + "/" + ChecksumManifest.fileName, atomically: true, encoding: .utf8)
    #expect {
        _ = try TrainingCheckpoint.verify(newest)
    } throws: { error in
        "\(error)".contains("does not list")
    }
}

/// Resuming from an earlier checkpoint replaces the continuation after it: once this run has saved
/// a checkpoint, the newer ones of the old continuation are removed (saying so), so a later
/// `--resume <output>` cannot pick the stale one (issue 11 review: it did, and ended the run early).
@Test func resumingFromAnEarlierCheckpointReplacesTheNewerOnes() throws {
    let directory = try TemporaryDirectory()
    var config = try config(directory.path, steps: 8)
    config.saveEvery = 4
    _ = try Trainer(config: config).run { _ in .continue }
    let out = config.output
    #expect(TrainingCheckpoint.list(output: out).map(\.step) == [4, 8])
    config.resume = out + "/checkpoint-4"
    config.maxSteps = 12
    config.saveEvery = 1
    var notices: [String] = []
    _ = try Trainer(config: config).run { event in
        if case .notice(let text) = event { notices.append(text) }
        if case .saved(let step, _) = event, step == 5 { return .stop }
        return .continue
    }
    #expect(TrainingCheckpoint.list(output: out).map(\.step) == [4, 5])
    #expect(notices.contains { $0.hasPrefix("removed \(out)/checkpoint-8") }, "\(notices)")
    config.resume = out
    let summary = try Trainer(config: config).run { _ in .continue }
    #expect(summary.steps == 12 && TrainingCheckpoint.list(output: out).map(\.step) == [11, 12])
}
