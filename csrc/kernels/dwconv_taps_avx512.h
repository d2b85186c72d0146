/*
 * dwconv_taps_avx512.h -- the AVX512 side of the depthwise row loop
 * (internal; dwconv_rows.h): the tap vectors of one input row (stride 1 or
 * 2), the vector type and tap of the loop, and plane_fixed (3x3 and 5x5 in
 * row blocks). Included by dwconv_avx512.c (float) and qdwconv_avx512.c (int8,
 * the same loop with a requantizing store), after AI and DW_ROWS; the
 * including file then defines store_row and includes dwconv_rows.h.
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

typedef __m512 dw_vec;
typedef const __m512 *dw_weights;
enum { DW_LANES = 16 };
#define dw_set1 _mm512_set1_ps
/* 3x3: the weights stay in registers (wt); 5x5's 25 would spill (with the
 * accumulators and taps), they are broadcast from memory by the FMAs */
#define DW_TAP(acc, wt, w, ky, kx, KH, KW, t) \
    _mm512_fmadd_ps((KH) == 3 ? (wt)[(ky)*3 + (kx)] : _mm512_set1_ps((w)[(ky) * (KW) + (kx)]), t, acc)

/* dwconv_rows.h's, defined after the including file's store_row */
static AI void plane_rows(const pthcv_dw_args *a, dw_weights wt, const int KH, const int KW, const int S);

static AI void plane_fixed(const pthcv_dw_args *a, const int KH, const int KW, const int S)
{
    __m512 w3[9];
#pragma GCC unroll 9
    for (int i = 0; i < 9; i++) w3[i] = KH == 3 ? _mm512_set1_ps(a->w[i]) : _mm512_setzero_ps();
    plane_rows(a, w3, KH, KW, S);
}

#endif
