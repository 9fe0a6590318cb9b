// Elementwise ops of the decoder and the adapters: residual adds, bias rows, and inverted dropout
// with a mask that is a pure function of (seed, element index), so a backward (or a recomputation
// under gradient checkpointing) applies exactly the forward's mask.
import CQLoRAKernels

/// `y[i] += x[i]` for `count` values: ACCUMULATES into `y`. `x` may not alias `y`.
public func addInPlace(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
    precondition(count >= 0)
    qlora_add(y, x, count)
}

/// `y[r, c] += bias[c]` for a (rows, cols) row-major `y`: ACCUMULATES into `y`.
public func addRowBias(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, cols: Int) {
    precondition(rows >= 0 && cols >= 0)
    qlora_add_row_bias(y, bias, rows, cols)
}

/// Inverted dropout (torch.nn.Dropout in training): `out[i] = input[i] / (1 - p)` where element
/// `first + i` is kept, else 0; element j is dropped when the top 24 bits of SplitMix64's mix of
/// `seed + 0x9E3779B97F4A7C15 * (j + 1)`, as a uniform in [0, 1), are below p. The same call on a
/// gradient is dropout's backward. Overwrites `out`, which may alias `input`.
/// - Precondition: `0 <= p < 1`, `count >= 0`.
public func dropout(_ out: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, count: Int, p: Float, seed: UInt64, first: UInt64 = 0) {
    precondition(p >= 0 && p < 1 && count >= 0)
    qlora_dropout(out, input, count, p, seed, first)
}

extension Reference {
    /// Scalar twin of `dropout` (the mask bit for bit; the same aliasing is allowed).
    public static func dropout(_ out: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, count: Int, p: Float, seed: UInt64,
                               first: UInt64 = 0) {
        let threshold = UInt32(p * 16_777_216)
        let keepScale = 1 / (1 - p)
        for i in 0..<count {
            let u = UInt32(truncatingIfNeeded: SplitMix64.mix(seed &+ 0x9E37_79B9_7F4A_7C15 &* (first &+ UInt64(i) &+ 1)) >> 40)
            out[i] = u >= threshold ? input[i] * keepScale : 0
        }
    }
}
