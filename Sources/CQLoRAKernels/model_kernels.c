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
void qlora_adamw_step(float *param, const float *grad, float *m, float *v, size_t count, float decay, float w1,
                      float beta2, float w2, float eps, float neg_step_size, float bias_correction2_sqrt) {
    for (size_t i = 0; i < count; i++) {
        const float g = grad[i];
        const float p = param[i] * decay;
        const float mi = m[i] + w1 * (g - m[i]);  // torch lerp with weight < 0.5
        const float vi = v[i] * beta2 + w2 * g * g;  // mul_ then addcmul_: self + value * t1 * t2
        const float denom = sqrtf(vi) / bias_correction2_sqrt + eps;
        m[i] = mi;
        v[i] = vi;
        param[i] = p + neg_step_size * mi / denom;  // addcdiv_: self + value * t1 / t2
    }
}
