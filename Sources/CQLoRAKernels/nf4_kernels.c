// See CQLoRAKernels.h. Kept free of fast-math so every float operation is the IEEE one bnb does.
#include "CQLoRAKernels.h"

#include <string.h>

#if defined(__x86_64__) && defined(__clang__)
#define QLORA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QLORA_CLONES
#endif

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

QLORA_CLONES
void qlora_nf4_dequantize(float *out, const uint8_t *packed, const float *absmax, const float *code,
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
