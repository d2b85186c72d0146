/*
 * qdwconv_avx512.c -- the int8 depthwise plane with AVX-512 (contract:
 * qdwconv.h): dwconv_avx512.c's row blocks of 3x3 and 5x5 (16 output
 * columns per vector, DW_ROWS rows per pass, the last partial vector under
 * a mask) with qstore_avx512.h's requantizing store.
 */
#include "qdwconv.h"
#include "qstore_avx512.h"
#include <assert.h>

enum { DW_ROWS = 4 };

#include "dwconv_taps_avx512.h"

static AI void store_row(const pthcv_dw_args *d, int64_t oy, int64_t ox, __m512 acc, __m512 lo, __m512 hi)
{
    (void)lo, (void)hi;
    const pthcv_qdw_args *a = (const pthcv_qdw_args *)d;
    int64_t at = oy * d->ow + ox;
    __m512 v = _mm512_mul_ps(_mm512_add_ps(acc, _mm512_set1_ps(a->off)), _mm512_set1_ps(a->mul));
    store16(a->s, v, a->res ? a->res + at : NULL, a->out + at, mask_of(d->ow - ox));
}

#include "dwconv_rows.h"

#define DW_FIXED_ONLY
#include "dwconv_entry.h"

void pthcv_qdw_plane_avx512(const pthcv_qdw_args *q)
{
    assert(q->dw.bias == 0.0f);
    int done = dw_fixed_entry(&q->dw);
    assert(done && "qdw: 3x3 and 5x5 only (pthcv_qdw_plane_for)");
    (void)done;
}
