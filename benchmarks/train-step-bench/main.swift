// One full QLoRA training step (forward, backward, AdamW) of a random NF4 model in a Llama shape,
// timed over several steps: tokens/s, model GFLOP/s against the sgemm ceiling, peak RSS. The model
// is made once by `quantize --synthetic` into a cache directory. tools/bench_peft_step.py runs the
// same configuration through PyTorch + PEFT for the comparison (benchmarks/README.md).
// Usage: train-step-bench [--shape llama-small|tinyllama-1.1b|...] [--batch 4] [--seq 256] [--rank 16]
//                         [--alpha 32] [--steps 8] [--warmup 2] [--checkpointing] [--cache DIR]
//                         [--targets all|q_proj,v_proj,...] [--logits-chunk-mib 64]
import BenchmarkModels
import BenchmarkSupport
import Foundation
import QLoRAIO
import QLoRAKernels
import QLoRAModel

let bench = Benchmark("train-step-bench")
func fail(_ message: String) -> Never { bench.fail(message) }

let shapeName = bench.option("--shape", "llama-small")
let batchSize = bench.intOption("--batch", 4), seqLen = bench.intOption("--seq", 256)
let rank = bench.intOption("--rank", 16), steps = bench.intOption("--steps", 8), warmup = bench.intOption("--warmup", 2)
guard let alpha = Float(bench.option("--alpha", "32")) else { fail("--alpha needs a number") }
guard batchSize > 0, seqLen > 1, rank > 0, steps > 0, warmup >= 0 else {
    fail("--batch, --rank and --steps must be positive, --seq at least 2 and --warmup not negative")
}
let checkpointing = bench.flag("--checkpointing")
let targetNames = bench.option("--targets", "all")
let loraTargets = targetNames == "all" ? Set(Projection.allCases) : Set(targetNames.split(separator: ",").compactMap { Projection(rawValue: String($0)) })
if targetNames != "all" && loraTargets.count != targetNames.split(separator: ",").count { fail("--targets: unknown projection in \(targetNames)") }
let cache = bench.option("--cache", SyntheticModel.defaultCache)
do { try BLAS.load() } catch { fail("\(error)") }

let synthetic = bench.syntheticModel(shapeName, cache: cache)
let weights = synthetic.weights, rssBeforeLoad = synthetic.rssBeforeLoad
let shape = weights.shape
let adapters = LoRAAdapters(shape: shape, config: LoRAConfig(rank: rank, alpha: alpha, targets: loraTargets, seed: 1))
let model = LlamaModel(weights: weights, adapters: adapters,
                       options: ModelLayoutOptions(batch: batchSize, seqLen: seqLen, gradientCheckpointing: checkpointing,
                                                   logitsChunkBytes: bench.intOption("--logits-chunk-mib", 64) << 20))
var random = SplitMix64(seed: 7)
let tokens = (0..<batchSize * seqLen).map { _ in Int32(random.next() % UInt64(shape.vocabSize)) }
var targets = tokens.dropFirst().map { $0 } + [TokenBatch.ignore]
for row in 1..<batchSize { targets[row * seqLen - 1] = TokenBatch.ignore }
let batch = TokenBatch(batch: batchSize, seqLen: seqLen, tokens: tokens, targets: targets)
var m = [Float](repeating: 0, count: adapters.parameterCount), v = m
let rssBeforeLoop = ProcessMemory.statusBytes("VmRSS")

var times: [Double] = [], losses: [Float] = []
for step in 1...(warmup + steps) {
    let start = DispatchTime.now().uptimeNanoseconds
    adapters.zeroGradients()
    losses.append(model.forwardBackward(batch))
    adamWStep(adapters.values, adapters.gradients, &m, &v, count: adapters.parameterCount, step: step, config: AdamWConfig(learningRate: 1e-4))
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    if step > warmup { times.append(seconds) }
    FileHandle.standardError.write(Data(String(format: "step %d: %.3f s, loss %.4f\n", step, seconds, losses.last!).utf8))
}
guard losses.allSatisfy(\.isFinite) else { fail("non-finite loss") }
// The forward alone (evaluation), for the split of the step's time.
let forwardMedian = medianSeconds(runs: 3, warmup: 0) { blackHole(model.loss(batch)) }
let stepMedian = median(times)
let n = Double(batchSize * seqLen)

// Model math per step (multiply-adds x 2), stated so PyTorch's figure can be computed the same way:
// frozen linears and lm_head: forward + input gradient = 4 N P (+ 2 N P_recomputed with checkpointing,
// where the recompute skips down_proj); LoRA: forward 2 N P_lora, backward 4 N P_lora; causal
// attention: forward 2 B H T^2 D (QK^T and PV on the causal half), backward 2.5x that.
let C = shape.hiddenSize, F = shape.intermediateSize, L = shape.layers, V = shape.vocabSize
let hd = shape.heads * shape.headDim, kvd = shape.kvHeads * shape.headDim
let linearParameters = Double(L * (2 * C * hd + 2 * C * kvd + 3 * C * F))
let recomputed = checkpointing ? Double(L * (2 * C * hd + 2 * C * kvd + 2 * C * F)) : 0
let attentionForward = Double(L) * 2 * Double(batchSize * shape.heads * seqLen * seqLen * shape.headDim)
let flops = 4 * n * (linearParameters + Double(V * C)) + 2 * n * recomputed + 6 * n * Double(adapters.parameterCount)
    + attentionForward * (3.5 + (checkpointing ? 1 : 0))

let result: [String: Any] = [
    "shape": shapeName, "batch": batchSize, "seq": seqLen, "rank": rank, "alpha": Double(alpha),
    "targets": targetNames, "base": "nf4 (double quant)", "gradient_checkpointing": checkpointing,
    "steps_timed": steps, "warmup": warmup, "step_seconds_median": stepMedian, "step_seconds_min": times.min()!, "step_seconds_max": times.max()!,
    "tokens_per_s": n / stepMedian, "forward_only_seconds_median": forwardMedian, "model_GFLOP_per_step": flops / 1e9, "model_GFLOPs": flops / stepMedian / 1e9,
    "lora_parameters": adapters.parameterCount, "losses": losses.map(Double.init),
    "activation_bytes": model.activationBytes, "workspace_bytes": model.workspaceBytes,
    "rss_before_load_bytes": rssBeforeLoad, "rss_before_loop_bytes": rssBeforeLoop, "peak_rss_bytes": ProcessMemory.statusBytes("VmHWM"),
]
bench.report(result)
FileHandle.standardError.write(Data(String(format: "%@ %dx%d r=%d%@: %.0f tokens/s, %.3f s/step (forward alone %.3f s), %.0f GFLOP/s model math, peak RSS %.0f MiB\n",
    shapeName, batchSize, seqLen, rank, checkpointing ? " +ckpt" : "", n / stepMedian, stepMedian, forwardMedian, flops / stepMedian / 1e9,
    Double(ProcessMemory.statusBytes("VmHWM")) / 1048576).utf8))
