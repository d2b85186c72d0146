/*
 * dwconv_taps_neon.h -- the NEON side of the depthwise row loop (internal;
 * dwconv_rows.h): the tap vectors of one input row (stride 1 or 2), the
 * vector type and tap of the loop, and plane_fixed (3x3 and 5x5 in row
 * blocks). Included by dwconv_neon.c (float) and qdwconv_neon.c (int8, the
 * same loop with a requantizing store), after AI and DW_ROWS; the including
 * file then defines store_row and includes dwconv_rows.h.
 */
#ifndef PTHCV_DWCONV_TAPS_NEON_H
#define PTHCV_DWCONV_TAPS_NEON_H

#include <arm_neon.h>

/* The KW tap vectors of one input row for 4 output columns, row pointing at
 * the input column of the first: t[kx] holds row[ox * S + kx]. */
static AI void row_taps(const float *row, const int KW, const int S, float32x4_t *t)
{
    if (S == 1) {
#pragma GCC unroll 5
        for (int kx = 0; kx < KW; kx++) t[kx] = vld1q_f32(row + kx);
        return;
    }
#pragma GCC unroll 3
    for (int kx = 0; kx < KW; kx += 2) {
        float32x4x2_t v = vld2q_f32(row + kx);
        t[kx] = v.val[0];
        if (kx + 1 < KW) t[kx + 1] = v.val[1];
    }
}

typedef float32x4_t dw_vec;
typedef const float *dw_weights; /* unused: vfmaq_n_f32 takes the scalar weight */
enum { DW_LANES = 4 };
#define dw_set1 vdupq_n_f32
#define DW_TAP(acc, wt, w, ky, kx, KH, KW, t) vfmaq_n_f32(acc, t, (w)[(ky) * (KW) + (kx)])

/* dwconv_rows.h's, defined after the including file's store_row */
static AI void plane_rows(const pthcv_dw_args *a, dw_weights wt, const int KH, const int KW, const int S);

/* 3x3 and 5x5 in row blocks (vfmaq_n_f32 takes each weight as a scalar:
 * no weight registers to set up) */
static AI void plane_fixed(const pthcv_dw_args *a, const int KH, const int KW, const int S)
{
    plane_rows(a, NULL, KH, KW, S);
}

#endif
