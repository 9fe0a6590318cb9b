// The planner: its component sizes are what the model really allocates, its minimum is the true
// threshold between refusing and fitting, and it trades speed for memory only when it must.
import Foundation
import QLoRACLI
import QLoRAIO
import QLoRAModel
import Testing
import _TestSupport
@testable import QLoRATrain

/// SmolLM2-135M's shape (config.json of SmolLM2-135M-Instruct).
private func smolShape() throws -> ModelShape {
    try ModelShape(config: ["model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                            "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": true,
                            "rms_norm_eps": 1e-5, "rope_theta": 100000.0], path: "config.json")
}

/// TinyLlama-1.1B's shape (the quantize --synthetic preset).
private func tinyLlamaShape() throws -> ModelShape {
    try ModelShape(config: ["model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
                            "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000, "rms_norm_eps": 1e-5], path: "config.json")
}

private func plannerInputs(_ shape: ModelShape, batch: Int = 4, seqLen: Int = 256, checkpointing: Bool? = nil) -> PlannerInputs {
    let lora = LoRAConfig(rank: 16, alpha: 32)
    // NF4 layer bytes as `quantize` writes them: 4 bits per weight plus ~0.13 bits of double-quantized constants.
    let perLayer = Projection.allCases.reduce(0) { $0 + $1.features(in: shape).out * $1.features(in: shape).in } * 4127 / 8000
    let embeddings = 2 * shape.vocabSize * shape.hiddenSize * (shape.tiedEmbeddings ? 1 : 2)
    return PlannerInputs(shape: shape, weightBytes: WeightBytes(layers: Array(repeating: perLayer, count: shape.layers), shared: embeddings),
                         lora: lora, trainableCount: LoRAAdapters.parameterCount(shape: shape, config: lora), batchSize: batch,
                         seqLen: seqLen, processBytes: 60 << 20, sampleSeqLen: nil, checkpointing: checkpointing, optimizerResidentBytes: nil)
}

private func smolInputs(batch: Int = 4, seqLen: Int = 256, checkpointing: Bool? = nil) throws -> PlannerInputs {
    plannerInputs(try smolShape(), batch: batch, seqLen: seqLen, checkpointing: checkpointing)
}

@Test func plannedLayoutBytesAreWhatTheModelAllocates() throws {
    let directory = fixturesDirectory("model-llama-gqa").path + "/base-nf4"
    let weights = try LlamaWeights(directory: directory)
    for checkpointing in [false, true] {
        let lora = LoRAConfig(rank: 4, alpha: 8, targets: [.q, .v, .down])
        let options = ModelLayoutOptions(batch: 2, seqLen: 16, gradientCheckpointing: checkpointing, logitsChunkBytes: 4096, tileCapacity: 1 << 12)
        let model = LlamaModel(weights: weights, adapters: LoRAAdapters(shape: weights.shape, config: lora), options: options)
        let planned = LlamaModel.layoutBytes(shape: weights.shape, lora: lora, options: options)
        #expect(planned.activations == model.activationBytes, "checkpointing \(checkpointing)")
        #expect(planned.workspace == model.workspaceBytes, "checkpointing \(checkpointing)")
    }
    let mapped = try LlamaWeights.mappedBytes(directory: directory, layers: weights.shape.layers)
    let fileSize = try FileManager.default.attributesOfItem(atPath: directory + "/model.safetensors")[.size] as! Int
    // Everything but the safetensors header is tensor data.
    #expect(mapped.total <= fileSize && mapped.total > fileSize - 16384)
    // Both layers have the same tensors (their quant_state JSON may differ by a few bytes).
    #expect(mapped.layers.count == 2 && abs(mapped.layers[0] - mapped.layers[1]) < 64 && mapped.shared > 0)
}

@Test(arguments: ["SmolLM2-135M", "TinyLlama-1.1B"])
func refusalNamesTheSmallestBudgetThatFits(model: String) throws {
    let inputs = plannerInputs(model == "SmolLM2-135M" ? try smolShape() : try tinyLlamaShape())
    let refused = MemoryPlanner.plan(inputs, budget: 200 << 20)
    #expect(!refused.fits)
    let minimum = refused.total
    // The smallest plan uses every saving.
    #expect(refused.choices.gradientCheckpointing && refused.choices.microBatch == 1 && refused.choices.releaseWeightPages)
    // The minimum is the threshold: the budget the message names fits, 1 MiB less than the plan's own needs does not.
    let suggested = ((minimum + (1 << 20) - 1) >> 20) << 20
    let atSuggested = MemoryPlanner.plan(inputs, budget: suggested)
    #expect(atSuggested.fits && atSuggested.total <= suggested)
    #expect(!MemoryPlanner.plan(inputs, budget: minimum - (1 << 20)).fits)
    let message = TrainError.budgetTooSmall(smallest: refused, hint: MemoryPlanner.hint(refused, inputs: inputs)).description
    #expect(message.contains("--mem-budget 200 MiB is too small"))
    #expect(message.contains("Raise --mem-budget to at least \(suggested >> 20)MiB"))
    #expect(message.contains("activations") && message.contains("total"))
}

@Test func plannerSavesMemoryOnlyWhenItMust() throws {
    let inputs = try smolInputs()
    // A large budget: nothing traded.
    let roomy = MemoryPlanner.plan(inputs, budget: 8 << 30)
    #expect(roomy.fits && !roomy.choices.gradientCheckpointing && roomy.choices.microBatch == 4)
    #expect(roomy.choices.optimizerResidentBytes == nil && !roomy.choices.releaseWeightPages)
    // 1 GiB: the activations of 30 layers at 4 x 256 (827 MiB) do not fit beside the rest, so they
    // are cut by checkpointing or micro-batches.
    let demo = MemoryPlanner.plan(inputs, budget: 1 << 30)
    #expect(demo.fits && demo.total <= 1 << 30)
    #expect(demo.choices.gradientCheckpointing || demo.choices.microBatch < 4)
    let activations = demo.components.first { $0.name == "activations" }!.bytes
    let whole = LlamaModel.layoutBytes(shape: inputs.shape, lora: inputs.lora, options: ModelLayoutOptions(batch: 4, seqLen: 256)).activations
    #expect(activations * 2 <= whole)
    // Checkpointing forbidden: at 1 GiB micro-batches make it fit; at 450 MiB, where a checkpointed
    // plan fits, it is refused and the hint says to allow checkpointing.
    let forbidden = try smolInputs(checkpointing: false)
    let withMicroBatches = MemoryPlanner.plan(forbidden, budget: 1 << 30)
    #expect(withMicroBatches.fits && withMicroBatches.choices.microBatch < 4, "without checkpointing, 1 GiB needs micro-batches")
    #expect(MemoryPlanner.plan(inputs, budget: 450 << 20).fits)
    let refused = MemoryPlanner.plan(forbidden, budget: 450 << 20)
    #expect(!refused.fits)
    #expect(MemoryPlanner.hint(refused, inputs: forbidden).contains("--gradient-checkpointing"))
}

@Test func optimizerGetsWhatTheRestLeaves() throws {
    var inputs = try smolInputs()
    inputs.checkpointing = true
    inputs.microBatch = 1
    inputs.logitsChunkBytes = 4 << 20
    let full = MemoryPlanner.plan(inputs, budget: 8 << 30)
    let stateBytes = inputs.trainableCount * 8
    let optimizerFull = full.components.first { $0.name == "optimizer state" }!.bytes
    #expect(full.choices.optimizerResidentBytes == nil && optimizerFull >= stateBytes)
    // A budget that leaves the optimizer about half its state: it keeps whole pages and the plan fits.
    let budget = full.total - stateBytes / 2
    let tight = MemoryPlanner.plan(inputs, budget: budget)
    #expect(tight.fits && tight.total <= budget)
    let resident = try #require(tight.choices.optimizerResidentBytes)
    #expect(resident % inputs.pageBytes == 0 && resident < stateBytes && resident > stateBytes / 4)
}

@Test func byteSizesParseAsBudgetsAreWritten() {
    #expect(parseByteSize("2GiB") == 2 << 30)
    #expect(parseByteSize("1.5G") == 3 << 29)
    #expect(parseByteSize("800MiB") == 800 << 20)
    #expect(parseByteSize("512m") == 512 << 20)
    #expect(parseByteSize("2GB") == 2_000_000_000)
    #expect(parseByteSize("1048576") == 1 << 20)
    #expect(parseByteSize("two gigs") == nil)
    #expect(parseByteSize("5X") == nil)
    #expect(parseByteSize("") == nil)
}

/// A fixed --optim-resident-bytes only fixes the optimizer's residency: with a budget that holds the
/// fast plan, every fixed value gets the fast plan's other choices (issue 11: a generous value used to
/// make the cost negative and pick the slowest plan), and the table says what really happens.
@Test(arguments: [4, 8, 16, 64, 256, 1024])
func aFixedOptimizerResidencyKeepsTheFastPlan(residentMiB: Int) throws {
    var inputs = try smolInputs()
    let fast = MemoryPlanner.plan(inputs, budget: 8 << 30).choices
    inputs.optimizerResidentBytes = residentMiB << 20
    let plan = MemoryPlanner.plan(inputs, budget: 8 << 30)
    #expect(plan.fits)
    #expect(plan.choices.gradientCheckpointing == fast.gradientCheckpointing && plan.choices.microBatch == fast.microBatch)
    #expect(plan.choices.logitsChunkBytes == fast.logitsChunkBytes && plan.choices.releaseWeightPages == fast.releaseWeightPages)
    let stateBytes = inputs.trainableCount * 8
    if residentMiB << 20 >= stateBytes {
        #expect(plan.choices.optimizerResidentBytes == nil && plan.table().contains("optimizer state all resident"))
    } else {
        #expect(plan.choices.optimizerResidentBytes == residentMiB << 20)
        #expect(plan.table().contains("optimizer state \(formatBytes(residentMiB << 20)) of \(formatBytes(stateBytes)) resident, the rest spilled"))
    }
}
