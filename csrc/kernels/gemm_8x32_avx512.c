/*
 * gemm_8x32_avx512.c -- the AVX-512 sgemm micro-kernel: an 8 x 32 tile of C
 * in 16 zmm accumulators; per k step two B loads, eight A broadcasts and
 * sixteen FMAs. Same structure as the AVX2 kernel (gemm_6x16_avx2.c), so
 * that one's tests vouch for the shape of this one where the CPU lacks
 * AVX-512. Contract: gemm.h (pthcv_ukernel_args).
 */
#include "gemm.h"
#include <assert.h>
#include <immintrin.h>

void pthcv_ukernel_8x32_avx512(const pthcv_ukernel_args *p)
{
    assert(p->kc >= 0 && p->c && p->ldc >= 32 && (!p->res || p->ldr >= 32));
    __m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;
    if (p->first) {
        __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
        if (p->bias_col) b0 = _mm512_loadu_ps(p->bias_col), b1 = _mm512_loadu_ps(p->bias_col + 16);
#define INIT(r)                                                                         \
    {                                                                                   \
        __m512 br = p->bias_row ? _mm512_set1_ps(p->bias_row[r]) : _mm512_setzero_ps(); \
        c##r##0 = _mm512_add_ps(br, b0);                                                \
        c##r##1 = _mm512_add_ps(br, b1);                                                \
    }
        INIT(0) INIT(1) INIT(2) INIT(3) INIT(4) INIT(5) INIT(6) INIT(7)
#undef INIT
    } else {
#define LOAD(r) c##r##0 = _mm512_loadu_ps(p->c + r * p->ldc), c##r##1 = _mm512_loadu_ps(p->c + r * p->ldc + 16);
        LOAD(0) LOAD(1) LOAD(2) LOAD(3) LOAD(4) LOAD(5) LOAD(6) LOAD(7)
#undef LOAD
    }
    const float *a = p->a, *b = p->b;
#define STEP(r)                                     \
    {                                               \
        __m512 ar = _mm512_set1_ps(a[r]);           \
        c##r##0 = _mm512_fmadd_ps(ar, b0, c##r##0); \
        c##r##1 = _mm512_fmadd_ps(ar, b1, c##r##1); \
    }
    /* kc in a local: the loop then needs no reload of p->kc */
    const int64_t kc = p->kc;
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7) a += 8;
        b += 32;
    }
#undef STEP
    if (p->last) {
        if (p->res) {
#define RES(r)                                                              \
    c##r##0 = _mm512_add_ps(c##r##0, _mm512_loadu_ps(p->res + r * p->ldr)), \
    c##r##1 = _mm512_add_ps(c##r##1, _mm512_loadu_ps(p->res + r * p->ldr + 16));
            RES(0) RES(1) RES(2) RES(3) RES(4) RES(5) RES(6) RES(7)
#undef RES
        }
        if (p->lo > -__builtin_inff()) {
            __m512 lo = _mm512_set1_ps(p->lo);
#define LO(r) c##r##0 = _mm512_max_ps(c##r##0, lo), c##r##1 = _mm512_max_ps(c##r##1, lo);
            LO(0) LO(1) LO(2) LO(3) LO(4) LO(5) LO(6) LO(7)
#undef LO
        }
        if (p->hi < __builtin_inff()) {
            __m512 hi = _mm512_set1_ps(p->hi);
#define HI(r) c##r##0 = _mm512_min_ps(c##r##0, hi), c##r##1 = _mm512_min_ps(c##r##1, hi);
            HI(0) HI(1) HI(2) HI(3) HI(4) HI(5) HI(6) HI(7)
#undef HI
        }
    }
#define STORE(r) _mm512_storeu_ps(p->c + r * p->ldc, c##r##0), _mm512_storeu_ps(p->c + r * p->ldc + 16, c##r##1);
    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5) STORE(6) STORE(7)
#undef STORE
}
