// The paged AdamW optimizer (QLoRAOptim) on the state of LoRA r=16, alpha 32, all seven projections
// of a synthetic NF4 model: a short real training run (the loss, and how well the state compresses
// as it fills), then for each page size the spill and restore throughput and the optimizer step's
// time with 0%, 50% and 100% of the state spilled, after checking bitwise against plain AdamW.
// Usage: optim-bench [--shape tinyllama-1.1b|llama-7b|llama-small] [--seq 64] [--batch 1] [--steps 100]
//                    [--cache DIR] [--spill-dir /tmp] [--checkpointing] [--runs 5] [--page-kib 64,256,1024,4096]
import BenchmarkModels
import BenchmarkSupport
import Foundation
import QLoRAIO
import QLoRAKernels
import QLoRAModel
import QLoRAOptim

let bench = Benchmark("optim-bench")
/// Files this run writes into the spill directory, removed at the end and on failure.
nonisolated(unsafe) var scratchFiles: [String] = []
func removeScratchFiles() { for path in scratchFiles { unlink(path) } }
func fail(_ message: String) -> Never {
    removeScratchFiles()
    bench.fail(message)
}

@discardableResult
func must<T>(_ what: String, _ body: () throws -> T) -> T {
    do { return try body() } catch { fail("\(what): \(error)") }
}

let shapeName = bench.option("--shape", "tinyllama-1.1b")
let seqLen = bench.intOption("--seq", 64), batchSize = bench.intOption("--batch", 1)
let steps = bench.intOption("--steps", 100), runs = bench.intOption("--runs", 5)
let cache = bench.option("--cache", SyntheticModel.defaultCache)
let spillDirectory = bench.option("--spill-dir", "/tmp")
let checkpointing = bench.flag("--checkpointing")
let pageSizes = bench.option("--page-kib", "64,256,1024,4096").split(separator: ",").map { text -> Int in
    guard let kib = Int(text), kib > 0, kib % 4 == 0 else { fail("--page-kib: '\(text)' is not a positive multiple of 4 KiB") }
    return kib << 10
}
guard seqLen > 1, batchSize > 0, steps > 0, runs > 0 else { fail("--seq must be at least 2; --batch, --steps and --runs positive") }
// LoRA r=16, alpha 32 on all seven projections; AdamW at lr 2e-4 with torch's other defaults,
// clip_grad_norm_ at 1.0: a usual QLoRA recipe.
let rank = 16, alpha: Float = 32, learningRate = 2e-4, maxGradNorm = 1.0
/// The training text: this many SplitMix64 tokens, repeated.
let streamLength = 2048
let surveySteps = Set([1, 10, 100].map { min($0, steps) })
do { try BLAS.load() } catch { fail("\(error)") }

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }
/// JSON has no infinity or NaN.
func finite(_ value: Double) -> Any { value.isFinite ? value : NSNull() }

@MainActor func optimizerConfig(pageBytes: Int, residentBytes: Int?) -> PagedAdamWConfig {
    PagedAdamWConfig(adamW: AdamWConfig(learningRate: learningRate), maxGradNorm: maxGradNorm, pageBytes: pageBytes,
                     residentBytes: residentBytes, spillDirectory: spillDirectory)
}

func surveyFields(_ survey: CompressionSurvey) -> [String: Any] {
    ["pages": survey.pages, "zero_pages": survey.zeroPages, "raw_pages": survey.rawPages, "compressed_pages": survey.compressedPages,
     "raw_bytes": survey.rawBytes, "stored_bytes": survey.storedBytes, "ratio": finite(survey.ratio)]
}

// MARK: - Training

/// What the training run leaves for the page-size measurements.
struct Training {
    var parameterCount = 0
    var losses: [Double] = []
    var forwardBackwardSeconds: [Double] = []
    var optimizerSeconds: [Double] = []
    var surveys: [[String: Any]] = []
    /// The adapters after the last step, and the last step's gradient (before clipping).
    var parameters: [Float] = []
    var gradient: [Float] = []
    var activationBytes = 0
    var rssBeforeLoad = 0
    var peakRSSTraining = 0
}

/// Trains LoRA adapters on the synthetic model for `steps` steps with PagedAdamW (1 MiB pages, all
/// resident) and saves the optimizer state to `checkpoint`. The model is released on return.
@MainActor func train(checkpoint: String) -> Training {
    let synthetic = bench.syntheticModel(shapeName, cache: cache)
    let shape = synthetic.weights.shape
    let adapters = LoRAAdapters(shape: shape, config: LoRAConfig(rank: rank, alpha: alpha, targets: Set(Projection.allCases), seed: 1))
    let model = LlamaModel(weights: synthetic.weights, adapters: adapters,
                           options: ModelLayoutOptions(batch: batchSize, seqLen: seqLen, gradientCheckpointing: checkpointing))
    let count = adapters.parameterCount
    let optimizer = must("optimizer") {
        try PagedAdamW(trainable: [0..<count], parameterCount: count, config: optimizerConfig(pageBytes: PagedAdamWConfig.defaultPageBytes, residentBytes: nil))
    }
    var result = Training(parameterCount: count, activationBytes: model.activationBytes, rssBeforeLoad: synthetic.rssBeforeLoad)
    bench.log("\(shapeName): \(count) LoRA parameters, \((count * 8) >> 20) MiB of AdamW state in \(optimizer.pageCount) pages of 1 MiB; \(steps) steps of \(batchSize)x\(seqLen) tokens")

    // A learnable text: a fixed random sequence repeated, cut into consecutive windows of seq + 1.
    var random = SplitMix64(seed: 7)
    let stream = (0..<streamLength).map { _ in Int32(random.next() % UInt64(shape.vocabSize)) }
    var position = 0
    for step in 1...steps {
        var tokens: [Int32] = [], targets: [Int32] = []
        for _ in 0..<batchSize {
            let window = (0...seqLen).map { stream[(position + $0) % streamLength] }
            position = (position + seqLen + 1) % streamLength
            tokens += window.dropLast()
            targets += window.dropFirst()
        }
        let batch = TokenBatch(batch: batchSize, seqLen: seqLen, tokens: tokens, targets: targets)
        let start = now()
        adapters.zeroGradients()
        let loss = model.forwardBackward(batch)
        let middle = now()
        let report = must("optimizer step \(step)") { try optimizer.step(parameters: adapters.values, gradients: adapters.gradients) }
        let end = now()
        guard loss.isFinite else { fail("step \(step): loss \(loss)") }
        result.losses.append(Double(loss))
        result.forwardBackwardSeconds.append(middle - start)
        result.optimizerSeconds.append(end - middle)
        var line = String(format: "step %d: loss %.4f, forward+backward %.3f s, optimizer %.1f ms, |g| %.3f", step, loss, middle - start,
                          (end - middle) * 1e3, report.gradientNorm)
        if surveySteps.contains(step) {
            let survey = must("compression survey") { try optimizer.compressionSurvey() }
            var fields = surveyFields(survey)
            fields["step"] = step
            fields["loss"] = Double(loss)
            result.surveys.append(fields)
            line += String(format: "; state compresses %.3fx (%d zero, %d raw, %d LZ4 pages)", survey.ratio, survey.zeroPages,
                           survey.rawPages, survey.compressedPages)
        }
        bench.log(line)
    }
    result.parameters = Array(UnsafeBufferPointer(start: adapters.values, count: count))
    result.gradient = Array(UnsafeBufferPointer(start: adapters.gradients, count: count))
    result.peakRSSTraining = ProcessMemory.statusBytes("VmHWM")
    must("saving the optimizer state") { try optimizer.save(to: checkpoint, metadata: ["benchmark": "optim-bench \(shapeName)"]) }
    return result
}

let checkpoint = spillDirectory + "/optim-bench-\(getpid()).safetensors"
let checkFile = spillDirectory + "/optim-bench-\(getpid())-check.safetensors"
scratchFiles = [checkpoint, checkFile]
let training = train(checkpoint: checkpoint)
let count = training.parameterCount
let stateBytes = count * 8
let forwardBackwardMedian = median(Array(training.forwardBackwardSeconds.dropFirst(steps > 1 ? 1 : 0)))
let trainingOptimizerMedian = median(Array(training.optimizerSeconds.dropFirst(steps > 1 ? 1 : 0)))
let lossWindow = max(1, min(10, steps / 4))
let lossStart = training.losses.prefix(lossWindow).reduce(0, +) / Double(lossWindow)
let lossEnd = training.losses.suffix(lossWindow).reduce(0, +) / Double(lossWindow)
bench.log(String(format: "loss %.4f -> %.4f (mean of the first and last %d steps: %.4f -> %.4f)%@", training.losses.first!,
                 training.losses.last!, lossWindow, lossStart, lossEnd, lossEnd < lossStart ? "" : "  WARNING: the loss did not fall"))

// MARK: - Reference: one plain AdamW step from the saved state

let stepNumber = steps + 1
var savedM = [Float](repeating: 0, count: count), savedV = savedM
do {
    let file = must("reading \(checkpoint)") { try SafetensorsFile(path: checkpoint) }
    guard file.metadata["step"] == String(steps) else { fail("\(checkpoint): step \(file.metadata["step"] ?? "none"), expected \(steps)") }
    for name in ["exp_avg", "exp_avg_sq"] {
        guard let tensor = file.tensor(named: name), tensor.dtype == .F32, tensor.shape == [count] else { fail("\(checkpoint): bad \(name)") }
        let source = file.data(of: tensor)
        if name == "exp_avg" {
            savedM.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: source, byteCount: count * 4) }
        } else {
            savedV.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: source, byteCount: count * 4) }
        }
    }
}

/// One step of plain AdamW (the flat kernel, no pages) from the saved state and the last gradient.
struct ReferenceStep {
    var norm: Double
    var scale: Float
    var parameters: [Float]
    var m: [Float]
    var v: [Float]

    /// `norm` is the optimizer's own gradientNorm: its summation order follows the page segments,
    /// so its last bits depend on the page size. The clipping is torch.nn.utils.clip_grad_norm_:
    /// clip_coef = max_norm / (total_norm + 1e-6), clamped to 1, in float32.
    @MainActor init(norm: Double) {
        self.norm = norm
        scale = min(Float(maxGradNorm) / (Float(norm) + 1e-6), 1)
        parameters = training.parameters
        m = savedM
        v = savedV
        adamWStep(&parameters, training.gradient, &m, &v, count: count, step: stepNumber,
                  config: AdamWConfig(learningRate: learningRate), gradientScale: scale)
    }
}

/// Fails unless `got` and `want` hold the same bits, listing the first differences (STYLE B6 comparators).
@MainActor func checkBitwise(_ what: String, _ got: UnsafeRawPointer, _ want: [Float]) {
    if want.withUnsafeBytes({ memcmp(got, $0.baseAddress!, $0.count) }) == 0 { return }
    let values = got.assumingMemoryBound(to: Float.self)
    var differing = 0, worst = 0, worstAbs: Float = 0, first: [String] = []
    for i in 0..<want.count where values[i].bitPattern != want[i].bitPattern {
        differing += 1
        if first.count < 5 { first.append("[\(i)] \(values[i]) vs \(want[i])") }
        let difference = abs(values[i] - want[i])
        if !(difference <= worstAbs) { (worst, worstAbs) = (i, difference) }
    }
    fail("\(what): \(differing) of \(want.count) values differ from plain AdamW (max abs \(worstAbs) at \(worst)); first: \(first.joined(separator: ", "))")
}

/// Checks one step of `optimizer` (restored from the checkpoint) against the reference: the
/// parameters, the step report and, through a saved copy, both moments.
@MainActor func checkStep(_ optimizer: PagedAdamW, _ what: String, against reference: ReferenceStep) {
    var parameters = training.parameters
    let report = must("\(what) step") { try optimizer.step(parameters: &parameters, gradients: training.gradient) }
    guard report.gradientNorm == reference.norm, report.clipScale == reference.scale else {
        fail("\(what): gradient norm \(report.gradientNorm) and clip scale \(report.clipScale), expected \(reference.norm) and \(reference.scale)")
    }
    parameters.withUnsafeBytes { checkBitwise("\(what): parameters", $0.baseAddress!, reference.parameters) }
    must("\(what): saving the state") { try optimizer.save(to: checkFile) }
    let file = must("reading \(checkFile)") { try SafetensorsFile(path: checkFile) }
    guard file.metadata["step"] == String(stepNumber) else { fail("\(what): the saved state is at step \(file.metadata["step"] ?? "none"), expected \(stepNumber)") }
    for (name, want) in [("exp_avg", reference.m), ("exp_avg_sq", reference.v)] {
        guard let tensor = file.tensor(named: name), tensor.shape == [count] else { fail("\(what): the saved state has no \(name) of \(count)") }
        checkBitwise("\(what): \(name)", file.data(of: tensor), want)
    }
    unlink(checkFile)
}

// MARK: - Page sizes

/// Median time and stall of `runs` optimizer steps after one warm-up, `prepare` (untimed) before each.
@MainActor func timeSteps(_ optimizer: PagedAdamW, _ parameters: UnsafeMutablePointer<Float>, _ what: String,
               prepare: () -> Void = {}) -> (median: Double, fields: [String: Any]) {
    prepare()
    must("\(what) warm-up step") { try optimizer.step(parameters: parameters, gradients: training.gradient) }
    optimizer.resetStatistics()
    var times: [Double] = [], stalls: [Double] = []
    for _ in 0..<runs {
        prepare()
        let start = now()
        let report = must("\(what) step") { try optimizer.step(parameters: parameters, gradients: training.gradient) }
        times.append(now() - start)
        stalls.append(report.stallSeconds)
    }
    let statistics = optimizer.statistics
    let fields: [String: Any] = [
        "step_seconds_median": median(times), "step_seconds_min": times.min()!, "step_seconds_max": times.max()!,
        "stall_seconds_median": median(stalls), "resident_page_limit": optimizer.residentPageLimit,
        "pages_restored_per_step": Double(statistics.pagesRestored) / Double(runs),
        "pages_spilled_per_step": Double(statistics.pagesSpilled) / Double(runs),
    ]
    bench.log(String(format: "  %@: %.2f ms/step (min %.2f, max %.2f), stall %.2f ms, %.1f pages restored per step", what,
                     median(times) * 1e3, times.min()! * 1e3, times.max()! * 1e3, median(stalls) * 1e3,
                     Double(statistics.pagesRestored) / Double(runs)))
    return (median(times), fields)
}

var pageResults: [[String: Any]] = []
var spillInMemory = false
let working = UnsafeMutablePointer<Float>.allocate(capacity: count)

for pageBytes in pageSizes {
    bench.log("page size \(pageBytes >> 10) KiB:")
    let optimizer = must("optimizer") { try PagedAdamW(trainable: [0..<count], parameterCount: count, config: optimizerConfig(pageBytes: pageBytes, residentBytes: nil)) }
    must("restoring \(checkpoint)") { try optimizer.restore(from: checkpoint) }
    let survey = must("compression survey") { try optimizer.compressionSurvey() }
    bench.log(String(format: "  %d pages, state compresses %.3fx (%d zero, %d raw, %d LZ4)", survey.pages, survey.ratio, survey.zeroPages,
                     survey.rawPages, survey.compressedPages))

    // Correctness first: from the saved state and the last gradient, one step all resident and one
    // step with every page spilled must both equal plain AdamW bitwise.
    let reference = ReferenceStep(norm: optimizer.gradientNorm(training.gradient))
    checkStep(optimizer, "resident step", against: reference)
    let minimalBudget = (optimizer.config.prefetchPages + 1) * pageBytes
    do {
        let spilled = must("optimizer") { try PagedAdamW(trainable: [0..<count], parameterCount: count, config: optimizerConfig(pageBytes: pageBytes, residentBytes: minimalBudget)) }
        must("restoring \(checkpoint)") { try spilled.restore(from: checkpoint) }
        must("evictAll") { try spilled.evictAll() }
        guard spilled.residentPages == 0 else { fail("\(spilled.residentPages) pages resident after evictAll") }
        checkStep(spilled, "100%-spilled step", against: reference)
        spillInMemory = spilled.spillIsInMemory
    }
    bench.log("  one step resident and one 100% spilled both equal plain AdamW bitwise (parameters and moments)")
    for i in 0..<count { working[i] = reference.parameters[i] }

    // 0% spilled.
    let (resident, residentFields) = timeSteps(optimizer, working, "0% spilled")

    // Spill everything.
    optimizer.resetStatistics()
    let rssBefore = ProcessMemory.statusBytes("VmRSS"), anonBefore = ProcessMemory.statusBytes("RssAnon")
    var start = now()
    must("evictAll") { try optimizer.evictAll() }
    let spillWall = now() - start
    let rssAfter = ProcessMemory.statusBytes("VmRSS"), anonAfter = ProcessMemory.statusBytes("RssAnon")
    let spilled = optimizer.statistics
    bench.log(String(format: "  evictAll: %.1f ms, encoding %.2f GB/s of state (wall %.2f GB/s), stored %.1f%% of %d MiB; VmRSS %.0f -> %.0f MiB",
                     spillWall * 1e3, Double(spilled.bytesSpilled) / spilled.spillSeconds / 1e9, Double(spilled.bytesSpilled) / spillWall / 1e9,
                     Double(spilled.bytesStored) / Double(spilled.bytesSpilled) * 100, spilled.bytesSpilled >> 20,
                     Double(rssBefore) / 1048576, Double(rssAfter) / 1048576))
    let spillFields: [String: Any] = [
        "wall_seconds": spillWall, "worker_seconds": spilled.spillSeconds, "pages": spilled.pagesSpilled,
        "bytes_spilled": spilled.bytesSpilled, "bytes_stored": spilled.bytesStored,
        "GBps_worker": finite(Double(spilled.bytesSpilled) / spilled.spillSeconds / 1e9), "GBps_wall": finite(Double(spilled.bytesSpilled) / spillWall / 1e9),
        "vm_rss_before_bytes": rssBefore, "vm_rss_after_bytes": rssAfter, "rss_anon_before_bytes": anonBefore, "rss_anon_after_bytes": anonAfter,
    ]

    // Bring everything back with one step (the budget is still all pages).
    optimizer.resetStatistics()
    start = now()
    let restoreReport = must("restoring step") { try optimizer.step(parameters: working, gradients: training.gradient) }
    let restoreWall = now() - start
    let restored = optimizer.statistics
    let rssRestored = ProcessMemory.statusBytes("VmRSS")
    bench.log(String(format: "  restoring step: %.1f ms (stall %.1f ms), decoding %.2f GB/s of state; VmRSS back to %.0f MiB",
                     restoreWall * 1e3, restoreReport.stallSeconds * 1e3, Double(restored.bytesRestored) / restored.restoreSeconds / 1e9,
                     Double(rssRestored) / 1048576))
    let restoreFields: [String: Any] = [
        "step_wall_seconds": restoreWall, "worker_seconds": restored.restoreSeconds, "stall_seconds": restoreReport.stallSeconds,
        "pages": restored.pagesRestored, "bytes_restored": restored.bytesRestored,
        "GBps_worker": finite(Double(restored.bytesRestored) / restored.restoreSeconds / 1e9), "vm_rss_after_bytes": rssRestored,
    ]

    // 50% spilled, steady state; then 100% spilled (all evicted before each step, untimed).
    let half = max(1, optimizer.pageCount / 2)
    must("setResidentBytes") { try optimizer.setResidentBytes(half * pageBytes) }
    let (halfSpilled, halfFields) = timeSteps(optimizer, working, "50% spilled")
    must("setResidentBytes") { try optimizer.setResidentBytes(minimalBudget) }
    let (allSpilled, allFields) = timeSteps(optimizer, working, "100% spilled") { must("evictAll") { try optimizer.evictAll() } }

    let overheadOptimizer = ["50": (halfSpilled - resident) / resident, "100": (allSpilled - resident) / resident]
    let overheadTraining = ["50": (halfSpilled - resident) / (forwardBackwardMedian + resident),
                            "100": (allSpilled - resident) / (forwardBackwardMedian + resident)]
    bench.log(String(format: "  overhead: optimizer step +%.1f%% / +%.1f%% (50%% / 100%% spilled), training step +%.2f%% / +%.2f%%",
                     overheadOptimizer["50"]! * 100, overheadOptimizer["100"]! * 100, overheadTraining["50"]! * 100, overheadTraining["100"]! * 100))
    pageResults.append([
        "page_bytes": pageBytes, "pages": optimizer.pageCount, "survey": surveyFields(survey),
        "gradient_norm": reference.norm, "clip_scale": Double(reference.scale),
        "check": "one step resident and one step 100% spilled, from the saved state and the last gradient, equal plain AdamW bitwise (parameters, exp_avg, exp_avg_sq)",
        "spill": spillFields, "restore": restoreFields,
        "step": ["0": residentFields, "50": halfFields, "100": allFields],
        "overhead_optimizer_step": overheadOptimizer, "overhead_training_step": overheadTraining,
    ])
}
removeScratchFiles()
working.deallocate()

bench.report([
    "shape": shapeName, "seq": seqLen, "batch": batchSize, "steps": steps, "runs": runs, "rank": rank, "alpha": Double(alpha),
    "targets": "all", "learning_rate": learningRate, "max_grad_norm": maxGradNorm, "prefetch_pages": PagedAdamWConfig().prefetchPages,
    "gradient_checkpointing": checkpointing, "base": "nf4 (double quant)", "token_stream": "\(streamLength) SplitMix64(7) tokens repeated, consecutive windows of seq+1",
    "lora_parameters": count, "state_bytes": stateBytes, "spill_dir": spillDirectory, "spill_in_memory": spillInMemory,
    "training": [
        "losses": training.losses, "loss_first": training.losses.first!, "loss_last": training.losses.last!,
        "loss_mean_first": lossStart, "loss_mean_last": lossEnd, "loss_window": lossWindow, "loss_fell": lossEnd < lossStart,
        "forward_backward_seconds_median": forwardBackwardMedian, "optimizer_step_seconds_median": trainingOptimizerMedian,
        "forward_backward_seconds": training.forwardBackwardSeconds, "optimizer_step_seconds": training.optimizerSeconds,
        "page_bytes": PagedAdamWConfig.defaultPageBytes, "surveys": training.surveys,
        "activation_bytes": training.activationBytes, "rss_before_load_bytes": training.rssBeforeLoad, "peak_rss_bytes": training.peakRSSTraining,
    ] as [String: Any],
    "page_sizes": pageResults,
    "peak_rss_bytes": ProcessMemory.statusBytes("VmHWM"),
])
