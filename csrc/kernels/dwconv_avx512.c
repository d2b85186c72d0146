/*
 * dwconv_avx512.c -- direct depthwise convolution with AVX-512: 16 output
 * columns per vector (the last, partial vector under a mask), taps unrolled
 * for 3x3 and 5x5, other sizes through the same loop. Stride 2 loads 32
 * input columns and keeps the even ones. Same structure as dwconv_avx2.c.
 * Dilated convolution (pthcv_dw_dilated_plane_*) runs the same code with
 * the taps dilation apart. Contract: dwconv.h.
 */
#include "dwconv.h"
#include <assert.h>
#include <immintrin.h>

static inline __m512 load_even(const float *in)
{
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(in), idx, _mm512_loadu_ps(in + 16));
}

static inline __attribute__((always_inline)) void plane(const pthcv_dw_args *a, const int KH, const int KW, const int S,
                                                          const int64_t D)
{
    const __m512 lo = _mm512_set1_ps(a->lo), hi = _mm512_set1_ps(a->hi);
    for (int64_t oy = 0; oy < a->oh; oy++) {
        float *out = a->out + oy * a->ow;
        const float *res = a->res ? a->res + oy * a->ow : NULL;
        for (int64_t ox = 0; ox < a->ow; ox += 16) {
            __m512 acc = _mm512_set1_ps(a->bias);
            /* unrolled on request (-O2 leaves the 3-step tap loops rolled) */
#pragma GCC unroll 5
            for (int ky = 0; ky < KH; ky++) {
                const float *row = a->in + (oy * S + ky * D) * a->ldi + ox * S;
#pragma GCC unroll 5
                for (int kx = 0; kx < KW; kx++)
                    acc = _mm512_fmadd_ps(_mm512_set1_ps(a->w[ky * KW + kx]),
                                          S == 1 ? _mm512_loadu_ps(row + kx * D) : load_even(row + kx * D), acc);
            }
            int64_t left = a->ow - ox;
            __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            if (res) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, res + ox));
            _mm512_mask_storeu_ps(out + ox, m, _mm512_min_ps(_mm512_max_ps(acc, lo), hi));
        }
    }
}

/* the plane kernel for a's size and stride, taps D apart (D = 1 a constant
 * in the plain kernel's copy) */
static inline __attribute__((always_inline)) void run(const pthcv_dw_args *a, const int64_t D)
{
    if (a->kh == 3 && a->kw == 3) a->stride == 1 ? plane(a, 3, 3, 1, D) : plane(a, 3, 3, 2, D);
    else if (a->kh == 5 && a->kw == 5) a->stride == 1 ? plane(a, 5, 5, 1, D) : plane(a, 5, 5, 2, D);
    else if (a->stride == 1) plane(a, a->kh, a->kw, 1, D);
    else plane(a, a->kh, a->kw, 2, D);
}

void pthcv_dw_plane_avx512(const pthcv_dw_args *a)
{
    assert(a->in && a->out && (a->stride == 1 || a->stride == 2) && a->kh > 0 && a->kw > 0);
    assert(a->ldi >= (a->ow - 1) * a->stride + a->kw + PTHCV_DW_SLACK);
    run(a, 1);
}

void pthcv_dw_dilated_plane_avx512(const pthcv_dw_args *a, int dilation)
{
    assert(a->in && a->out && (a->stride == 1 || a->stride == 2) && a->kh > 0 && a->kw > 0 && dilation >= 1);
    assert(a->ldi >= (a->ow - 1) * a->stride + (int64_t)dilation * (a->kw - 1) + 1 + PTHCV_DW_SLACK);
    run(a, dilation);
}
