/*
 * gconv_avx512.c -- the direct grouped 3x3 convolution with AVX-512: tiles
 * of 8 output channels by 2 vectors of 16 output columns (16 accumulators,
 * 6 tap vectors of the 32 registers), the last vector of a row masked.
 * Maps 8 wide or less take the AVX2 kernel (pthcv_gconv_band_for).
 * Contract: gconv.h; the loop: gconv_tile.h.
 */
#include "gconv.h"
#include <assert.h>
#include <immintrin.h>
#include <math.h>

#define AI inline __attribute__((always_inline))
typedef __m512 gc_vec;
#define GC_LANES 16
#define gc_set1 _mm512_set1_ps
#define gc_load _mm512_loadu_ps

#define GC_MB 8
#define GC_FMA(w, t, acc) _mm512_fmadd_ps(w, t, acc)

static AI void store_seg(float *out, const float *res, int64_t n, __m512 acc, __m512 lo, __m512 hi, int clamp_lo,
                         int clamp_hi)
{
    __mmask16 m = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
    if (res) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, res));
    if (clamp_lo) acc = _mm512_max_ps(acc, lo);
    if (clamp_hi) acc = _mm512_min_ps(acc, hi);
    _mm512_mask_storeu_ps(out, m, acc);
}

#include "gconv_tile.h"

void pthcv_gconv_band_avx512(const pthcv_gconv_band *b) { gconv_entry(b); }
