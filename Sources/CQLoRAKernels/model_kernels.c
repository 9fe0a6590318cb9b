// Small elementwise loops of the model (residual adds, biases, LoRA dropout); see CQLoRAKernels.h.
#include "CQLoRAKernels.h"
#include "qlora_internal.h"

#include <math.h>

QLORA_CLONES
void qlora_add(float *y, const float *x, size_t count) {
    for (size_t i = 0; i < count; i++) y[i] += x[i];
}

QLORA_CLONES
void qlora_add_row_bias(float *y, const float *bias, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *row = y + r * cols;
        for (size_t i = 0; i < cols; i++) row[i] += bias[i];
    }
}

// SplitMix64's output function on a counter: a stateless hash, so any element's mask bit can be
// regenerated in the backward without storing the mask.
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

QLORA_CLONES
void qlora_dropout(float *out, const float *in, size_t count, float p, uint64_t seed, uint64_t first) {
    const float keep_scale = 1.0f / (1.0f - p);
    // Keep when the top 24 bits, as a uniform in [0, 1), are >= p.
    const uint32_t threshold = (uint32_t)(p * 16777216.0f);
    for (size_t i = 0; i < count; i++) {
        const uint32_t u = (uint32_t)(mix64(seed + 0x9E3779B97F4A7C15ull * (first + i + 1)) >> 40);
        out[i] = u >= threshold ? in[i] * keep_scale : 0.0f;
    }
}

QLORA_CLONES
void qlora_adamw_step(float *param, const float *grad, float *m, float *v, size_t count, float grad_scale,
                      float decay, float w1, float beta2, float w2, float eps, float neg_step_size,
                      float bias_correction2_sqrt) {
    // Rounding follows torch's CPU kernels op by op (measured bitwise in tools' probes): lerp is one
    // fma, addcmul's GCC build contracts value * t1 * t2 + self into fma(value * t1, t2, self).
    // No other contraction: sums of products below must round as written.
#pragma clang fp contract(off)
    for (size_t i = 0; i < count; i++) {
        const float g = grad[i] * grad_scale;  // clip_grad_norm_: grad.mul_(clip_coef_clamped)
        const float p = param[i] * decay;  // param.mul_(1 - lr * weight_decay)
        const float mi = fmaf(w1, g - m[i], m[i]);  // exp_avg.lerp_(grad, 1 - beta1), weight < 0.5
        const float vi = fmaf(w2 * g, g, v[i] * beta2);  // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        const float denom = sqrtf(vi) / bias_correction2_sqrt + eps;  // (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
        m[i] = mi;
        v[i] = vi;
        param[i] = p + neg_step_size * mi / denom;  // param.addcdiv_(exp_avg, denom, value=-step_size)
    }
}
