// Why a run could not start or go on; each message names the file, flag or step and what to do.
import QLoRAConvert
import QLoRAIO
import QLoRAModel
import QLoRAOptim

public enum TrainError: Error, CustomStringConvertible {
    case model(String)
    case data(String)
    case budgetTooSmall(smallest: MemoryPlan, hint: String)
    case nonFiniteLoss(step: Int, lastCheckpoint: String?)
    case optimizer(OptimizerError)
    case checkpoint(path: String, detail: String)
    case output(FileError)

    public var description: String {
        switch self {
        case .model(let detail), .data(let detail):
            return detail
        case .budgetTooSmall(let smallest, let hint):
            return "--mem-budget \(formatBytes(smallest.budget)) is too small for this model and these options: "
                + "the smallest plan needs \(formatBytes(smallest.total)).\n\(smallest.table())\n"
                + "Raise --mem-budget to at least \(roundedUp(smallest.total) >> 20)MiB, or \(hint)."
        case .nonFiniteLoss(let step, let checkpoint):
            let keep = checkpoint.map { "; the last good checkpoint is \($0) (resume with --resume \($0))" } ?? "; no checkpoint was saved yet"
            return "the loss became NaN or infinite at step \(step)\(keep). Lower --lr, raise --warmup-steps or check the data"
        case .optimizer(let error):
            return error.description
        case .checkpoint(let path, let detail):
            return "\(path): \(detail)"
        case .output(let error):
            return error.description
        }
    }

    /// Up to the next MiB, so the suggested budget passes as a flag.
    private func roundedUp(_ bytes: Int) -> Int { ((bytes + (1 << 20) - 1) >> 20) << 20 }
}
