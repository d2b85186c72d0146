/*
 * qstore_avx512.h -- the AVX-512 requantizing store of 16 values (internal;
 * qrequant_avx512.c and qdwconv_avx512.c; contract: qgemm.h,
 * pthcv_qstore_fns): the reference's operations in its order (no fused
 * multiply-add); the rounding half to even is the conversion's embedded
 * rounding, which gives the reference's (v + 1.5 * 2^23) - 1.5 * 2^23 for
 * the clamped |v| <= 255; vpmovusdb packs the bytes.
 */
#ifndef PTHCV_QSTORE_AVX512_H
#define PTHCV_QSTORE_AVX512_H

#include "qgemm.h"
#include <immintrin.h>

#define AI inline __attribute__((always_inline))

static AI __mmask16 mask_of(int64_t left) { return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1); }

/* v (the scaled sums) plus the residual term, clamped, rounded and stored */
static AI void store16(const pthcv_qstore *s, __m512 v, const uint8_t *res, uint8_t *out, __mmask16 m)
{
    if (res) {
        __m512i r = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, res));
        v = _mm512_add_ps(
            v,
            _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(r, _mm512_set1_epi32(s->zr))), _mm512_set1_ps(s->rmul)));
    }
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(s->lo)), _mm512_set1_ps(s->hi));
    __m512i q = _mm512_add_epi32(_mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                 _mm512_set1_epi32(s->zy));
    __m128i b = _mm512_cvtusepi32_epi8(q); /* to a register, then stored: the store form is slow on some CPUs */
    if (m == 0xffff) _mm_storeu_si128((__m128i *)out, b);
    else _mm_mask_storeu_epi8(out, m, b);
}

#endif
