// The training loop: prepares the model (quantizing it when needed), reads the data, plans the
// memory (refusing before any weight is loaded when nothing fits), then steps: forward and backward
// over micro-batches, paged AdamW, metrics, evaluation, checkpoints, and the governor's checks.
// Resuming, the settings a resume must share and the schedule's length are in Trainer+Resume.swift.
import Foundation
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
    /// run after the current phase or micro-batch (a partial step is discarded), saving a checkpoint
    /// of the last complete step when it was not saved yet (the summary says `interrupted`).
    public func run(events: (TrainEvent) -> TrainDisposition) throws(TrainError) -> TrainSummary {
        let start = Date()
        var stopRequested = false
        func emit(_ event: TrainEvent) {
            if events(event) == .stop { stopRequested = true }
        }
        try OutputChecks.checkPaths(config)
        try OutputChecks.probe(config)
        var outputLock: LockFile?
        defer { withExtendedLifetime(outputLock) {} }  // held until the run returns, not only until its last use
        /// Creates and locks --output before anything is written into it.
        func openOutput() throws(TrainError) {
            guard outputLock == nil else { return }
            do {
                try FileManager.default.createDirectory(atPath: config.output, withIntermediateDirectories: true)
            } catch { throw .output(.cannotCreateDirectory(path: config.output, errno: errno)) }
            do { outputLock = try LockFile(directory: config.output) } catch { throw .locked(what: "--output \(config.output)", error) }
            // Another run may have finished into it between the first check and the lock.
            try OutputChecks.checkOutput(config.output, resuming: OutputChecks.resumesInPlace(config))
            AtomicOutput.removeStalePartials(in: config.output) { $0.hasPrefix(TrainingCheckpoint.prefix) }
        }
        let modelDirectory = try ModelPreparation.prepare(config: config, beforeWriting: openOutput) { emit($0) }
        let shape = try ModelPreparation.shape(directory: modelDirectory)
        let data = try TrainingData.load(config: config, modelDirectory: modelDirectory, vocabularySize: shape.vocabSize)
        ProcessMemory.returnFreedMemory()
        let loaded = ProcessMemory.current()
        emit(.dataLoaded(train: data.trainSummary, valid: data.validSummary, validPath: data.validSource))

        var resumed: (state: TrainerState, path: String)?
        if let resume = config.resume {
            let opened = try TrainingCheckpoint.open(resume)
            for note in opened.notes { emit(.notice(note)) }
            resumed = (opened.state, opened.path)
        }
        var lora = config.lora
        if let initAdapter = config.initAdapter {
            do {
                let peft = try PEFTAdapterConfig(directory: initAdapter)
                (lora.rank, lora.alpha, lora.useRSLoRA, lora.targets) = (peft.rank, peft.alpha, peft.useRSLoRA, peft.targets)
            } catch { throw .model("\(error)") }
        }
        let settings = settings(lora: lora, modelDirectory: modelDirectory)
        if let resumed { try checkSettings(resumed.state.settings, against: settings, checkpoint: resumed.path) }
        let rowsPerStep = config.batchSize * config.gradAccum
        try checkRowsPerStep(rowsPerStep, data: data)
        let schedule = try totalSteps(trainSequences: data.trainSequenceCount, resumed: resumed?.state)
        if let note = schedule.note { emit(.notice(note)) }
        let totalSteps = schedule.total

        // The plan, before the weights are loaded.
        let weightBytes: WeightBytes
        do { weightBytes = try LlamaWeights.mappedBytes(directory: modelDirectory, layers: shape.layers) } catch { throw .model("\(error)") }
        var inputs = PlannerInputs(
            shape: shape, weightBytes: weightBytes, lora: lora,
            trainableCount: LoRAAdapters.trainableCount(shape: shape, config: lora),
            batchSize: config.batchSize, seqLen: config.seqLen, processBytes: loaded.residentBytes,
            sampleSeqLen: config.samplePrompts.isEmpty || !data.canSample ? nil : Sampler.seqLen(config: config, data: data),
            checkpointing: config.checkpointing == .auto ? nil : config.checkpointing == .on, optimizerResidentBytes: config.optimizerResidentBytes)
        inputs.loadingPeakBytes = loaded.peakBytes
        inputs.blasThreads = (try? BLAS.threads()) ?? 1
        if let choices = resumed?.state.choices {
            inputs.checkpointing = choices.gradientCheckpointing
            inputs.microBatch = choices.microBatch
            inputs.logitsChunkBytes = choices.logitsChunkBytes
        }
        let plan = MemoryPlanner.plan(inputs, budget: config.memoryBudget)
        guard plan.fits else { throw .budgetTooSmall(smallest: plan, hint: MemoryPlanner.hint(plan, inputs: inputs)) }
        emit(.plan(plan))
        if let problem = OutputChecks.spillProblem(config.spillDirectory) {
            if plan.choices.optimizerResidentBytes != nil { throw .optimizer(problem) }
            emit(.notice("\(problem); nothing is planned to spill, so the run goes on (should memory run short, only weight pages can be given back)"))
        }
        try openOutput()
        // A pending step's line is written when its evaluation is finished (again, if a kill came between).
        let metrics = try MetricsLog(path: config.metricsPath,
                                     truncateAfter: resumed.map { $0.state.step - ($0.state.pendingEvaluation == nil ? 0 : 1) } ?? 0)

        // Load and lay out; what is resumed is verified finite as it is read.
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
        let sampler = inputs.sampleSeqLen.map { Sampler(weights: weights, adapters: adapters, seqLen: $0, data: data, maxTokens: config.sampleTokens) }
        sampler?.model.layerDone = model.layerDone
        /// The sample answers of `phase`, until a stop.
        func sample(_ sampler: Sampler, phase: SamplePhase) {
            for prompt in config.samplePrompts where !stopRequested {
                let answer = sampler.answer(prompt) { tokens in
                    emit(.progress(TrainProgress(phase: .sampling, step: state.step, done: tokens, total: config.sampleTokens)))
                    return !stopRequested
                }
                if let answer { emit(.sample(phase: phase, prompt: prompt, answer: answer)) }
            }
        }

        var state = resumed?.state ?? TrainerState(step: 0, totalSteps: totalSteps, dataPosition: 0, seed: config.seed, choices: choices,
                                                   settings: settings, evalLosses: [:])
        state.choices = choices
        state.totalSteps = totalSteps
        state.settings = settings
        if let resumed { emit(.resumed(step: state.step, checkpoint: resumed.path)) }
        if resumed == nil, !stopRequested, let sampler {
            sample(sampler, phase: .before)
        }
        // The newest checkpoint known whole: verified when resumed from, or written (from finite values) by this run.
        var lastCheckpoint = resumed?.path
        var savedStep = resumed?.state.step
        var summary = TrainSummary(steps: totalSteps, firstLoss: nil, lastLoss: nil, firstEvalLoss: state.evalLosses[0], lastEvalLoss: nil,
                                   tokens: 0, seconds: 0, peakRSSBytes: 0, budget: config.memoryBudget,
                                   adapterDirectory: config.output, interrupted: false, lastCheckpoint: lastCheckpoint)
        var evaluationInterrupted = false
        /// The eval loss after `state.step`, nil when there is none or a stop interrupted it (then
        /// `evaluationInterrupted` is set).
        func evaluate() throws(TrainError) -> Double? {
            guard data.hasValidation else { return nil }
            let loss = data.validationLoss(model: model) { done, total in
                emit(.progress(TrainProgress(phase: .evaluation, step: state.step, done: done, total: total)))
                return !stopRequested
            }
            guard let loss else {
                evaluationInterrupted = stopRequested
                return nil
            }
            guard loss.isFinite else { throw .nonFinite(what: "the eval loss", step: state.step, lastCheckpoint: lastCheckpoint) }
            state.evalLosses[state.step] = loss
            emit(.evaluation(step: state.step, loss: loss))
            return loss
        }
        /// Saves a checkpoint of `state`, refusing values that are not finite.
        func saveCheckpoint() throws(TrainError) {
            if let bad = adapters.firstNonFiniteValue() {
                throw .nonFinite(what: "the adapter value \(bad.key)[\(bad.index)]", step: state.step, lastCheckpoint: lastCheckpoint)
            }
            do {
                let saved = try TrainingCheckpoint.save(output: config.output, state: state, adapters: adapters, optimizer: optimizer,
                                                        baseModel: modelDirectory)
                lastCheckpoint = saved.path
                for path in saved.replacedNewer {
                    emit(.notice("removed \(path): it continued the run past step \(state.step) before this run resumed from an earlier checkpoint"))
                }
            } catch .optimizer(.nonFiniteState(let detail)) {
                throw .nonFinite(what: "the optimizer state (\(detail))", step: state.step, lastCheckpoint: lastCheckpoint)
            } catch .output(let error) {
                throw .saveFailed(step: state.step, reason: error.description, lastCheckpoint: lastCheckpoint)
            } catch .optimizer(.checkpoint(let path, let detail)) {
                throw .saveFailed(step: state.step, reason: pathMessage(path, detail), lastCheckpoint: lastCheckpoint)
            }
            savedStep = state.step
            emit(.saved(step: state.step, path: lastCheckpoint!))
        }
        if state.step == 0 && !stopRequested { summary.firstEvalLoss = try evaluate() }
        let evalEvery = config.evalEvery ?? max(1, totalSteps / 5)
        let saveEvery = config.saveEvery ?? 100
        /// Reports a finished step: evaluates when due, then writes its metrics; when a stop
        /// interrupts the evaluation, the metrics wait in the checkpoint for the resumed run.
        func finishStep(_ step: StepMetrics) throws(TrainError) {
            var figures = step
            if figures.step % evalEvery == 0 || figures.step == totalSteps { figures.evalLoss = try evaluate() }
            guard !evaluationInterrupted else {
                state.pendingEvaluation = figures
                return
            }
            state.pendingEvaluation = nil
            try metrics.append(figures)
            emit(.step(figures))
        }
        if let pending = state.pendingEvaluation, !stopRequested {
            try finishStep(pending)
            // The checkpoint must not ask a later resume to finish it again.
            if state.pendingEvaluation == nil { try saveCheckpoint() }
        }

        while state.step < totalSteps && !stopRequested {
            let stepStart = Date()
            let step = state.step + 1
            let micro = choices.microBatch, microBatches = rowsPerStep / micro
            let targets = data.trainTargetCount(position: state.dataPosition, rows: rowsPerStep)
            var lossSum = 0.0
            // One micro-batch at a time: a step of many rows never holds more than one batch of tokens.
            for index in 0..<microBatches {
                let batch = data.trainBatch(position: state.dataPosition + index * micro, rows: micro)
                if batch.targetCount > 0 {
                    let dropoutSeed = config.seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(step) << 20 &+ UInt64(index)
                    // A stop acts between layers: a micro-batch of a large model takes minutes.
                    let mean = model.forwardBackward(batch, lossScale: 1 / Float(targets), dropoutSeed: dropoutSeed) { done, total in
                        emit(.progress(TrainProgress(phase: .layers, step: step, done: done, total: total)))
                        return !stopRequested
                    }
                    guard let mean else { break }
                    lossSum += Double(mean) * Double(batch.targetCount)
                }
                if index + 1 < microBatches {
                    emit(.progress(TrainProgress(phase: .microBatches, step: step, done: index + 1, total: microBatches)))
                    if stopRequested { break }
                }
            }
            if stopRequested {
                adapters.zeroGradients()  // the partial step is dropped; the state is still that of the last complete step
                break
            }
            let loss = targets > 0 ? lossSum / Double(targets) : 0
            guard loss.isFinite else { throw .nonFiniteLoss(step: step, lastCheckpoint: lastCheckpoint) }
            let rate = config.schedule.rate(step: step, total: totalSteps, warmup: config.warmupSteps, peak: config.learningRate)
            let report: PagedAdamW.StepReport
            do throws(OptimizerError) {
                report = try optimizer.step(parameters: adapters.values, gradients: adapters.gradients, learningRate: rate)
            } catch {
                if case .nonFiniteGradient = error { throw .nonFiniteLoss(step: step, lastCheckpoint: lastCheckpoint) }
                throw .optimizer(error)
            }
            adapters.zeroGradients()
            state.step = step
            state.dataPosition += rowsPerStep
            let seconds = Date().timeIntervalSince(stepStart)
            summary.firstLoss = summary.firstLoss ?? loss
            summary.lastLoss = loss
            summary.tokens += targets
            let memory = ProcessMemory.current()
            summary.stepsRun += 1
            try finishStep(StepMetrics(step: step, totalSteps: totalSteps, loss: loss, learningRate: rate, gradNorm: report.gradientNorm,
                                       tokens: targets, tokensPerSecond: Double(rowsPerStep * config.seqLen) / max(seconds, 1e-9),
                                       rssBytes: memory.residentBytes, peakRSSBytes: memory.peakBytes, seconds: seconds, evalLoss: nil))
            if let action = governor.check() { emit(.governor(action)) }
            if step % saveEvery == 0 || step == totalSteps { try saveCheckpoint() }
        }
        if stopRequested && state.step > 0 && savedStep != state.step { try saveCheckpoint() }
        summary.lastEvalLoss = state.step > 0 ? state.evalLosses[state.step] : nil
        let finished = state.step >= totalSteps && state.pendingEvaluation == nil
        if finished {
            // Checked finite when its checkpoint was saved just before.
            do { try adapters.savePEFT(directory: config.output, baseModel: modelDirectory) } catch { throw .output(error) }
            if let sampler {
                sample(sampler, phase: .after)
            }
        }
        summary.interrupted = !finished
        summary.lastCheckpoint = lastCheckpoint
        summary.seconds = Date().timeIntervalSince(start)
        summary.peakRSSBytes = ProcessMemory.current().peakBytes
        emit(.finished(summary))
        return summary
    }

    /// A step must not hold a row twice unless the user asked for it.
    private func checkRowsPerStep(_ rows: Int, data: TrainingData) throws(TrainError) {
        let available = data.trainSequenceCount
        guard rows > available && !config.repeatData else { return }
        throw .data("--batch-size \(config.batchSize) x --grad-accum \(config.gradAccum) = \(rows) rows per step, but \(config.trainData) "
                    + "packs into \(available) training rows of --seq-len \(config.seqLen), so each step would see rows more than once. "
                    + "Lower --batch-size (at most \(available) with --grad-accum 1), or pass --repeat-data to allow it")
    }
}
