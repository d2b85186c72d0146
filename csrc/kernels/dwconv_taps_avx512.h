/*
 * dwconv_taps_avx512.h -- the input side of the AVX512 depthwise row loop
 * (internal): the tap vectors of one input row, stride 1 or 2. Included by
 * dwconv_avx512.c (float) and qdwconv_avx512.c (int8, the same loop with a
 * requantizing store), after AI is defined.
 */
#ifndef PTHCV_DWCONV_TAPS_AVX512_H
#define PTHCV_DWCONV_TAPS_AVX512_H

#include <immintrin.h>

static AI __m512 load_even(const float *in)
{
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(in), idx, _mm512_loadu_ps(in + 16));
}

/* The KW tap vectors of one input row for 16 output columns, row pointing
 * at the input column of the first: t[kx] holds row[ox * S + kx]. */
static AI void row_taps(const float *row, const int KW, const int S, __m512 *t)
{
    if (S == 1) {
#pragma GCC unroll 5
        for (int kx = 0; kx < KW; kx++) t[kx] = _mm512_loadu_ps(row + kx);
        return;
    }
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
#pragma GCC unroll 3
    for (int kx = 0; kx < KW; kx += 2) {
        __m512 lo = _mm512_loadu_ps(row + kx), hi = _mm512_loadu_ps(row + kx + 16);
        t[kx] = _mm512_permutex2var_ps(lo, even, hi);
        if (kx + 1 < KW) t[kx + 1] = _mm512_permutex2var_ps(lo, odd, hi);
    }
}

#endif
