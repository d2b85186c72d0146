/*
 * half_avx2.c -- float16 -> float32 with F16C (vcvtph2ps), 8 per step.
 * Contract: pthcv_halves_to_floats (half.c, kernels.h).
 */
#include "kernels.h"
#include <immintrin.h>

void pthcv_halves_to_floats_f16c(float *dst, const uint16_t *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = pthcv_half_to_float(src[i]);
}
