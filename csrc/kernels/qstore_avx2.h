/*
 * qstore_avx2.h -- the AVX2 requantizing store of 8 values (internal;
 * qrequant_avx2.c and qdwconv_avx2.c; contract: qgemm.h, pthcv_qstore_fns):
 * the reference's operations in its order (no fused multiply-add); the
 * rounding half to even is vroundps's (the reference's
 * (v + 1.5 * 2^23) - 1.5 * 2^23 for the clamped |v| <= 255).
 */
#ifndef PTHCV_QSTORE_AVX2_H
#define PTHCV_QSTORE_AVX2_H

#include "qgemm.h"
#include <immintrin.h>
#include <string.h>

#define AI inline __attribute__((always_inline))

/* v (the scaled sums) plus the residual term (8 bytes at res), clamped,
 * rounded and stored as 8 bytes */
static AI void store8(const pthcv_qstore *s, __m256 v, const uint8_t *res, uint8_t *out)
{
    if (res) {
        __m256i r = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)res));
        v = _mm256_add_ps(
            v,
            _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(r, _mm256_set1_epi32(s->zr))), _mm256_set1_ps(s->rmul)));
    }
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(s->lo)), _mm256_set1_ps(s->hi));
    v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256i q = _mm256_add_epi32(_mm256_cvttps_epi32(v), _mm256_set1_epi32(s->zy)); /* in [0, 255] */
    __m256i w = _mm256_packus_epi16(_mm256_packus_epi32(q, q), _mm256_setzero_si256());
    __m128i b = _mm_unpacklo_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    _mm_storel_epi64((__m128i *)out, b);
}

/* The last n < 8 values: through 8-value buffers */
static AI void store_part(const pthcv_qstore *s, __m256 v, const uint8_t *res, uint8_t *out, int64_t n)
{
    uint8_t rb[8] = {0}, ob[8];
    if (res) memcpy(rb, res, (size_t)n);
    store8(s, v, res ? rb : NULL, ob);
    memcpy(out, ob, (size_t)n);
}

static AI __m256 load_part_ps(const float *p, int64_t n)
{
    float b[8] = {0};
    memcpy(b, p, sizeof(float) * (size_t)n);
    return _mm256_loadu_ps(b);
}

#endif
