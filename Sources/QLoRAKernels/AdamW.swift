// The AdamW update of torch.optim.AdamW (torch 2.15, single-tensor path), elementwise in C.
// Paging of the moments and clipping are the optimizer's business (QLoRAOptim); this is the arithmetic.
import CQLoRAKernels
#if canImport(Glibc)
import Glibc
#endif

/// torch.optim.AdamW hyperparameters, with its defaults.
public struct AdamWConfig: Sendable, Equatable {
    public var learningRate: Double
    public var beta1: Double
    public var beta2: Double
    public var eps: Double
    public var weightDecay: Double

    public init(learningRate: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0.01) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
    }
}

/// One AdamW step `step` (1-based) on `count` parameters, in place on `param`, `m` and `v`:
/// the scalars are computed in Double as torch does in Python (`bias_correction1 = 1 - beta1**step`,
/// `step_size = lr / bias_correction1`, `bias_correction2_sqrt = sqrt(1 - beta2**step)`), then
/// the float32 elementwise update. `gradientScale` multiplies each gradient first, as
/// `torch.nn.utils.clip_grad_norm_` does in place (1 leaves it exact). No aliasing between the four arrays.
public func adamWStep(
    _ param: UnsafeMutablePointer<Float>, _ grad: UnsafePointer<Float>, _ m: UnsafeMutablePointer<Float>,
    _ v: UnsafeMutablePointer<Float>, count: Int, step: Int, config: AdamWConfig, gradientScale: Float = 1
) {
    precondition(step >= 1 && count >= 0)
    let c = config
    let stepSize = c.learningRate / (1 - pow(c.beta1, Double(step)))
    let correction2 = (1 - pow(c.beta2, Double(step))).squareRoot()
    qlora_adamw_step(param, grad, m, v, count, gradientScale, Float(1 - c.learningRate * c.weightDecay), Float(1 - c.beta1),
                     Float(c.beta2), Float(1 - c.beta2), Float(c.eps), Float(-stepSize), Float(correction2))
}
