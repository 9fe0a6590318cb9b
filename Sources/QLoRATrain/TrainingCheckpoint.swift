// A resumable checkpoint: a directory `checkpoint-<step>` in the output with the PEFT adapter, the
// optimizer state and `trainer_state.json` (step, data position, seed, the memory choices and the
// settings that must not change on resume), and `checksums.xxh64` over them. Built under a hidden
// partial name and renamed, so a kill at any moment leaves the previous checkpoint whole; verified
// against its checksums before a run resumes from it.
import Foundation
import QLoRAIO
import QLoRAKernels
import QLoRAModel
import QLoRAOptim

struct TrainerState: Equatable {
    static let format = "swift-qlora trainer state"
    /// 2: the checkpoint has `checksums.xxh64`. Version 1 (no checksums) is still read.
    static let version = 2
    static let readableVersions = 1...2

    /// The version the state was written with (`Self.version` for states this build writes).
    var version = Self.version
    var step: Int
    var totalSteps: Int
    /// Global index of the next training sequence in the data stream.
    var dataPosition: Int
    var seed: UInt64
    var choices: MemoryChoices
    /// Settings a resumed run must share with the first (name -> value as text).
    var settings: [String: String]
    var evalLosses: [Int: Double]
    /// The metrics of `step` when a stop interrupted its evaluation: the resumed run evaluates
    /// first, then writes them, so the metrics read as one uninterrupted run.
    var pendingEvaluation: StepMetrics?

    func json() -> [UInt8] {
        var object: [String: Any] = [
            "format": Self.format, "version": Self.version, "step": step, "total_steps": totalSteps,
            "data_position": dataPosition, "seed": String(seed), "settings": settings,
            "eval_losses": Dictionary(uniqueKeysWithValues: evalLosses.map { (String($0.key), $0.value) }),
            "memory": [
                "gradient_checkpointing": choices.gradientCheckpointing, "micro_batch": choices.microBatch,
                "logits_chunk_bytes": choices.logitsChunkBytes, "release_weight_pages": choices.releaseWeightPages,
                "optimizer_resident_bytes": choices.optimizerResidentBytes.map { $0 as Any } ?? NSNull(),
            ] as [String: Any],
        ]
        if let pendingEvaluation { object["pending_evaluation"] = pendingEvaluation.jsonObject }
        return Array((PythonJSON.encode(object) + "\n").utf8)
    }

    init(step: Int, totalSteps: Int, dataPosition: Int, seed: UInt64, choices: MemoryChoices, settings: [String: String], evalLosses: [Int: Double]) {
        self.step = step
        self.totalSteps = totalSteps
        self.dataPosition = dataPosition
        self.seed = seed
        self.choices = choices
        self.settings = settings
        self.evalLosses = evalLosses
    }

    init(path: String) throws(TrainError) {
        func fail(_ detail: String) -> TrainError { .checkpoint(path: path, detail: detail) }
        guard let data = FileManager.default.contents(atPath: path),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw fail("missing or not JSON; --resume must name a checkpoint directory written by qlora-train")
        }
        guard object["format"] as? String == Self.format else { throw fail("not a swift-qlora trainer state") }
        guard let version = object["version"] as? Int, Self.readableVersions.contains(version) else {
            throw fail("trainer state version \(object["version"] ?? "none"); this build reads versions \(Self.readableVersions.lowerBound)-\(Self.readableVersions.upperBound)")
        }
        guard let step = object["step"] as? Int, let total = object["total_steps"] as? Int, let position = object["data_position"] as? Int,
              let seedText = object["seed"] as? String, let seed = UInt64(seedText), let settings = object["settings"] as? [String: String],
              let memory = object["memory"] as? [String: Any], let checkpointing = memory["gradient_checkpointing"] as? Bool,
              let micro = memory["micro_batch"] as? Int, let chunk = memory["logits_chunk_bytes"] as? Int,
              let release = memory["release_weight_pages"] as? Bool, step >= 0, position >= 0, micro > 0, chunk > 0 else {
            throw fail("a field is missing or has the wrong type; the file is damaged")
        }
        self.version = version
        self.step = step
        totalSteps = total
        dataPosition = position
        self.seed = seed
        self.settings = settings
        choices = MemoryChoices(gradientCheckpointing: checkpointing, microBatch: micro, logitsChunkBytes: chunk,
                                optimizerResidentBytes: memory["optimizer_resident_bytes"] as? Int, releaseWeightPages: release)
        var losses: [Int: Double] = [:]
        for (key, value) in (object["eval_losses"] as? [String: Any]) ?? [:] {
            if let step = Int(key), let loss = (value as? NSNumber)?.doubleValue { losses[step] = loss }
        }
        evalLosses = losses
        if let pending = object["pending_evaluation"] {
            guard let metrics = (pending as? [String: Any]).flatMap({ StepMetrics(jsonObject: $0, totalSteps: total) }), metrics.step == step else {
                throw fail("pending_evaluation is malformed; the file is damaged")
            }
            pendingEvaluation = metrics
        }
    }
}

enum TrainingCheckpoint {
    static let stateFile = "trainer_state.json"
    static let optimizerFile = "optimizer.safetensors"
    static let prefix = "checkpoint-"

    static func directory(output: String, step: Int) -> String { output + "/\(prefix)\(step)" }

    /// Writes checkpoint `state.step` into `output` atomically, then removes the older ones beyond
    /// `keep` and every newer one (left by a continuation this run replaces, having resumed from an
    /// earlier checkpoint), whose paths it returns.
    /// The files are built in a hidden partial directory; the checksum manifest of the files as
    /// read back from disk is written last, then the directory is renamed into place. The caller
    /// checks the adapters are finite; a non-finite optimizer state throws `.optimizer(.nonFiniteState)`.
    /// Checkpoints are renamed away before they are deleted, so a kill never leaves part of one
    /// under a checkpoint's name.
    static func save(output: String, state: TrainerState, adapters: LoRAAdapters, optimizer: PagedAdamW,
                     baseModel: String, keep: Int = 2) throws(TrainError) -> (path: String, replacedNewer: [String]) {
        let final = directory(output: output, step: state.step)
        let partial = AtomicOutput.partialDirectory(for: final)
        let newer = list(output: output).filter { $0.step > state.step }
        do throws(TrainError) {
            do {
                try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: true)
            } catch {
                throw TrainError.output(.cannotCreateDirectory(path: partial, errno: errno))
            }
            do { try adapters.savePEFT(directory: partial, baseModel: baseModel) } catch { throw TrainError.output(error) }
            do { try optimizer.save(to: partial + "/" + optimizerFile) } catch { throw TrainError.optimizer(error) }
            do {
                try AtomicOutput.writeFile(partial + "/" + stateFile, state.json())
                let files = try FileManager.default.contentsOfDirectory(atPath: partial)
                try ChecksumManifest.write(directory: partial, names: files)
                // Newer checkpoints go first: were they left while this one appears, a kill in
                // between would leave them the newest, and a resume would take them.
                for old in newer { try? AtomicOutput.remove(directory: old.path) }
                try AtomicOutput.publish(partial: partial, output: final)
            } catch let error as FileError {
                throw TrainError.output(error)
            } catch {
                throw TrainError.output(.cannotWrite(path: partial, errno: errno))
            }
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
        for old in list(output: output).filter({ $0.step < state.step }).dropLast(keep - 1) {
            try? AtomicOutput.remove(directory: old.path)
        }
        return (final, newer.map(\.path))
    }

    /// The checkpoint directories in `output`, by ascending step (whole or not: `open` verifies).
    static func list(output: String) -> [(step: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []
        return names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix(prefix), let step = Int(name.dropFirst(prefix.count)) else { return nil }
            return (step, output + "/" + name)
        }.sorted { $0.0 < $1.0 }
    }

    /// The files a checkpoint holds, each listed in its checksum manifest.
    static let files = ["adapter_model.safetensors", "adapter_config.json", optimizerFile, stateFile]

    /// A checkpoint verified for resuming: every file against the checksum manifest, the state, and
    /// every adapter value and optimizer moment finite (second moments not negative). A checkpoint
    /// of trainer-state version 1 has no manifest; the note says it was checked for values only.
    /// - Throws: `.checkpoint` naming the first damaged file.
    /// - Throws: `.checkpoint` naming the first damaged file; `.output` when a file exists but
    ///   cannot be read (permissions, I/O): that is not damage, and the checkpoint must not be passed over.
    static func verify(_ path: String) throws(TrainError) -> (state: TrainerState, note: String?) {
        for name in files + [ChecksumManifest.fileName] where access(path + "/" + name, F_OK) == 0 && access(path + "/" + name, R_OK) != 0 {
            throw .output(.cannotOpen(path: path + "/" + name, errno: errno))
        }
        var note: String?
        if FileManager.default.fileExists(atPath: path + "/" + ChecksumManifest.fileName) {
            do { try ChecksumManifest.verify(directory: path, required: files) } catch {
                if case .damaged = error { throw .checkpoint(path: path, detail: "\(error)") }
                throw .output(error)
            }
        } else {
            // Only trainer state version 1 (qlora-train 0.5) had no manifest; the state says which.
            let state = try TrainerState(path: path + "/" + stateFile)
            guard state.version == 1 else {
                throw .checkpoint(path: path, detail: "\(path)/\(ChecksumManifest.fileName): damaged: missing, so the files beside it cannot be verified")
            }
            note = "\(path) has no \(ChecksumManifest.fileName) (an earlier qlora-train wrote it): its values were checked finite, but a changed bit elsewhere would go unnoticed"
        }
        let state = try TrainerState(path: path + "/" + stateFile)
        try checkValues(path + "/adapter_model.safetensors")
        try checkValues(path + "/" + optimizerFile)
        return (state, note)
    }

    /// Refuses a safetensors file of the checkpoint whose F32 values are not all finite (or whose
    /// `exp_avg_sq` has a negative value), naming the tensor and the index. Reads it through a
    /// mapping whose pages are given back tensor by tensor.
    private static func checkValues(_ path: String) throws(TrainError) {
        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: path) } catch {
            if case .file(.cannotOpen(_, let code)) = error, code != ENOENT { throw .output(.cannotOpen(path: path, errno: code)) }
            throw .checkpoint(path: path, detail: "\(error)")
        }
        for tensor in file.tensors where tensor.dtype == .F32 {
            let values = file.data(of: tensor).bindMemory(to: Float.self, capacity: tensor.elementCount)
            defer { file.file.release(offset: tensor.fileOffset, count: tensor.byteCount) }
            var bad = firstNonFinite(values, count: tensor.elementCount)
            if bad == nil && tensor.name == "exp_avg_sq" { bad = (0..<tensor.elementCount).first { values[$0] < 0 } }
            if let index = bad {
                throw .checkpoint(path: path, detail: "damaged: tensor '\(tensor.name)' value \(index) is \(values[index]), which training never writes")
            }
        }
    }

    /// Whether `path` names a checkpoint directory (by its name or its files) rather than an output.
    static func isCheckpointDirectory(_ path: String) -> Bool {
        let name = URL(fileURLWithPath: path).standardizedFileURL.lastPathComponent
        return (name.hasPrefix(prefix) && Int(name.dropFirst(prefix.count)) != nil)
            || [stateFile, ChecksumManifest.fileName].contains { FileManager.default.fileExists(atPath: path + "/" + $0) }
    }

    /// The checkpoint to resume from, verified: `path` itself when it is a checkpoint directory,
    /// else the newest checkpoint in it (an output directory) that verifies. `notes` say which
    /// newer ones were passed over and why.
    /// - Throws: `.checkpoint` naming the damage, and an intact older checkpoint when there is one.
    static func open(_ path: String) throws(TrainError) -> (path: String, state: TrainerState, notes: [String]) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .checkpoint(path: path, detail: (FileManager.default.fileExists(atPath: path) ? "is a file" : "no such directory")
                              + "; --resume takes a checkpoint directory or the --output of an earlier run")
        }
        if isCheckpointDirectory(path) {
            do {
                let (state, note) = try verify(path)
                return (path, state, note.map { [$0] } ?? [])
            } catch .checkpoint(_, let detail) {
                let parent = URL(fileURLWithPath: path).standardizedFileURL.deletingLastPathComponent().path
                let older = list(output: parent).reversed().first { $0.path != path && (try? verify($0.path)) != nil }
                throw .checkpoint(path: path, detail: "\(pathMessage(path, detail)); so it cannot be resumed from"
                                  + (older.map { "; the checkpoint \($0.path) is intact: resume with --resume \($0.path)" } ?? ""))
            }
        }
        var notes: [String] = []
        for checkpoint in list(output: path).reversed() {
            do {
                let (state, note) = try verify(checkpoint.path)
                return (checkpoint.path, state, notes + (note.map { [$0] } ?? []))
            } catch .checkpoint(_, let detail) {
                notes.append("passed over \(checkpoint.path): \(pathMessage(checkpoint.path, detail))")
            }
        }
        guard notes.isEmpty else {
            throw .checkpoint(path: path, detail: "no intact checkpoint to resume from:\n  " + notes.joined(separator: "\n  "))
        }
        throw .checkpoint(path: path, detail: "no checkpoint here (no \(stateFile), no \(prefix)<step> directory); pass a checkpoint directory or the --output of an earlier run")
    }
}
