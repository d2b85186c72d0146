/*
 * silu_x86.h -- SiLU rows with AVX-512 and AVX2 intrinsics, for
 * pthcv_act_row (activation.c) and the AVX-512 GEMM kernel's store
 * (gemm_8x32_avx512.c, silu16_avx512 alone); x86-64 only.
 *
 * Each value is vm_silu's (vmath.h) to the bit: the same IEEE operations in
 * the same order (multiplies and adds, never fused: these functions' targets
 * are avx512f / avx2 and the build's -ffp-contract=off, Makefile, keeps
 * gcc and clang from fusing), with
 * -x as a sign flip. What they leave out is vm_exp's clamps and selects,
 * which change nothing while -x lies in [-86.64, 88.7228]: a block whose
 * every value does goes the short way, any other block (a value out of that
 * range, NaN) is computed by vm_silu one value at a time. Two vectors a
 * block: gcc's loop of vm_silu ran one, with the clamps' masks on every
 * operation, at about 0.55 ns a value; these take about 0.39
 * (docs/performance.md, "The small networks against ncnn").
 */
#ifndef PTHCV_SILU_X86_H
#define PTHCV_SILU_X86_H

#include "vmath.h"
#include <immintrin.h>
#include <stdint.h>

#define SILU_LO (-86.64f)
#define SILU_HI 88.7228f

/* exp(v) as vm_exp computes it for v in [SILU_LO, SILU_HI] */
#define SILU_EXP_BODY(P, V, SET1, ADD, SUB, MUL, ADDI, SLLI, CASTI, CASTF, SET1I)                                        \
    do {                                                                                                                 \
        __typeof__(V) m_ = ADD(MUL(V, SET1(1.44269504088896341f)), SET1(12582912.0f));                                   \
        __typeof__(V) kf_ = SUB(m_, SET1(12582912.0f));                                                                  \
        __typeof__(V) s_ = CASTF(SLLI(ADDI(CASTI(m_), SET1I((int)(126u - 0x4B400000u))), 23));                           \
        __typeof__(V) r_ = SUB(V, MUL(kf_, SET1(0.693359375f)));                                                         \
        r_ = SUB(r_, MUL(kf_, SET1(-2.12194440e-4f)));                                                                   \
        __typeof__(V) p_ = SET1(1.9875691500e-4f);                                                                       \
        p_ = ADD(MUL(p_, r_), SET1(1.3981999507e-3f));                                                                   \
        p_ = ADD(MUL(p_, r_), SET1(8.3334519073e-3f));                                                                   \
        p_ = ADD(MUL(p_, r_), SET1(4.1665795894e-2f));                                                                   \
        p_ = ADD(MUL(p_, r_), SET1(1.6666665459e-1f));                                                                   \
        p_ = ADD(MUL(p_, r_), SET1(5.0000001201e-1f));                                                                   \
        p_ = ADD(ADD(MUL(p_, MUL(r_, r_)), r_), SET1(1.0f));                                                             \
        (P) = MUL(MUL(p_, s_), SET1(2.0f));                                                                              \
    } while (0)

__attribute__((target("avx512f"))) static inline __m512 silu16_avx512(__m512 x)
{
    __m512 nx = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u)));
    __m512 e;
    SILU_EXP_BODY(e, nx, _mm512_set1_ps, _mm512_add_ps, _mm512_sub_ps, _mm512_mul_ps, _mm512_add_epi32,
                  _mm512_slli_epi32, _mm512_castps_si512, _mm512_castsi512_ps, _mm512_set1_epi32);
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_mul_ps(x, _mm512_div_ps(one, _mm512_add_ps(one, e)));
}

/* the lanes of m whose -x lies in [SILU_LO, SILU_HI] */
__attribute__((target("avx512f"))) static inline __mmask16 silu_in_range_avx512(__m512 x, __mmask16 m)
{
    /* -x >= lo and -x <= hi: x <= -lo and x >= -hi (false for NaN) */
    return _mm512_mask_cmp_ps_mask(m, x, _mm512_set1_ps(-SILU_LO), _CMP_LE_OQ) &
           _mm512_mask_cmp_ps_mask(m, x, _mm512_set1_ps(-SILU_HI), _CMP_GE_OQ);
}

__attribute__((target("avx512f"))) static inline void silu_row_avx512(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        if ((silu_in_range_avx512(a, 0xffff) & silu_in_range_avx512(b, 0xffff)) != 0xffff) {
            for (int j = 0; j < 32; j++) x[i + j] = vm_silu(x[i + j]);
            continue;
        }
        _mm512_storeu_ps(x + i, silu16_avx512(a));
        _mm512_storeu_ps(x + i + 16, silu16_avx512(b));
    }
    for (; i < n; i += 16) {
        int left = n - i < 16 ? (int)(n - i) : 16;
        __mmask16 m = (__mmask16)(left == 16 ? 0xffffu : (1u << left) - 1u);
        __m512 a = _mm512_maskz_loadu_ps(m, x + i);
        if (silu_in_range_avx512(a, m) != m) {
            for (int j = 0; j < left; j++) x[i + j] = vm_silu(x[i + j]);
            continue;
        }
        _mm512_mask_storeu_ps(x + i, m, silu16_avx512(a));
    }
}

__attribute__((target("avx2"))) static inline __m256 silu8_avx2(__m256 x)
{
    __m256 nx = _mm256_castsi256_ps(_mm256_xor_si256(_mm256_castps_si256(x), _mm256_set1_epi32((int)0x80000000u)));
    __m256 e;
    SILU_EXP_BODY(e, nx, _mm256_set1_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_mul_ps, _mm256_add_epi32,
                  _mm256_slli_epi32, _mm256_castps_si256, _mm256_castsi256_ps, _mm256_set1_epi32);
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_mul_ps(x, _mm256_div_ps(one, _mm256_add_ps(one, e)));
}

/* whether every lane's -x lies in [SILU_LO, SILU_HI] */
__attribute__((target("avx2"))) static inline int silu_in_range_avx2(__m256 x)
{
    __m256 ok = _mm256_and_ps(_mm256_cmp_ps(x, _mm256_set1_ps(-SILU_LO), _CMP_LE_OQ),
                              _mm256_cmp_ps(x, _mm256_set1_ps(-SILU_HI), _CMP_GE_OQ));
    return _mm256_movemask_ps(ok) == 0xff;
}

__attribute__((target("avx2"))) static inline void silu_row_avx2(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        if (!silu_in_range_avx2(a) || !silu_in_range_avx2(b)) {
            for (int j = 0; j < 16; j++) x[i + j] = vm_silu(x[i + j]);
            continue;
        }
        _mm256_storeu_ps(x + i, silu8_avx2(a));
        _mm256_storeu_ps(x + i + 8, silu8_avx2(b));
    }
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_loadu_ps(x + i);
        if (!silu_in_range_avx2(a)) {
            for (int j = 0; j < 8; j++) x[i + j] = vm_silu(x[i + j]);
            continue;
        }
        _mm256_storeu_ps(x + i, silu8_avx2(a));
    }
    for (; i < n; i++) x[i] = vm_silu(x[i]);
}

#undef SILU_EXP_BODY
#endif
