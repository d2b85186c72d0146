/*
 * dwconv_neon.c -- direct depthwise convolution with NEON: 4 output columns
 * per vector, taps unrolled for 3x3 and 5x5. Contract: dwconv.h.
 */
#include "dwconv.h"
#include <arm_neon.h>
#include <assert.h>

static inline __attribute__((always_inline)) void plane(const pthcv_dw_args *a, const int KH, const int KW)
{
    const int s = a->stride;
    const float32x4_t lo = vdupq_n_f32(a->lo), hi = vdupq_n_f32(a->hi);
    for (int64_t oy = 0; oy < a->oh; oy++) {
        float *out = a->out + oy * a->ow;
        const float *res = a->res ? a->res + oy * a->ow : NULL;
        int64_t ox = 0;
        for (; ox + 4 <= a->ow; ox += 4) {
            float32x4_t acc = vdupq_n_f32(a->bias);
            for (int ky = 0; ky < KH; ky++) {
                const float *row = a->in + (oy * s + ky) * a->ldi + ox;
                const float *orow = s == 2 ? a->odd + (oy * s + ky) * a->ldi + ox : NULL;
                for (int kx = 0; kx < KW; kx++) {
                    const float *src = s == 1 ? row + kx : (kx & 1) ? orow + kx / 2 : row + kx / 2;
                    acc = vfmaq_n_f32(acc, vld1q_f32(src), a->w[ky * KW + kx]);
                }
            }
            if (res) acc = vaddq_f32(acc, vld1q_f32(res + ox));
            vst1q_f32(out + ox, vminq_f32(vmaxq_f32(acc, lo), hi));
        }
        for (; ox < a->ow; ox++) out[ox] = pthcv_dw_point(a, oy, ox);
    }
}

void pthcv_dw_plane_neon(const pthcv_dw_args *a)
{
    assert(a->in && a->out && (a->stride == 1 || (a->stride == 2 && a->odd)) && a->kh > 0 && a->kw > 0);
    if (a->kh == 3 && a->kw == 3) plane(a, 3, 3);
    else if (a->kh == 5 && a->kw == 5) plane(a, 5, 5);
    else plane(a, a->kh, a->kw);
}
