/*
 * qgemm_neon.c -- the int8 GEMM micro-kernel for AArch64 with the dot
 * product extension (SDOT, Armv8.2): an 8 x 12 int32 tile in 24
 * accumulators; per group of 4 k, three loads of X (12 columns x 4 int8),
 * two of W (8 rows x 4 int8) and 24 SDOTs by lane. X holds uint8 - 128
 * (qgemm.h). Built for the dot product extension with a target pragma and
 * used only where the CPU reports it (isa.c, HWCAP_ASIMDDP).
 */
#include "qgemm.h"
#if defined(__aarch64__)
#pragma GCC target("arch=armv8.2-a+dotprod")
#include <arm_neon.h>

void pthcv_qukernel_neon_dot(int64_t kc, const void *av, const void *bv, int32_t *c, int first)
{
    const int8_t *a = av, *b = bv;
    int32x4_t acc[8][3];
    for (int r = 0; r < 8; r++)
        for (int h = 0; h < 3; h++) acc[r][h] = first ? vdupq_n_s32(0) : vld1q_s32(c + r * 12 + h * 4);
    for (int64_t k = 0; k < kc; k += 4, a += 32, b += 48) {
        int8x16_t b0 = vld1q_s8(b), b1 = vld1q_s8(b + 16), b2 = vld1q_s8(b + 32);
        int8x16_t a0 = vld1q_s8(a), a1 = vld1q_s8(a + 16); /* rows 0-3, 4-7: 4 k each */
#define STEP(r, av, lane)                                 \
    acc[r][0] = vdotq_laneq_s32(acc[r][0], b0, av, lane); \
    acc[r][1] = vdotq_laneq_s32(acc[r][1], b1, av, lane); \
    acc[r][2] = vdotq_laneq_s32(acc[r][2], b2, av, lane);
        STEP(0, a0, 0)
        STEP(1, a0, 1) STEP(2, a0, 2) STEP(3, a0, 3) STEP(4, a1, 0) STEP(5, a1, 1) STEP(6, a1, 2) STEP(7, a1, 3)
#undef STEP
    }
    for (int r = 0; r < 8; r++)
        for (int h = 0; h < 3; h++) vst1q_s32(c + r * 12 + h * 4, acc[r][h]);
}
#endif
