// Everything a training run is told: the command's flags map one to one onto these fields.
import Foundation
import QLoRAModel
import QLoRAOptim

public enum LearningRateSchedule: String, CaseIterable, Sendable, Codable {
    case constant, linear, cosine

    /// The rate at `step` (1-based) of `total`: linear warm-up from 0 over `warmup` steps, then
    /// constant, or linear / cosine decay to 0 at `total` (transformers' get_*_schedule_with_warmup).
    public func rate(step: Int, total: Int, warmup: Int, peak: Double) -> Double {
        let index = step - 1  // transformers' schedulers see the step count before this step
        if index < warmup { return peak * Double(index) / Double(max(1, warmup)) }
        let progress = Double(index - warmup) / Double(max(1, total - warmup))
        switch self {
        case .constant: return peak
        case .linear: return peak * max(0, 1 - progress)
        case .cosine: return peak * max(0, 0.5 * (1 + cos(Double.pi * progress)))
        }
    }
}

/// Gradient checkpointing: let the planner decide, or force it.
public enum CheckpointingMode: String, CaseIterable, Sendable, Codable {
    case auto, on, off
}

public struct TrainConfig: Sendable {
    // Model and data
    /// A `quantize` output, a Hugging Face model directory (quantized on load) or a GGUF file.
    public var model: String
    public var trainData: String
    public var validData: String?
    /// Fraction of the training examples held out for evaluation when `validData` is nil.
    public var validFraction: Double = 0.05
    public var output: String
    public var chatTemplate: String = "auto"
    public var packing = true
    public var truncate = true
    public var skipBadRows = false

    // Shape of a step
    public var batchSize = 4
    public var gradAccum = 1
    public var seqLen = 512
    public var maxSteps: Int?
    public var epochs: Double?
    /// Allow a step to hold more rows than the training data packs into (rows then repeat).
    public var repeatData = false

    // LoRA
    public var lora = LoRAConfig(rank: 16, alpha: 32, dropout: 0.05)
    public var initAdapter: String?

    // Optimizer
    public var learningRate = 2e-4
    public var schedule = LearningRateSchedule.cosine
    public var warmupSteps = 0
    public var weightDecay = 0.0
    public var maxGradNorm: Double? = 1.0

    // Memory
    /// The promise: the process's peak RSS stays at or under this many bytes.
    public var memoryBudget: Int
    public var spillDirectory = PagedAdamWConfig.defaultSpillDirectory
    /// Fixed optimizer residency; nil lets the planner choose.
    public var optimizerResidentBytes: Int?
    public var checkpointing = CheckpointingMode.auto

    // Run
    public var seed: UInt64 = 0
    public var shuffle = true
    public var evalEvery: Int?
    public var saveEvery: Int?
    public var resume: String?
    public var metricsPath: String?
    /// Prompts answered greedily before and after training (chat-templated when the model has a template).
    public var samplePrompts: [String] = []
    public var sampleTokens = 48

    public init(model: String, trainData: String, output: String, memoryBudget: Int) {
        self.model = model
        self.trainData = trainData
        self.output = output
        self.memoryBudget = memoryBudget
    }
}
