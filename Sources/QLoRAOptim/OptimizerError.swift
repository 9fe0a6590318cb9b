// Errors of the paged optimizer that the user can act on: the spill directory, a full disk, a
// spill file changed behind our back, a resident budget below one page, a bad checkpoint, a
// non-finite gradient or state.
import QLoRAIO
#if canImport(Glibc)
import Glibc
#endif

public enum OptimizerError: Error, CustomStringConvertible, Equatable {
    case spillDirectory(path: String, errno: Int32)
    case spillDiskFull(directory: String, bytes: Int)
    case spillIO(directory: String, operation: String, errno: Int32)
    case spillCorrupt(directory: String, page: Int, detail: String)
    case residentBudgetTooSmall(bytes: Int, minimum: Int)
    case checkpoint(path: String, detail: String)
    case nonFiniteGradient(norm: Double)
    /// A moment is NaN or infinite (`detail` names it): the state is not saved.
    case nonFiniteState(detail: String)

    public var description: String {
        switch self {
        case .spillDirectory(let path, let code):
            return "\(path): cannot create the optimizer spill file (\(String(cString: strerror(code)))); choose a writable directory with --spill-dir"
        case .spillDiskFull(let directory, let bytes):
            return "\(directory): not enough free space for the optimizer spill file (\(bytes) bytes needed); free space there, choose another --spill-dir, or raise --optim-resident-bytes so less is spilled"
        case .spillIO(let directory, let operation, let code):
            return "\(directory): optimizer spill file \(operation) failed (\(String(cString: strerror(code))))"
        case .spillCorrupt(let directory, let page, let detail):
            return "\(directory): the optimizer spill file is corrupt at page \(page) (\(detail)); the optimizer state is lost, resume from the last checkpoint"
        case .residentBudgetTooSmall(let bytes, let minimum):
            return "--optim-resident-bytes \(bytes) is below one optimizer page; use at least \(minimum)"
        case .checkpoint(let path, let detail):
            return pathMessage(path, detail)
        case .nonFiniteGradient(let norm):
            return "the gradient norm is \(norm); the step was not applied (lower --lr, or check the data for overlong or empty sequences)"
        case .nonFiniteState(let detail):
            return "the optimizer state holds a non-finite value (\(detail)); it was not saved"
        }
    }
}
