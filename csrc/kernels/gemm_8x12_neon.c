/*
 * gemm_8x12_neon.c -- the AArch64 NEON sgemm micro-kernel: an 8 x 12 tile
 * of C in 24 q-register accumulators; per k step two A loads (8 rows), three
 * B loads and 24 lane-indexed FMAs (29 of the 32 registers in use).
 * Contract: gemm.h (pthcv_ukernel_args).
 */
#include "gemm.h"
#include <arm_neon.h>
#include <assert.h>

void pthcv_ukernel_8x12_neon(const pthcv_ukernel_args *p)
{
    assert(p->kc >= 0 && p->c && p->ldc >= 12 && (!p->res || p->ldr >= 12));
    float32x4_t c[8][3];
    if (p->first) {
        float32x4_t bc[3];
        for (int j = 0; j < 3; j++) bc[j] = p->bias_col ? vld1q_f32(p->bias_col + 4 * j) : vdupq_n_f32(0.0f);
        for (int r = 0; r < 8; r++) {
            float32x4_t br = vdupq_n_f32(p->bias_row ? p->bias_row[r] : 0.0f);
            for (int j = 0; j < 3; j++) c[r][j] = vaddq_f32(br, bc[j]);
        }
    } else {
        for (int r = 0; r < 8; r++)
            for (int j = 0; j < 3; j++) c[r][j] = vld1q_f32(p->c + r * p->ldc + 4 * j);
    }
    const float *a = p->a, *b = p->b;
    for (int64_t k = 0; k < p->kc; k++, a += 8, b += 12) {
        float32x4_t a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
        float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8);
#define ROW(r, av, lane)                              \
    c[r][0] = vfmaq_laneq_f32(c[r][0], b0, av, lane); \
    c[r][1] = vfmaq_laneq_f32(c[r][1], b1, av, lane); \
    c[r][2] = vfmaq_laneq_f32(c[r][2], b2, av, lane);
        ROW(0, a0, 0) ROW(1, a0, 1) ROW(2, a0, 2) ROW(3, a0, 3) ROW(4, a1, 0) ROW(5, a1, 1) ROW(6, a1, 2) ROW(7, a1, 3)
#undef ROW
    }
    if (p->last) {
        float32x4_t lo = vdupq_n_f32(p->lo), hi = vdupq_n_f32(p->hi);
        for (int r = 0; r < 8; r++)
            for (int j = 0; j < 3; j++) {
                float32x4_t v = c[r][j];
                if (p->res) v = vaddq_f32(v, vld1q_f32(p->res + r * p->ldr + 4 * j));
                c[r][j] = vminq_f32(vmaxq_f32(v, lo), hi);
            }
    }
    for (int r = 0; r < 8; r++)
        for (int j = 0; j < 3; j++) vst1q_f32(p->c + r * p->ldc + 4 * j, c[r][j]);
}
