/*
 * silu_x86.h -- SiLU rows with AVX-512 and AVX2 (with FMA) intrinsics, for
 * pthcv_act_row (activation.c) and the AVX-512 GEMM kernel's store
 * (gemm_8x32_avx512.c, silu16_avx512 alone); x86-64 only.
 *
 * Each value is vm_silu's (vmath.h) to the bit, whatever it is (NaN, +-inf,
 * out of exp's range): the same steps, each exact or one IEEE rounding --
 * the multiply-adds fused as vm_fmaf fuses them, the others apart (these
 * functions' targets and the build's -ffp-contract=off, Makefile, keep gcc
 * and clang from fusing more), k rounded to nearest even as vm_silu's
 * 1.5 * 2^23 addition rounds it, and 2^k applied exactly (_mm512_scalef_ps,
 * or 2^(k-1) * 2 as vm_silu does). No range check and no value-by-value
 * fallback: about 0.20 ns a value on AVX-512, where the form with vm_exp's
 * separate multiplies and adds and a range check took 0.32
 * (tools/bench_silu.c; docs/performance.md, "SiLU with multiply-adds").
 * A CPU without FMA runs none of this (activation.c: vm_silu_unfused).
 */
#ifndef PTHCV_SILU_X86_H
#define PTHCV_SILU_X86_H

#include "vmath.h"
#include <immintrin.h>
#include <stdint.h>

/* the steps of vm_silu after k: r, the polynomial p ~ exp(r), for vectors V
 * of the type of nx and kf (FNMADD(a, b, c) = c - a * b, FMADD = a * b + c,
 * one rounding each) */
#define SILU_POLY(P, NX, KF, SET1, ADD, MUL, FMADD, FNMADD)                                                             \
    do {                                                                                                                 \
        __typeof__(NX) r_ = FNMADD(KF, SET1(0.693359375f), NX);                                                          \
        r_ = FNMADD(KF, SET1(-2.12194440e-4f), r_);                                                                      \
        __typeof__(NX) p_ = SET1(1.9875691500e-4f);                                                                      \
        p_ = FMADD(p_, r_, SET1(1.3981999507e-3f));                                                                      \
        p_ = FMADD(p_, r_, SET1(8.3334519073e-3f));                                                                      \
        p_ = FMADD(p_, r_, SET1(4.1665795894e-2f));                                                                      \
        p_ = FMADD(p_, r_, SET1(1.6666665459e-1f));                                                                      \
        p_ = FMADD(p_, r_, SET1(5.0000001201e-1f));                                                                      \
        (P) = FMADD(p_, MUL(r_, r_), ADD(r_, SET1(1.0f)));                                                               \
    } while (0)

__attribute__((target("avx512f"))) static inline __m512 silu16_avx512(__m512 x)
{
    /* max and min return their second operand for a NaN: nx is then -86,
     * and x / (1 + e) is NaN as vm_silu's */
    __m512 nx = _mm512_sub_ps(_mm512_setzero_ps(), x);
    nx = _mm512_min_ps(_mm512_max_ps(nx, _mm512_set1_ps(-86.0f)), _mm512_set1_ps(89.0f));
    __m512 kf = _mm512_roundscale_ps(_mm512_mul_ps(nx, _mm512_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 p;
    SILU_POLY(p, nx, kf, _mm512_set1_ps, _mm512_add_ps, _mm512_mul_ps, _mm512_fmadd_ps, _mm512_fnmadd_ps);
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_scalef_ps(p, kf)));
}

__attribute__((target("avx512f"))) static inline void silu_row_avx512(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 a = silu16_avx512(_mm512_loadu_ps(x + i)), b = silu16_avx512(_mm512_loadu_ps(x + i + 16));
        _mm512_storeu_ps(x + i, a);
        _mm512_storeu_ps(x + i + 16, b);
    }
    for (; i < n; i += 16) {
        int left = n - i < 16 ? (int)(n - i) : 16;
        __mmask16 m = (__mmask16)(left == 16 ? 0xffffu : (1u << left) - 1u);
        _mm512_mask_storeu_ps(x + i, m, silu16_avx512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

__attribute__((target("avx2,fma"))) static inline __m256 silu8_avx2(__m256 x)
{
    __m256 nx = _mm256_sub_ps(_mm256_setzero_ps(), x);
    nx = _mm256_min_ps(_mm256_max_ps(nx, _mm256_set1_ps(-86.0f)), _mm256_set1_ps(89.0f));
    __m256 m = _mm256_add_ps(_mm256_mul_ps(nx, _mm256_set1_ps(1.44269504088896341f)), _mm256_set1_ps(12582912.0f));
    __m256 kf = _mm256_sub_ps(m, _mm256_set1_ps(12582912.0f));
    __m256i bits = _mm256_add_epi32(_mm256_castps_si256(m), _mm256_set1_epi32((int)(126u - 0x4B400000u)));
    __m256 half_pow2 = _mm256_castsi256_ps(_mm256_slli_epi32(bits, 23)); /* 2^(k-1) */
    __m256 p;
    SILU_POLY(p, nx, kf, _mm256_set1_ps, _mm256_add_ps, _mm256_mul_ps, _mm256_fmadd_ps, _mm256_fnmadd_ps);
    __m256 e = _mm256_mul_ps(_mm256_mul_ps(p, half_pow2), _mm256_set1_ps(2.0f));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

__attribute__((target("avx2,fma"))) static inline void silu_row_avx2(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a = silu8_avx2(_mm256_loadu_ps(x + i)), b = silu8_avx2(_mm256_loadu_ps(x + i + 8));
        _mm256_storeu_ps(x + i, a);
        _mm256_storeu_ps(x + i + 8, b);
    }
    for (; i < n; i += 8) {
        int left = n - i < 8 ? (int)(n - i) : 8;
        /* lanes below left: a mask lane is on when its sign bit is set */
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        _mm256_maskstore_ps(x + i, m, silu8_avx2(_mm256_maskload_ps(x + i, m)));
    }
}

#undef SILU_POLY
#endif
