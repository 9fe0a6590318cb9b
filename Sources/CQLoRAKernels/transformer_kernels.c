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
// One work item is a (batch, head) for the forward and a (batch, kv head) for the backward. The
// item's keys and values are first copied into scratch, zero-padded to Tp = key_stride(T) rows
// and Dp = D rounded up to 16 columns: transposed as (Dp, Tp) where consecutive keys are the
// vector lanes (scores), and as rows (Tp, Dp) where head dims are the lanes (weighted sums). Queries
// are then taken QB rows at a time: their scores against the keys [lo, hi) any row of the block may
// see (lo, hi multiples of 16) form a (QB, Tp) tile, and every product below is a tile_4xW register
// block, so each vector loaded feeds 4 FMAs. Probabilities of masked keys (s < seg_start[t] or
// s > t) inside a tile are set to exactly 0, so they add nothing to any sum: each output is the
// same sequence of float operations, key by key, as a loop over one query row would perform.

enum { QB = 16 };  // query rows per block

// Row stride of key-indexed buffers: T rounded up to 16 plus one spare 16-float block, so that rows
// of the transposed keys are not a power of two apart (which would map them to the same L1 sets).
QLORA_INLINE size_t key_stride(size_t T) { return pad16(T) + 16; }

// Scratch per item, in floats, Tp = key_stride(T), Dp = pad16(D):
//   keysT (Dp, Tp) | valuesT (Dp, Tp) | keys (Tp, Dp) | values (Tp, Dp) | dkeys (Tp, Dp)
//   | dvalues (Tp, Dp) | probs (QB, Tp) | dscores (QB, Tp) | qb (QB, Dp) | gb (QB, Dp) | ob (QB, Dp)
// The forward uses keysT, values, probs, qb and ob; the backward all but values.
size_t qlora_attention_scratch_floats(size_t T, size_t D) {
    const size_t Tp = key_stride(T), Dp = pad16(D);
    return 6 * Tp * Dp + 2 * QB * Tp + 3 * QB * Dp;
}

// dst (Dp, Tp) = src (T rows of stride ld, D values each) transposed, zero-padded. Scalar on
// purpose: vectorized, the strided stores become scatters, several times slower on Zen 4.
QLORA_INLINE void copy_transposed(float *restrict dst, const float *restrict src, size_t T, size_t Tp, size_t D,
                                  size_t Dp, size_t ld) {
    memset(dst, 0, Dp * Tp * sizeof(float));
    for (size_t s = 0; s < T; s++) {
#pragma clang loop vectorize(disable)
        for (size_t d = 0; d < D; d++) dst[d * Tp + s] = src[s * ld + d];
    }
}

// dst (rowsp, Dp) = src (rows rows of stride ld, D values each), zero-padded.
QLORA_INLINE void copy_rows(float *restrict dst, const float *restrict src, size_t rows, size_t rowsp, size_t D,
                            size_t Dp, size_t ld) {
    memset(dst, 0, rowsp * Dp * sizeof(float));
    for (size_t s = 0; s < rows; s++) memcpy(dst + s * Dp, src + s * ld, D * sizeof(float));
}

// c[r * ldc + j] = (accumulate ? c[r * ldc + j] : 0) + sum_{k < K} a[r * lda + k * ak] * b[k * ldb + j]
// for r < 4, j < W. W (64 or 16) is a constant at each call, so the 4 x W accumulators stay in
// vector registers and each loaded row of b feeds 4 FMAs. The sum runs in order of k, one FMA each.
QLORA_INLINE void tile_4xW(float *restrict c, size_t ldc, const float *restrict a, size_t lda, size_t ak,
                           const float *restrict b, size_t ldb, size_t K, int accumulate, size_t W) {
    float acc[4][64];
    for (size_t r = 0; r < 4; r++)
        for (size_t j = 0; j < W; j++) acc[r][j] = accumulate ? c[r * ldc + j] : 0;
    for (size_t k = 0; k < K; k++) {
        const float *bk = b + k * ldb;
        for (size_t r = 0; r < 4; r++) {
            const float ark = a[r * lda + k * ak];
            for (size_t j = 0; j < W; j++) acc[r][j] += ark * bk[j];
        }
    }
    for (size_t r = 0; r < 4; r++)
        for (size_t j = 0; j < W; j++) c[r * ldc + j] = acc[r][j];
}

// tile_4xW over the columns j < N, N a multiple of 16.
QLORA_INLINE void tile_4xN(float *restrict c, size_t ldc, const float *restrict a, size_t lda, size_t ak,
                           const float *restrict b, size_t ldb, size_t K, int accumulate, size_t N) {
    size_t j = 0;
    for (; j + 64 <= N; j += 64) tile_4xW(c + j, ldc, a, lda, ak, b + j, ldb, K, accumulate, 64);
    for (; j < N; j += 16) tile_4xW(c + j, ldc, a, lda, ak, b + j, ldb, K, accumulate, 16);
}

// s_tile[i * Tp + s] = x[i] . y_s (unscaled) for block rows i < rows4 (a multiple of 4) and keys
// s in [lo, hi); x (QB, Dp) block rows, yT (Dp, Tp) transposed keys or values.
QLORA_INLINE void block_dots(float *restrict s_tile, const float *restrict x, const float *restrict yT, size_t rows4,
                             size_t Tp, size_t D, size_t Dp, size_t lo, size_t hi) {
    for (size_t r = 0; r < rows4; r += 4)
        tile_4xN(s_tile + r * Tp + lo, Tp, x + r * Dp, Dp, 1, yT + lo, Tp, D, 0, hi - lo);
}

// The query block of rows [t0, t0 + rows): keys [lo, hi) cover every key a row may see, rows4 is
// rows rounded up to 4 (the padded rows see no key).
typedef struct { size_t rows, rows4, lo, hi; } QueryBlock;

QLORA_INLINE QueryBlock query_block(const int32_t *seg_start, size_t t0, size_t T) {
    QueryBlock blk;
    blk.rows = T - t0 < QB ? T - t0 : QB;
    blk.rows4 = (blk.rows + 3) & ~(size_t)3;
    size_t lo = (size_t)seg_start[t0];
    for (size_t i = 1; i < blk.rows; i++) lo = (size_t)seg_start[t0 + i] < lo ? (size_t)seg_start[t0 + i] : lo;
    blk.lo = lo & ~(size_t)15;
    blk.hi = pad16(t0 + blk.rows);
    return blk;
}

// row[s] = 0 for s in [lo, s0) and [s1, hi): the masked keys of a tile row.
QLORA_INLINE void zero_outside(float *row, size_t lo, size_t s0, size_t s1, size_t hi) {
    for (size_t s = lo; s < s0; s++) row[s] = 0;
    for (size_t s = s1; s < hi; s++) row[s] = 0;
}

// 1/sqrt(D) rounded to float, as Hugging Face's `scaling = head_dim**-0.5` multiplies an fp32 tensor.
QLORA_INLINE float attention_scale(size_t D) { return (float)(1.0 / sqrt((double)D)); }

QLORA_CLONES
void qlora_attention_forward_head(float *out, float *lse, const float *q, const float *k, const float *v,
                                  const int32_t *seg_start, float *scratch, size_t T, size_t D, size_t ldq,
                                  size_t ldkv) {
    const size_t Tp = key_stride(T), Dp = pad16(D);
    const float scale = attention_scale(D);
    float *kT = scratch, *vr = scratch + 3 * Tp * Dp, *e = scratch + 6 * Tp * Dp;
    float *qb = e + 2 * QB * Tp, *ob = qb + 2 * QB * Dp;
    copy_transposed(kT, k, T, Tp, D, Dp, ldkv);
    copy_rows(vr, v, T, Tp, D, Dp, ldkv);
    for (size_t t0 = 0; t0 < T; t0 += QB) {
        const QueryBlock blk = query_block(seg_start, t0, T);
        copy_rows(qb, q + t0 * ldq, blk.rows, QB, D, Dp, ldq);
        // e[i, s] = scale * q_t . k_s, t = t0 + i
        block_dots(e, qb, kT, blk.rows4, Tp, D, Dp, blk.lo, blk.hi);
        float inv_sum[QB];
        for (size_t i = 0; i < blk.rows4; i++) {
            float *row = e + i * Tp;
            if (i >= blk.rows) {
                zero_outside(row, blk.lo, blk.hi, blk.hi, blk.hi);
                continue;
            }
            const size_t t = t0 + i, s0 = (size_t)seg_start[t], s1 = t + 1;  // keys [s0, s1)
            for (size_t s = s0; s < s1; s++) row[s] *= scale;
            const float m = row_max(row + s0, s1 - s0);
            for (size_t s = s0; s < s1; s++) row[s] = qlora_expf(row[s] - m);
            const double sum = sum_double(row + s0, s1 - s0);
            zero_outside(row, blk.lo, s0, s1, blk.hi);
            inv_sum[i] = (float)(1.0 / sum);
            lse[t] = (float)((double)m + log(sum));
        }
        // out_t = (sum_s e[i, s] v_s) / sum_s e[i, s]
        for (size_t r = 0; r < blk.rows4; r += 4)
            tile_4xN(ob + r * Dp, Dp, e + r * Tp + blk.lo, Tp, 1, vr + blk.lo * Dp, Dp, blk.hi - blk.lo, 0, Dp);
        for (size_t i = 0; i < blk.rows; i++)
            for (size_t d = 0; d < D; d++) out[(t0 + i) * ldq + d] = ob[i * Dp + d] * inv_sum[i];
    }
}

QLORA_CLONES
void qlora_attention_backward_group(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                    const float *lse, const float *q, const float *k, const float *v,
                                    const int32_t *seg_start, float *scratch, size_t T, size_t D, size_t group,
                                    size_t ldq, size_t ldkv) {
    const size_t Tp = key_stride(T), Dp = pad16(D);
    const float scale = attention_scale(D);
    float *kT = scratch, *vT = kT + Tp * Dp, *kr = vT + Tp * Dp, *dkr = kr + 2 * Tp * Dp, *dvr = dkr + Tp * Dp;
    float *p = dvr + Tp * Dp, *ds = p + QB * Tp, *qb = ds + QB * Tp, *gb = qb + QB * Dp, *dqb = gb + QB * Dp;
    copy_transposed(kT, k, T, Tp, D, Dp, ldkv);
    copy_transposed(vT, v, T, Tp, D, Dp, ldkv);
    copy_rows(kr, k, T, Tp, D, Dp, ldkv);
    memset(dkr, 0, 2 * Tp * Dp * sizeof(float));  // dkr and dvr
    for (size_t g = 0; g < group; g++) {
        for (size_t t0 = 0; t0 < T; t0 += QB) {
            const QueryBlock blk = query_block(seg_start, t0, T);
            const size_t row0 = t0 * ldq + g * D, n = blk.hi - blk.lo;
            copy_rows(qb, q + row0, blk.rows, QB, D, Dp, ldq);
            copy_rows(gb, dout + row0, blk.rows, QB, D, Dp, ldq);
            // forward: S[s] = scale * q_t . k_s; P[s] = e^(S[s] - lse_t); out_t = sum_s P[s] v_s
            block_dots(p, qb, kT, blk.rows4, Tp, D, Dp, blk.lo, blk.hi);
            // dP[s] = dout_t . v_s
            block_dots(ds, gb, vT, blk.rows4, Tp, D, Dp, blk.lo, blk.hi);
            for (size_t i = 0; i < blk.rows4; i++) {
                float *pi = p + i * Tp, *dsi = ds + i * Tp;
                if (i >= blk.rows) {
                    zero_outside(pi, blk.lo, blk.hi, blk.hi, blk.hi);
                    zero_outside(dsi, blk.lo, blk.hi, blk.hi, blk.hi);
                    continue;
                }
                const size_t t = t0 + i, s0 = (size_t)seg_start[t], s1 = t + 1;
                // D_t = dout_t . out_t = sum_s P[s] dP[s]; dS[s] = P[s] (dP[s] - D_t)
                const float *gt = dout + row0 + i * ldq, *ot = out + row0 + i * ldq;
                float dt = 0;
                for (size_t d = 0; d < D; d++) dt += gt[d] * ot[d];
                const float lse_t = lse[g * T + t];
                for (size_t s = s0; s < s1; s++) {
                    const float st = pi[s] * scale;
                    pi[s] = qlora_expf(st - lse_t);
                    dsi[s] = pi[s] * (dsi[s] - dt);
                }
                zero_outside(pi, blk.lo, s0, s1, blk.hi);
                zero_outside(dsi, blk.lo, s0, s1, blk.hi);
            }
            // dq_t = scale * sum_s dS[s] k_s
            for (size_t r = 0; r < blk.rows4; r += 4)
                tile_4xN(dqb + r * Dp, Dp, ds + r * Tp + blk.lo, Tp, 1, kr + blk.lo * Dp, Dp, n, 0, Dp);
            for (size_t i = 0; i < blk.rows; i++)
                for (size_t d = 0; d < D; d++) dq[row0 + i * ldq + d] = dqb[i * Dp + d] * scale;
            // dk_s += dS[s] q_t (scaled below); dv_s += P[s] dout_t
            for (size_t s = blk.lo; s < blk.hi; s += 4) {
                tile_4xN(dkr + s * Dp, Dp, ds + s, 1, Tp, qb, Dp, blk.rows4, 1, Dp);
                tile_4xN(dvr + s * Dp, Dp, p + s, 1, Tp, gb, Dp, blk.rows4, 1, Dp);
            }
        }
    }
    for (size_t s = 0; s < T; s++)
        for (size_t d = 0; d < D; d++) {
            dk[s * ldkv + d] = dkr[s * Dp + d] * scale;
            dv[s * ldkv + d] = dvr[s * Dp + d];
        }
}
