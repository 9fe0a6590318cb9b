// The training loop: prepares the model (quantizing it when needed), reads the data, plans the
// memory (refusing before any weight is loaded when nothing fits), then steps: forward and backward
// over micro-batches, paged AdamW, metrics, evaluation, checkpoints, and the governor's checks.
import Foundation
import QLoRAConvert
import QLoRAIO
import QLoRAKernels
import QLoRAModel
import QLoRAOptim

public final class Trainer {
    public let config: TrainConfig

    public init(config: TrainConfig) {
        self.config = config
    }

    /// Runs the whole job. Every event goes to `events`; answering `.stop` to any of them ends the
    /// run after the current phase or step, saving a checkpoint when a step was done since the last
    /// one (the summary says `interrupted`).
    public func run(events: (TrainEvent) -> TrainDisposition) throws(TrainError) -> TrainSummary {
        let start = Date()
        var stopRequested = false
        func emit(_ event: TrainEvent) {
            if events(event) == .stop { stopRequested = true }
        }
        try ModelPreparation.checkOutput(config.output, resuming: config.resume != nil)
        let modelDirectory = try ModelPreparation.prepare(config: config) { emit($0) }
        let shape = try ModelPreparation.shape(directory: modelDirectory)
        let data = try TrainingData.load(config: config, modelDirectory: modelDirectory, vocabularySize: shape.vocabSize)
        emit(.dataLoaded(train: data.trainSummary, valid: data.validSummary, validPath: data.validSource))

        var resumed: (state: TrainerState, path: String)?
        if let resume = config.resume {
            let path = try TrainingCheckpoint.resolve(resume)
            let state = try TrainerState(path: path + "/" + TrainingCheckpoint.stateFile)
            resumed = (state, path)
        }
        var lora = config.lora
        if let initAdapter = config.initAdapter {
            do {
                let peft = try PEFTAdapterConfig(directory: initAdapter)
                (lora.rank, lora.alpha, lora.useRSLoRA, lora.targets) = (peft.rank, peft.alpha, peft.useRSLoRA, peft.targets)
            } catch { throw .model("\(error)") }
        }
        if let resumed { try checkSettings(resumed.state.settings, against: settings(lora: lora), checkpoint: resumed.path) }
        let rowsPerStep = config.batchSize * config.gradAccum
        let epochSteps = ((config.epochs ?? 1) * Double(data.trainSequenceCount) / Double(rowsPerStep)).rounded(.up)
        let totalSteps = resumed?.state.totalSteps ?? config.maxSteps ?? max(1, Int(epochSteps))

        // The plan, before the weights are loaded.
        let weightBytes: WeightBytes
        do { weightBytes = try LlamaWeights.mappedBytes(directory: modelDirectory, layers: shape.layers) } catch { throw .model("\(error)") }
        var inputs = PlannerInputs(
            shape: shape, weightBytes: weightBytes, lora: lora,
            trainableCount: LoRAAdapters.trainableCount(shape: shape, config: lora),
            batchSize: config.batchSize, seqLen: config.seqLen, processBytes: ProcessMemory.current().residentBytes,
            sampleSeqLen: config.samplePrompts.isEmpty || !data.canSample ? nil : Sampler.seqLen(config: config, data: data),
            checkpointing: config.checkpointing == .auto ? nil : config.checkpointing == .on, optimizerResidentBytes: config.optimizerResidentBytes)
        if let choices = resumed?.state.choices {
            inputs.checkpointing = choices.gradientCheckpointing
            inputs.microBatch = choices.microBatch
            inputs.logitsChunkBytes = choices.logitsChunkBytes
        }
        let plan = MemoryPlanner.plan(inputs, budget: config.memoryBudget)
        guard plan.fits else { throw .budgetTooSmall(smallest: plan, hint: MemoryPlanner.hint(plan, inputs: inputs)) }
        emit(.plan(plan))

        // Load and lay out.
        let weights: LlamaWeights
        do { weights = try LlamaWeights(directory: modelDirectory) } catch { throw .model("\(error)") }
        let adapters = LoRAAdapters(shape: shape, config: lora)
        do {
            if let resumed {
                try adapters.load(peftFile: resumed.path + "/adapter_model.safetensors")
            } else if let initAdapter = config.initAdapter {
                try adapters.load(peftFile: initAdapter + "/adapter_model.safetensors")
            }
        } catch { throw .model("\(error)") }
        let choices = plan.choices
        let model = LlamaModel(weights: weights, adapters: adapters, options: ModelLayoutOptions(
            batch: choices.microBatch, seqLen: config.seqLen, gradientCheckpointing: choices.gradientCheckpointing,
            logitsChunkBytes: choices.logitsChunkBytes))
        let optimizer: PagedAdamW
        do {
            optimizer = try PagedAdamW(trainable: adapters.trainableRanges, parameterCount: adapters.parameterCount, config: PagedAdamWConfig(
                adamW: AdamWConfig(learningRate: config.learningRate, weightDecay: config.weightDecay), maxGradNorm: config.maxGradNorm,
                residentBytes: choices.optimizerResidentBytes, spillDirectory: config.spillDirectory))
            if let resumed { try optimizer.restore(from: resumed.path + "/" + TrainingCheckpoint.optimizerFile) }
        } catch { throw .optimizer(error) }
        let governor = MemoryGovernor(budget: config.memoryBudget, plan: plan, optimizer: optimizer)
        model.layerDone = { [governor, weights] layer in if governor.releaseWeightPages { weights.releaseLayer(layer) } }
        do {
            try FileManager.default.createDirectory(atPath: config.output, withIntermediateDirectories: true)
        } catch { throw .output(.cannotCreateDirectory(path: config.output, errno: errno)) }
        AtomicOutput.removeStalePartials(in: config.output) { $0.hasPrefix(TrainingCheckpoint.prefix) }
        let metrics = try MetricsLog(path: config.metricsPath, truncateAfter: resumed?.state.step ?? 0)
        let sampler = inputs.sampleSeqLen.map { Sampler(weights: weights, adapters: adapters, seqLen: $0, data: data, maxTokens: config.sampleTokens) }
        sampler?.model.layerDone = model.layerDone

        var state = resumed?.state ?? TrainerState(step: 0, totalSteps: totalSteps, dataPosition: 0, seed: config.seed, choices: choices,
                                                   settings: settings(lora: lora), evalLosses: [:])
        state.choices = choices
        if let resumed { emit(.resumed(step: state.step, checkpoint: resumed.path)) }
        if resumed == nil, !stopRequested, let sampler {
            for prompt in config.samplePrompts { emit(.sample(phase: .before, prompt: prompt, answer: sampler.answer(prompt))) }
        }
        var lastCheckpoint = resumed?.path
        var summary = TrainSummary(steps: totalSteps, firstLoss: nil, lastLoss: nil, firstEvalLoss: state.evalLosses[0], lastEvalLoss: nil,
                                   tokens: 0, seconds: 0, peakRSSBytes: 0, budget: config.memoryBudget,
                                   adapterDirectory: config.output, interrupted: false)
        func evaluate() -> Double? {
            guard data.hasValidation, let loss = data.validationLoss(model: model) else { return nil }
            state.evalLosses[state.step] = loss
            emit(.evaluation(step: state.step, loss: loss))
            return loss
        }
        if state.step == 0 && !stopRequested { summary.firstEvalLoss = evaluate() }
        let evalEvery = config.evalEvery ?? max(1, totalSteps / 5)
        let saveEvery = config.saveEvery ?? 100

        while state.step < totalSteps && !stopRequested {
            let stepStart = Date()
            state.step += 1
            let batches = (0..<rowsPerStep / choices.microBatch).map { data.trainBatch(position: state.dataPosition + $0 * choices.microBatch, rows: choices.microBatch) }
            let targets = batches.reduce(0) { $0 + $1.targetCount }
            var lossSum = 0.0
            for (index, batch) in batches.enumerated() where batch.targetCount > 0 {
                let dropoutSeed = config.seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(state.step) << 20 &+ UInt64(index)
                let mean = model.forwardBackward(batch, lossScale: 1 / Float(targets), dropoutSeed: dropoutSeed)
                lossSum += Double(mean) * Double(batch.targetCount)
            }
            let loss = targets > 0 ? lossSum / Double(targets) : 0
            guard loss.isFinite else { throw .nonFiniteLoss(step: state.step, lastCheckpoint: lastCheckpoint) }
            let rate = config.schedule.rate(step: state.step, total: totalSteps, warmup: config.warmupSteps, peak: config.learningRate)
            let report: PagedAdamW.StepReport
            do throws(OptimizerError) {
                report = try optimizer.step(parameters: adapters.values, gradients: adapters.gradients, learningRate: rate)
            } catch {
                if case .nonFiniteGradient = error { throw .nonFiniteLoss(step: state.step, lastCheckpoint: lastCheckpoint) }
                throw .optimizer(error)
            }
            adapters.zeroGradients()
            state.dataPosition += rowsPerStep
            let seconds = Date().timeIntervalSince(stepStart)
            summary.firstLoss = summary.firstLoss ?? loss
            summary.lastLoss = loss
            summary.tokens += targets
            let memory = ProcessMemory.current()
            var figures = StepMetrics(step: state.step, totalSteps: totalSteps, loss: loss, learningRate: rate, gradNorm: report.gradientNorm,
                                      tokens: targets, tokensPerSecond: Double(rowsPerStep * config.seqLen) / max(seconds, 1e-9),
                                      rssBytes: memory.residentBytes, peakRSSBytes: memory.peakBytes, seconds: seconds, evalLoss: nil)
            if state.step % evalEvery == 0 || state.step == totalSteps { figures.evalLoss = evaluate() }
            try metrics.append(figures)
            emit(.step(figures))
            if let action = governor.check() { emit(.governor(action)) }
            if state.step % saveEvery == 0 || state.step == totalSteps || stopRequested {
                lastCheckpoint = try TrainingCheckpoint.save(output: config.output, state: state, adapters: adapters, optimizer: optimizer,
                                                             baseModel: modelDirectory)
                emit(.saved(step: state.step, path: lastCheckpoint!))
            }
        }
        summary.lastEvalLoss = state.evalLosses[state.step]
        if state.step >= totalSteps {
            do { try adapters.savePEFT(directory: config.output, baseModel: modelDirectory) } catch { throw .output(error) }
            if let sampler {
                for prompt in config.samplePrompts { emit(.sample(phase: .after, prompt: prompt, answer: sampler.answer(prompt))) }
            }
        }
        summary.interrupted = state.step < totalSteps
        summary.seconds = Date().timeIntervalSince(start)
        summary.peakRSSBytes = ProcessMemory.current().peakBytes
        emit(.finished(summary))
        return summary
    }

    /// The settings that decide the arithmetic of a step and the data it sees (with the LoRA shape
    /// in effect, an `--init-adapter`'s); a resumed run must use the same.
    private func settings(lora l: LoRAConfig) -> [String: String] {
        let c = config
        return [
            "model": c.model, "train_data": c.trainData, "seq_len": "\(c.seqLen)", "batch_size": "\(c.batchSize)", "grad_accum": "\(c.gradAccum)",
            "lr": "\(c.learningRate)", "lr_schedule": c.schedule.rawValue, "warmup_steps": "\(c.warmupSteps)", "weight_decay": "\(c.weightDecay)",
            "max_grad_norm": c.maxGradNorm.map { "\($0)" } ?? "none", "lora_r": "\(l.rank)", "lora_alpha": "\(l.alpha)",
            "lora_dropout": "\(l.dropout)", "target_modules": l.orderedTargets.map(\.rawValue).joined(separator: ","),
            "use_rslora": "\(l.useRSLoRA)", "lora_fa": "\(l.freezeA)", "seed": "\(c.seed)", "shuffle": "\(c.shuffle)", "packing": "\(c.packing)",
            "truncate": "\(c.truncate)", "skip_bad_rows": "\(c.skipBadRows)", "chat_template": c.chatTemplate,
            "valid_data": c.validData ?? "none", "valid_fraction": c.validData == nil ? "\(c.validFraction)" : "none",
            "init_adapter": c.initAdapter ?? "none",
        ]
    }

    private func checkSettings(_ saved: [String: String], against now: [String: String], checkpoint: String) throws(TrainError) {
        for key in now.keys.sorted() where saved[key] != nil && saved[key] != now[key] {
            throw .checkpoint(path: checkpoint, detail: "was trained with \(key) = \(saved[key]!), this run has \(now[key]!); "
                              + "resume with the same flags (or start a new --output)")
        }
    }
}
