// An independent Double-precision Llama forward built from the Reference twins and plain loops,
// reading the same fp32 checkpoint and PEFT adapter. Central differences of its loss check the
// hand-written backward of LlamaModel.
import Foundation
import QLoRAIO
import QLoRAKernels
import QLoRAModel

struct ReferenceLlama {
    let shape: ModelShape
    /// Hugging Face name -> values, and PEFT key -> values (both mutable for perturbation).
    var weights: [String: [Double]] = [:]
    var lora: [String: [Double]] = [:]
    let config: LoRAConfig

    init(directory: String, adapterFile: String, config: LoRAConfig) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/config.json"))
        shape = try ModelShape(config: JSONSerialization.jsonObject(with: data) as! [String: Any], path: directory)
        self.config = config
        for (path, target) in [(directory + "/model.safetensors", 0), (adapterFile, 1)] {
            let file = try SafetensorsFile(path: path)
            for tensor in file.tensors where tensor.dtype == .F32 {
                let pointer = file.data(of: tensor)
                let values = (0..<tensor.elementCount).map { Double(pointer.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self)) }
                if target == 0 { weights[tensor.name] = values } else { lora[tensor.name] = values }
            }
        }
    }

    /// y (n, out) = x (n, in) W^T for W (out, in).
    private func linear(_ x: [Double], _ w: [Double], rows n: Int, out: Int) -> [Double] {
        let inFeatures = w.count / out
        var y = [Double](repeating: 0, count: n * out)
        for r in 0..<n {
            for o in 0..<out {
                var sum = 0.0
                for i in 0..<inFeatures { sum += x[r * inFeatures + i] * w[o * inFeatures + i] }
                y[r * out + o] = sum
            }
        }
        return y
    }

    /// A frozen projection with its bias and LoRA (no dropout).
    private func project(_ x: [Double], layer: Int, _ p: Projection, rows n: Int) -> [Double] {
        let name = "model.layers.\(layer).\(p.modulePath)"
        let w = weights[name + ".weight"]!
        let out = w.count / (x.count / n)
        var y = linear(x, w, rows: n, out: out)
        if let bias = weights[name + ".bias"] { for i in 0..<y.count { y[i] += bias[i % out] } }
        let key = "base_model.model.\(name)"
        if let a = lora[key + ".lora_A.weight"], let b = lora[key + ".lora_B.weight"] {
            let xa = linear(x, a, rows: n, out: config.rank)
            let delta = linear(xa, b, rows: n, out: out)
            for i in 0..<y.count { y[i] += Double(config.scale) * delta[i] }
        }
        return y
    }

    private func rmsNorm(_ x: [Double], _ weight: [Double], rows n: Int) -> [Double] {
        var out = x, rstd = [Double](repeating: 0, count: n)
        Reference.rmsNormForward(&out, &rstd, x, weight, rows: n, dim: weight.count, eps: Double(shape.rmsNormEps))
        return out
    }

    /// Mean cross entropy over the batch's targets.
    func loss(_ batch: TokenBatch) -> Double {
        let n = batch.tokens.count, C = shape.hiddenSize, D = shape.headDim, H = shape.heads, Hkv = shape.kvHeads
        let embedding = weights["model.embed_tokens.weight"]!
        var x = [Double](repeating: 0, count: n * C)
        for (i, token) in batch.tokens.enumerated() { for c in 0..<C { x[i * C + c] = embedding[Int(token) * C + c] } }
        let inverse = RoPETable.inverseFrequencies(headDim: D, config: shape.rope)
        var cosTable: [Double] = [], sinTable: [Double] = []
        for p in 0..<batch.seqLen { for f in inverse { cosTable.append(cos(Double(p) * Double(f))); sinTable.append(sin(Double(p) * Double(f))) } }
        for l in 0..<shape.layers {
            let prefix = "model.layers.\(l)."
            let ln1 = rmsNorm(x, weights[prefix + "input_layernorm.weight"]!, rows: n)
            var q = project(ln1, layer: l, .q, rows: n), k = project(ln1, layer: l, .k, rows: n)
            let v = project(ln1, layer: l, .v, rows: n)
            Reference.ropeForward(&q, batch.positions, cosTable, sinTable, rows: n, heads: H, headDim: D, maxPositions: batch.seqLen)
            Reference.ropeForward(&k, batch.positions, cosTable, sinTable, rows: n, heads: Hkv, headDim: D, maxPositions: batch.seqLen)
            var att = [Double](repeating: 0, count: n * H * D), lse = [Double](repeating: 0, count: n * H)
            Reference.attentionForward(&att, &lse, q, k, v, batch.segmentStarts, batch: batch.batch, seqLen: batch.seqLen,
                                       heads: H, kvHeads: Hkv, headDim: D)
            let o = project(att, layer: l, .o, rows: n)
            for i in 0..<x.count { x[i] += o[i] }
            let ln2 = rmsNorm(x, weights[prefix + "post_attention_layernorm.weight"]!, rows: n)
            let gate = project(ln2, layer: l, .gate, rows: n), up = project(ln2, layer: l, .up, rows: n)
            var hidden = gate
            Reference.swigluForward(&hidden, gate, up, count: gate.count)
            let down = project(hidden, layer: l, .down, rows: n)
            for i in 0..<x.count { x[i] += down[i] }
        }
        let final = rmsNorm(x, weights["model.norm.weight"]!, rows: n)
        let head = weights["lm_head.weight"] ?? embedding
        let logits = linear(final, head, rows: n, out: shape.vocabSize)
        var losses = [Double](repeating: 0, count: n)
        Reference.crossEntropyForward(&losses, logits, batch.targets, rows: n, vocab: shape.vocabSize)
        return losses.reduce(0, +) / Double(batch.targetCount)
    }
}
