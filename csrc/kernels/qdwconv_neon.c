/*
 * qdwconv_neon.c -- the int8 depthwise plane with NEON (contract:
 * qdwconv.h): dwconv_neon.c's row blocks of 3x3 and 5x5 (4 output columns
 * per vector, DW_ROWS rows per pass) with qstore_neon.h's requantizing
 * store (the last partial vector through a small buffer).
 */
#include "qdwconv.h"
#include "qstore_neon.h"
#include <assert.h>

enum { DW_ROWS = 4 };

#include "dwconv_taps_neon.h"

static AI void store_row(const pthcv_dw_args *d, int64_t oy, int64_t ox, float32x4_t acc, float32x4_t lo,
                         float32x4_t hi)
{
    (void)lo, (void)hi;
    const pthcv_qdw_args *a = (const pthcv_qdw_args *)d;
    int64_t at = oy * d->ow + ox;
    float32x4_t v = vmulq_f32(vaddq_f32(acc, vdupq_n_f32(a->off)), vdupq_n_f32(a->mul));
    if (ox + 4 <= d->ow) store4(a->s, v, a->res ? a->res + at : NULL, a->out + at);
    else store_part(a->s, v, a->res ? a->res + at : NULL, a->out + at, d->ow - ox);
}

#include "dwconv_rows.h"

#define DW_FIXED_ONLY
#include "dwconv_entry.h"

void pthcv_qdw_plane_neon(const pthcv_qdw_args *q)
{
    assert(q->dw.bias == 0.0f);
    int done = dw_fixed_entry(&q->dw);
    assert(done && "qdw: 3x3 and 5x5 only (pthcv_qdw_plane_for)");
    (void)done;
}
