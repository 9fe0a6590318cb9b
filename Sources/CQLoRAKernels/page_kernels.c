// Helpers of the paged optimizer's spill store: byte-plane shuffling of float32 pages (so that
// LZ4 sees the slowly varying sign/exponent bytes together), an all-zero test, the XXH64
// checksum of spilled bytes and checkpoint files (one-shot or streamed), the double-precision sum of squares behind gradient clipping, and
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

void qlora_xxh64_reset(qlora_xxh64_state *state, uint64_t seed) {
    memset(state, 0, sizeof *state);
    state->seed = seed;
    state->v[0] = seed + XXH_P1 + XXH_P2;
    state->v[1] = seed + XXH_P2;
    state->v[2] = seed;
    state->v[3] = seed - XXH_P1;
}

static inline void xxh_stripe(uint64_t v[4], const uint8_t *p) {
    v[0] = xxh_round(v[0], xxh_read64(p));
    v[1] = xxh_round(v[1], xxh_read64(p + 8));
    v[2] = xxh_round(v[2], xxh_read64(p + 16));
    v[3] = xxh_round(v[3], xxh_read64(p + 24));
}

void qlora_xxh64_update(qlora_xxh64_state *state, const void *data, size_t length) {
    const uint8_t *p = data, *end = p + length;
    state->total += length;
    if (state->buffered + length < 32) {
        if (length > 0) memcpy(state->buffer + state->buffered, p, length);
        state->buffered += (uint32_t)length;
        return;
    }
    if (state->buffered > 0) {  // complete the stripe begun by an earlier update
        const size_t fill = 32 - state->buffered;
        memcpy(state->buffer + state->buffered, p, fill);
        xxh_stripe(state->v, state->buffer);
        p += fill;
        state->buffered = 0;
    }
    for (; p + 32 <= end; p += 32) xxh_stripe(state->v, p);
    state->buffered = (uint32_t)(end - p);
    if (state->buffered > 0) memcpy(state->buffer, p, state->buffered);
}

uint64_t qlora_xxh64_digest(const qlora_xxh64_state *state) {
    const uint8_t *p = state->buffer, *end = p + state->buffered;
    uint64_t h;
    if (state->total >= 32) {
        const uint64_t *v = state->v;
        h = xxh_rotl(v[0], 1) + xxh_rotl(v[1], 7) + xxh_rotl(v[2], 12) + xxh_rotl(v[3], 18);
        for (int i = 0; i < 4; i++) h = xxh_merge(h, v[i]);
    } else {
        h = state->seed + XXH_P5;
    }
    h += state->total;
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

uint64_t qlora_xxh64(const void *data, size_t length, uint64_t seed) {
    qlora_xxh64_state state;
    qlora_xxh64_reset(&state, seed);
    qlora_xxh64_update(&state, data, length);
    return qlora_xxh64_digest(&state);
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
