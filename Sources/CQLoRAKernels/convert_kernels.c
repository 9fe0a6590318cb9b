// Conversion and error loops of the converter; see CQLoRAKernels.h.
#include "CQLoRAKernels.h"
#include "qlora_internal.h"

QLORA_CLONES
void qlora_round_to_float16(float *values, size_t count) {
    for (size_t i = 0; i < count; i++) values[i] = (float)(_Float16)values[i];
}

QLORA_CLONES
void qlora_float16_to_float(float *out, const uint16_t *in, size_t count) {
    const _Float16 *halves = (const _Float16 *)in;
    for (size_t i = 0; i < count; i++) out[i] = (float)halves[i];
}

QLORA_CLONES
void qlora_float_to_float16(uint16_t *out, const float *in, size_t count) {
    _Float16 *halves = (_Float16 *)out;
    for (size_t i = 0; i < count; i++) halves[i] = (_Float16)in[i];
}

QLORA_CLONES
void qlora_abs_error(const float *a, const float *b, size_t count, double *sum, float *max) {
    // Float partial sums over 4096 values (reassociated so they vectorize), added in double.
    double total = 0;
    float largest = *max;
    for (size_t start = 0; start < count; start += 4096) {
        const size_t end = start + 4096 < count ? start + 4096 : count;
        float partial = 0;
        for (size_t i = start; i < end; i++) {
#pragma clang fp reassociate(on)
            const float d = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
            partial += d;
            largest = d > largest ? d : largest;
        }
        total += partial;
    }
    *sum += total;
    *max = largest;
}

QLORA_CLONES
void qlora_bfloat16_to_float(float *out, const uint16_t *in, size_t count) {
    uint32_t *bits = (uint32_t *)out;
    for (size_t i = 0; i < count; i++) bits[i] = (uint32_t)in[i] << 16;
}
