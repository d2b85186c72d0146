/*
 * qdwconv_avx2.c -- the int8 depthwise plane with AVX2 (contract:
 * qdwconv.h): dwconv_avx2.c's row blocks of 3x3 and 5x5 (8 output columns
 * per vector, DW_ROWS rows per pass) with qstore_avx2.h's requantizing
 * store (the last partial vector through a small buffer).
 */
#include "qdwconv.h"
#include "qstore_avx2.h"
#include <assert.h>

enum { DW_ROWS = 4 };

#include "dwconv_taps_avx2.h"

static AI void store_row(const pthcv_dw_args *d, int64_t oy, int64_t ox, __m256 acc, __m256 lo, __m256 hi)
{
    (void)lo, (void)hi;
    const pthcv_qdw_args *a = (const pthcv_qdw_args *)d;
    int64_t at = oy * d->ow + ox;
    __m256 v = _mm256_mul_ps(_mm256_add_ps(acc, _mm256_set1_ps(a->off)), _mm256_set1_ps(a->mul));
    if (ox + 8 <= d->ow) store8(a->s, v, a->res ? a->res + at : NULL, a->out + at);
    else store_part(a->s, v, a->res ? a->res + at : NULL, a->out + at, d->ow - ox);
}

typedef __m256 dw_vec;
typedef const __m256 *dw_weights;
enum { DW_LANES = 8 };
#define dw_set1 _mm256_set1_ps
#define DW_TAP(acc, wt, w, ky, kx, KH, KW, t) _mm256_fmadd_ps((wt)[(ky) * (KW) + (kx)], t, acc)
#include "dwconv_rows.h"

static AI void plane_fixed(const pthcv_dw_args *a, const int KH, const int KW, const int S)
{
    __m256 w[25];
#pragma GCC unroll 25
    for (int i = 0; i < KH * KW; i++) w[i] = _mm256_set1_ps(a->w[i]);
    plane_rows(a, w, KH, KW, S);
}

void pthcv_qdw_plane_avx2(const pthcv_qdw_args *q)
{
    const pthcv_dw_args *a = &q->dw;
    assert(a->bias == 0.0f && (a->stride == 1 || a->stride == 2));
    assert(a->ldi >= (a->ow - 1) * a->stride + a->kw + PTHCV_DW_SLACK);
    if (a->kh == 3 && a->kw == 3) a->stride == 1 ? plane_fixed(a, 3, 3, 1) : plane_fixed(a, 3, 3, 2);
    else if (a->kh == 5 && a->kw == 5) a->stride == 1 ? plane_fixed(a, 5, 5, 1) : plane_fixed(a, 5, 5, 2);
    else assert(!"qdw: 3x3 and 5x5 only");
}
