// The whole model against transformers + PEFT (+ bitsandbytes for the NF4 base): logits, loss,
// every LoRA gradient and a 10-step AdamW loss trajectory, from tools/reference/make_model_fixtures.py.
import Foundation
import QLoRAKernels
import QLoRAModel
import Testing
import _TestSupport

/// Logits and loss: fp32 round-off over a few hundred sums of products (sgemm vs MKL ordering).
let forwardRelativeTolerance = 1e-5, forwardAbsoluteTolerance = 2e-5
/// LoRA gradients: round-off through the backward of two layers and the vocabulary softmax.
let gradientRelativeTolerance = 1e-4, gradientAbsoluteTolerance = 1e-6
/// The bound on the 10-step AdamW loss trajectory.
let trajectoryRelativeTolerance = 1e-4

struct ModelCase: CustomStringConvertible, Sendable {
    let name: String
    let base: String
    var description: String { "\(name)/\(base)" }
}

let modelCases = ["llama-gqa", "llama3-tied-packed", "qwen2-bias"].flatMap { name in
    ["fp32", "nf4"].map { ModelCase(name: name, base: $0) }
}

/// Loads a fixture case: the model on its base, the PEFT adapter, and the batch.
func loadCase(_ c: ModelCase, checkpointing: Bool = false) throws -> (Fixture, LlamaModel, TokenBatch) {
    let fixture = try Fixture("model-\(c.name)")
    let directory = fixture.directory.path
    let weights = try LlamaWeights(directory: directory + (c.base == "fp32" ? "/base" : "/base-nf4"))
    #expect(weights.isQuantized == (c.base == "nf4"))
    let configData = try Data(contentsOf: URL(fileURLWithPath: directory + "/adapter/adapter_config.json"))
    let adapterConfig = try JSONSerialization.jsonObject(with: configData) as! [String: Any]
    let targets = Set((adapterConfig["target_modules"] as! [String]).map { Projection(rawValue: $0)! })
    let lora = LoRAConfig(rank: adapterConfig["r"] as! Int, alpha: Float(adapterConfig["lora_alpha"] as! Int),
                          dropout: Float(adapterConfig["lora_dropout"] as! Double), useRSLoRA: adapterConfig["use_rslora"] as! Bool,
                          targets: targets)
    let adapters = LoRAAdapters(shape: weights.shape, config: lora)
    try adapters.load(peftFile: directory + "/adapter/adapter_model.safetensors")
    let shape = fixture.shape("input_ids")
    let batch = TokenBatch(batch: shape[0], seqLen: shape[1], tokens: fixture.values("input_ids", as: Int32.self),
                           targets: fixture.values("targets", as: Int32.self), sequenceIds: fixture.values("sequence_ids", as: Int32.self))
    #expect(batch.positions == fixture.values("position_ids", as: Int32.self))
    let model = LlamaModel(weights: weights, adapters: adapters,
                           options: ModelLayoutOptions(batch: shape[0], seqLen: shape[1], gradientCheckpointing: checkpointing,
                                                       logitsChunkBytes: 4 * weights.shape.vocabSize * 5))
    return (fixture, model, batch)
}

@Test(arguments: modelCases)
func logitsLossAndGradientsMatchPEFT(_ c: ModelCase) throws {
    let (fixture, model, batch) = try loadCase(c)
    var logits = [Float](repeating: 0, count: batch.tokens.count * model.dims.V)
    model.logits(batch, into: &logits)
    let logitCheck = compare(logits, fixture.floats("\(c.base).logits"), rtol: forwardRelativeTolerance, atol: forwardAbsoluteTolerance)
    #expect(logitCheck.passed, "\(c) logits: \(logitCheck)")

    let loss = model.forwardBackward(batch)
    let lossCheck = compare([loss], fixture.floats("\(c.base).loss"), rtol: forwardRelativeTolerance, atol: 0)
    #expect(lossCheck.passed, "\(c) loss: \(lossCheck)")
    #expect(model.loss(batch) == loss, "evaluation loss differs from the training forward's")
    for (key, tensor) in model.adapters.tensors {
        let gradient = Array(UnsafeBufferPointer(start: tensor.gradient, count: tensor.count))
        let check = compare(gradient, fixture.floats("\(c.base).grad.\(key)"), rtol: gradientRelativeTolerance, atol: gradientAbsoluteTolerance)
        #expect(check.passed, "\(c) gradient of \(key): \(check)")
    }
}

@Test(arguments: modelCases)
func tenAdamWStepsFollowPEFTsLosses(_ c: ModelCase) throws {
    let (fixture, model, batch) = try loadCase(c)
    let adapters = model.adapters
    let n = adapters.parameterCount
    var m = [Float](repeating: 0, count: n), v = m
    var losses: [Float] = []
    for step in 1...10 {
        adapters.zeroGradients()
        losses.append(model.forwardBackward(batch))
        adamWStep(adapters.values, adapters.gradients, &m, &v, count: n, step: step, config: AdamWConfig(learningRate: 1e-3))
        if step == 1 {
            for (key, tensor) in adapters.tensors {
                let values = Array(UnsafeBufferPointer(start: tensor.values, count: tensor.count))
                let check = compare(values, fixture.floats("\(c.base).after1.\(key)"), rtol: gradientRelativeTolerance, atol: gradientAbsoluteTolerance)
                #expect(check.passed, "\(c) \(key) after one AdamW step: \(check)")
            }
        }
    }
    let check = compare(losses, fixture.floats("\(c.base).losses"), rtol: trajectoryRelativeTolerance, atol: 0)
    #expect(check.passed, "\(c) 10-step losses: \(check)")
}

@Test(arguments: modelCases.filter { $0.base == "nf4" })
func checkpointingGivesTheSameGradients(_ c: ModelCase) throws {
    let (_, plain, batch) = try loadCase(c)
    let (_, checkpointed, _) = try loadCase(c, checkpointing: true)
    let loss = plain.forwardBackward(batch)
    #expect(checkpointed.forwardBackward(batch) == loss)
    let a = Array(UnsafeBufferPointer(start: plain.adapters.gradients, count: plain.adapters.parameterCount))
    let b = Array(UnsafeBufferPointer(start: checkpointed.adapters.gradients, count: checkpointed.adapters.parameterCount))
    let check = compare(b, a, rtol: 0, atol: 0)
    #expect(check.passed, "\(c) recomputed layers change the gradients: \(check)")
}
