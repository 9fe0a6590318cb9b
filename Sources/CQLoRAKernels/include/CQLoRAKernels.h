// Hot loops of the NF4 kernels in C. Swift's compiler neither inlined nor vectorized the same
// loops (measured: 0 vector compares, ~60 M values/s); clang vectorizes these for AVX-512 / AVX2
// with a portable fallback (target_clones). Semantics are documented on the Swift wrappers in
// QLoRAQuant/NF4Kernels.swift, which also hold the scalar reference twins.
#ifndef QLORA_CKERNELS_H
#define QLORA_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

/// Quantizes `blocks` full blocks of `block_size` (even, <= 4096) floats to NF4 (bitsandbytes'
/// rule for full blocks). Writes blocks * block_size / 2 bytes and `blocks` absmax values.
/// Returns 0, or 1 when the input holds a NaN or an infinity.
int qlora_nf4_quantize_blocks(uint8_t *packed, float *absmax, const float *input, size_t blocks, size_t block_size);

/// Instruction sets of the hand-vectorized kernels.
enum { QLORA_ISA_SCALAR = 0, QLORA_ISA_AVX2 = 1, QLORA_ISA_AVX512 = 2 };
/// The best of them this CPU runs.
int qlora_best_isa(void);

/// out[i] = code[nibble i] * absmax[i / block_size] for `count` values starting at element 0 of
/// `packed` (count even or the tensor's end). `code` is the 16-entry NF4 table. Overwrites `out`.
void qlora_nf4_dequantize(float *out, const uint8_t *packed, const float *absmax, const float *code,
                          size_t count, size_t block_size);
/// The same with a chosen instruction set (<= qlora_best_isa()), so tests can check every path.
void qlora_nf4_dequantize_isa(int isa, float *out, const uint8_t *packed, const float *absmax, const float *code,
                              size_t count, size_t block_size);


/// Dequantizes the tile W[row0 ..< row0+rows, col0 ..< col0+cols] of an NF4 matrix with `width`
/// columns (blocks of `block_size` over the flattened row-major tensor, so blocks may straddle
/// rows) into `out` (rows, cols) row-major. Block scales are decoded on the fly: with double
/// quantization (`scale_codes` != NULL) scale[b] = map[scale_codes[b]] * scale_values[b / nested_block]
/// + offset, else scale[b] = scale_values[b]. Overwrites `out`; the same products as
/// qlora_nf4_dequantize, so identical bits.
void qlora_nf4_decode_tile(float *out, const uint8_t *packed, const uint8_t *scale_codes, const float *scale_values,
                           float offset, const float *map, size_t nested_block, const float *code, size_t width,
                           size_t row0, size_t rows, size_t col0, size_t cols, size_t block_size);


/// Float32 -> IEEE half -> Float32 in place (round to nearest even), with F16C where available.
void qlora_round_to_float16(float *values, size_t count);
/// IEEE half bits -> Float32.
void qlora_float16_to_float(float *out, const uint16_t *in, size_t count);
/// bfloat16 bits -> Float32 (exact).
void qlora_bfloat16_to_float(float *out, const uint16_t *in, size_t count);
/// Float32 -> IEEE half bits, round to nearest even.
void qlora_float_to_float16(uint16_t *out, const float *in, size_t count);

/// Adds sum |a[i] - b[i]| to *sum and raises *max to max |a[i] - b[i]|.
void qlora_abs_error(const float *a, const float *b, size_t count, double *sum, float *max);
// MARK: Llama decoder ops (transformer_kernels.c)
// fp32 forward and backward kernels of one decoder layer, row-major. The Swift wrappers in
// QLoRAKernels (RMSNorm.swift, RoPE.swift, Attention.swift, SwiGLU.swift, CrossEntropy.swift)
// check preconditions, split rows across threads and document the math; each call here is one
// thread's share. Nothing here allocates.

/// out[i] = e^x[i] for `count` values with the kernels' vectorizable exp (Cephes expf; -inf -> 0,
/// large negative -> 0, large positive -> inf, NaN -> NaN). Overwrites `out`; may alias `x`.
void qlora_exp(float *out, const float *x, size_t count);

/// RMSNorm forward of `rows` rows of `dim`: rstd[r] = 1 / sqrt(mean(inp[r,:]^2) + eps),
/// out[r,i] = weight[i] * (inp[r,i] * rstd[r]). inp, out (rows, dim); weight (dim); rstd (rows).
/// Overwrites out and rstd; no aliasing.
void qlora_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, size_t rows, size_t dim,
                           float eps);
/// RMSNorm backward with respect to inp, ACCUMULATED into dinp (rows, dim); dout, inp (rows, dim);
/// weight (dim); rstd (rows) from the forward. No aliasing.
void qlora_rmsnorm_backward(float *dinp, const float *dout, const float *inp, const float *weight, const float *rstd,
                            size_t rows, size_t dim);

/// Rotary embedding in place, rotate_half layout: x (rows, heads, head_dim), positions (rows);
/// cos_table, sin_table (max positions, head_dim / 2). With sin_sign +1 the forward
/// (x1 c - x2 s, x2 c + x1 s); with -1 the backward (the transposed rotation). head_dim even.
void qlora_rope(float *x, const int32_t *positions, const float *cos_table, const float *sin_table, size_t rows,
                size_t heads, size_t head_dim, float sin_sign);

/// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + e^-g). All (count). Overwrites out; no aliasing.
void qlora_swiglu_forward(float *out, const float *gate, const float *up, size_t count);
/// dup = dout * silu(gate); dgate = dout * up * silu'(gate). All (count). Overwrites dgate and dup;
/// dgate may be gate and dup may be up (no other aliasing).
void qlora_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                           size_t count);

/// Cross entropy with its backward fused: logits (rows, vocab) becomes
/// scale * (softmax - onehot(target)) in place, losses (rows) = logsumexp - logit[target];
/// rows whose target is negative (-100) get loss 0 and zero gradients. targets (rows) < vocab.
void qlora_cross_entropy_forward_backward(float *logits, float *losses, const int32_t *targets, size_t rows,
                                          size_t vocab, float scale);
/// losses (rows) = logsumexp(logits[r,:]) - logits[r, target], 0 for negative targets; logits (rows, vocab).
void qlora_cross_entropy_forward(float *losses, const float *logits, const int32_t *targets, size_t rows,
                                 size_t vocab);

/// Largest head dimension the attention kernels take (their per-row accumulators live on the stack).
enum { QLORA_ATTENTION_MAX_HEAD_DIM = 256 };
/// Floats of scratch one attention work item (one thread) needs for sequence length T, head dim D.
size_t qlora_attention_scratch_floats(size_t T, size_t D);
/// Causal attention forward of one (batch, head), scores scaled by 1/sqrt(D): for t < T, keys s
/// with seg_start[t] <= s <= t. q, out: T rows of stride ldq holding this head's D values; k, v:
/// T rows of stride ldkv (this head's kv head); seg_start (T), each <= its index; lse (T) gets
/// the log-sum-exp of the scaled scores. Overwrites out and lse. scratch: attention_scratch_floats.
void qlora_attention_forward_head(float *out, float *lse, const float *q, const float *k, const float *v,
                                  const int32_t *seg_start, float *scratch, size_t T, size_t D, size_t ldq,
                                  size_t ldkv);
/// Attention backward of one (batch, kv head) and its `group` query heads, which are consecutive:
/// query head g's row t starts at q + t * ldq + g * D (likewise dq, dout, out), its lse at
/// lse + g * T. k, v, dk, dv: T rows of stride ldkv. Recomputes probabilities from q, k, lse.
/// Overwrites dq (the group's heads), dk and dv (this kv head). scratch: attention_scratch_floats.
void qlora_attention_backward_group(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                    const float *lse, const float *q, const float *k, const float *v,
                                    const int32_t *seg_start, float *scratch, size_t T, size_t D, size_t group,
                                    size_t ldq, size_t ldkv);
/// y[i] += x[i] for `count` values.
void qlora_add(float *y, const float *x, size_t count);
/// y[r, i] += bias[i] for a (rows, cols) row-major y.
void qlora_add_row_bias(float *y, const float *bias, size_t rows, size_t cols);
/// Inverted dropout with a mask that is a pure function of (seed, element index): out[i] =
/// in[i] / (1 - p) when element `first + i` is kept, else 0. The same call on a gradient applies
/// the same mask (dropout's backward). `out` may alias `in`. Requires 0 <= p < 1.
void qlora_dropout(float *out, const float *in, size_t count, float p, uint64_t seed, uint64_t first);
/// One torch.optim.AdamW step (torch 2.15 `_single_tensor_adam`, decoupled weight decay) over
/// `count` parameters, in place, with the scalars torch derives in double passed as floats:
/// param *= decay; m += w1 * (g - m); v = v * beta2 + w2 * g * g, where
/// g = grad * grad_scale (gradient clipping's in-place multiply, folded in; 1 leaves g exact);
/// param += neg_step_size * m / (sqrt(v) / bias_correction2_sqrt + eps).
void qlora_adamw_step(float *param, const float *grad, float *m, float *v, size_t count, float grad_scale,
                      float decay, float w1, float beta2, float w2, float eps, float neg_step_size,
                      float bias_correction2_sqrt);
/// Byte-plane shuffle of `count` floats: byte b (little-endian) of values[i] goes to
/// planes[b * count + i]. planes: 4 * count bytes, not aliasing values.
void qlora_shuffle_bytes(uint8_t *planes, const float *values, size_t count);
/// The inverse of qlora_shuffle_bytes.
void qlora_unshuffle_bytes(float *values, const uint8_t *planes, size_t count);
/// 1 when all `count` bytes are zero, else 0.
int qlora_all_zero(const void *bytes, size_t count);
/// The XXH64 hash of `length` bytes with `seed` (xxHash's specification).
uint64_t qlora_xxh64(const void *data, size_t length, uint64_t seed);
/// XXH64 over data given in pieces: reset, update with each piece in order, digest (which leaves
/// the state unchanged). The digest equals qlora_xxh64 of the concatenated pieces.
typedef struct {
    uint64_t v[4];
    uint64_t seed;
    uint64_t total;
    uint8_t buffer[32];
    uint32_t buffered;
} qlora_xxh64_state;
void qlora_xxh64_reset(qlora_xxh64_state *state, uint64_t seed);
void qlora_xxh64_update(qlora_xxh64_state *state, const void *data, size_t length);
uint64_t qlora_xxh64_digest(const qlora_xxh64_state *state);
/// Sum of x[i]^2 accumulated in double (gradient norms).
double qlora_sum_squares(const float *x, size_t count);
/// 1 when the open file `fd` lives on tmpfs or ramfs (its pages are RAM), else 0.
int qlora_fd_on_memory_filesystem(int fd);
#endif
