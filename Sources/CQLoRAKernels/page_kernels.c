// Helpers of the paged optimizer's spill store: byte-plane shuffling of float32 pages (so that
// LZ4 sees the slowly varying sign/exponent bytes together), an all-zero test, the XXH64
// checksum of spilled bytes, the double-precision sum of squares behind gradient clipping, and
// a file-system test (Swift's Glibc module lacks sys/vfs.h).
#include "CQLoRAKernels.h"
#include "qlora_internal.h"
#ifdef __linux__
#include <linux/magic.h>
#include <sys/vfs.h>
#endif

QLORA_CLONES
void qlora_shuffle_bytes(uint8_t *restrict planes, const float *restrict values, size_t count) {
    uint8_t *p0 = planes, *p1 = planes + count, *p2 = planes + 2 * count, *p3 = planes + 3 * count;
    for (size_t i = 0; i < count; i++) {
        uint32_t word;
        memcpy(&word, values + i, 4);
        p0[i] = (uint8_t)word;
        p1[i] = (uint8_t)(word >> 8);
        p2[i] = (uint8_t)(word >> 16);
        p3[i] = (uint8_t)(word >> 24);
    }
}

QLORA_CLONES
void qlora_unshuffle_bytes(float *restrict values, const uint8_t *restrict planes, size_t count) {
    const uint8_t *p0 = planes, *p1 = planes + count, *p2 = planes + 2 * count, *p3 = planes + 3 * count;
    for (size_t i = 0; i < count; i++) {
        const uint32_t word = (uint32_t)p0[i] | (uint32_t)p1[i] << 8 | (uint32_t)p2[i] << 16 | (uint32_t)p3[i] << 24;
        memcpy(values + i, &word, 4);
    }
}

QLORA_CLONES
int qlora_all_zero(const void *bytes, size_t count) {
    const uint8_t *b = bytes;
    uint64_t any = 0;
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        uint64_t word;
        memcpy(&word, b + i, 8);
        any |= word;
    }
    for (; i < count; i++) any |= b[i];
    return any == 0;
}

// XXH64 as specified in https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md
// (little-endian reads); Tests/QLoRAOptimTests/PageCodecTests.swift checks reference values.
#define XXH_P1 0x9E3779B185EBCA87ULL
#define XXH_P2 0xC2B2AE3D27D4EB4FULL
#define XXH_P3 0x165667B19E3779F9ULL
#define XXH_P4 0x85EBCA77C2B2AE63ULL
#define XXH_P5 0x27D4EB2F165667C5ULL

static inline uint64_t xxh_rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t xxh_read64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t xxh_read32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t xxh_round(uint64_t acc, uint64_t lane) { return xxh_rotl(acc + lane * XXH_P2, 31) * XXH_P1; }
static inline uint64_t xxh_merge(uint64_t acc, uint64_t v) { return (acc ^ xxh_round(0, v)) * XXH_P1 + XXH_P4; }

uint64_t qlora_xxh64(const void *data, size_t length, uint64_t seed) {
    const uint8_t *p = data, *end = p + length;
    uint64_t h;
    if (length >= 32) {
        uint64_t v1 = seed + XXH_P1 + XXH_P2, v2 = seed + XXH_P2, v3 = seed, v4 = seed - XXH_P1;
        for (; p + 32 <= end; p += 32) {
            v1 = xxh_round(v1, xxh_read64(p));
            v2 = xxh_round(v2, xxh_read64(p + 8));
            v3 = xxh_round(v3, xxh_read64(p + 16));
            v4 = xxh_round(v4, xxh_read64(p + 24));
        }
        h = xxh_rotl(v1, 1) + xxh_rotl(v2, 7) + xxh_rotl(v3, 12) + xxh_rotl(v4, 18);
        h = xxh_merge(h, v1);
        h = xxh_merge(h, v2);
        h = xxh_merge(h, v3);
        h = xxh_merge(h, v4);
    } else {
        h = seed + XXH_P5;
    }
    h += (uint64_t)length;
    for (; p + 8 <= end; p += 8) h = xxh_rotl(h ^ xxh_round(0, xxh_read64(p)), 27) * XXH_P1 + XXH_P4;
    if (p + 4 <= end) {
        h = xxh_rotl(h ^ (uint64_t)xxh_read32(p) * XXH_P1, 23) * XXH_P2 + XXH_P3;
        p += 4;
    }
    for (; p < end; p++) h = xxh_rotl(h ^ (uint64_t)*p * XXH_P5, 11) * XXH_P1;
    h ^= h >> 33;
    h *= XXH_P2;
    h ^= h >> 29;
    h *= XXH_P3;
    h ^= h >> 32;
    return h;
}

QLORA_CLONES
double qlora_sum_squares(const float *x, size_t count) {
    // Eight independent partial sums in double: exact products, and a loop clang can vectorize
    // without reassociating one accumulator.
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= count; i += 8)
        for (int j = 0; j < 8; j++) s[j] += (double)x[i + j] * (double)x[i + j];
    for (; i < count; i++) s[0] += (double)x[i] * (double)x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

int qlora_fd_on_memory_filesystem(int fd) {
#ifdef __linux__
    struct statfs info;
    if (fstatfs(fd, &info) != 0) return 0;
    return info.f_type == TMPFS_MAGIC || info.f_type == RAMFS_MAGIC;
#else
    (void)fd;
    return 0;
#endif
}
