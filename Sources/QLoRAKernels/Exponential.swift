// The vectorizable e^x the fp32 kernels use (softmax, SiLU, cross entropy), exposed so tests can
// measure its error against the C library's expf.
import CQLoRAKernels

/// `out[i] = e^x[i]` for `count` values with the kernels' branch-free Cephes-style exp: a few ulp
/// of the correctly rounded result (measured in ExponentialTests), -inf and inputs below about
/// -104 give 0, inputs above about 88.7 give +inf, NaN stays NaN. Overwrites `out`, which may be `x`.
public func exponential(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
    precondition(count >= 0)
    qlora_exp(out, x, count)
}
