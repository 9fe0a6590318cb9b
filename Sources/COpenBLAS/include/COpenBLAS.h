// Run-time binding to OpenBLAS. Debian's OpenBLAS picks generic kernels on CPUs it does not
// recognise (10-15x slower sgemm); it reads OPENBLAS_CORETYPE once, while it is being loaded.
// So we never link it: qlora_blas_load() sets that variable from the CPU's features (unless the
// user set it) and only then dlopen()s the library.
#ifndef QLORA_COPENBLAS_H
#define QLORA_COPENBLAS_H

#include <stddef.h>

/// CBLAS constants, values as in cblas.h.
enum { QLORA_CBLAS_ROW_MAJOR = 101, QLORA_CBLAS_NO_TRANS = 111, QLORA_CBLAS_TRANS = 112 };

/// Loads OpenBLAS once (thread-safe). Returns 0 on success; otherwise writes a message into
/// `message` (capacity bytes, NUL-terminated) and returns -1. Later calls return the first result.
int qlora_blas_load(char *message, size_t capacity);

/// C = alpha * op(A) op(B) + beta * C. Requires a successful qlora_blas_load().
void qlora_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

void qlora_blas_set_threads(int threads);
int qlora_blas_get_threads(void);
/// The kernel family OpenBLAS runs ("SkylakeX", "Haswell", "Prescott", ...).
const char *qlora_blas_core_name(void);
/// OpenBLAS build configuration string.
const char *qlora_blas_config(void);
/// Where the core type came from: "environment" (user set OPENBLAS_CORETYPE), "cpu features"
/// (we set it), or "openblas default" (no better choice known for this CPU).
const char *qlora_blas_core_source(void);

#endif
