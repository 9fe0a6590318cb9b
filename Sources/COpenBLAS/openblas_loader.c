// dlopen()-based OpenBLAS binding; see COpenBLAS.h for why the library is not linked.
#include "COpenBLAS.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *,
                         int, float, float *, int);
typedef void (*set_threads_fn)(int);
typedef int (*get_threads_fn)(void);
typedef char *(*string_fn)(void);

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_status = -1;
static char load_message[512];
static const char *core_source = "openblas default";
static sgemm_fn sgemm_ptr;
static set_threads_fn set_threads_ptr;
static get_threads_fn get_threads_ptr;
static string_fn core_name_ptr;
static string_fn config_ptr;

// The OpenBLAS kernel family for this CPU's features, as OpenBLAS itself picks it for CPUs it
// recognises; NULL when nothing better than its own choice is known. Cooperlake (SkylakeX's sgemm
// plus bf16 kernels) needs AVX512-BF16; SkylakeX AVX-512 F/BW/DQ/VL; Haswell AVX2 + FMA.
static const char *preferred_core_type(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return __builtin_cpu_supports("avx512bf16") ? "Cooperlake" : "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

static void *symbol(void *library, const char *name) {
    void *found = dlsym(library, name);
    if (found == NULL && load_message[0] == 0)
        snprintf(load_message, sizeof load_message, "OpenBLAS has no symbol %s", name);
    return found;
}

static void load(void) {
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (user != NULL && user[0] != 0) {
        core_source = "environment";
    } else {
        const char *preferred = preferred_core_type();
        if (preferred != NULL) {
            setenv("OPENBLAS_CORETYPE", preferred, 1);
            core_source = "cpu features";
        }
    }
    const char *names[] = {"libopenblas.so.0", "libopenblas.so"};
    void *library = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && library == NULL; i++)
        library = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        snprintf(load_message, sizeof load_message,
                 "cannot load OpenBLAS (%s); install it with: apt-get install libopenblas-dev",
                 dlerror());
        return;
    }
    sgemm_ptr = (sgemm_fn)symbol(library, "cblas_sgemm");
    set_threads_ptr = (set_threads_fn)symbol(library, "openblas_set_num_threads");
    get_threads_ptr = (get_threads_fn)symbol(library, "openblas_get_num_threads");
    core_name_ptr = (string_fn)symbol(library, "openblas_get_corename");
    config_ptr = (string_fn)symbol(library, "openblas_get_config");
    if (load_message[0] == 0) load_status = 0;
}

int qlora_blas_load(char *message, size_t capacity) {
    pthread_once(&load_once, load);
    if (load_status != 0 && message != NULL && capacity > 0)
        snprintf(message, capacity, "%s", load_message);
    return load_status;
}

// Debian's pthreads OpenBLAS gives wrong results when two threads call sgemm at once (measured:
// concurrent tests corrupted each other's products), so calls are serialized. Each call already
// uses every core; the lock costs nothing measurable against a call's work.
static pthread_mutex_t sgemm_lock = PTHREAD_MUTEX_INITIALIZER;

void qlora_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    pthread_mutex_lock(&sgemm_lock);
    sgemm_ptr(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    pthread_mutex_unlock(&sgemm_lock);
}

void qlora_blas_set_threads(int threads) { set_threads_ptr(threads); }
int qlora_blas_get_threads(void) { return get_threads_ptr(); }
const char *qlora_blas_core_name(void) { return core_name_ptr(); }
const char *qlora_blas_config(void) { return config_ptr(); }
const char *qlora_blas_core_source(void) { return core_source; }
