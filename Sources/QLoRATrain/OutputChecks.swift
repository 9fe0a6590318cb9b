// Before a run reads anything heavy: where it will write must not be where it reads (the model,
// the data, an adapter), must not hold another run's results, and must accept new files.
import Foundation
import QLoRAIO
import QLoRAOptim

enum OutputChecks {
    /// Names of the run's own files in --output, which --metrics must not take.
    static let ownNames: Set<String> = ["adapter_model.safetensors", "adapter_config.json", LockFile.directoryLockName, ModelPreparation.quantizedName]

    /// Whether the run continues into the output it resumes from: `--resume` is `--output` or one
    /// of its checkpoints. Resuming from elsewhere starts a new output, which must be fresh.
    static func resumesInPlace(_ config: TrainConfig) -> Bool {
        guard let resume = config.resume else { return false }
        let isCheckpoint = TrainingCheckpoint.isCheckpointDirectory(resume)
        let resumedOutput = isCheckpoint ? URL(fileURLWithPath: resume).standardizedFileURL.deletingLastPathComponent().path : resume
        return PathOverlap.between(written: config.output, read: resumedOutput) == .same
    }

    /// Refuses an --output or --metrics that overlaps what the run reads, or an --output holding
    /// the results of another run.
    static func checkPaths(_ config: TrainConfig) throws(TrainError) {
        let inPlace = resumesInPlace(config)
        if let resume = config.resume, !inPlace, let overlap = PathOverlap.between(written: config.output, read: resume) {
            throw .model("--output \(config.output) \(overlap.describe(read: "the --resume checkpoint \(resume)")); "
                         + "resume into its own output (--output of that run), or choose a new --output")
        }
        try checkOutput(config.output, resuming: inPlace)
        // --output may hold the model (or lie inside an NF4 model's directory): nothing of the
        // model's is written over. It may not be the model itself, nor lie inside a float model,
        // whose quantized copy would be written into it.
        if let overlap = PathOverlap.between(written: config.output, read: config.model),
           overlap == .same || (overlap == .insideInput && !isNF4Directory(config.model)) {
            throw .model("--output \(config.output) \(overlap.describe(read: "the --model \(config.model)")); choose an --output outside it")
        }
        guard let metrics = config.metricsPath else { return }
        var inputs = [("--model", config.model), ("--data", config.trainData)]
        if let valid = config.validData { inputs.append(("--valid-data", valid)) }
        if let adapter = config.initAdapter { inputs.append(("--init-adapter", adapter)) }
        if let resume = config.resume { inputs.append(("--resume", resume)) }
        for (flag, path) in inputs {
            if let overlap = PathOverlap.between(written: metrics, read: path) {
                throw .model("--metrics \(metrics) \(overlap.describe(read: "the \(flag) \(path)")); choose another --metrics file")
            }
        }
        // Inside --output, only beside the run's own files: not one of them, nor inside a
        // checkpoint (renamed and removed as the run goes) or a hidden working directory.
        if let below = PathOverlap.components(of: metrics, below: config.output), let first = below.first,
           ownNames.contains(first) || first.hasPrefix(TrainingCheckpoint.prefix) || first.hasPrefix(".") {
            throw .model("--metrics \(metrics) would be one of the run's own files in --output, or inside one; choose another place")
        }
    }

    /// Refuses an `--output` that is a file, or (unless resuming) one that already holds another
    /// run's checkpoints (whose pruning and `--resume` would mix with this one's) or an adapter
    /// (which this run would overwrite).
    static func checkOutput(_ output: String, resuming: Bool) throws(TrainError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory) else { return }
        guard isDirectory.boolValue else { throw .model("--output \(output) is a file; pass a directory") }
        guard !resuming else { return }
        if let existing = TrainingCheckpoint.list(output: output).last {
            throw .model("--output \(output) already holds checkpoints of another run (\(existing.path)); "
                         + "pass --resume \(output) to continue it, or choose another --output")
        }
        if FileManager.default.fileExists(atPath: output + "/adapter_model.safetensors") {
            throw .model("--output \(output) already holds an adapter (adapter_model.safetensors), which this run would overwrite; "
                         + "choose another --output")
        }
    }

    /// Checks, before anything is loaded, that every place the run writes to accepts a new file:
    /// --output and the metrics file's directory (or where they would be created), the metrics file
    /// itself when it exists.
    static func probe(_ config: TrainConfig) throws(TrainError) {
        do { try AtomicOutput.probeWritable(directory: config.output) } catch { throw .output(error) }
        guard let metrics = config.metricsPath else { return }
        do throws(FileError) {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: metrics, isDirectory: &isDirectory) {
                guard !isDirectory.boolValue else { throw .cannotWrite(path: metrics, errno: EISDIR) }
                guard access(metrics, W_OK) == 0 else { throw .cannotWrite(path: metrics, errno: errno) }
            }
            let directory = URL(fileURLWithPath: metrics).deletingLastPathComponent().path
            do { try AtomicOutput.probeWritable(directory: directory) } catch .cannotWrite(_, let code) { throw .cannotWrite(path: metrics, errno: code) }
        } catch { throw .output(error) }
    }

    /// Whether the spill directory exists and accepts a new file: nil, or why not.
    static func spillProblem(_ directory: String) -> OptimizerError? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else { return .spillDirectory(path: directory, errno: ENOENT) }
        guard isDirectory.boolValue else { return .spillDirectory(path: directory, errno: ENOTDIR) }
        do { try AtomicOutput.probeWritable(directory: directory) } catch {
            if case .cannotWrite(_, let code) = error { return .spillDirectory(path: directory, errno: code) }
            return .spillDirectory(path: directory, errno: EIO)
        }
        return nil
    }

    private static func isNF4Directory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else { return false }
        return (try? ModelPreparation.isQuantized(directory: path)) == true
    }
}
