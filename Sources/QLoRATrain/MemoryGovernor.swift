// The governor watches the promise while training runs: after every step it reads the process's
// RSS and, when it comes within half the planner's margin of the budget, gives memory back
// (optimizer pages first, then the frozen weights' pages after each layer) and says what it did.
// It can only act between steps: the plan is what keeps a step's peak under the budget.
import QLoRAIO
import QLoRAOptim

final class MemoryGovernor: @unchecked Sendable {
    let budget: Int
    private let optimizer: PagedAdamW
    private let margin: Int
    /// Read by the model's per-layer hook.
    private(set) var releaseWeightPages: Bool

    init(budget: Int, plan: MemoryPlan, optimizer: PagedAdamW) {
        self.budget = budget
        self.optimizer = optimizer
        margin = plan.components.first { $0.name == "margin" }?.bytes ?? MemoryPlanner.margin(planned: budget)
        releaseWeightPages = plan.choices.releaseWeightPages
    }

    /// Reacts when RSS is within half the margin of the budget; returns what it did, if anything.
    func check() -> String? {
        let rss = ProcessMemory.current().residentBytes
        let excess = rss - (budget - margin / 2)
        guard excess > 0 else { return nil }
        let pageBytes = optimizer.config.pageBytes
        let resident = optimizer.residentPageLimit
        let minimum = MemoryPlanner.minimumResidentPages
        if resident > minimum {
            let pages = max(minimum, resident - (excess + pageBytes - 1) / pageBytes - 1)
            if (try? optimizer.setResidentBytes(pages * pageBytes)) != nil {
                return "RSS \(formatBytes(rss)) came within \(formatBytes(budget - rss)) of the budget: optimizer state now \(formatBytes(pages * pageBytes)) resident (was \(formatBytes(resident * pageBytes)))"
            }
        }
        if !releaseWeightPages {
            releaseWeightPages = true
            return "RSS \(formatBytes(rss)) came within \(formatBytes(budget - rss)) of the budget: frozen weight pages are now released after each layer"
        }
        return nil
    }
}
