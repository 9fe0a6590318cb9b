// What the trainer reports while it runs. The library never prints: the command formats these,
// and its answer to each (`TrainDisposition`) can stop the run, which then saves and returns.
import QLoRAConvert

/// What the receiver of a `TrainEvent` wants next.
public enum TrainDisposition: Sendable {
    case `continue`
    /// Save a checkpoint and return (Ctrl-C).
    case stop
}

/// One optimizer step's figures; also a line of the metrics file.
public struct StepMetrics: Sendable, Equatable {
    public var step: Int
    public var totalSteps: Int
    /// Mean cross-entropy over the step's target tokens.
    public var loss: Double
    public var learningRate: Double
    /// L2 norm of the gradients before clipping.
    public var gradNorm: Double
    /// Target tokens of the step.
    public var tokens: Int
    public var tokensPerSecond: Double
    public var rssBytes: Int
    public var peakRSSBytes: Int
    public var seconds: Double
    public var evalLoss: Double?
}

public enum TrainEvent: Sendable {
    /// A model that was not NF4 is being quantized into `output` first: once with no progress as
    /// it starts, then as tensors are converted.
    case quantizing(source: String, output: String, progress: ConvertProgress?)
    case dataLoaded(train: DataSummary, valid: DataSummary?, validPath: String)
    case plan(MemoryPlan)
    case resumed(step: Int, checkpoint: String)
    /// Something the user should know that changes nothing by itself (a checkpoint passed over, a
    /// schedule extended on resume).
    case notice(String)
    /// Work inside a long phase: micro-batches and layers of a step, batches of an evaluation.
    /// Answering `.stop` here discards a partial step (the last complete one is saved) or
    /// interrupts an evaluation (finished when the run resumes).
    case progress(TrainProgress)
    case sample(phase: SamplePhase, prompt: String, answer: String)
    case step(StepMetrics)
    case evaluation(step: Int, loss: Double)
    case saved(step: Int, path: String)
    /// The governor changed a choice because RSS came near the budget.
    case governor(String)
    case finished(TrainSummary)
}

public struct TrainProgress: Sendable {
    public enum Phase: String, Sendable {
        /// Micro-batches of a step done.
        case microBatches = "micro-batch"
        /// Layers of the current micro-batch's forward (1...L) and backward (L+1...2L) done.
        case layers = "layer pass"
        /// Validation batches done.
        case evaluation
        /// Tokens of a sample answer made.
        case sampling = "sample token"
    }
    public var phase: Phase
    /// The optimizer step being computed (micro-batches, layers) or evaluated after.
    public var step: Int
    public var done: Int
    public var total: Int
}

public enum SamplePhase: String, Sendable {
    case before, after
}

public struct TrainSummary: Sendable {
    /// Steps of the whole run (its schedule's length).
    public var steps: Int
    /// Steps this call computed (a resumed run starts at its checkpoint's).
    public var stepsRun = 0
    public var firstLoss: Double?
    public var lastLoss: Double?
    public var firstEvalLoss: Double?
    public var lastEvalLoss: Double?
    public var tokens: Int
    public var seconds: Double
    public var peakRSSBytes: Int
    public var budget: Int
    public var adapterDirectory: String
    /// True when the run stopped early on request (it saved a checkpoint to resume from, when a
    /// step was completed), or during its last evaluation.
    public var interrupted: Bool
    /// The newest checkpoint this run saved or resumed from.
    public var lastCheckpoint: String?
    /// The promise was broken: the peak RSS went over the budget (the outputs are still whole).
    public var budgetExceeded: Bool { peakRSSBytes > budget }
}
