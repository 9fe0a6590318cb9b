// Before a run reads anything heavy: where it will write must not be where it reads (the model,
// the data, an adapter), must not hold another run's results, and must accept new files.
import Foundation
import QLoRAIO
import QLoRAOptim

enum OutputChecks {
    /// Names of the run's own files in --output, which --metrics must not take.
    static let ownNames: Set<String> = ["adapter_model.safetensors", "adapter_config.json", DirectoryLock.fileName, ModelPreparation.quantizedName]

    /// Refuses an --output or --metrics that overlaps what the run reads, or an --output holding
    /// the results of another run.
    static func checkPaths(_ config: TrainConfig) throws(TrainError) {
        try checkOutput(config.output, resuming: config.resume != nil)
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
        for (flag, path) in inputs {
            if let overlap = PathOverlap.between(written: metrics, read: path) {
                throw .model("--metrics \(metrics) \(overlap.describe(read: "the \(flag) \(path)")); choose another --metrics file")
            }
        }
        let name = URL(fileURLWithPath: metrics).lastPathComponent
        if PathOverlap.between(written: URL(fileURLWithPath: metrics).deletingLastPathComponent().path, read: config.output) == .same,
           ownNames.contains(name) || name.hasPrefix(TrainingCheckpoint.prefix) {
            throw .model("--metrics \(metrics) would be one of the run's own files in --output; choose another name")
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
