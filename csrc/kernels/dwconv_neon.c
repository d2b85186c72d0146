/*
 * dwconv_neon.c -- direct depthwise convolution with NEON: 4 output columns
 * per vector (the last, partial vector through a small buffer).
 *   - 3x3 and 5x5 (constant sizes, taps unrolled) compute DW_ROWS output
 *     rows per pass: each input row of the pass is loaded once and feeds
 *     every output row it belongs to. Stride 2 de-interleaves with vld2q:
 *     one load gives the even columns from kx and from kx + 1.
 *   - other sizes: one output row at a time, the same loop with run-time
 *     bounds.
 * Every accumulator sums its taps in (ky, kx) order, so the row blocks give
 * the bits of the one-row loop. Same structure as dwconv_avx512.c.
 * Dilated convolution (pthcv_dw_dilated_plane_*) takes the one-row loop with
 * the taps dilation apart. Contract: dwconv.h.
 */
#include "dwconv.h"
#include <arm_neon.h>
#include <assert.h>
#include <string.h>

enum { DW_ROWS = 4 };

#define AI inline __attribute__((always_inline))

#include "dwconv_taps_neon.h"

static AI void store_row(const pthcv_dw_args *a, int64_t oy, int64_t ox, float32x4_t acc, float32x4_t lo,
                         float32x4_t hi)
{
    float *out = a->out + oy * a->ow + ox;
    const float *res = a->res ? a->res + oy * a->ow + ox : NULL;
    int64_t left = a->ow - ox;
    if (left >= 4) {
        if (res) acc = vaddq_f32(acc, vld1q_f32(res));
        vst1q_f32(out, vminq_f32(vmaxq_f32(acc, lo), hi));
    } else {
        float tmp[4] = {0, 0, 0, 0};
        if (res) {
            memcpy(tmp, res, sizeof(float) * (size_t)left);
            acc = vaddq_f32(acc, vld1q_f32(tmp));
        }
        vst1q_f32(tmp, vminq_f32(vmaxq_f32(acc, lo), hi));
        memcpy(out, tmp, sizeof(float) * (size_t)left);
    }
}

#include "dwconv_rows.h"

/* Any size, one output row at a time, taps D apart (dilation; 1 for the
 * plain kernel, whose 3x3 and 5x5 take plane_fixed). KH and KW are
 * constants where the caller knows them (then the tap loops unroll). */
static AI void plane_any(const pthcv_dw_args *a, const int KH, const int KW, const int S, const int64_t D)
{
    const float32x4_t lo = vdupq_n_f32(a->lo), hi = vdupq_n_f32(a->hi);
    for (int64_t oy = 0; oy < a->oh; oy++) {
        for (int64_t ox = 0; ox < a->ow; ox += 4) {
            float32x4_t acc = vdupq_n_f32(a->bias);
#pragma GCC unroll 5
            for (int ky = 0; ky < KH; ky++) {
                const float *row = a->in + (oy * S + ky * D) * a->ldi + ox * S;
#pragma GCC unroll 5
                for (int kx = 0; kx < KW; kx++)
                    acc = vfmaq_n_f32(acc, S == 1 ? vld1q_f32(row + kx * D) : vld2q_f32(row + kx * D).val[0],
                                      a->w[ky * KW + kx]);
            }
            store_row(a, oy, ox, acc, lo, hi);
        }
    }
}

#include "dwconv_entry.h"

void pthcv_dw_plane_neon(const pthcv_dw_args *a) { dw_entry(a); }

void pthcv_dw_dilated_plane_neon(const pthcv_dw_args *a, int dilation) { dw_dilated_entry(a, dilation); }
