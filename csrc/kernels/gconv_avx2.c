/*
 * gconv_avx2.c -- the direct grouped 3x3 convolution with AVX2+FMA: tiles
 * of 4 output channels by 2 vectors of 8 output columns (8 accumulators,
 * 6 tap vectors), the last vector of a row masked. Contract: gconv.h; the
 * loop: gconv_tile.h.
 */
#include "gconv.h"
#include <assert.h>
#include <immintrin.h>
#include <math.h>

#define AI inline __attribute__((always_inline))
typedef __m256 gc_vec;
#define GC_LANES 8
#define gc_set1 _mm256_set1_ps
#define gc_load _mm256_loadu_ps

#define GC_MB 4
#define GC_FMA(w, t, acc) _mm256_fmadd_ps(w, t, acc)

static AI void store_seg(float *out, const float *res, int64_t n, __m256 acc, __m256 lo, __m256 hi, int clamp_lo,
                         int clamp_hi)
{
    __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    if (res) acc = _mm256_add_ps(acc, n == 8 ? _mm256_loadu_ps(res) : _mm256_maskload_ps(res, m));
    if (clamp_lo) acc = _mm256_max_ps(acc, lo);
    if (clamp_hi) acc = _mm256_min_ps(acc, hi);
    if (n == 8) _mm256_storeu_ps(out, acc);
    else _mm256_maskstore_ps(out, m, acc);
}

#include "gconv_tile.h"

void pthcv_gconv_band_avx2(const pthcv_gconv_band *b) { gconv_entry(b); }
