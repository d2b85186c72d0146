/*
 * half.c -- float16 weights (module:half()): the conversions the kernels
 * do on the fly, one block of a packed operand at a time, so that the
 * weights stay float16 in memory. float16 -> float32 is exact; the
 * instruction (F16C on x86, NEON's fcvtl) where the CPU has it, the bit
 * manipulation of tensor/convert.c otherwise (same values either way).
 */
#include "kernels.h"

void pthcv_halves_to_floats(float *dst, const uint16_t *src, int64_t n)
{
#if defined(__x86_64__)
    int isa = pthcv_isa();
    if ((isa == PTHCV_ISA_AVX2 || isa == PTHCV_ISA_AVX512) && pthcv_cpu_has_f16c()) {
        pthcv_halves_to_floats_f16c(dst, src, n);
        return;
    }
#elif defined(__aarch64__)
    if (pthcv_isa() == PTHCV_ISA_NEON) {
        pthcv_halves_to_floats_neon(dst, src, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) dst[i] = pthcv_half_to_float(src[i]);
}

void pthcv_floats_to_halves(uint16_t *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++) dst[i] = pthcv_float_to_half(src[i]);
}
