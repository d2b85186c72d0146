/*
 * qgemm_vnni.c -- the int8 GEMM micro-kernel for AVX512-VNNI: an 8 x 32
 * int32 tile in 16 zmm accumulators; per group of 4 k, two loads of X
 * (32 columns x 4 uint8), eight broadcasts of 4 int8 weights and sixteen
 * vpdpbusd (u8 x s8 products summed in int32: no saturation). Compiled
 * with -mavx512vnni (Makefile: *_vnni.c) and used only where CPUID says
 * the CPU has it (isa.c).
 */
#include "qgemm.h"
#include <immintrin.h>

void pthcv_qukernel_vnni(int64_t kc, const void *av, const void *bv, int32_t *c, int first)
{
    const int8_t *a = av;
    const uint8_t *b = bv;
    __m512i acc[8][2];
    for (int r = 0; r < 8; r++)
        for (int h = 0; h < 2; h++)
            acc[r][h] = first ? _mm512_setzero_si512() : _mm512_loadu_si512(c + r * 32 + h * 16);
    for (int64_t k = 0; k < kc; k += 4, a += 32, b += 128) {
        __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 64);
#define STEP(r)                                                        \
    {                                                                  \
        __m512i ar = _mm512_set1_epi32(*(const int32_t *)(a + 4 * r)); \
        acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], b0, ar);            \
        acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], b1, ar);            \
    }
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
#undef STEP
    }
    for (int r = 0; r < 8; r++)
        for (int h = 0; h < 2; h++) _mm512_storeu_si512(c + r * 32 + h * 16, acc[r][h]);
}
