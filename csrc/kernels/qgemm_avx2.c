/*
 * qgemm_avx2.c -- the int8 GEMM micro-kernel for AVX2 without VNNI: a 6 x 16
 * int32 tile in 12 ymm accumulators. Operands are packed as int16 pairs
 * (qgemm.h), so vpmaddwd computes w[k] x[k] + w[k+1] x[k+1] exactly (no
 * saturation: |w| <= 128, x <= 255), and vpaddd accumulates.
 */
#include "qgemm.h"
#include <immintrin.h>

void pthcv_qukernel_avx2(int64_t kc, const void *av, const void *bv, int32_t *c, int first)
{
    const int16_t *a = av, *b = bv;
    __m256i acc[6][2];
    for (int r = 0; r < 6; r++)
        for (int h = 0; h < 2; h++)
            acc[r][h] = first ? _mm256_setzero_si256() : _mm256_loadu_si256((const __m256i *)(c + r * 16 + h * 8));
    for (int64_t k = 0; k < kc; k += 2, a += 12, b += 32) {
        __m256i b0 = _mm256_loadu_si256((const __m256i *)b), b1 = _mm256_loadu_si256((const __m256i *)(b + 16));
#define STEP(r)                                                             \
    {                                                                       \
        __m256i ar = _mm256_set1_epi32(*(const int32_t *)(a + 2 * r));      \
        acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(ar, b0)); \
        acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(ar, b1)); \
    }
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5)
#undef STEP
    }
    for (int r = 0; r < 6; r++)
        for (int h = 0; h < 2; h++) _mm256_storeu_si256((__m256i *)(c + r * 16 + h * 8), acc[r][h]);
}
