// Central differences in Double of an independent reference forward (ReferenceLlama) against the
// LoRA gradients of LlamaModel's hand-written backward, and of LoRA's own backward with dropout.
import Foundation
import QLoRAKernels
import QLoRAModel
import Testing
import _TestSupport

/// Float32 gradients against exact ones: round-off of a two-layer Float32 backward.
let centralDifferenceRelativeTolerance = 1e-3, centralDifferenceAbsoluteTolerance = 2e-6
/// Step of the Double central difference: truncation O(h^2) ~ 1e-10, round-off ~ 1e-16 / h.
let centralDifferenceStep = 1e-5

@Test(arguments: ["llama-gqa", "llama3-tied-packed", "qwen2-bias"])
func loraGradientsMatchCentralDifferencesInDouble(_ name: String) throws {
    let (fixture, model, batch) = try loadCase(ModelCase(name: name, base: "fp32"))
    model.adapters.zeroGradients()
    model.forwardBackward(batch)
    var reference = try ReferenceLlama(directory: fixture.directory.path + "/base",
                                       adapterFile: fixture.directory.path + "/adapter/adapter_model.safetensors",
                                       config: model.adapters.config)
    // The Double forward itself agrees with the fixture's loss.
    let loss = reference.loss(batch)
    let expectedLoss = Double(fixture.floats("fp32.loss")[0])
    #expect(abs(loss - expectedLoss) <= 1e-5 * expectedLoss, "Double reference loss \(loss) vs PEFT \(expectedLoss)")
    // Three elements of every LoRA tensor: first, middle, last.
    var numeric: [Float] = [], analytic: [Float] = []
    for (key, tensor) in model.adapters.tensors {
        for index in Set([0, tensor.count / 2, tensor.count - 1]).sorted() {
            let original = reference.lora[key]![index]
            reference.lora[key]![index] = original + centralDifferenceStep
            let plus = reference.loss(batch)
            reference.lora[key]![index] = original - centralDifferenceStep
            let minus = reference.loss(batch)
            reference.lora[key]![index] = original
            numeric.append(Float((plus - minus) / (2 * centralDifferenceStep)))
            analytic.append(tensor.gradient[index])
        }
    }
    let check = compare(analytic, numeric, rtol: centralDifferenceRelativeTolerance, atol: centralDifferenceAbsoluteTolerance)
    #expect(check.passed, "\(name): \(check)")
}

/// LoRA with dropout: its output is linear in A, in B and in x separately, so Float central
/// differences with a large step have no truncation error; only round-off remains.
@Test(arguments: [false, true])
func loraBackwardWithDropoutMatchesCentralDifferences(_ freezeA: Bool) {
    let rows = 7, inFeatures = 33, outFeatures = 17, rank = 3
    func buffer(_ count: Int, seed: UInt64? = nil) -> UnsafeMutablePointer<Float> {
        let pointer = UnsafeMutablePointer<Float>.allocate(capacity: count)
        pointer.initialize(repeating: 0, count: count)
        if let seed { fillNormal(pointer, count: count, seed: seed, std: 0.5) }
        return pointer
    }
    let a = buffer(rank * inFeatures, seed: 1), b = buffer(outFeatures * rank, seed: 2)
    let x = buffer(rows * inFeatures, seed: 3), weights = buffer(rows * outFeatures, seed: 4)
    let dA = buffer(rank * inFeatures), dB = buffer(outFeatures * rank), dx = buffer(rows * inFeatures)
    let y = buffer(rows * outFeatures), saved = buffer(rows * rank)
    let scratch = buffer(rows * inFeatures), scratch2 = buffer(rows * inFeatures)
    defer { [a, b, x, weights, dA, dB, dx, y, saved, scratch, scratch2].forEach { $0.deallocate() } }
    let lora = LoRA(inFeatures: inFeatures, outFeatures: outFeatures, rank: rank, scale: 1.5, dropout: 0.3, freezeA: freezeA,
                    a: a, b: b, dA: dA, dB: dB)
    let context = AdapterContext(scratch: scratch, scratch2: scratch2, dropoutSeed: 42, training: true)
    /// loss = sum(weights * delta(x))
    func loss() -> Double {
        y.update(repeating: 0, count: rows * outFeatures)
        lora.forward(y, x, saved: saved, rows: rows, context: context)
        return (0..<rows * outFeatures).reduce(0) { $0 + Double(y[$1]) * Double(weights[$1]) }
    }
    _ = loss()
    lora.backward(dx, weights, x, saved: saved, rows: rows, context: context)
    func numeric(_ pointer: UnsafeMutablePointer<Float>, count: Int) -> [Float] {
        (0..<count).map { index in
            let original = pointer[index]
            pointer[index] = original + 0.5
            let plus = loss()
            pointer[index] = original - 0.5
            let minus = loss()
            pointer[index] = original
            return Float(plus - minus)
        }
    }
    func values(_ pointer: UnsafeMutablePointer<Float>, count: Int) -> [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
    /// Float round-off of sums of ~30 products of O(1) values.
    let rtol = 1e-4, atol = 1e-5
    let aExpected = freezeA ? [Float](repeating: 0, count: rank * inFeatures) : numeric(a, count: rank * inFeatures)
    let aCheck = compare(values(dA, count: rank * inFeatures), aExpected, rtol: rtol, atol: atol)
    let bCheck = compare(values(dB, count: outFeatures * rank), numeric(b, count: outFeatures * rank), rtol: rtol, atol: atol)
    let xCheck = compare(values(dx, count: rows * inFeatures), numeric(x, count: rows * inFeatures), rtol: rtol, atol: atol)
    #expect(aCheck.passed, "dA (freezeA \(freezeA)): \(aCheck)")
    #expect(bCheck.passed, "dB: \(bCheck)")
    #expect(xCheck.passed, "dx: \(xCheck)")
    #expect(values(dx, count: rows * inFeatures).contains(0), "dropout 0.3 dropped no input element")
}

/// A rank larger than every feature width of the model (the fixture's widest is F = 176): the
/// adapters' scratch must hold rows x rank (issue 11 review: ranks above 714 wrote past the
/// workspace and crashed, smaller ones above 176 wrote into the buffers after it). With dropout and
/// both layouts, the gradients still equal central differences of the reference.
@Test(arguments: [false, true])
func aRankWiderThanTheModelTrainsCorrectly(checkpointing: Bool) throws {
    let fixture = try Fixture("model-llama-gqa")
    let (_, fixtureModel, batch) = try loadCase(ModelCase(name: "llama-gqa", base: "fp32"))
    let lora = LoRAConfig(rank: 1024, alpha: 16, dropout: 0, targets: [.q, .down], seed: 7)
    let adapters = LoRAAdapters(shape: fixtureModel.weights.shape, config: lora)
    var random = SplitMix64(seed: 11)
    for (_, tensor) in adapters.tensors where tensor.role == "lora_B" {
        for i in 0..<tensor.count { tensor.values[i] = (Float(random.next() >> 40) * 0x1p-24 - 0.5) * 0.02 }
    }
    let directory = try TemporaryDirectory()
    try adapters.savePEFT(directory: directory.path, baseModel: "fixture")
    let model = LlamaModel(weights: fixtureModel.weights, adapters: adapters,
                           options: ModelLayoutOptions(batch: batch.batch, seqLen: batch.seqLen, gradientCheckpointing: checkpointing))
    model.forwardBackward(batch)
    var reference = try ReferenceLlama(directory: fixture.directory.path + "/base", adapterFile: directory.path + "/adapter_model.safetensors",
                                       config: lora)
    var numeric: [Float] = [], analytic: [Float] = []
    for (key, tensor) in adapters.tensors {
        for index in Set([0, tensor.count / 2, tensor.count - 1]).sorted() {
            let original = reference.lora[key]![index]
            reference.lora[key]![index] = original + centralDifferenceStep
            let plus = reference.loss(batch)
            reference.lora[key]![index] = original - centralDifferenceStep
            let minus = reference.loss(batch)
            reference.lora[key]![index] = original
            numeric.append(Float((plus - minus) / (2 * centralDifferenceStep)))
            analytic.append(tensor.gradient[index])
        }
    }
    let check = compare(analytic, numeric, rtol: centralDifferenceRelativeTolerance, atol: centralDifferenceAbsoluteTolerance)
    #expect(check.passed, "rank 1024, checkpointing \(checkpointing): \(check)")
}
