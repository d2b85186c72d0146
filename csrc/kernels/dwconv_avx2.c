/*
 * dwconv_avx2.c -- direct depthwise convolution with AVX2+FMA: 8 output
 * columns per vector (the last, partial vector masked).
 *   - 3x3 and 5x5 (constant sizes, taps unrolled, the weights broadcast
 *     once per plane) compute DW_ROWS output rows per pass: each input row
 *     of the pass is loaded once and feeds every output row it belongs to.
 *     Stride 2 splits each input row into its even and odd columns from the
 *     same two loads (tap kx is the even or odd half, moved by kx / 2).
 *   - other sizes: one output row at a time, the same loop with run-time
 *     bounds.
 * Every accumulator sums its taps in (ky, kx) order, so the row blocks give
 * the bits of the one-row loop. Same structure as dwconv_avx512.c.
 * Dilated convolution (pthcv_dw_dilated_plane_*) takes the one-row loop with
 * the taps dilation apart. Contract: dwconv.h.
 */
#include "dwconv.h"
#include <assert.h>
#include <immintrin.h>

enum { DW_ROWS = 4 };

#define AI inline __attribute__((always_inline))

#include "dwconv_taps_avx2.h"

static AI void store_row(const pthcv_dw_args *a, int64_t oy, int64_t ox, __m256 acc, __m256 lo, __m256 hi)
{
    float *out = a->out + oy * a->ow + ox;
    const float *res = a->res ? a->res + oy * a->ow + ox : NULL;
    if (ox + 8 <= a->ow) {
        if (res) acc = _mm256_add_ps(acc, _mm256_loadu_ps(res));
        _mm256_storeu_ps(out, _mm256_min_ps(_mm256_max_ps(acc, lo), hi));
    } else {
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(a->ow - ox)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        if (res) acc = _mm256_add_ps(acc, _mm256_maskload_ps(res, m));
        _mm256_maskstore_ps(out, m, _mm256_min_ps(_mm256_max_ps(acc, lo), hi));
    }
}

#include "dwconv_rows.h"

/* Any size, one output row at a time, taps D apart (dilation; 1 for the
 * plain kernel, whose 3x3 and 5x5 take plane_fixed). KH and KW are
 * constants where the caller knows them (then the tap loops unroll). */
static AI void plane_any(const pthcv_dw_args *a, const int KH, const int KW, const int S, const int64_t D)
{
    const __m256 lo = _mm256_set1_ps(a->lo), hi = _mm256_set1_ps(a->hi);
    for (int64_t oy = 0; oy < a->oh; oy++) {
        for (int64_t ox = 0; ox < a->ow; ox += 8) {
            __m256 acc = _mm256_set1_ps(a->bias);
#pragma GCC unroll 5
            for (int ky = 0; ky < KH; ky++) {
                const float *row = a->in + (oy * S + ky * D) * a->ldi + ox * S;
#pragma GCC unroll 5
                for (int kx = 0; kx < KW; kx++)
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(a->w[ky * KW + kx]),
                                          S == 1 ? _mm256_loadu_ps(row + kx * D) : load_even(row + kx * D), acc);
            }
            store_row(a, oy, ox, acc, lo, hi);
        }
    }
}

#include "dwconv_entry.h"

void pthcv_dw_plane_avx2(const pthcv_dw_args *a) { dw_entry(a); }

void pthcv_dw_dilated_plane_avx2(const pthcv_dw_args *a, int dilation) { dw_dilated_entry(a, dilation); }
