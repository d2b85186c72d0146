/*
 * gemm_6x16_avx2.c -- the AVX2+FMA sgemm micro-kernel: a 6 x 16 tile of C in
 * 12 ymm accumulators; per k step two B loads, six A broadcasts, twelve
 * FMAs (enough independent chains to cover the FMA latency on two ports).
 * Contract: gemm.h (pthcv_ukernel_args).
 */
#include "gemm.h"
#include <assert.h>
#include <immintrin.h>

void pthcv_ukernel_6x16_avx2(const pthcv_ukernel_args *p)
{
    assert(p->kc >= 0 && p->c && p->ldc >= 16 && (!p->res || p->ldr >= 16));
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (p->first) {
        __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
        if (p->bias_col) b0 = _mm256_loadu_ps(p->bias_col), b1 = _mm256_loadu_ps(p->bias_col + 8);
#define INIT(r)                                                                         \
    {                                                                                   \
        __m256 br = p->bias_row ? _mm256_set1_ps(p->bias_row[r]) : _mm256_setzero_ps(); \
        c##r##0 = _mm256_add_ps(br, b0);                                                \
        c##r##1 = _mm256_add_ps(br, b1);                                                \
    }
        INIT(0) INIT(1) INIT(2) INIT(3) INIT(4) INIT(5)
#undef INIT
    } else {
#define LOAD(r) c##r##0 = _mm256_loadu_ps(p->c + r * p->ldc), c##r##1 = _mm256_loadu_ps(p->c + r * p->ldc + 8);
        LOAD(0) LOAD(1) LOAD(2) LOAD(3) LOAD(4) LOAD(5)
#undef LOAD
    }
    const float *a = p->a, *b = p->b;
#define STEP(r)                                     \
    {                                               \
        __m256 ar = _mm256_broadcast_ss(a + r);     \
        c##r##0 = _mm256_fmadd_ps(ar, b0, c##r##0); \
        c##r##1 = _mm256_fmadd_ps(ar, b1, c##r##1); \
    }
    /* kc in a local: the loop then needs no reload of p->kc */
    const int64_t kc = p->kc;
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) a += 6;
        b += 16;
    }
#undef STEP
    if (p->last) {
        if (p->res) {
#define RES(r)                                                              \
    c##r##0 = _mm256_add_ps(c##r##0, _mm256_loadu_ps(p->res + r * p->ldr)), \
    c##r##1 = _mm256_add_ps(c##r##1, _mm256_loadu_ps(p->res + r * p->ldr + 8));
            RES(0) RES(1) RES(2) RES(3) RES(4) RES(5)
#undef RES
        }
        /* min/max are skipped for infinite bounds, which would change nothing */
        if (p->lo > -__builtin_inff()) {
            __m256 lo = _mm256_set1_ps(p->lo);
#define LO(r) c##r##0 = _mm256_max_ps(c##r##0, lo), c##r##1 = _mm256_max_ps(c##r##1, lo);
            LO(0) LO(1) LO(2) LO(3) LO(4) LO(5)
#undef LO
        }
        if (p->hi < __builtin_inff()) {
            __m256 hi = _mm256_set1_ps(p->hi);
#define HI(r) c##r##0 = _mm256_min_ps(c##r##0, hi), c##r##1 = _mm256_min_ps(c##r##1, hi);
            HI(0) HI(1) HI(2) HI(3) HI(4) HI(5)
#undef HI
        }
    }
#define STORE(r) _mm256_storeu_ps(p->c + r * p->ldc, c##r##0), _mm256_storeu_ps(p->c + r * p->ldc + 8, c##r##1);
    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5)
#undef STORE
}
