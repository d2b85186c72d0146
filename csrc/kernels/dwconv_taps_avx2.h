/*
 * dwconv_taps_avx2.h -- the AVX2 side of the depthwise row loop
 * (internal; dwconv_rows.h): the tap vectors of one input row (stride 1 or
 * 2), the vector type and tap of the loop, and plane_fixed (3x3 and 5x5 in
 * row blocks). Included by dwconv_avx2.c (float) and qdwconv_avx2.c (int8,
 * the same loop with a requantizing store), after AI and DW_ROWS; the
 * including file then defines store_row and includes dwconv_rows.h.
 */
#ifndef PTHCV_DWCONV_TAPS_AVX2_H
#define PTHCV_DWCONV_TAPS_AVX2_H

#include <immintrin.h>

/* the even (odd = 0) or odd (odd = 1) columns of lo:hi, in order */
static AI __m256 split(__m256 lo, __m256 hi, const int odd)
{
    __m256 t = odd ? _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))
                   : _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* in[0], in[2], ..., in[14] */
static AI __m256 load_even(const float *in) { return split(_mm256_loadu_ps(in), _mm256_loadu_ps(in + 8), 0); }

/* The KW tap vectors of one input row for 8 output columns, row pointing at
 * the input column of the first: t[kx] holds row[ox * S + kx]. */
static AI void row_taps(const float *row, const int KW, const int S, __m256 *t)
{
    if (S == 1) {
#pragma GCC unroll 5
        for (int kx = 0; kx < KW; kx++) t[kx] = _mm256_loadu_ps(row + kx);
        return;
    }
#pragma GCC unroll 3
    for (int kx = 0; kx < KW; kx += 2) {
        __m256 lo = _mm256_loadu_ps(row + kx), hi = _mm256_loadu_ps(row + kx + 8);
        t[kx] = split(lo, hi, 0);
        if (kx + 1 < KW) t[kx + 1] = split(lo, hi, 1);
    }
}

typedef __m256 dw_vec;
typedef const __m256 *dw_weights;
enum { DW_LANES = 8 };
#define dw_set1 _mm256_set1_ps
#define DW_TAP(acc, wt, w, ky, kx, KH, KW, t) _mm256_fmadd_ps((wt)[(ky) * (KW) + (kx)], t, acc)

/* dwconv_rows.h's, defined after the including file's store_row */
static AI void plane_rows(const pthcv_dw_args *a, dw_weights wt, const int KH, const int KW, const int S);

static AI void plane_fixed(const pthcv_dw_args *a, const int KH, const int KW, const int S)
{
    __m256 w[25];
#pragma GCC unroll 25
    for (int i = 0; i < KH * KW; i++) w[i] = _mm256_set1_ps(a->w[i]);
    plane_rows(a, w, KH, KW, S);
}

#endif
