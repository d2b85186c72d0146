/*
 * qstore_neon.h -- the NEON requantizing store of 4 values (internal;
 * qrequant_neon.c and qdwconv_neon.c; contract: qgemm.h, pthcv_qstore_fns):
 * the reference's operations in its order (no fused multiply-add); the
 * rounding half to even is fcvtns's (the reference's
 * (v + 1.5 * 2^23) - 1.5 * 2^23 for the clamped |v| <= 255); the last,
 * partial vector goes through 4-value buffers.
 */
#ifndef PTHCV_QSTORE_NEON_H
#define PTHCV_QSTORE_NEON_H

#include "qgemm.h"
#include <arm_neon.h>
#include <string.h>

#define AI inline __attribute__((always_inline))

/* 4 bytes as 4 int32 */
static AI int32x4_t load4_u8(const uint8_t *p)
{
    uint32_t w;
    memcpy(&w, p, sizeof w);
    uint16x8_t h = vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(w)));
    return vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(h)));
}

/* v (the scaled sums) plus the residual term (4 bytes at res), clamped,
 * rounded and stored as 4 bytes */
static AI void store4(const pthcv_qstore *s, float32x4_t v, const uint8_t *res, uint8_t *out)
{
    if (res) {
        int32x4_t r = vsubq_s32(load4_u8(res), vdupq_n_s32(s->zr));
        v = vaddq_f32(v, vmulq_f32(vcvtq_f32_s32(r), vdupq_n_f32(s->rmul)));
    }
    v = vminq_f32(vmaxq_f32(v, vdupq_n_f32(s->lo)), vdupq_n_f32(s->hi));
    int32x4_t q = vaddq_s32(vcvtnq_s32_f32(v), vdupq_n_s32(s->zy)); /* in [0, 255] */
    uint16x4_t h = vqmovun_s32(q);
    uint8x8_t b = vqmovn_u16(vcombine_u16(h, h));
    uint32_t w = vget_lane_u32(vreinterpret_u32_u8(b), 0);
    memcpy(out, &w, sizeof w);
}

/* The last n < 4 values */
static AI void store_part(const pthcv_qstore *s, float32x4_t v, const uint8_t *res, uint8_t *out, int64_t n)
{
    uint8_t rb[4] = {0}, ob[4];
    if (res) memcpy(rb, res, (size_t)n);
    store4(s, v, res ? rb : NULL, ob);
    memcpy(out, ob, (size_t)n);
}

#endif
