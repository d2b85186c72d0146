/*
 * gconv_neon.c -- the direct grouped 3x3 convolution with NEON: tiles of
 * 8 output channels by 2 vectors of 4 output columns (16 accumulators, 6
 * tap vectors of the 32 registers), the last, partial vector of a row
 * through a small buffer. Contract: gconv.h; the loop: gconv_tile.h.
 */
#include "gconv.h"
#include <arm_neon.h>
#include <assert.h>
#include <math.h>
#include <string.h>

#define AI inline __attribute__((always_inline))

typedef float32x4_t gc_vec;
#define GC_LANES 4
#define gc_set1 vdupq_n_f32
#define gc_load vld1q_f32
#define GC_MB 8
#define GC_FMA(w, t, acc) vfmaq_f32(acc, w, t)

static AI void store_seg(float *out, const float *res, int64_t n, float32x4_t acc, float32x4_t lo, float32x4_t hi,
                         int clamp_lo, int clamp_hi)
{
    float tmp[4] = {0, 0, 0, 0};
    if (res) {
        if (n == 4) acc = vaddq_f32(acc, vld1q_f32(res));
        else memcpy(tmp, res, sizeof(float) * (size_t)n), acc = vaddq_f32(acc, vld1q_f32(tmp));
    }
    if (clamp_lo) acc = vmaxq_f32(acc, lo);
    if (clamp_hi) acc = vminq_f32(acc, hi);
    if (n == 4) {
        vst1q_f32(out, acc);
    } else {
        vst1q_f32(tmp, acc);
        memcpy(out, tmp, sizeof(float) * (size_t)n);
    }
}

#include "gconv_tile.h"

void pthcv_gconv_band_neon(const pthcv_gconv_band *b) { gconv_entry(b); }
