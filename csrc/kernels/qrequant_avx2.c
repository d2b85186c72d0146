/*
 * qrequant_avx2.c -- the uint8 stores of the int8 kernels with AVX2
 * (contract: qgemm.h, pthcv_qstore_fns): 8 values per vector, a last
 * partial vector through a small buffer; the store itself is qstore_avx2.h's.
 */
#include "qstore_avx2.h"

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
        store_part(s, _mm256_mul_ps(_mm256_add_ps(load_part_ps(acc + j, n - j), f), mr), res ? res + j : NULL, out + j,
                   n - j);
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
