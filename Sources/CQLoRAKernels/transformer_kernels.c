// Hot loops of a Llama decoder's per-op forward and backward in fp32 (see CQLoRAKernels.h; the
// semantics, preconditions and the Double reference twins are on the Swift wrappers in
// QLoRAKernels). Plain loops clang vectorizes, IEEE semantics (no fast-math): sums that would
// otherwise need reassociation to vectorize are done in double under `fp reassociate`.
#include "CQLoRAKernels.h"
#include "qlora_internal.h"

#include <math.h>

// Helpers are always inlined: a helper left out of line would be compiled only for the default
// target, not for each clone of its caller.
#define QLORA_INLINE static inline __attribute__((always_inline))

QLORA_INLINE size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

QLORA_CLONES
void qlora_exp(float *out, const float *x, size_t count) {
    for (size_t i = 0; i < count; i++) out[i] = qlora_expf(x[i]);
}

// max of x[0..<n] (n >= 1) with 16 running lanes, which vectorizes without fast-math (a scalar
// `m = x > m ? x : m` reduction does not). NaNs may be skipped; callers' later sums propagate them.
QLORA_INLINE float row_max(const float *x, size_t n) {
    float lanes[16];
    for (size_t j = 0; j < 16; j++) lanes[j] = x[0];
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (size_t j = 0; j < 16; j++) lanes[j] = x[i + j] > lanes[j] ? x[i + j] : lanes[j];
    float m = x[0];
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    for (size_t j = 0; j < 16; j++) m = lanes[j] > m ? lanes[j] : m;
    return m;
}

// sum of x[0..<n] in double, reassociated so it vectorizes. Kept apart from the loops that fill x
// so that those vectorize at full float width.
QLORA_INLINE double sum_double(const float *x, size_t n) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
#pragma clang fp reassociate(on)
        sum += x[i];
    }
    return sum;
}

// MARK: RMSNorm (Hugging Face LlamaRMSNorm)

QLORA_CLONES
void qlora_rmsnorm_forward(float *restrict out, float *restrict rstd, const float *restrict inp,
                           const float *restrict weight, size_t rows, size_t dim, float eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *x = inp + r * dim;
        float *o = out + r * dim;
        double squares = 0;
        for (size_t i = 0; i < dim; i++) {
#pragma clang fp reassociate(on)
            squares += (double)x[i] * x[i];
        }
        const float variance = (float)(squares / (double)dim);
        const float rs = 1.0f / sqrtf(variance + eps);
        rstd[r] = rs;
        for (size_t i = 0; i < dim; i++) o[i] = weight[i] * (x[i] * rs);
    }
}

QLORA_CLONES
void qlora_rmsnorm_backward(float *restrict dinp, const float *restrict dout, const float *restrict inp,
                            const float *restrict weight, const float *restrict rstd, size_t rows, size_t dim) {
    for (size_t r = 0; r < rows; r++) {
        const float *x = inp + r * dim, *g = dout + r * dim;
        float *dx = dinp + r * dim;
        // forward: out[i] = weight[i] * (x[i] * rstd), rstd = (mean_j x[j]^2 + eps)^(-1/2), so
        // dx[i] = rstd * weight[i] * g[i] - x[i] * rstd^3 / dim * sum_j weight[j] * g[j] * x[j].
        double dot = 0;
        for (size_t i = 0; i < dim; i++) {
#pragma clang fp reassociate(on)
            dot += (double)(weight[i] * g[i]) * x[i];
        }
        const float rs = rstd[r];
        const float c = (float)(dot * rs * rs * rs / (double)dim);
        for (size_t i = 0; i < dim; i++) dx[i] += rs * (weight[i] * g[i]) - x[i] * c;
    }
}

// MARK: RoPE (Hugging Face rotate_half layout)

QLORA_CLONES
void qlora_rope(float *x, const int32_t *positions, const float *cos_table, const float *sin_table, size_t rows,
                size_t heads, size_t head_dim, float sin_sign) {
    const size_t half = head_dim / 2;
    for (size_t r = 0; r < rows; r++) {
        const float *c = cos_table + (size_t)positions[r] * half;
        const float *s = sin_table + (size_t)positions[r] * half;
        for (size_t h = 0; h < heads; h++) {
            float *x1 = x + (r * heads + h) * head_dim, *x2 = x1 + half;
            // Iteration i reads and writes only x1[i] and x2[i]: no dependence across iterations.
#pragma clang loop vectorize(assume_safety)
            for (size_t i = 0; i < half; i++) {
                const float a = x1[i], b = x2[i], si = sin_sign * s[i];
                x1[i] = a * c[i] - b * si;
                x2[i] = b * c[i] + a * si;
            }
        }
    }
}

// MARK: SwiGLU

QLORA_CLONES
void qlora_swiglu_forward(float *restrict out, const float *restrict gate, const float *restrict up, size_t count) {
    for (size_t i = 0; i < count; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + qlora_expf(-g)) * up[i];
    }
}

QLORA_CLONES
void qlora_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                           size_t count) {
    // dgate may be gate and dup may be up: each iteration reads its inputs before writing the
    // same index, so there is no dependence across iterations.
#pragma clang loop vectorize(assume_safety)
    for (size_t i = 0; i < count; i++) {
        const float g = gate[i], u = up[i], d = dout[i];
        const float s = 1.0f / (1.0f + qlora_expf(-g));
        // forward: out = g * s * u; d(g * s)/dg = s + g * s * (1 - s) = s * (1 + g * (1 - s))
        dup[i] = d * (g * s);
        dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
    }
}

// MARK: Cross entropy

QLORA_CLONES
void qlora_cross_entropy_forward_backward(float *logits, float *losses, const int32_t *targets, size_t rows,
                                          size_t vocab, float scale) {
    for (size_t r = 0; r < rows; r++) {
        float *x = logits + r * vocab;
        if (targets[r] < 0) {  // ignore_index -100
            losses[r] = 0;
            memset(x, 0, vocab * sizeof(float));
            continue;
        }
        const size_t target = (size_t)targets[r];
        const float m = row_max(x, vocab), target_logit = x[target];
        // e^(x - m) in place, summed, then scaled to scale * softmax.
        for (size_t i = 0; i < vocab; i++) x[i] = qlora_expf(x[i] - m);
        const double sum = sum_double(x, vocab);
        losses[r] = (float)((double)m + log(sum) - (double)target_logit);
        const float factor = (float)(scale / sum);
        for (size_t i = 0; i < vocab; i++) x[i] *= factor;
        x[target] -= scale;
    }
}

QLORA_CLONES
void qlora_cross_entropy_forward(float *losses, const float *logits, const int32_t *targets, size_t rows,
                                 size_t vocab) {
    for (size_t r = 0; r < rows; r++) {
        const float *x = logits + r * vocab;
        if (targets[r] < 0) {
            losses[r] = 0;
            continue;
        }
        const float m = row_max(x, vocab);
        double sum = 0;
        for (size_t i = 0; i < vocab; i++) {
#pragma clang fp reassociate(on)
            sum += qlora_expf(x[i] - m);
        }
        losses[r] = (float)((double)m + log(sum) - (double)x[targets[r]]);
    }
}

// MARK: Attention
//
// One work item is a (batch, head) for the forward and a (batch, kv head) for the backward. Keys
// (and values, in the backward) of the item's kv head are transposed into scratch as (D, Tp), so
// the scores of consecutive keys are vector FMAs across keys. Only keys seg_start[t] <= s <= t are
// used; scores are computed for whole 16-key blocks around that range (the extra ones are ignored).
// Scratch per item: kT (D, Tp) | vT (D, Tp) | row0 (Tp) | row1 (Tp) floats, Tp = T rounded up to 16.

size_t qlora_attention_scratch_floats(size_t T, size_t D) { return 2 * D * pad16(T) + 2 * pad16(T); }

// dst (D, Tp) = src (T rows of stride ld, D values each) transposed; padding columns are zeroed.
QLORA_INLINE void transpose_rows(float *restrict dst, const float *restrict src, size_t T, size_t Tp, size_t D,
                                 size_t ld) {
    for (size_t s = 0; s < T; s++)
        for (size_t d = 0; d < D; d++) dst[d * Tp + s] = src[s * ld + d];
    for (size_t d = 0; d < D; d++)
        for (size_t s = T; s < Tp; s++) dst[d * Tp + s] = 0;
}

// out[j] = scale * sum_d x[d] * yT[d * Tp + j] for j < W. W is a constant at each call, so the
// accumulators stay in vector registers.
QLORA_INLINE void dot_block(float *restrict out, const float *restrict x, const float *restrict yT, size_t Tp,
                            size_t D, float scale, size_t W) {
    float acc[64];
    for (size_t j = 0; j < W; j++) acc[j] = 0;
    for (size_t d = 0; d < D; d++) {
        const float xd = x[d];
        const float *row = yT + d * Tp;
        for (size_t j = 0; j < W; j++) acc[j] += xd * row[j];
    }
    for (size_t j = 0; j < W; j++) out[j] = acc[j] * scale;
}

// out[s] = scale * (x . y_s) for s in [lo, hi), both multiples of 16, hi <= Tp; yT is (D, Tp).
// Blocks of 64 keys give four independent accumulator chains.
QLORA_INLINE void dot_keys(float *restrict out, const float *restrict x, const float *restrict yT, size_t Tp, size_t D,
                           float scale, size_t lo, size_t hi) {
    size_t s = lo;
    for (; s + 64 <= hi; s += 64) dot_block(out + s, x, yT + s, Tp, D, scale, 64);
    for (; s < hi; s += 16) dot_block(out + s, x, yT + s, Tp, D, scale, 16);
}

// out[d] = scale * sum_{s in [lo, hi)} p[s] * rows[s * ld + d] for d < D.
QLORA_INLINE void weighted_rows_d(float *restrict out, const float *restrict p, const float *restrict rows, size_t ld,
                                  size_t lo, size_t hi, size_t D, float scale) {
    float acc[QLORA_ATTENTION_MAX_HEAD_DIM];
    for (size_t d = 0; d < D; d++) acc[d] = 0;
    for (size_t s = lo; s < hi; s++) {
        const float ps = p[s];
        const float *row = rows + s * ld;
        for (size_t d = 0; d < D; d++) acc[d] += ps * row[d];
    }
    for (size_t d = 0; d < D; d++) out[d] = acc[d] * scale;
}

// rows[s * ld + d] += c[s] * x[d] for s in [lo, hi), d < D.
QLORA_INLINE void add_outer_d(float *restrict rows, const float *restrict c, const float *restrict x, size_t ld,
                              size_t lo, size_t hi, size_t D) {
    float xs[QLORA_ATTENTION_MAX_HEAD_DIM];
    for (size_t d = 0; d < D; d++) xs[d] = x[d];
    for (size_t s = lo; s < hi; s++) {
        const float cs = c[s];
        float *row = rows + s * ld;
        for (size_t d = 0; d < D; d++) row[d] += cs * xs[d];
    }
}

// The per-row loops above with D a constant for Llama's head sizes (64, 128): fully unrolled,
// register-resident. One dispatch point each.
QLORA_INLINE void weighted_rows(float *restrict out, const float *restrict p, const float *restrict rows, size_t ld,
                                size_t lo, size_t hi, size_t D, float scale) {
    if (D == 64) weighted_rows_d(out, p, rows, ld, lo, hi, 64, scale);
    else if (D == 128) weighted_rows_d(out, p, rows, ld, lo, hi, 128, scale);
    else weighted_rows_d(out, p, rows, ld, lo, hi, D, scale);
}

QLORA_INLINE void add_outer(float *restrict rows, const float *restrict c, const float *restrict x, size_t ld,
                            size_t lo, size_t hi, size_t D) {
    if (D == 64) add_outer_d(rows, c, x, ld, lo, hi, 64);
    else if (D == 128) add_outer_d(rows, c, x, ld, lo, hi, 128);
    else add_outer_d(rows, c, x, ld, lo, hi, D);
}

// 1/sqrt(D) rounded to float, as Hugging Face's `scaling = head_dim**-0.5` multiplies an fp32 tensor.
QLORA_INLINE float attention_scale(size_t D) { return (float)(1.0 / sqrt((double)D)); }

QLORA_CLONES
void qlora_attention_forward_head(float *out, float *lse, const float *q, const float *k, const float *v,
                                  const int32_t *seg_start, float *scratch, size_t T, size_t D, size_t ldq,
                                  size_t ldkv) {
    const size_t Tp = pad16(T);
    const float scale = attention_scale(D);
    float *kT = scratch, *e = scratch + 2 * D * Tp;
    transpose_rows(kT, k, T, Tp, D, ldkv);
    for (size_t t = 0; t < T; t++) {
        const size_t s0 = (size_t)seg_start[t], s1 = t + 1;  // keys [s0, s1)
        dot_keys(e, q + t * ldq, kT, Tp, D, scale, s0 & ~(size_t)15, pad16(s1));
        const float m = row_max(e + s0, s1 - s0);
        for (size_t s = s0; s < s1; s++) e[s] = qlora_expf(e[s] - m);
        const double sum = sum_double(e + s0, s1 - s0);
        weighted_rows(out + t * ldq, e, v, ldkv, s0, s1, D, (float)(1.0 / sum));
        lse[t] = (float)((double)m + log(sum));
    }
}

QLORA_CLONES
void qlora_attention_backward_group(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                    const float *lse, const float *q, const float *k, const float *v,
                                    const int32_t *seg_start, float *scratch, size_t T, size_t D, size_t group,
                                    size_t ldq, size_t ldkv) {
    const size_t Tp = pad16(T);
    const float scale = attention_scale(D);
    float *kT = scratch, *vT = scratch + D * Tp, *p = scratch + 2 * D * Tp, *ds = p + Tp;
    transpose_rows(kT, k, T, Tp, D, ldkv);
    transpose_rows(vT, v, T, Tp, D, ldkv);
    for (size_t s = 0; s < T; s++) {
        memset(dk + s * ldkv, 0, D * sizeof(float));
        memset(dv + s * ldkv, 0, D * sizeof(float));
    }
    for (size_t g = 0; g < group; g++) {
        for (size_t t = 0; t < T; t++) {
            const size_t row = t * ldq + g * D;
            const size_t s0 = (size_t)seg_start[t], s1 = t + 1;
            const float *qt = q + row, *gt = dout + row, *ot = out + row;
            // forward: S[s] = scale * q_t . k_s; P[s] = e^(S[s] - lse_t); out_t = sum_s P[s] v_s
            dot_keys(p, qt, kT, Tp, D, scale, s0 & ~(size_t)15, pad16(s1));
            // dP[s] = dout_t . v_s
            dot_keys(ds, gt, vT, Tp, D, 1.0f, s0 & ~(size_t)15, pad16(s1));
            // D_t = dout_t . out_t = sum_s P[s] dP[s]; dS[s] = P[s] (dP[s] - D_t)
            float dt = 0;
            for (size_t d = 0; d < D; d++) dt += gt[d] * ot[d];
            const float lse_t = lse[g * T + t];
            for (size_t s = s0; s < s1; s++) {
                p[s] = qlora_expf(p[s] - lse_t);
                ds[s] = p[s] * (ds[s] - dt);
            }
            weighted_rows(dq + row, ds, k, ldkv, s0, s1, D, scale);  // dq_t = scale * sum_s dS[s] k_s
            add_outer(dk, ds, qt, ldkv, s0, s1, D);                  // dk_s += dS[s] q_t (scaled below)
            add_outer(dv, p, gt, ldkv, s0, s1, D);                   // dv_s += P[s] dout_t
        }
    }
    for (size_t s = 0; s < T; s++)
        for (size_t d = 0; d < D; d++) dk[s * ldkv + d] *= scale;
}
