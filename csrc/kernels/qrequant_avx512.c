/*
 * qrequant_avx512.c -- the uint8 stores of the int8 kernels with AVX-512
 * (contract: qgemm.h, pthcv_qstore_fns): 16 values per vector, the last,
 * partial vector under a mask; the store itself is qstore_avx512.h's.
 */
#include "qstore_avx512.h"

static void tile(const pthcv_qstore *s, const int32_t *acc, int rows, int n, int64_t lda, const int32_t *off,
                 const float *mul, const uint8_t *res, uint8_t *out, int64_t ldo)
{
    for (int r = 0; r < rows; r++) {
        const __m512i f = _mm512_set1_epi32(off[r]);
        const __m512 mr = _mm512_set1_ps(mul[r]);
        for (int j = 0; j < n; j += 16) {
            __mmask16 m = mask_of(n - j);
            __m512i a = _mm512_maskz_loadu_epi32(m, acc + r * lda + j);
            __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a, f)), mr);
            store16(s, v, res ? res + r * ldo + j : NULL, out + r * ldo + j, m);
        }
    }
}

static void fsum(const pthcv_qstore *s, const float *acc, int64_t n, float off, float mul, const uint8_t *res,
                 uint8_t *out)
{
    const __m512 f = _mm512_set1_ps(off), mr = _mm512_set1_ps(mul);
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 m = mask_of(n - j);
        __m512 v = _mm512_mul_ps(_mm512_add_ps(_mm512_maskz_loadu_ps(m, acc + j), f), mr);
        store16(s, v, res ? res + j : NULL, out + j, m);
    }
}

static void widen(float *d, const uint8_t *src, int64_t n, float zx)
{
    const __m512 z = _mm512_set1_ps(zx);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = mask_of(n - i);
        __m512i u = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, src + i));
        _mm512_mask_storeu_ps(d + i, m, _mm512_sub_ps(_mm512_cvtepi32_ps(u), z));
    }
}

const pthcv_qstore_fns pthcv_qstore_avx512 = {tile, fsum, widen};
