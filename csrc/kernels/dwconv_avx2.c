/*
 * dwconv_avx2.c -- direct depthwise convolution with AVX2+FMA: 8 output
 * columns per vector, taps unrolled for the common 3x3 and 5x5 (the weights
 * then stay in registers), any other size through the same loop with
 * run-time bounds. Contract: dwconv.h.
 */
#include "dwconv.h"
#include <assert.h>
#include <immintrin.h>

static inline __attribute__((always_inline)) void plane(const pthcv_dw_args *a, const int KH, const int KW)
{
    const int s = a->stride;
    const __m256 lo = _mm256_set1_ps(a->lo), hi = _mm256_set1_ps(a->hi);
    for (int64_t oy = 0; oy < a->oh; oy++) {
        float *out = a->out + oy * a->ow;
        const float *res = a->res ? a->res + oy * a->ow : NULL;
        int64_t ox = 0;
        for (; ox + 8 <= a->ow; ox += 8) {
            __m256 acc = _mm256_set1_ps(a->bias);
            for (int ky = 0; ky < KH; ky++) {
                const float *row = a->in + (oy * s + ky) * a->ldi + ox;
                const float *orow = s == 2 ? a->odd + (oy * s + ky) * a->ldi + ox : NULL;
                for (int kx = 0; kx < KW; kx++) {
                    const float *src = s == 1 ? row + kx : (kx & 1) ? orow + kx / 2 : row + kx / 2;
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(a->w[ky * KW + kx]), _mm256_loadu_ps(src), acc);
                }
            }
            if (res) acc = _mm256_add_ps(acc, _mm256_loadu_ps(res + ox));
            _mm256_storeu_ps(out + ox, _mm256_min_ps(_mm256_max_ps(acc, lo), hi));
        }
        for (; ox < a->ow; ox++) out[ox] = pthcv_dw_point(a, oy, ox);
    }
}

void pthcv_dw_plane_avx2(const pthcv_dw_args *a)
{
    assert(a->in && a->out && (a->stride == 1 || (a->stride == 2 && a->odd)) && a->kh > 0 && a->kw > 0);
    if (a->kh == 3 && a->kw == 3) plane(a, 3, 3);
    else if (a->kh == 5 && a->kw == 5) plane(a, 5, 5);
    else plane(a, a->kh, a->kw);
}
