// Helpers shared by the C kernel files; not part of the public module (it lives outside include/).
#ifndef QLORA_INTERNAL_H
#define QLORA_INTERNAL_H

#include <stdint.h>
#include <string.h>

// Each hot function is compiled for AVX-512, AVX2+FMA and baseline x86-64; the loader picks one.
#if defined(__x86_64__) && defined(__clang__)
#define QLORA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QLORA_CLONES
#endif

// e^x in float, branch-free so loops calling it vectorize (glibc expf does not without fast-math).
// Cephes expf (Moshier): x = n ln2 + r with |r| <= ln2 / 2, the two-part ln2 (C1 exact in 9 bits,
// so n * C1 is exact), a degree-5 polynomial for (e^r - 1 - r) / r^2, then a scale by 2^n built
// from exponent bits. 2^n is applied as two factors so results in the subnormal range round once.
// Inputs are clamped to [-104, 89], beyond which e^x is 0 (below half the least subnormal) or
// inf in float: -inf gives 0, +inf gives inf, NaN gives NaN. Max error measured in
// Tests/QLoRAKernelsTests/ExponentialTests.swift.
static inline float qlora_expf(float x) {
    float c = x > -104.0f ? x : -104.0f;  // NaN takes this branch too, keeping n finite below
    c = c < 89.0f ? c : 89.0f;
    const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer (round-to-nearest)
    const float n = (c * 1.44269504088896341f + magic) - magic;
    float r = c - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = p * (r * r) + r + 1.0f;
    const int32_t ni = (int32_t)n;  // in [-150, 129]
    const int32_t n1 = ni / 2, n2 = ni - n1;  // each in [-75, 65]: both 2^n1 and 2^n2 are normal
    const uint32_t bits1 = (uint32_t)(n1 + 127) << 23, bits2 = (uint32_t)(n2 + 127) << 23;
    float scale1, scale2;
    memcpy(&scale1, &bits1, 4);
    memcpy(&scale2, &bits2, 4);
    const float result = y * scale1 * scale2;
    return x != x ? x : result;
}

#endif
