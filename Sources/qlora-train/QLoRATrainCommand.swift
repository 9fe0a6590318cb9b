// `qlora-train`: fine-tunes LoRA adapters on a frozen NF4 model within a hard RAM budget. Maps the
// flags onto `TrainConfig`, runs `Trainer`, and formats its events (Terminal.swift).
import ArgumentParser
import Foundation
import QLoRAKernels
import QLoRACLI
import QLoRAIO
import QLoRAModel
import QLoRAOptim
import QLoRATrain

@main
struct QLoRATrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qlora-train",
        abstract: "QLoRA fine-tuning on the CPU within a hard RAM budget; writes PEFT adapters.",
        discussion: """
            Trains LoRA adapters on a frozen NF4 model. The memory planner prints how the budget is spent before any
            weight is loaded, and refuses at once (naming the smallest budget that would work) when nothing fits; the
            process's peak RSS stays under --mem-budget. Data: JSONL rows {"text"}, {"prompt", "completion"},
            {"messages": [{"role", "content"}]} (chat template; loss on assistant turns) or {"input_ids", "labels"}.
            Output: a PEFT adapter (adapter_model.safetensors, adapter_config.json) in --output, and resumable
            checkpoints (checkpoint-<step>) every --save-every steps; Ctrl-C saves one and exits.

              qlora-train --model out/smollm2-135m-nf4 --data data/chatterbot/train.jsonl --output out/adapter --mem-budget 1GiB
            """,
        version: "0.5.0")

    @OptionGroup(title: "Model and data") var model: ModelOptions
    @OptionGroup(title: "LoRA") var lora: LoRAOptions
    @OptionGroup(title: "Optimizer") var optim: OptimOptions
    @OptionGroup(title: "Memory") var memory: MemoryOptions
    @OptionGroup(title: "Run") var runOptions: RunOptions

    func validate() throws {
        if runOptions.maxSteps != nil && runOptions.epochs != nil { throw ValidationError("Pass --max-steps or --epochs, not both.") }
        if runOptions.batchSize < 1 || runOptions.gradAccum < 1 { throw ValidationError("--batch-size and --grad-accum must be at least 1.") }
        // Upper limits far beyond what a CPU trains, so that no size computed from them overflows.
        if runOptions.batchSize > Self.maxRows || runOptions.gradAccum > Self.maxRows || runOptions.batchSize * runOptions.gradAccum > Self.maxRowsPerStep {
            throw ValidationError("--batch-size and --grad-accum must be at most \(Self.maxRows), and their product at most \(Self.maxRowsPerStep).")
        }
        if runOptions.seqLen < 2 || runOptions.seqLen > Self.maxSeqLen { throw ValidationError("--seq-len must be between 2 and \(Self.maxSeqLen).") }
        if lora.loraR > Self.maxRank { throw ValidationError("--lora-r must be at most \(Self.maxRank).") }
        if optim.lr > Double(Float.greatestFiniteMagnitude) { throw ValidationError("--lr must be a positive number a Float holds.") }
        if let steps = runOptions.maxSteps, steps < 1 { throw ValidationError("--max-steps must be at least 1.") }
        if let epochs = runOptions.epochs, !(epochs > 0 && epochs <= 100_000) { throw ValidationError("--epochs must be positive (at most 100000).") }
        if runOptions.sampleTokens < 1 { throw ValidationError("--sample-tokens must be at least 1.") }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: runOptions.output, isDirectory: &isDirectory) && !isDirectory.boolValue {
            throw ValidationError("--output \(runOptions.output) is a file; pass a directory.")
        }
        if model.chatTemplate != "auto" && ChatTemplate(rawValue: model.chatTemplate) == nil {
            throw ValidationError("--chat-template must be auto, \(ChatTemplate.allCases.map(\.rawValue).joined(separator: ", ")).")
        }
        if parseByteSize(memory.memBudget) == nil {
            throw ValidationError("--mem-budget '\(memory.memBudget)' is not a size like 2GiB or 800MiB (or is beyond 8 EiB).")
        }
        if let bytes = memory.optimResidentBytes {
            guard let value = parseByteSize(bytes) else { throw ValidationError("--optim-resident-bytes '\(bytes)' is not a size like 64MiB.") }
            let minimum = MemoryPlanner.minimumOptimizerResidentBytes
            if value < minimum { throw ValidationError("--optim-resident-bytes must be at least \(minimum >> 20)MiB (\(minimum / PagedAdamWConfig.defaultPageBytes) optimizer pages).") }
        }
        if lora.loraR < 1 { throw ValidationError("--lora-r must be at least 1.") }
        if !(0..<1).contains(lora.loraDropout) { throw ValidationError("--lora-dropout must be in [0, 1).") }
        if !(lora.loraAlpha > 0 && lora.loraAlpha.isFinite) { throw ValidationError("--lora-alpha must be a positive number.") }
        if !(optim.lr > 0 && optim.lr.isFinite) { throw ValidationError("--lr must be a positive number.") }
        if optim.warmupSteps < 0 || !(optim.weightDecay >= 0 && optim.weightDecay.isFinite) || !(optim.maxGradNorm >= 0 && optim.maxGradNorm.isFinite) {
            throw ValidationError("--warmup-steps, --weight-decay and --max-grad-norm must be numbers, not negative.")
        }
        if optim.lr * optim.weightDecay >= 1 {
            throw ValidationError("--lr x --weight-decay must be below 1: each step multiplies the weights by 1 - lr x weight decay.")
        }
        if !(0..<1).contains(model.validFraction) { throw ValidationError("--valid-fraction must be in [0, 1).") }
        _ = try lora.targets()
        for (flag, value) in [("--eval-every", runOptions.evalEvery), ("--save-every", runOptions.saveEvery)] where (value ?? 1) < 1 {
            throw ValidationError("\(flag) must be at least 1.")
        }
    }

    /// The flags as the library's parameters.
    func trainConfig() throws -> TrainConfig {
        var config = TrainConfig(model: model.model, trainData: model.data, output: runOptions.output, memoryBudget: parseByteSize(memory.memBudget)!)
        config.validData = model.validData
        config.validFraction = model.validFraction
        config.chatTemplate = model.chatTemplate
        config.packing = !model.noPacking
        config.truncate = !model.noTruncate
        config.skipBadRows = model.skipBadRows
        config.batchSize = runOptions.batchSize
        config.gradAccum = runOptions.gradAccum
        config.seqLen = runOptions.seqLen
        config.maxSteps = runOptions.maxSteps
        config.epochs = runOptions.epochs
        config.repeatData = runOptions.repeatData
        config.lora = LoRAConfig(rank: lora.loraR, alpha: lora.loraAlpha, dropout: lora.loraDropout, useRSLoRA: lora.useRslora,
                                 targets: try lora.targets(), freezeA: lora.loraFa, seed: runOptions.seed)
        config.initAdapter = lora.initAdapter
        config.learningRate = optim.lr
        config.schedule = optim.lrSchedule
        config.warmupSteps = optim.warmupSteps
        config.weightDecay = optim.weightDecay
        config.maxGradNorm = optim.maxGradNorm > 0 ? optim.maxGradNorm : nil
        if let directory = memory.spillDir { config.spillDirectory = directory }
        config.optimizerResidentBytes = memory.optimResidentBytes.flatMap(parseByteSize)
        config.checkpointing = memory.gradientCheckpointing
        config.seed = runOptions.seed
        config.shuffle = !runOptions.noShuffle
        config.evalEvery = runOptions.evalEvery
        config.saveEvery = runOptions.saveEvery
        config.resume = runOptions.resume
        config.metricsPath = runOptions.metrics
        config.samplePrompts = runOptions.samplePrompt
        config.sampleTokens = runOptions.sampleTokens
        return config
    }

    static let maxRows = 65_536
    static let maxRowsPerStep = 1 << 20
    static let maxSeqLen = 262_144
    static let maxRank = 4_096


    func run() throws {
        do { try BLAS.load() } catch { throw fail(error) }
        let config = try trainConfig()
        let terminal = TrainTerminal(budget: config.memoryBudget)
        let interrupt = InterruptFlag()
        do {
            let summary = try Trainer(config: config).run { event in
                terminal.show(event)
                return interrupt.signal != nil ? .stop : .continue
            }
            if let status = Self.exitStatus(summary, signal: interrupt.signal) { throw ExitCode(status) }
        } catch let error as TrainError {
            terminal.finishLine()
            throw fail(error)
        }
    }

    /// A stopped run exits with 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM), also
    /// when the signal came after the last step; one whose peak RSS went over the budget with
    /// `ExitStatus.budgetExceeded`, saying so; nil: success.
    static func exitStatus(_ summary: TrainSummary, signal: Int32?) -> Int32? {
        if summary.budgetExceeded {
            let needed = (summary.peakRSSBytes + (1 << 20) - 1) >> 20
            FileHandle.standardError.write(Data(("qlora-train: error: the peak RSS was \(summary.peakRSSBytes >> 10) KiB, over --mem-budget "
                + "\(summary.budget >> 10) KiB: the outputs are complete, but the budget was not kept; a run like this needs "
                + "--mem-budget \(needed)MiB or more (and the plan above underestimated it: please report it)\n").utf8))
            return ExitStatus.budgetExceeded
        }
        // A signal ends the run early even when only the answers after training were left.
        if let signal { return ExitStatus.interrupted(by: signal) }
        if summary.interrupted { return ExitStatus.interrupted(by: SIGINT) }
        return nil
    }

    func fail(_ error: Error) -> Error {
        printError(command: "qlora-train", error)
        return ExitCode(ExitStatus.failure)
    }
}

struct ModelOptions: ParsableArguments {
    @Option(help: "A quantize output, a Hugging Face model directory (quantized on load) or a .gguf file.")
    var model: String
    @Option(help: "Training data: JSONL, one example per line.")
    var data: String
    @Option(help: "Validation data (JSONL); without it --valid-fraction of --data is held out.")
    var validData: String?
    @Option(parsing: .unconditional, help: "Fraction of --data held out for evaluation when there is no --valid-data (0: none).")
    var validFraction: Double = 0.05
    @Option(help: "Chat template for {\"messages\"} rows: auto (from tokenizer_config.json), chatml, llama2, llama3.")
    var chatTemplate: String = "auto"
    @Flag(help: "One example per sequence instead of packing several into each.")
    var noPacking = false
    @Flag(help: "Reject rows longer than --seq-len instead of truncating them.")
    var noTruncate = false
    @Flag(help: "Skip bad rows (counted) instead of stopping before training.")
    var skipBadRows = false
}

struct LoRAOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "LoRA rank r.") var loraR = 16
    @Option(parsing: .unconditional, help: "LoRA alpha (scale alpha / r).") var loraAlpha: Float = 32
    @Option(parsing: .unconditional, help: "Dropout on the adapters' input.") var loraDropout: Float = 0.05
    @Option(help: "all-linear, or a comma-separated list of q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj.")
    var targetModules = "all-linear"
    @Flag(help: "rsLoRA: scale alpha / sqrt(r).") var useRslora = false
    @Flag(help: "LoRA-FA: keep A at its initial value and train B only.") var loraFa = false
    @Option(help: "Start from this PEFT adapter directory (its r, alpha and target modules are used).")
    var initAdapter: String?

    func targets() throws -> Set<Projection> {
        if targetModules == "all-linear" { return Set(Projection.allCases) }
        var result: Set<Projection> = []
        for name in targetModules.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            guard let projection = Projection(rawValue: name) else {
                throw ValidationError("--target-modules: '\(name)' is not one of all-linear, \(Projection.allCases.map(\.rawValue).joined(separator: ", ")).")
            }
            result.insert(projection)
        }
        guard !result.isEmpty else { throw ValidationError("--target-modules is empty.") }
        return result
    }
}

struct OptimOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Peak learning rate.") var lr = 2e-4
    @Option(help: "constant, linear or cosine (after warm-up).") var lrSchedule = LearningRateSchedule.cosine
    @Option(parsing: .unconditional, help: "Linear warm-up steps.") var warmupSteps = 0
    @Option(parsing: .unconditional, help: "AdamW decoupled weight decay.") var weightDecay = 0.0
    @Option(parsing: .unconditional, help: "Clip the gradients' global L2 norm to this (0: no clipping).") var maxGradNorm = 1.0
}

struct MemoryOptions: ParsableArguments {
    @Option(help: "Peak RSS the run may use, e.g. 2GiB, 800MiB.") var memBudget: String
    @Option(help: "Directory of the optimizer's spill file (default $TMPDIR or /tmp).") var spillDir: String?
    @Option(help: "RAM for the optimizer state, e.g. 64MiB (default: the planner decides).") var optimResidentBytes: String?
    @Option(help: "auto (the planner decides), on or off.") var gradientCheckpointing = CheckpointingMode.auto
}

struct RunOptions: ParsableArguments {
    @Option(help: "Directory for the adapter, checkpoints and a quantized copy of a float model.") var output: String
    @Option(parsing: .unconditional, help: "Sequences per step (split into micro-batches when memory needs it).") var batchSize = 4
    @Option(parsing: .unconditional, help: "Steps of gradients accumulated per optimizer step.") var gradAccum = 1
    @Option(parsing: .unconditional, help: "Tokens per sequence.") var seqLen = 512
    @Option(parsing: .unconditional, help: "Optimizer steps (default: --epochs 1); with --resume, a new total extends the run.") var maxSteps: Int?
    @Option(parsing: .unconditional, help: "Passes over the training data.") var epochs: Double?
    @Flag(help: "Allow --batch-size x --grad-accum to exceed the rows the data packs into (rows repeat within a step).")
    var repeatData = false
    @Option(parsing: .unconditional, help: "Seed of the adapters' initialisation, the shuffle, the split and dropout.") var seed: UInt64 = 0
    @Flag(help: "Keep the data in file order.") var noShuffle = false
    @Option(parsing: .unconditional, help: "Evaluate every N steps (default: 5 times per run).") var evalEvery: Int?
    @Option(parsing: .unconditional, help: "Save a checkpoint every N steps (default 100) and at the end.") var saveEvery: Int?
    @Option(help: "Resume from a checkpoint directory, or from the newest one in an output directory.") var resume: String?
    @Option(help: "Write per-step metrics here (JSONL).") var metrics: String?
    @Option(help: "A prompt to answer greedily before and after training (repeatable).") var samplePrompt: [String] = []
    @Option(parsing: .unconditional, help: "Most tokens per sample answer.") var sampleTokens = 48
}

extension LearningRateSchedule: ExpressibleByArgument {}
extension CheckpointingMode: ExpressibleByArgument {}
