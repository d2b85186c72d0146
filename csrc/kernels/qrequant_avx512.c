/*
 * qrequant_avx512.c -- the uint8 stores of the int8 kernels with AVX-512
 * (contract: qgemm.h, pthcv_qstore_fns): 16 values per vector, the last,
 * partial vector under a mask. The reference's operations in its order
 * (no fused multiply-add); the rounding half to even is the conversion's
 * embedded rounding, which gives the reference's (v + 1.5 * 2^23) - 1.5 * 2^23
 * for the clamped |v| <= 255; vpmovusdb packs the bytes.
 */
#include "qgemm.h"
#include <immintrin.h>

#define AI inline __attribute__((always_inline))

static AI __mmask16 mask_of(int64_t left) { return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1); }

/* v (the scaled sums) plus the residual term, clamped, rounded and stored */
static AI void store16(const pthcv_qstore *s, __m512 v, const uint8_t *res, uint8_t *out, __mmask16 m)
{
    if (res) {
        __m512i r = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, res));
        v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(r, _mm512_set1_epi32(s->zr))),
                                           _mm512_set1_ps(s->rmul)));
    }
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(s->lo)), _mm512_set1_ps(s->hi));
    __m512i q = _mm512_add_epi32(_mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                 _mm512_set1_epi32(s->zy));
    __m128i b = _mm512_cvtusepi32_epi8(q); /* to a register, then stored: the store form is slow on some CPUs */
    if (m == 0xffff) _mm_storeu_si128((__m128i *)out, b);
    else _mm_mask_storeu_epi8(out, m, b);
}

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
