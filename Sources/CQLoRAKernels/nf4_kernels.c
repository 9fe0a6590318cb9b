// See CQLoRAKernels.h. Kept free of fast-math so every float operation is the IEEE one bnb does.
#include "CQLoRAKernels.h"
#include "qlora_internal.h"

#include <string.h>

// NF4 bucket boundaries (code[i] + code[i+1]) / 2 in float32; a value gets the count of those
// strictly below it (torch.bucketize, right=False). Pinned to NF4.boundaries by a Swift test.
static inline uint8_t nf4_bucket(float s) {
    return (uint8_t)((s > -0.8480963706970215f) + (s > -0.6106328964233398f) + (s > -0.4599952697753906f) +
                     (s > -0.33967941999435425f) + (s > -0.23460739850997925f) + (s > -0.13791173696517944f) +
                     (s > -0.045525018125772476f) + (s > 0.03979014977812767f) + (s > 0.120255246758461f) +
                     (s > 0.2035212516784668f) + (s > 0.2920137643814087f) + (s > 0.3893125355243683f) +
                     (s > 0.5016634464263916f) + (s > 0.6427869200706482f) + (s > 0.8614784479141235f));
}

QLORA_CLONES
int qlora_nf4_quantize_blocks(uint8_t *packed, float *absmax, const float *input, size_t blocks, size_t block_size) {
    uint8_t codes[4096];
    int nonfinite = 0;
    for (size_t b = 0; b < blocks; b++) {
        const float *x = input + b * block_size;
        // max |x| on the bit patterns: for non-negative floats integer order is float order, and
        // an integer max reduction vectorizes without fast-math. >= 0x7f800000 is inf or NaN.
        uint32_t max_bits = 0;
        for (size_t i = 0; i < block_size; i++) {
            uint32_t bits;
            memcpy(&bits, x + i, 4);
            bits &= 0x7fffffffu;
            max_bits = bits > max_bits ? bits : max_bits;
        }
        if (max_bits >= 0x7f800000u) nonfinite = 1;
        float block_max;
        memcpy(&block_max, &max_bits, 4);
        absmax[b] = block_max;
        const float reciprocal = 1.0f / (block_max > 1e-38f ? block_max : 1e-38f);
        for (size_t i = 0; i < block_size; i++) {
            float s = x[i] * reciprocal;
            s = s < -1.0f ? -1.0f : s;
            s = s > 1.0f ? 1.0f : s;
            codes[i] = nf4_bucket(s);
        }
        uint8_t *out = packed + b * block_size / 2;
        for (size_t i = 0; i < block_size / 2; i++) out[i] = (uint8_t)(codes[2 * i] << 4 | codes[2 * i + 1]);
    }
    return nonfinite;
}

// Dequantization: one table lookup and one multiply per value. With AVX-512 a 16-entry table is
// a single vpermps; with AVX2 two 8-entry permutes and a blend. Products are the same IEEE
// multiplies as the scalar loop, so all paths give identical bits.
#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>

// Expands 8 packed bytes into 16 lane indices [b0 >> 4, b0 & 15, b1 >> 4, ...] (element 2i is the
// high nibble).
__attribute__((target("avx512f,avx512bw,avx512vl")))
static inline __m512i nibble_indices_512(const uint8_t *bytes) {
    const __m128i eight = _mm_loadl_epi64((const __m128i *)bytes);
    const __m512i doubled = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(eight, eight));
    const __m512i shifts = _mm512_set_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
    return _mm512_and_si512(_mm512_srlv_epi32(doubled, shifts), _mm512_set1_epi32(15));
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static void dequantize_avx512(float *out, const uint8_t *packed, const float *absmax, const float *code,
                              size_t blocks, size_t block_size) {
    const __m512 table = _mm512_loadu_ps(code);
    for (size_t b = 0; b < blocks; b++) {
        const __m512 scale = _mm512_set1_ps(absmax[b]);
        const uint8_t *bytes = packed + b * block_size / 2;
        float *o = out + b * block_size;
        for (size_t i = 0; i < block_size; i += 16) {
            const __m512 values = _mm512_permutexvar_ps(nibble_indices_512(bytes + i / 2), table);
            _mm512_storeu_ps(o + i, _mm512_mul_ps(values, scale));
        }
    }
}

__attribute__((target("avx2,fma")))
static void dequantize_avx2(float *out, const uint8_t *packed, const float *absmax, const float *code,
                            size_t blocks, size_t block_size) {
    const __m256 low_table = _mm256_loadu_ps(code), high_table = _mm256_loadu_ps(code + 8);
    const __m256i shifts = _mm256_set_epi32(0, 4, 0, 4, 0, 4, 0, 4);
    for (size_t b = 0; b < blocks; b++) {
        const __m256 scale = _mm256_set1_ps(absmax[b]);
        const uint8_t *bytes = packed + b * block_size / 2;
        float *o = out + b * block_size;
        for (size_t i = 0; i < block_size; i += 8) {
            uint32_t four;
            memcpy(&four, bytes + i / 2, 4);
            const __m128i raw = _mm_cvtsi32_si128((int)four);
            const __m256i doubled = _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(raw, raw));
            const __m256i index = _mm256_and_si256(_mm256_srlv_epi32(doubled, shifts), _mm256_set1_epi32(15));
            const __m256 low = _mm256_permutevar8x32_ps(low_table, index);
            const __m256 high = _mm256_permutevar8x32_ps(high_table, index);
            const __m256 values = _mm256_blendv_ps(low, high, _mm256_castsi256_ps(_mm256_slli_epi32(index, 28)));
            _mm256_storeu_ps(o + i, _mm256_mul_ps(values, scale));
        }
    }
}
#endif

static void dequantize_scalar(float *out, const uint8_t *packed, const float *absmax, const float *code,
                              size_t count, size_t block_size) {
    for (size_t start = 0; start < count; start += block_size) {
        const size_t end = start + block_size < count ? start + block_size : count;
        const float scale = absmax[start / block_size];
        size_t i = start;
        for (; i + 1 < end; i += 2) {
            const uint8_t byte = packed[i >> 1];
            out[i] = code[byte >> 4] * scale;
            out[i + 1] = code[byte & 15] * scale;
        }
        if (i < end) out[i] = code[packed[i >> 1] >> 4] * scale;
    }
}

int qlora_best_isa(void) {
#if defined(__x86_64__) && defined(__clang__)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return QLORA_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return QLORA_ISA_AVX2;
#endif
    return QLORA_ISA_SCALAR;
}

void qlora_nf4_dequantize_isa(int isa, float *out, const uint8_t *packed, const float *absmax, const float *code,
                              size_t count, size_t block_size) {
    size_t full_blocks = block_size % 16 == 0 ? count / block_size : 0;
    switch (isa) {
#if defined(__x86_64__) && defined(__clang__)
    case QLORA_ISA_AVX512: dequantize_avx512(out, packed, absmax, code, full_blocks, block_size); break;
    case QLORA_ISA_AVX2: dequantize_avx2(out, packed, absmax, code, full_blocks, block_size); break;
#endif
    default: full_blocks = 0;
    }
    const size_t done = full_blocks * block_size;
    dequantize_scalar(out + done, packed + done / 2, absmax + full_blocks, code, count - done, block_size);
}

void qlora_nf4_dequantize(float *out, const uint8_t *packed, const float *absmax, const float *code,
                          size_t count, size_t block_size) {
    qlora_nf4_dequantize_isa(qlora_best_isa(), out, packed, absmax, code, count, block_size);
}

// One value of an NF4 tensor, for the unaligned edges of a tile.
static inline float nf4_value(const uint8_t *packed, const float *code, size_t i, float scale) {
    const uint8_t byte = packed[i >> 1];
    return code[(i & 1) ? (byte & 15) : (byte >> 4)] * scale;
}

void qlora_nf4_decode_tile(float *out, const uint8_t *packed, const uint8_t *scale_codes, const float *scale_values,
                           float offset, const float *map, size_t nested_block, const float *code, size_t width,
                           size_t row0, size_t rows, size_t col0, size_t cols, size_t block_size) {
    enum { SCALES = 64 };  // block scales decoded per step, on the stack
    float scales[SCALES];
    for (size_t r = 0; r < rows; r++) {
        size_t i = (row0 + r) * width + col0;
        const size_t end = i + cols;
        float *o = out + r * cols;
        while (i < end) {
            // Decode the scales of up to SCALES blocks starting at the block holding element i.
            const size_t first = i / block_size;
            const size_t stop = end < (first + SCALES) * block_size ? end : (first + SCALES) * block_size;
            const size_t blocks = (stop - 1) / block_size - first + 1;
            for (size_t b = 0; b < blocks; b++) {
                scales[b] = scale_codes ? map[scale_codes[first + b]] * scale_values[(first + b) / nested_block] + offset
                                        : scale_values[first + b];
            }
            // A head up to the first block boundary, element by element; then whole blocks.
            size_t aligned = (first + 1) * block_size;
            if (i % block_size == 0) aligned = i;
            for (; i < aligned && i < stop; i++) *o++ = nf4_value(packed, code, i, scales[0]);
            if (i < stop) {
                const size_t n = stop - i;
                qlora_nf4_dequantize(o, packed + i / 2, scales + (i / block_size - first), code, n, block_size);
                o += n;
                i = stop;
            }
        }
    }
}
