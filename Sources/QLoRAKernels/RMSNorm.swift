// RMSNorm forward and backward (Hugging Face LlamaRMSNorm, fp32), with Double reference twins.
// The norm weight is frozen in QLoRA, so there is no weight gradient.
import CQLoRAKernels

/// RMSNorm forward: `rstd[r] = 1 / sqrt(mean_i(inp[r,i]^2) + eps)`,
/// `out[r,i] = weight[i] * (inp[r,i] * rstd[r])` (that order, as
/// https://github.com/huggingface/transformers/blob/main/src/transformers/models/llama/modeling_llama.py LlamaRMSNorm).
/// The sum of squares is accumulated in double.
/// - Parameters:
///   - out: `(rows, dim)`, overwritten. Must not alias `inp`.
///   - rstd: `(rows)`, overwritten; kept for the backward.
///   - inp: `(rows, dim)`.
///   - weight: `(dim)`.
/// - Precondition: `rows >= 0`, `dim > 0`, `eps >= 0`.
public func rmsNormForward(
    _ out: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>,
    _ weight: UnsafePointer<Float>, rows: Int, dim: Int, eps: Float
) {
    precondition(rows >= 0 && dim > 0 && eps >= 0)
    let out = UnsafeSendable(out), rstd = UnsafeSendable(rstd)
    let inp = UnsafeSendable(inp), weight = UnsafeSendable(weight)
    parallelChunks(count: rows, minimumChunk: rowsPerChunk(dim)) { range in
        let first = range.lowerBound
        qlora_rmsnorm_forward(out.raw + first * dim, rstd.raw + first, inp.raw + first * dim, weight.raw, range.count, dim,
                              eps)
    }
}

/// RMSNorm backward with respect to the input:
/// `dInp[r,i] += rstd[r] * weight[i] * dOut[r,i]`
///              `- inp[r,i] * rstd[r]^3 / dim * sum_j weight[j] * dOut[r,j] * inp[r,j]`.
/// **Accumulates** into `dInp` (the residual stream's gradient), so the caller zeroes it first if needed.
/// - Parameters:
///   - dInp: `(rows, dim)`, accumulated. Must not alias any input.
///   - dOut: `(rows, dim)`, the gradient of `out`.
///   - inp: `(rows, dim)`, the forward's input.
///   - weight: `(dim)`.
///   - rstd: `(rows)`, from `rmsNormForward`.
/// - Precondition: `rows >= 0`, `dim > 0`.
public func rmsNormBackward(
    _ dInp: UnsafeMutablePointer<Float>, _ dOut: UnsafePointer<Float>, _ inp: UnsafePointer<Float>,
    _ weight: UnsafePointer<Float>, _ rstd: UnsafePointer<Float>, rows: Int, dim: Int
) {
    precondition(rows >= 0 && dim > 0)
    let dInp = UnsafeSendable(dInp), dOut = UnsafeSendable(dOut), inp = UnsafeSendable(inp)
    let weight = UnsafeSendable(weight), rstd = UnsafeSendable(rstd)
    parallelChunks(count: rows, minimumChunk: rowsPerChunk(dim)) { range in
        let first = range.lowerBound
        qlora_rmsnorm_backward(dInp.raw + first * dim, dOut.raw + first * dim, inp.raw + first * dim, weight.raw,
                               rstd.raw + first, range.count, dim)
    }
}

extension Reference {
    /// Double twin of `rmsNormForward`.
    public static func rmsNormForward(
        _ out: UnsafeMutablePointer<Double>, _ rstd: UnsafeMutablePointer<Double>, _ inp: UnsafePointer<Double>,
        _ weight: UnsafePointer<Double>, rows: Int, dim: Int, eps: Double
    ) {
        for r in 0..<rows {
            var squares = 0.0
            for i in 0..<dim { squares += inp[r * dim + i] * inp[r * dim + i] }
            rstd[r] = 1 / (squares / Double(dim) + eps).squareRoot()
            for i in 0..<dim { out[r * dim + i] = weight[i] * (inp[r * dim + i] * rstd[r]) }
        }
    }

    /// Double twin of `rmsNormBackward` (accumulates into `dInp`).
    public static func rmsNormBackward(
        _ dInp: UnsafeMutablePointer<Double>, _ dOut: UnsafePointer<Double>, _ inp: UnsafePointer<Double>,
        _ weight: UnsafePointer<Double>, _ rstd: UnsafePointer<Double>, rows: Int, dim: Int
    ) {
        for r in 0..<rows {
            // out[i] = weight[i] * (inp[i] * rstd), d rstd / d inp[i] = -rstd^3 * inp[i] / dim
            var dot = 0.0
            for j in 0..<dim { dot += weight[j] * dOut[r * dim + j] * inp[r * dim + j] }
            let s = rstd[r]
            for i in 0..<dim {
                let x = inp[r * dim + i]
                dInp[r * dim + i] += s * weight[i] * dOut[r * dim + i] - x * s * s * s / Double(dim) * dot
            }
        }
    }
}
