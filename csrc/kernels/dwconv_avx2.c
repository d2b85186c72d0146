/*
 * dwconv_avx2.c -- direct depthwise convolution with AVX2+FMA: 8 output
 * columns per vector (the last, partial vector masked), taps unrolled for
 * the common 3x3 and 5x5 (the weights then stay in registers), other sizes
 * through the same loop with run-time bounds. Stride 2 loads 16 input
 * columns and keeps the even ones.
 * Dilated convolution (pthcv_dw_dilated_plane_*) runs the same code with
 * the taps dilation apart. Contract: dwconv.h.
 */
#include "dwconv.h"
#include <assert.h>
#include <immintrin.h>

/* in[0], in[2], ..., in[14] */
static inline __m256 load_even(const float *in)
{
    __m256 t = _mm256_shuffle_ps(_mm256_loadu_ps(in), _mm256_loadu_ps(in + 8), _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
}

static inline __attribute__((always_inline)) void plane(const pthcv_dw_args *a, const int KH, const int KW, const int S,
                                                          const int64_t D)
{
    const __m256 lo = _mm256_set1_ps(a->lo), hi = _mm256_set1_ps(a->hi);
    /* the tap loops are unrolled on request: for 3x3 and 5x5 (KH, KW
     * constants) the weights then stay in registers; -O2 alone kept them on
     * the stack behind a 3-step loop, which was slower */
    __m256 w[KH * KW];
#pragma GCC unroll 25
    for (int i = 0; i < KH * KW; i++) w[i] = _mm256_set1_ps(a->w[i]);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t oy = 0; oy < a->oh; oy++) {
        float *out = a->out + oy * a->ow;
        const float *res = a->res ? a->res + oy * a->ow : NULL;
        for (int64_t ox = 0; ox < a->ow; ox += 8) {
            __m256 acc = _mm256_set1_ps(a->bias);
#pragma GCC unroll 5
            for (int ky = 0; ky < KH; ky++) {
                const float *row = a->in + (oy * S + ky * D) * a->ldi + ox * S;
#pragma GCC unroll 5
                for (int kx = 0; kx < KW; kx++)
                    acc = _mm256_fmadd_ps(w[ky * KW + kx], S == 1 ? _mm256_loadu_ps(row + kx * D) : load_even(row + kx * D),
                                          acc);
            }
            if (ox + 8 <= a->ow) {
                if (res) acc = _mm256_add_ps(acc, _mm256_loadu_ps(res + ox));
                _mm256_storeu_ps(out + ox, _mm256_min_ps(_mm256_max_ps(acc, lo), hi));
            } else {
                __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(a->ow - ox)), lane);
                if (res) acc = _mm256_add_ps(acc, _mm256_maskload_ps(res + ox, m));
                _mm256_maskstore_ps(out + ox, m, _mm256_min_ps(_mm256_max_ps(acc, lo), hi));
            }
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

void pthcv_dw_plane_avx2(const pthcv_dw_args *a)
{
    assert(a->in && a->out && (a->stride == 1 || a->stride == 2) && a->kh > 0 && a->kw > 0);
    assert(a->ldi >= (a->ow - 1) * a->stride + a->kw + PTHCV_DW_SLACK);
    run(a, 1);
}

void pthcv_dw_dilated_plane_avx2(const pthcv_dw_args *a, int dilation)
{
    assert(a->in && a->out && (a->stride == 1 || a->stride == 2) && a->kh > 0 && a->kw > 0 && dilation >= 1);
    assert(a->ldi >= (a->ow - 1) * a->stride + (int64_t)dilation * (a->kw - 1) + 1 + PTHCV_DW_SLACK);
    run(a, dilation);
}
