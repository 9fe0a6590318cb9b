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



/// Float32 -> IEEE half -> Float32 in place (round to nearest even), with F16C where available.
void qlora_round_to_float16(float *values, size_t count);
/// IEEE half bits -> Float32.
void qlora_float16_to_float(float *out, const uint16_t *in, size_t count);
/// Float32 -> IEEE half bits, round to nearest even.
void qlora_float_to_float16(uint16_t *out, const float *in, size_t count);

/// Adds sum |a[i] - b[i]| to *sum and raises *max to max |a[i] - b[i]|.
void qlora_abs_error(const float *a, const float *b, size_t count, double *sum, float *max);
#endif
