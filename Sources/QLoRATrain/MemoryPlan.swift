// The memory planner: before any weight is loaded, the RAM of every component of a run for this
// model, data shape and options, and the fastest set of memory-saving choices that fits the
// budget, or the smallest budget that would. The choices only trade speed for memory; none
// changes what is computed except the split of a batch into micro-batches (the same mean loss,
// summed in another order, and other dropout masks).
import Foundation
import QLoRAIO
import QLoRAModel
import QLoRAOptim

/// One line of the plan: a component and its bytes at the run's peak.
public struct MemoryComponent: Sendable, Equatable {
    public var name: String
    public var bytes: Int
    public var detail: String
}

/// The choices that trade speed for memory.
public struct MemoryChoices: Sendable, Equatable {
    public var gradientCheckpointing: Bool
    /// Rows per forward/backward; the batch is split into batchSize / microBatch micro-batches
    /// whose gradients accumulate.
    public var microBatch: Int
    public var logitsChunkBytes: Int
    /// Optimizer state kept in RAM; nil: all of it.
    public var optimizerResidentBytes: Int?
    /// Give back each decoder layer's mapped weight pages after use (streaming the model).
    public var releaseWeightPages: Bool
}

public struct MemoryPlan: Sendable {
    public var budget: Int
    public var choices: MemoryChoices
    public var components: [MemoryComponent]
    /// Bytes of the whole optimizer state (both moments).
    public var stateBytes = 0
    /// The process's peak RSS before planning (reading the model's files and the data), measured:
    /// the budget must have held it too.
    public var loadingPeakBytes = 0
    public var total: Int { components.reduce(0) { $0 + $1.bytes } }
    /// The smallest budget at which this plan works.
    public var smallestBudget: Int { max(total, loadingPeakBytes) }
    public var fits: Bool { smallestBudget <= budget }

    /// The plan as a table, for the user.
    public func table() -> String {
        let width = max(12, components.map(\.name.count).max() ?? 0)
        var lines = components.map { c in
            c.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + formatBytes(c.bytes).leftPadded(10) + "  " + c.detail
        }
        lines.append(String(repeating: "-", count: width + 12))
        lines.append("total".padding(toLength: width, withPad: " ", startingAt: 0) + "  " + formatBytes(total).leftPadded(10)
                     + "  of the budget " + formatBytes(budget))
        if loadingPeakBytes > 0 {
            lines.append("loading peak".padding(toLength: width, withPad: " ", startingAt: 0) + "  " + formatBytes(loadingPeakBytes).leftPadded(10)
                         + "  reading the model's files and the data, measured")
        }
        let c = choices
        lines.append("choices: gradient checkpointing \(c.gradientCheckpointing ? "on" : "off"), micro-batch \(c.microBatch), "
                     + "logits chunk \(formatBytes(c.logitsChunkBytes)), optimizer state "
                     + (c.optimizerResidentBytes.map { formatBytes($0) + " of " + formatBytes(stateBytes) + " resident, the rest spilled" } ?? "all resident")
                     + (c.releaseWeightPages ? ", weight pages released after each layer" : ""))
        return lines.joined(separator: "\n")
    }
}

/// What the planner needs to know, all of it available before the weights are loaded.
public struct PlannerInputs: Sendable {
    public var shape: ModelShape
    public var weightBytes: WeightBytes
    public var lora: LoRAConfig
    /// Values the optimizer updates (LoRA-FA's A excluded).
    public var trainableCount: Int
    public var batchSize: Int
    public var seqLen: Int
    /// RSS already in use (runtime, tokenizer, data), measured.
    public var processBytes: Int
    /// The peak RSS so far (while reading the model's files and the data), measured.
    public var loadingPeakBytes = 0
    /// OpenBLAS's threads, each with its own packing buffer.
    public var blasThreads = 1
    /// Extra forward-only model for before/after samples: its sequence length, or nil.
    public var sampleSeqLen: Int?
    public var pageBytes = PagedAdamWConfig.defaultPageBytes
    /// Fixed choices (nil: the planner decides): the user's flags, or a resumed run's choices,
    /// which keep its arithmetic bitwise the same.
    public var checkpointing: Bool?
    public var optimizerResidentBytes: Int?
    public var microBatch: Int?
    public var logitsChunkBytes: Int?

    public init(shape: ModelShape, weightBytes: WeightBytes, lora: LoRAConfig, trainableCount: Int, batchSize: Int, seqLen: Int,
                processBytes: Int, sampleSeqLen: Int?, checkpointing: Bool?, optimizerResidentBytes: Int?) {
        self.shape = shape
        self.weightBytes = weightBytes
        self.lora = lora
        self.trainableCount = trainableCount
        self.batchSize = batchSize
        self.seqLen = seqLen
        self.processBytes = processBytes
        self.sampleSeqLen = sampleSeqLen
        self.checkpointing = checkpointing
        self.optimizerResidentBytes = optimizerResidentBytes
    }
}

public enum MemoryPlanner {
    /// OpenBLAS's per-thread buffers, thread stacks and the allocator's slack once training runs:
    /// measured as the process's RSS beyond the planned components (the planner test and the
    /// closing notes of issue 5 give the figures).
    public static let computeRuntimeBytes = 64 << 20

    /// What each OpenBLAS thread's packing buffer holds in a product over `tokens` rows: a panel
    /// of B, its K-block (at most 512 values) by up to all the tokens, in a buffer of 128 MiB
    /// (Debian's OpenBLAS 0.3.21 on x86_64). Measured with the SkylakeX kernels: 1 KiB per token
    /// per thread beyond the first, up to the whole buffer at 131072 tokens (benchmarks/README.md,
    /// "The planner's OpenBLAS term"); 2 KiB bounds the blockings of the other kernels.
    public static func blasPackingBytes(tokens: Int) -> Int { min(128 << 20, 2048 * tokens) }
    /// Kept free for what no component counts (fragmentation, page-table growth): 2% of the
    /// rest, at least 16 MiB. It does not depend on the budget, so the smallest plan's total is a
    /// budget at which that plan fits.
    public static func margin(planned bytes: Int) -> Int { max(16 << 20, bytes / 50) }
    /// The fewest optimizer pages worth paging through (the worker's window plus the page in use).
    static let minimumResidentPages = 4
    /// The smallest `--optim-resident-bytes` at the default page size.
    public static let minimumOptimizerResidentBytes = minimumResidentPages * PagedAdamWConfig.defaultPageBytes
    static let logitsChunkChoices = [64 << 20, 16 << 20, 4 << 20]

    /// The fastest plan that fits `budget`, or, when none does, the plan that needs the least
    /// memory (its `fits` is false and its total is the smallest budget that would work).
    public static func plan(_ inputs: PlannerInputs, budget: Int) -> MemoryPlan {
        var best: (plan: MemoryPlan, cost: Double)?
        var smallest: MemoryPlan?
        for choices in candidates(inputs, budget: budget) {
            let plan = MemoryPlan(budget: budget, choices: choices, components: components(inputs, choices), stateBytes: inputs.trainableCount * 8,
                                  loadingPeakBytes: inputs.loadingPeakBytes)
            if smallest == nil || plan.total < smallest!.total { smallest = plan }
            guard plan.fits else { continue }
            let cost = relativeCost(inputs, choices)
            if best == nil || cost < best!.cost { best = (plan, cost) }
        }
        return best?.plan ?? smallest!
    }

    /// Every combination of choices, with the optimizer given what the rest leaves of the budget.
    static func candidates(_ inputs: PlannerInputs, budget: Int) -> [MemoryChoices] {
        let checkpointing = inputs.checkpointing.map { [$0] } ?? [false, true]
        let microBatches = inputs.microBatch.map { [$0] } ?? (1...inputs.batchSize).filter { inputs.batchSize % $0 == 0 }
        var result: [MemoryChoices] = []
        for checkpoint in checkpointing {
            for micro in microBatches {
                for chunk in inputs.logitsChunkBytes.map({ [$0] }) ?? logitsChunkChoices {
                    for release in [false, true] {
                        var choices = MemoryChoices(gradientCheckpointing: checkpoint, microBatch: micro, logitsChunkBytes: chunk,
                                                    optimizerResidentBytes: nil, releaseWeightPages: release)
                        choices.optimizerResidentBytes = optimizerResidency(inputs, choices, budget: budget)
                        result.append(choices)
                    }
                }
            }
        }
        return result
    }

    /// All of the state when it fits beside the rest, else what is left (whole pages, at least
    /// the minimum); the user's fixed value when given.
    static func optimizerResidency(_ inputs: PlannerInputs, _ choices: MemoryChoices, budget: Int) -> Int? {
        let stateBytes = inputs.trainableCount * 8
        // A fixed residency that holds the whole state is no paging at all.
        if let fixed = inputs.optimizerResidentBytes { return fixed >= stateBytes ? nil : fixed }
        var probe = choices
        probe.optimizerResidentBytes = nil
        let all = components(inputs, probe)
        let others = all.filter { $0.name != optimizerName && $0.name != "margin" }.reduce(0) { $0 + $1.bytes }
        // total = others + optimizer + margin(others + optimizer) must stay within the budget;
        // PagedAdamW.peakBytes adds 4 pages of scratch to the resident pages.
        let left = min(budget - (16 << 20), Int(Double(budget) / 1.02)) - others - 4 * inputs.pageBytes
        if left >= stateBytes { return nil }
        return max(minimumResidentPages, left / inputs.pageBytes) * inputs.pageBytes
    }

    static let optimizerName = "optimizer state"

    static func components(_ inputs: PlannerInputs, _ choices: MemoryChoices) -> [MemoryComponent] {
        let shape = inputs.shape, w = inputs.weightBytes
        let layout = ModelLayoutOptions(batch: choices.microBatch, seqLen: inputs.seqLen,
                                        gradientCheckpointing: choices.gradientCheckpointing, logitsChunkBytes: choices.logitsChunkBytes)
        let model = LlamaModel.layoutBytes(shape: shape, lora: inputs.lora, options: layout)
        let layerBytes = choices.releaseWeightPages ? 2 * (w.layers.max() ?? 0) : w.layers.reduce(0, +)
        let normBytes = 4 * shape.hiddenSize * (2 * shape.layers + 1)
        let optimizerConfig = PagedAdamWConfig(pageBytes: inputs.pageBytes, residentBytes: choices.optimizerResidentBytes)
        let optimizer = PagedAdamW.peakBytes(stateCount: inputs.trainableCount, config: optimizerConfig)
        let loraBytes = 8 * LoRAAdapters.parameterCount(shape: shape, config: inputs.lora)
        var components = [
            MemoryComponent(name: "process", bytes: inputs.processBytes, detail: "runtime, tokenizer and data, measured"),
            MemoryComponent(name: "compute runtime", bytes: computeRuntimeBytes + inputs.blasThreads * blasPackingBytes(tokens: choices.microBatch * inputs.seqLen),
                            detail: "OpenBLAS buffers of \(inputs.blasThreads) thread\(inputs.blasThreads == 1 ? "" : "s"), thread stacks"),
            MemoryComponent(name: "frozen layers", bytes: layerBytes,
                            detail: choices.releaseWeightPages ? "two of \(shape.layers) layers mapped at a time" : "\(shape.layers) layers, NF4, mapped"),
            MemoryComponent(name: "embeddings, head", bytes: w.shared + normBytes, detail: "16-bit, mapped; norms as Float32"),
            MemoryComponent(name: "LoRA", bytes: loraBytes, detail: "rank \(inputs.lora.rank): parameters and gradients, Float32"),
            MemoryComponent(name: optimizerName, bytes: optimizer,
                            detail: choices.optimizerResidentBytes == nil ? "AdamW moments, all resident" : "AdamW moments, paged (\(formatBytes(inputs.trainableCount * 8)) in all)"),
            MemoryComponent(name: "activations", bytes: model.activations,
                            detail: "\(choices.microBatch) x \(inputs.seqLen) tokens" + (choices.gradientCheckpointing ? ", checkpointed" : "")),
            MemoryComponent(name: "workspace", bytes: model.workspace, detail: "backward buffers, logits chunk, weight tiles"),
        ]
        if let sampleSeqLen = inputs.sampleSeqLen {
            let sampler = LlamaModel.layoutBytes(shape: shape, lora: inputs.lora,
                                                 options: Sampler.layout(seqLen: sampleSeqLen, vocabularySize: shape.vocabSize))
            components.append(MemoryComponent(name: "sampler", bytes: sampler.activations + sampler.workspace + 4 * shape.vocabSize,
                                              detail: "before/after answers, 1 x \(sampleSeqLen) tokens"))
        }
        let rest = components.reduce(0) { $0 + $1.bytes }
        components.append(MemoryComponent(name: "margin", bytes: margin(planned: rest), detail: "allocator slack, page tables"))
        return components
    }

    /// A rough time factor of the choices relative to none of them, to rank plans: checkpointing
    /// recomputes the forward (a third more work), small micro-batches and logits chunks use the
    /// BLAS less well, paging and released weights cost a few percent (benchmarks/README.md).
    static func relativeCost(_ inputs: PlannerInputs, _ c: MemoryChoices) -> Double {
        var cost = c.gradientCheckpointing ? 1.35 : 1
        cost *= 1 + 0.05 * Double(inputs.batchSize / c.microBatch - 1)
        cost *= c.logitsChunkBytes >= 64 << 20 ? 1 : c.logitsChunkBytes >= 16 << 20 ? 1.01 : 1.03
        if c.releaseWeightPages { cost *= 1.04 }
        if let resident = c.optimizerResidentBytes {
            let spilled = 1 - min(1, Double(resident) / Double(max(1, inputs.trainableCount * 8)))
            cost *= 1 + 0.05 * spilled
        }
        return cost
    }
}

extension MemoryPlanner {
    /// What would lower the smallest plan most: the user-facing option behind its largest component.
    public static func hint(_ plan: MemoryPlan, inputs: PlannerInputs) -> String {
        let advice: [String: String] = [
            "activations": "lower --seq-len (now \(inputs.seqLen)) or --batch-size (now \(inputs.batchSize)); the activations take",
            "workspace": "lower --seq-len (now \(inputs.seqLen)) or --batch-size (now \(inputs.batchSize)); the workspace takes",
            "LoRA": "lower --lora-r (now \(inputs.lora.rank)) or --target-modules; the adapters take",
            optimizerName: "lower --lora-r or --target-modules, or --optim-resident-bytes; the optimizer state takes",
            "frozen layers": "use a smaller model; its layers take",
            "embeddings, head": "use a smaller model; its embeddings take",
            "process": "use a smaller dataset; the data and tokenizer take",
            "sampler": "drop --sample-prompt; the sampler takes",
        ]
        if inputs.checkpointing == false {
            return "allow gradient checkpointing (--gradient-checkpointing auto), which would keep far fewer activations"
        }
        // Prefer what a flag can change; a smaller model only when nothing else is left.
        let adjustable = plan.components.filter { advice[$0.name] != nil && !$0.name.hasPrefix("frozen") && !$0.name.hasPrefix("embeddings") }
        guard let largest = (adjustable.isEmpty ? plan.components.filter { advice[$0.name] != nil } : adjustable).max(by: { $0.bytes < $1.bytes }) else {
            return "use a smaller model"
        }
        return advice[largest.name]! + " " + formatBytes(largest.bytes)
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
