/*
 * qrequant_avx2.c -- the uint8 stores of the int8 kernels with AVX2
 * (contract: qgemm.h, pthcv_qstore_fns): 8 values per vector, a last
 * partial vector through a small buffer. The reference's operations in its
 * order (no fused multiply-add); the rounding half to even is vroundps's
 * (the reference's (v + 1.5 * 2^23) - 1.5 * 2^23 for the clamped |v| <= 255).
 */
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
        v = _mm256_add_ps(v, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(r, _mm256_set1_epi32(s->zr))),
                                           _mm256_set1_ps(s->rmul)));
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

static void tile(const pthcv_qstore *s, const int32_t *acc, int rows, int n, int64_t lda, const int32_t *off,
                 const float *mul, const uint8_t *res, uint8_t *out, int64_t ldo)
{
    for (int r = 0; r < rows; r++) {
        const __m256i f = _mm256_set1_epi32(off[r]);
        const __m256 mr = _mm256_set1_ps(mul[r]);
        const int32_t *a = acc + r * lda;
        const uint8_t *rr = res ? res + r * ldo : NULL;
        uint8_t *o = out + r * ldo;
        int j = 0;
        for (; j + 8 <= n; j += 8) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(a + j));
            store8(s, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(x, f)), mr), rr ? rr + j : NULL, o + j);
        }
        if (j < n) {
            int32_t b[8] = {0};
            memcpy(b, a + j, sizeof(int32_t) * (size_t)(n - j));
            __m256i x = _mm256_loadu_si256((const __m256i *)b);
            store_part(s, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(x, f)), mr), rr ? rr + j : NULL, o + j,
                       n - j);
        }
    }
}

static void fsum(const pthcv_qstore *s, const float *acc, int64_t n, float off, float mul, const uint8_t *res,
                 uint8_t *out)
{
    const __m256 f = _mm256_set1_ps(off), mr = _mm256_set1_ps(mul);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        store8(s, _mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(acc + j), f), mr), res ? res + j : NULL, out + j);
    if (j < n)
        store_part(s, _mm256_mul_ps(_mm256_add_ps(load_part_ps(acc + j, n - j), f), mr), res ? res + j : NULL,
                   out + j, n - j);
}

static void widen(float *d, const uint8_t *src, int64_t n, float zx)
{
    const __m256 z = _mm256_set1_ps(zx);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i u = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(src + i)));
        _mm256_storeu_ps(d + i, _mm256_sub_ps(_mm256_cvtepi32_ps(u), z));
    }
    for (; i < n; i++) d[i] = (float)src[i] - zx;
}

const pthcv_qstore_fns pthcv_qstore_avx2 = {tile, fsum, widen};
