/*
 * dwconv_avx512.c -- direct depthwise convolution with AVX-512: 16 output
 * columns per vector (the last, partial vector under a mask).
 *   - 3x3 and 5x5 (constant sizes, taps unrolled) compute DW_ROWS output
 *     rows per pass: each input row of the pass is loaded once and feeds
 *     every output row it belongs to, instead of once per output row.
 *     Stride 2 splits each input row into its even and odd columns with two
 *     permutes of the same two loads (tap kx is the even or odd half, moved
 *     by kx / 2 columns), rather than two loads and a permute per tap.
 *   - other sizes: one output row at a time, the same loop with run-time
 *     bounds.
 * Every accumulator sums its taps in (ky, kx) order, so the row blocks give
 * the bits of the one-row loop. Same structure as dwconv_avx2.c.
 * Dilated convolution (pthcv_dw_dilated_plane_*) takes the one-row loop with
 * the taps dilation apart. Contract: dwconv.h.
 */
#include "dwconv.h"
#include <assert.h>
#include <immintrin.h>

enum { DW_ROWS = 4 };

#define AI inline __attribute__((always_inline))

#include "dwconv_taps_avx512.h"

static AI void store_row(const pthcv_dw_args *a, int64_t oy, int64_t ox, __m512 acc, __m512 lo, __m512 hi)
{
    int64_t left = a->ow - ox;
    __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
    if (a->res) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, a->res + oy * a->ow + ox));
    _mm512_mask_storeu_ps(a->out + oy * a->ow + ox, m, _mm512_min_ps(_mm512_max_ps(acc, lo), hi));
}

#include "dwconv_rows.h"

/* Any size, one output row at a time, taps D apart (dilation; 1 for the
 * plain kernel, whose 3x3 and 5x5 take plane_fixed). KH and KW are
 * constants where the caller knows them (then the tap loops unroll). */
static AI void plane_any(const pthcv_dw_args *a, const int KH, const int KW, const int S, const int64_t D)
{
    const __m512 lo = _mm512_set1_ps(a->lo), hi = _mm512_set1_ps(a->hi);
    for (int64_t oy = 0; oy < a->oh; oy++) {
        for (int64_t ox = 0; ox < a->ow; ox += 16) {
            __m512 acc = _mm512_set1_ps(a->bias);
#pragma GCC unroll 5
            for (int ky = 0; ky < KH; ky++) {
                const float *row = a->in + (oy * S + ky * D) * a->ldi + ox * S;
#pragma GCC unroll 5
                for (int kx = 0; kx < KW; kx++)
                    acc = _mm512_fmadd_ps(_mm512_set1_ps(a->w[ky * KW + kx]),
                                          S == 1 ? _mm512_loadu_ps(row + kx * D) : load_even(row + kx * D), acc);
            }
            store_row(a, oy, ox, acc, lo, hi);
        }
    }
}

#include "dwconv_entry.h"

void pthcv_dw_plane_avx512(const pthcv_dw_args *a) { dw_entry(a); }

void pthcv_dw_dilated_plane_avx512(const pthcv_dw_args *a, int dilation) { dw_dilated_entry(a, dilation); }
