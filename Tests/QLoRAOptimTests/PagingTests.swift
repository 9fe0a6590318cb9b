// Paging must not change a single bit: training with every page spilled after every step, or with
// a small LRU budget, equals training with everything resident. Damage to the spill file is an
// error, evicted pages give their RAM back, and a checkpoint resumes exactly.
import Foundation
@testable import QLoRAOptim
import QLoRAIO
import QLoRAKernels
import QLoRAModel
import Testing
import _TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Parameters and flat moments (from a saved state) after training.
struct TrainedState: Equatable {
    var parameters: [UInt32]
    var moments: [UInt32]
}

func savedMoments(_ optimizer: PagedAdamW, in directory: TemporaryDirectory) throws -> [UInt32] {
    let path = directory.path + "/moments-\(UUID().uuidString).safetensors"
    try optimizer.save(to: path)
    let file = try SafetensorsFile(path: path)
    var bits: [UInt32] = []
    for name in ["exp_avg", "exp_avg_sq"] {
        let tensor = try #require(file.tensor(named: name))
        bits += UnsafeBufferPointer(start: file.data(of: tensor).assumingMemoryBound(to: UInt32.self), count: tensor.elementCount)
    }
    return bits
}

/// Trains the llama-gqa fixture model (fp32 base, fresh LoRA r=4 on all projections) for `steps` steps.
func trainFixtureModel(steps: Int, pageBytes: Int, residentBytes: Int?, evictAfterEachStep: Bool,
                       in directory: TemporaryDirectory) throws -> (TrainedState, PagingStatistics) {
    let fixture = try Fixture("model-llama-gqa")
    let weights = try LlamaWeights(directory: fixture.directory.path + "/base")
    let adapters = LoRAAdapters(shape: weights.shape, config: LoRAConfig(rank: 4, alpha: 8, targets: Set(Projection.allCases), seed: 3))
    let shape = fixture.shape("input_ids")
    let batch = TokenBatch(batch: shape[0], seqLen: shape[1], tokens: fixture.values("input_ids", as: Int32.self),
                           targets: fixture.values("targets", as: Int32.self), sequenceIds: fixture.values("sequence_ids", as: Int32.self))
    let model = LlamaModel(weights: weights, adapters: adapters, options: ModelLayoutOptions(batch: shape[0], seqLen: shape[1]))
    let optimizer = try PagedAdamW(trainable: [0..<adapters.parameterCount], parameterCount: adapters.parameterCount,
                                   config: PagedAdamWConfig(adamW: AdamWConfig(learningRate: 1e-2), maxGradNorm: 1, pageBytes: pageBytes,
                                                            residentBytes: residentBytes, spillDirectory: directory.path))
    for _ in 0..<steps {
        adapters.zeroGradients()
        _ = model.forwardBackward(batch)
        _ = try optimizer.step(parameters: adapters.values, gradients: adapters.gradients)
        if evictAfterEachStep {
            try optimizer.evictAll()
            #expect(optimizer.residentPages == 0)
        }
    }
    let parameters = Array(UnsafeBufferPointer(start: adapters.values, count: adapters.parameterCount)).map(\.bitPattern)
    return (TrainedState(parameters: parameters, moments: try savedMoments(optimizer, in: directory)), optimizer.statistics)
}

@Test func everyPageSpilledAfterEveryStepTrainsBitwiseLikeResident() throws {
    let directory = try TemporaryDirectory()
    let steps = 30
    let (resident, _) = try trainFixtureModel(steps: steps, pageBytes: 4096, residentBytes: nil, evictAfterEachStep: false, in: directory)
    let (spilled, statistics) = try trainFixtureModel(steps: steps, pageBytes: 4096, residentBytes: 4096, evictAfterEachStep: true, in: directory)
    #expect(spilled == resident)
    let pages = (resident.moments.count * 4 + 4095) / 4096
    #expect(pages > 3, "the state must span several pages")
    #expect(statistics.pagesSpilled >= steps * pages && statistics.pagesRestored >= (steps - 1) * pages, "\(statistics)")
    #expect(statistics.compressedPages + statistics.rawPages > 0)
}

/// A flat state with gaps (frozen ranges) and gradients that leave some pages all zero.
func randomGradientRun(steps: Int, residentBytes: Int?, prefetch: Int, in directory: TemporaryDirectory) throws -> (TrainedState, PagingStatistics) {
    let count = 200_000
    let trainable = [0..<50_000, 60_000..<200_000]
    var parameters = randomFloats(count, seed: 1, scale: 0.2)
    let optimizer = try PagedAdamW(trainable: trainable, parameterCount: count,
                                   config: PagedAdamWConfig(maxGradNorm: 5, pageBytes: 65536, residentBytes: residentBytes,
                                                            spillDirectory: directory.path, prefetchPages: prefetch))
    for step in 1...steps {
        var gradients = randomFloats(count, seed: 1000 + UInt64(step), scale: step % 3 == 0 ? 0.5 : 0.01)
        // Values 150k..<200k never get a gradient: their moments stay zero (zero pages).
        for i in 150_000..<200_000 { gradients[i] = 0 }
        _ = try parameters.withUnsafeMutableBufferPointer { p in
            try gradients.withUnsafeBufferPointer { g in try optimizer.step(parameters: p.baseAddress!, gradients: g.baseAddress!) }
        }
    }
    return (TrainedState(parameters: parameters.map(\.bitPattern), moments: try savedMoments(optimizer, in: directory)), optimizer.statistics)
}

@Test func leastRecentlyUsedPagingWithPrefetchMatchesResidentBitwise() throws {
    let directory = try TemporaryDirectory()
    let (resident, _) = try randomGradientRun(steps: 40, residentBytes: nil, prefetch: 2, in: directory)
    for (budgetPages, prefetch) in [(4, 2), (1, 2), (7, 0), (20, 3)] {
        let (paged, statistics) = try randomGradientRun(steps: 40, residentBytes: budgetPages * 65536, prefetch: prefetch, in: directory)
        #expect(paged == resident, "budget \(budgetPages) pages, prefetch \(prefetch)")
        #expect(statistics.pagesRestored > 0 && statistics.zeroPages > 0, "\(statistics)")
    }
    // Frozen values are untouched by the optimizer (no weight decay on them).
    let initial = randomFloats(200_000, seed: 1, scale: 0.2).map(\.bitPattern)
    #expect(Array(resident.parameters[50_000..<60_000]) == Array(initial[50_000..<60_000]))
}

/// An optimizer over `count` values with every page spilled after one step of random gradients.
func spilledOptimizer(count: Int, in directory: TemporaryDirectory) throws -> (PagedAdamW, [Float], [Float]) {
    let optimizer = try PagedAdamW(trainable: [0..<count], parameterCount: count,
                                   config: PagedAdamWConfig(pageBytes: 8192, residentBytes: 8192, spillDirectory: directory.path))
    var parameters = randomFloats(count, seed: 2)
    let gradients = randomFloats(count, seed: 3)
    _ = try parameters.withUnsafeMutableBufferPointer { try optimizer.step(parameters: $0.baseAddress!, gradients: gradients) }
    try optimizer.evictAll()
    return (optimizer, parameters, gradients)
}

func expectSpillCorrupt(_ optimizer: PagedAdamW, parameters: inout [Float], gradients: [Float], page: Int, detail: String) {
    for attempt in 0..<2 {  // the failure sticks: the state is no longer trustworthy
        do {
            _ = try parameters.withUnsafeMutableBufferPointer { try optimizer.step(parameters: $0.baseAddress!, gradients: gradients) }
            Issue.record("step \(attempt) succeeded on a damaged spill file")
        } catch let error as OptimizerError {
            guard case .spillCorrupt(_, let found, let text) = error else { Issue.record("unexpected \(error)"); return }
            #expect(found == page && text.contains(detail), "\(error)")
            #expect(error.description.contains("resume from the last checkpoint"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}

@Test func aFlippedByteInTheSpillFileIsDetected() throws {
    let directory = try TemporaryDirectory()
    var (optimizer, parameters, gradients) = try spilledOptimizer(count: 10_000, in: directory)
    let descriptor = try #require(optimizer.store.spillFile).descriptor
    // The file is already unlinked; reach it through this process's descriptor table.
    let writable = open("/proc/self/fd/\(descriptor)", O_RDWR)
    #expect(writable >= 0)
    defer { close(writable) }
    var byte: UInt8 = 0
    let offset = off_t(2 * 8192 + 100)  // page 2's slot
    #expect(pread(writable, &byte, 1, offset) == 1)
    byte ^= 0x10
    #expect(pwrite(writable, &byte, 1, offset) == 1)
    expectSpillCorrupt(optimizer, parameters: &parameters, gradients: gradients, page: 2, detail: "checksum")
}

@Test func aTruncatedSpillFileIsDetected() throws {
    let directory = try TemporaryDirectory()
    var (optimizer, parameters, gradients) = try spilledOptimizer(count: 10_000, in: directory)
    let descriptor = try #require(optimizer.store.spillFile).descriptor
    #expect(ftruncate(descriptor, 8192) == 0)
    // Descending order in step 2: the last page is the first one read.
    expectSpillCorrupt(optimizer, parameters: &parameters, gradients: gradients, page: optimizer.pageCount - 1, detail: "truncated")
}

/// The resident bytes this process has in the mapping that holds `address` (/proc/self/smaps).
func mappingRSS(_ address: UnsafeMutableRawPointer) -> Int? {
    // Read through a handle: procfs reports a size of 0, and smaps is longer than one read.
    guard let handle = FileHandle(forReadingAtPath: "/proc/self/smaps") else { return nil }
    let smaps = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    let target = UInt(bitPattern: address)
    var inMapping = false
    for line in smaps.split(separator: "\n") {
        let range = line.prefix { $0 != " " }.split(separator: "-")
        if range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16) {
            inMapping = start <= target && target < end
        } else if inMapping && line.hasPrefix("Rss:") {
            return (Int(line.split(separator: " ")[1]) ?? 0) * 1024
        }
    }
    return nil
}

@Test func evictionReturnsTheRAM() throws {
    let directory = try TemporaryDirectory()
    let count = 32 << 20  // 256 MiB of moments
    let parameters = UnsafeMutablePointer<Float>.allocate(capacity: count)
    let gradients = UnsafeMutablePointer<Float>.allocate(capacity: count)
    defer {
        parameters.deallocate()
        gradients.deallocate()
    }
    parameters.initialize(repeating: 0.5, count: count)
    gradients.initialize(repeating: 1e-3, count: count)
    let optimizer = try PagedAdamW(trainable: [0..<count], parameterCount: count,
                                   config: PagedAdamWConfig(spillDirectory: directory.path))
    _ = try optimizer.step(parameters: parameters, gradients: gradients)
    let frames = optimizer.store.frames, frameBytes = optimizer.pageCount * optimizer.config.pageBytes
    #expect(mappingRSS(frames) == frameBytes)
    let before = ProcessMemory.current().residentBytes
    try optimizer.evictAll()
    let after = ProcessMemory.current().residentBytes
    #expect(mappingRSS(frames) == 0)
    let spill = try #require(optimizer.store.spillFile)
    #expect(mappingRSS(spill.slot(0)) == 0, "spilled bytes still mapped in")
    // Other tests run in this process at the same time, so allow them 64 MiB of growth.
    #expect(before - after >= count * 8 - (64 << 20), "RSS \(before) -> \(after)")
    // And the state comes back intact: one more step equals a resident optimizer's second step.
    _ = try optimizer.step(parameters: parameters, gradients: gradients)
    let reference = try PagedAdamW(trainable: [0..<count], parameterCount: count, config: PagedAdamWConfig(spillDirectory: directory.path))
    let check = UnsafeMutablePointer<Float>.allocate(capacity: count)
    defer { check.deallocate() }
    check.initialize(repeating: 0.5, count: count)
    _ = try reference.step(parameters: check, gradients: gradients)
    _ = try reference.step(parameters: check, gradients: gradients)
    #expect(memcmp(check, parameters, count * 4) == 0)
    // Under a budget, the frames in RAM after a step are exactly the resident pages'.
    try optimizer.setResidentBytes(64 << 20)
    _ = try optimizer.step(parameters: parameters, gradients: gradients)
    #expect(optimizer.residentPages == 64 && mappingRSS(frames) == 64 << 20)
}

@Test func aCheckpointResumesExactlyWithAnotherPageSizeAndBudget() throws {
    let directory = try TemporaryDirectory()
    let count = 30_000
    let makeOptimizer = { (pageBytes: Int, resident: Int?) in
        try PagedAdamW(trainable: [0..<count], parameterCount: count,
                       config: PagedAdamWConfig(maxGradNorm: 1, pageBytes: pageBytes, residentBytes: resident, spillDirectory: directory.path))
    }
    let run = { (optimizer: PagedAdamW, parameters: inout [Float], steps: ClosedRange<Int>) in
        for step in steps {
            let gradients = randomFloats(count, seed: 500 + UInt64(step), scale: 0.1)
            _ = try parameters.withUnsafeMutableBufferPointer { try optimizer.step(parameters: $0.baseAddress!, gradients: gradients) }
        }
    }
    let straight = try makeOptimizer(8192, 16384)
    var straightParameters = randomFloats(count, seed: 4)
    try run(straight, &straightParameters, 1...12)

    let first = try makeOptimizer(8192, 16384)
    var parameters = randomFloats(count, seed: 4)
    try run(first, &parameters, 1...6)
    let checkpoint = directory.path + "/optimizer.safetensors"
    try first.save(to: checkpoint, metadata: ["note": "test"])
    #expect(!FileManager.default.fileExists(atPath: AtomicOutput.partialFile(for: checkpoint)))
    let resumed = try makeOptimizer(4096, nil)
    let metadata = try resumed.restore(from: checkpoint)
    #expect(resumed.stepCount == 6 && metadata["note"] == "test")
    try run(resumed, &parameters, 7...12)
    #expect(parameters.map(\.bitPattern) == straightParameters.map(\.bitPattern))
    #expect(try savedMoments(resumed, in: directory) == savedMoments(straight, in: directory))
}

@Test func aCheckpointForOtherParametersOrNotAStateIsRefused() throws {
    let directory = try TemporaryDirectory()
    let small = try PagedAdamW(trainable: [0..<1000], parameterCount: 1000, config: PagedAdamWConfig(spillDirectory: directory.path))
    let path = directory.path + "/small.safetensors"
    try small.save(to: path)
    let other = try PagedAdamW(trainable: [0..<2000], parameterCount: 2000, config: PagedAdamWConfig(spillDirectory: directory.path))
    #expect(throws: OptimizerError.self) { try other.restore(from: path) }
    do { try other.restore(from: path) } catch { #expect("\(error)".contains("another model, rank or set of target modules"), "\(error)") }

    let plain = directory.path + "/plain.safetensors"
    let writer = try SafetensorsWriter(path: plain, planned: [.init(name: "exp_avg", dtype: .F32, shape: [2000])], lateTensors: 0, longestLateName: 0)
    try writer.finish()
    do { try other.restore(from: plain); Issue.record("restored a file without optimizer metadata") } catch {
        #expect("\(error)".contains("not a swift-qlora optimizer state"), "\(error)")
    }
    // A truncated checkpoint.
    let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    let cut = directory.path + "/cut.safetensors"
    try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: cut))
    do { try small.restore(from: cut); Issue.record("restored a truncated file") } catch {
        #expect("\(error)".hasPrefix(cut), "\(error)")
    }
    #expect(other.stepCount == 0 && small.stepCount == 0)
}

@Test func badSettingsAndGradientsAreClearErrors() throws {
    let directory = try TemporaryDirectory()
    let missing = directory.path + "/no/such/dir"
    do {
        _ = try PagedAdamW(trainable: [0..<100_000], parameterCount: 100_000,
                           config: PagedAdamWConfig(pageBytes: 4096, residentBytes: 4096, spillDirectory: missing))
        Issue.record("a spill file in a missing directory")
    } catch {
        #expect(error == .spillDirectory(path: missing, errno: ENOENT) && error.description.contains("--spill-dir"), "\(error)")
    }
    #expect(throws: OptimizerError.residentBudgetTooSmall(bytes: 1000, minimum: 4096)) {
        try PagedAdamW(trainable: [0..<10], parameterCount: 10, config: PagedAdamWConfig(pageBytes: 4096, residentBytes: 1000, spillDirectory: directory.path))
    }
    let optimizer = try PagedAdamW(trainable: [0..<100], parameterCount: 100, config: PagedAdamWConfig(spillDirectory: directory.path))
    var parameters = randomFloats(100, seed: 8)
    let before = parameters
    var gradients = randomFloats(100, seed: 9)
    gradients[42] = .nan
    #expect(throws: OptimizerError.self) {
        _ = try parameters.withUnsafeMutableBufferPointer { try optimizer.step(parameters: $0.baseAddress!, gradients: gradients) }
    }
    #expect(parameters.map(\.bitPattern) == before.map(\.bitPattern) && optimizer.stepCount == 0)
}

@Test(arguments: [false, true])
func theOptimizerUpdatesExactlyTheTrainableTensors(_ freezeA: Bool) throws {
    let directory = try TemporaryDirectory()
    let fixture = try Fixture("model-llama-gqa")
    let weights = try LlamaWeights(directory: fixture.directory.path + "/base")
    let adapters = LoRAAdapters(shape: weights.shape, config: LoRAConfig(rank: 4, targets: [.q, .down], freezeA: freezeA, seed: 5))
    let ranges = adapters.trainableRanges
    #expect(ranges.count == (freezeA ? adapters.tensors.count / 2 : 1))
    let before = Array(UnsafeBufferPointer(start: adapters.values, count: adapters.parameterCount))
    for i in 0..<adapters.parameterCount { adapters.gradients[i] = 0.01 }
    let optimizer = try PagedAdamW(trainable: ranges, parameterCount: adapters.parameterCount,
                                   config: PagedAdamWConfig(spillDirectory: directory.path))
    _ = try optimizer.step(parameters: adapters.values, gradients: adapters.gradients)
    for (key, tensor) in adapters.tensors {
        let start = adapters.values.distance(to: tensor.values)
        let changed = (start..<start + tensor.count).allSatisfy { adapters.values[$0] != before[$0] }
        let unchanged = (start..<start + tensor.count).allSatisfy { adapters.values[$0] == before[$0] }
        #expect(tensor.trainable ? changed : unchanged, "\(key)")
        #expect(tensor.trainable == !(freezeA && key.contains("lora_A")), "\(key)")
    }
}
