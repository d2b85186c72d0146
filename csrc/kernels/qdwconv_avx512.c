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

typedef __m512 dw_vec;
typedef const __m512 *dw_weights;
enum { DW_LANES = 16 };
#define dw_set1 _mm512_set1_ps
/* as dwconv_avx512.c: 3x3's weights in registers, 5x5's broadcast from memory */
#define DW_TAP(acc, wt, w, ky, kx, KH, KW, t) \
    _mm512_fmadd_ps((KH) == 3 ? (wt)[(ky)*3 + (kx)] : _mm512_set1_ps((w)[(ky) * (KW) + (kx)]), t, acc)
#include "dwconv_rows.h"

static AI void plane_fixed(const pthcv_dw_args *a, const int KH, const int KW, const int S)
{
    __m512 w3[9];
#pragma GCC unroll 9
    for (int i = 0; i < 9; i++) w3[i] = KH == 3 ? _mm512_set1_ps(a->w[i]) : _mm512_setzero_ps();
    plane_rows(a, w3, KH, KW, S);
}

void pthcv_qdw_plane_avx512(const pthcv_qdw_args *q)
{
    const pthcv_dw_args *a = &q->dw;
    assert(a->bias == 0.0f && (a->stride == 1 || a->stride == 2));
    assert(a->ldi >= (a->ow - 1) * a->stride + a->kw + PTHCV_DW_SLACK);
    if (a->kh == 3 && a->kw == 3) a->stride == 1 ? plane_fixed(a, 3, 3, 1) : plane_fixed(a, 3, 3, 2);
    else if (a->kh == 5 && a->kw == 5) a->stride == 1 ? plane_fixed(a, 5, 5, 1) : plane_fixed(a, 5, 5, 2);
    else assert(!"qdw: 3x3 and 5x5 only");
}
