/*
 * dwconv_neon.c -- direct depthwise convolution with NEON: 4 output columns
 * per vector (the last, partial vector through a small buffer), taps
 * unrolled for 3x3 and 5x5. Stride 2 uses vld2q (de-interleaving load) and
 * keeps the even columns.
 * Dilated convolution (pthcv_dw_dilated_plane_*) runs the same code with
 * the taps dilation apart. Contract: dwconv.h.
 */
#include "dwconv.h"
#include <arm_neon.h>
#include <assert.h>
#include <string.h>

static inline __attribute__((always_inline)) void plane(const pthcv_dw_args *a, const int KH, const int KW, const int S,
                                                          const int64_t D)
{
    const float32x4_t lo = vdupq_n_f32(a->lo), hi = vdupq_n_f32(a->hi);
    for (int64_t oy = 0; oy < a->oh; oy++) {
        float *out = a->out + oy * a->ow;
        const float *res = a->res ? a->res + oy * a->ow : NULL;
        for (int64_t ox = 0; ox < a->ow; ox += 4) {
            float32x4_t acc = vdupq_n_f32(a->bias);
            /* unrolled on request (-O2 leaves the 3-step tap loops rolled) */
#pragma GCC unroll 5
            for (int ky = 0; ky < KH; ky++) {
                const float *row = a->in + (oy * S + ky * D) * a->ldi + ox * S;
#pragma GCC unroll 5
                for (int kx = 0; kx < KW; kx++)
                    acc = vfmaq_n_f32(acc, S == 1 ? vld1q_f32(row + kx * D) : vld2q_f32(row + kx * D).val[0],
                                      a->w[ky * KW + kx]);
            }
            int64_t left = a->ow - ox;
            if (left >= 4) {
                if (res) acc = vaddq_f32(acc, vld1q_f32(res + ox));
                vst1q_f32(out + ox, vminq_f32(vmaxq_f32(acc, lo), hi));
            } else {
                float tmp[4] = {0, 0, 0, 0};
                if (res) {
                    memcpy(tmp, res + ox, sizeof(float) * (size_t)left);
                    acc = vaddq_f32(acc, vld1q_f32(tmp));
                }
                vst1q_f32(tmp, vminq_f32(vmaxq_f32(acc, lo), hi));
                memcpy(out + ox, tmp, sizeof(float) * (size_t)left);
            }
        }
    }
}

/* the plane kernel for a's size and stride, taps D apart (D = 1 a constant
 * in the plain kernel's copy) */
static inline __attribute__((always_inline)) void run(const pthcv_dw_args *a, const int64_t D)
{
    if (a->kh == 3 && a->kw == 3) a->stride == 1 ? plane(a, 3, 3, 1, D) : plane(a, 3, 3, 2, D);
    else if (a->kh == 5 && a->kw == 5) a->stride == 1 ? plane(a, 5, 5, 1, D) : plane(a, 5, 5, 2, D);
    else if (a->stride == 1) plane(a, a->kh, a->kw, 1, D);
    else plane(a, a->kh, a->kw, 2, D);
}

void pthcv_dw_plane_neon(const pthcv_dw_args *a)
{
    assert(a->in && a->out && (a->stride == 1 || a->stride == 2) && a->kh > 0 && a->kw > 0);
    assert(a->ldi >= (a->ow - 1) * a->stride + a->kw + PTHCV_DW_SLACK);
    run(a, 1);
}

void pthcv_dw_dilated_plane_neon(const pthcv_dw_args *a, int dilation)
{
    assert(a->in && a->out && (a->stride == 1 || a->stride == 2) && a->kh > 0 && a->kw > 0 && dilation >= 1);
    assert(a->ldi >= (a->ow - 1) * a->stride + (int64_t)dilation * (a->kw - 1) + 1 + PTHCV_DW_SLACK);
    run(a, dilation);
}
