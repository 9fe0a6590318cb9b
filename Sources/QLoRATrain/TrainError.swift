// Why a run could not start or go on; each message names the file, flag or step and what to do.
import Foundation
import QLoRAIO
import QLoRAModel
import QLoRAOptim

public enum TrainError: Error, CustomStringConvertible {
    case model(String)
    case data(String)
    case budgetTooSmall(smallest: MemoryPlan, hint: String)
    case nonFiniteLoss(step: Int, lastCheckpoint: String?)
    /// Something other than the training loss became NaN or infinite (`what`: "the eval loss",
    /// an adapter tensor, the optimizer state); nothing of that step was saved.
    case nonFinite(what: String, step: Int, lastCheckpoint: String?)
    /// Checkpoint `step` could not be written (`reason`: a full disk, ...); nothing of it remains.
    case saveFailed(step: Int, reason: String, lastCheckpoint: String?)
    /// Another process is writing `what` (the flag and its path).
    case locked(what: String, LockError)
    case optimizer(OptimizerError)
    case checkpoint(path: String, detail: String)
    case output(FileError)

    public var description: String {
        switch self {
        case .model(let detail), .data(let detail):
            return detail
        case .budgetTooSmall(let smallest, let hint):
            if smallest.loadingPeakBytes > smallest.total {
                return "--mem-budget \(formatBytes(smallest.budget)) is too small: reading the model's files and the data took the process's "
                    + "peak RSS to \(formatBytes(smallest.loadingPeakBytes)) (the smallest training plan needs \(formatBytes(smallest.total))).\n"
                    + "Raise --mem-budget to at least \(roundedUp(smallest.smallestBudget) >> 20)MiB, or split the data into smaller rows or files."
            }
            return "--mem-budget \(formatBytes(smallest.budget)) is too small for this model and these options: "
                + "the smallest plan needs \(String(format: "%.1f", Double(smallest.total) / 1048576)) MiB.\n\(smallest.table())\n"
                + "Raise --mem-budget to at least \(roundedUp(smallest.total) >> 20)MiB, or \(hint)."
        case .nonFiniteLoss(let step, let checkpoint):
            return "the loss became NaN or infinite at step \(step)" + Self.lastGood(checkpoint)
        case .nonFinite(let what, let step, let checkpoint):
            return "\(what) became NaN or infinite at step \(step); nothing of this step was saved" + Self.lastGood(checkpoint)
        case .saveFailed(let step, let reason, let checkpoint):
            let keep = checkpoint.map { "; the last good checkpoint is \($0) (resume with --resume \($0))" } ?? "; no checkpoint was saved yet"
            return "the checkpoint of step \(step) could not be saved: \(reason)\(keep)"
        case .locked(let what, let error):
            return "\(what): \(error)"
        case .optimizer(let error):
            return error.description
        case .checkpoint(let path, let detail):
            return pathMessage(path, detail)
        case .output(let error):
            return error.description
        }
    }

    /// Where a diverged run can go back to, and what to change.
    private static func lastGood(_ checkpoint: String?) -> String {
        let keep = checkpoint.map { "; the last good checkpoint is \($0) (resume with --resume \($0))" } ?? "; no checkpoint was saved yet"
        return keep + ". Lower --lr, raise --warmup-steps or check the data"
    }

    /// Up to the next MiB, so the suggested budget passes as a flag.
    private func roundedUp(_ bytes: Int) -> Int { ((bytes + (1 << 20) - 1) >> 20) << 20 }
}
