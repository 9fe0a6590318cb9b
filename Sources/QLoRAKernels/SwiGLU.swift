// SwiGLU, the Llama MLP activation: out = silu(gate) * up (transformers LlamaMLP
// `down_proj(act_fn(gate_proj(x)) * up_proj(x))`), forward and backward, elementwise.
import CQLoRAKernels

/// SwiGLU forward: `out[i] = silu(gate[i]) * up[i]`, `silu(g) = g * sigmoid(g) = g / (1 + e^-g)`
/// (https://pytorch.org/docs/stable/generated/torch.nn.SiLU.html).
/// - Parameters:
///   - out: `(count)`, overwritten. May alias neither input.
///   - gate, up: `(count)`.
public func swigluForward(
    _ out: UnsafeMutablePointer<Float>, _ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, count: Int
) {
    precondition(count >= 0)
    let out = UnsafeSendable(out), gate = UnsafeSendable(gate), up = UnsafeSendable(up)
    parallelChunks(count: count, granularity: 64, minimumChunk: rowsPerChunk(1)) { range in
        let first = range.lowerBound
        qlora_swiglu_forward(out.raw + first, gate.raw + first, up.raw + first, range.count)
    }
}

/// SwiGLU backward, with `s = sigmoid(gate[i])`:
/// `dUp[i] = dOut[i] * gate[i] * s`, `dGate[i] = dOut[i] * up[i] * s * (1 + gate[i] * (1 - s))`.
/// Overwrites `dGate` and `dUp`. `dGate` may be `gate` and `dUp` may be `up` (in place, to save
/// memory: each element's inputs are read before it is written); no other aliasing.
/// - Parameters:
///   - dGate, dUp: `(count)`, overwritten.
///   - dOut, gate, up: `(count)`.
public func swigluBackward(
    _ dGate: UnsafeMutablePointer<Float>, _ dUp: UnsafeMutablePointer<Float>, _ dOut: UnsafePointer<Float>,
    _ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, count: Int
) {
    precondition(count >= 0)
    let dGate = UnsafeSendable(dGate), dUp = UnsafeSendable(dUp), dOut = UnsafeSendable(dOut)
    let gate = UnsafeSendable(gate), up = UnsafeSendable(up)
    parallelChunks(count: count, granularity: 64, minimumChunk: rowsPerChunk(1)) { range in
        let first = range.lowerBound
        qlora_swiglu_backward(dGate.raw + first, dUp.raw + first, dOut.raw + first, gate.raw + first, up.raw + first,
                              range.count)
    }
}

extension Reference {
    /// Double twin of `swigluForward`.
    public static func swigluForward(
        _ out: UnsafeMutablePointer<Double>, _ gate: UnsafePointer<Double>, _ up: UnsafePointer<Double>, count: Int
    ) {
        for i in 0..<count { out[i] = gate[i] / (1 + exp(-gate[i])) * up[i] }
    }

    /// Double twin of `swigluBackward` (the same aliasing is allowed).
    public static func swigluBackward(
        _ dGate: UnsafeMutablePointer<Double>, _ dUp: UnsafeMutablePointer<Double>, _ dOut: UnsafePointer<Double>,
        _ gate: UnsafePointer<Double>, _ up: UnsafePointer<Double>, count: Int
    ) {
        for i in 0..<count {
            let g = gate[i], u = up[i], s = 1 / (1 + exp(-g))
            dUp[i] = dOut[i] * g * s
            dGate[i] = dOut[i] * u * (s + g * s * (1 - s))
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
