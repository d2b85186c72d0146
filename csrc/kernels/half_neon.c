/*
 * half_neon.c -- float16 -> float32 with NEON (fcvtl), 4 per step.
 * Contract: pthcv_halves_to_floats (half.c, kernels.h).
 */
#include "kernels.h"
#include <arm_neon.h>

void pthcv_halves_to_floats_neon(float *dst, const uint16_t *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + i))));
    for (; i < n; i++) dst[i] = pthcv_half_to_float(src[i]);
}
