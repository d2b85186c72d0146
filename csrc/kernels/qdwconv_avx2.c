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

#include "dwconv_rows.h"

#define DW_FIXED_ONLY
#include "dwconv_entry.h"

void pthcv_qdw_plane_avx2(const pthcv_qdw_args *q)
{
    assert(q->dw.bias == 0.0f);
    int done = dw_fixed_entry(&q->dw);
    assert(done && "qdw: 3x3 and 5x5 only (pthcv_qdw_plane_for)");
    (void)done;
}
