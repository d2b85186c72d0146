/*
 * gconv.h -- direct grouped 3x3 convolution with few channels per group
 * (internal to csrc/kernels; conv2d.c dispatches to it).
 *
 * RegNet's and ResNeXt's grouped 3x3 layers have 4 to 16 channels per
 * group: as a GEMM per image and group (M = cout/groups = 8, K = 72) the
 * micro-kernel's tiles stay mostly empty and the im2col is packed once per
 * group. These kernels compute each group straight from a zero-padded copy
 * of its input rows, several output channels by several vectors of output
 * columns in registers, each input vector loaded once for all of them.
 *
 * What they compute (one band of output rows of one group):
 *   out[co][oy][ox] = clamp(bias[co] + 0.0f
 *                           + sum_{ci, ky, kx} w[co][ci][ky][kx] * in[ci][oy*S + ky][ox*S + kx]
 *                           + res[co][oy][ox], lo, hi)
 * the terms summed in (ci, ky, kx) order, as the GEMM path sums its K
 * (conv2d.c): the SIMD kernels with one fused multiply-add a term, like the
 * GEMM's micro-kernels, the scalar reference with a product and a sum, like
 * the scalar micro-kernel. So the direct path gives the GEMM path's bits on
 * every instruction set, and every output value is computed the same way
 * whatever band or thread computes it. Activations other than the
 * clamp-type ones are applied by the caller (pthcv_gconv_forward does).
 */
#ifndef PTHCV_GCONV_H
#define PTHCV_GCONV_H

#include "kernels.h"

/* floats readable past the last row of a band's input (vector loads of
 * the last columns read beyond it; those values feed only lanes not stored) */
enum { PTHCV_GCONV_SLACK = 40 };

/* One band of output rows of one group.
 * in: cin_g planes lds floats apart, rows ldi floats apart, zero padding
 * included: row 0 is the top row of output row 0's window, column 0 the
 * left column of output column 0's. Stride 1: column c of a row at c
 * (ldi >= ow + 2). Stride 2: a row holds its even columns, then its odd
 * ones from `odd` on: column c at c / 2, or odd + c / 2 (odd >= ow + 1,
 * ldi >= odd + ow), so every tap vector is a plain load. PTHCV_GCONV_SLACK
 * readable floats after the last plane's rows. */
typedef struct pthcv_gconv_band {
    const float *in;
    int64_t ldi, lds;
    int64_t odd; /* stride 2: where a row's odd columns start */
    int stride;         /* S: 1 or 2 */
    int cin_g, cout_g;  /* channels of the group in and out */
    const float *w;     /* the group's weights [cout_g][cin_g][3][3] */
    const float *bias;  /* cout_g values, or NULL */
    float *out;         /* channel co, row oy, column ox at out[co*ocs + oy*ow + ox] */
    const float *res;   /* NULL, or channel co's plane at res + co*rcs (same rows) */
    int64_t ocs, rcs;
    int64_t rows, ow;   /* output rows and columns of the band */
    float lo, hi;       /* clamp; -inf/+inf: none */
} pthcv_gconv_band;

void pthcv_gconv_band_scalar(const pthcv_gconv_band *b);
void pthcv_gconv_band_avx2(const pthcv_gconv_band *b);
void pthcv_gconv_band_avx512(const pthcv_gconv_band *b);
void pthcv_gconv_band_neon(const pthcv_gconv_band *b);
/* The band kernel of an instruction set for ow output columns: the scalar
 * one for instruction sets without one; AVX-512 takes the 8-lane AVX2
 * kernel on maps 8 wide or less, which 16 lanes would leave half empty. */
void (*pthcv_gconv_band_for(int isa, int64_t ow))(const pthcv_gconv_band *);

/* The layers these kernels take: 3x3, the same stride 1 or 2 both ways,
 * dilation 1, more than one group, 2 to 16 input and 1 to 16 output
 * channels per group (torchvision's RegNets up to group width 16, ResNeXt's
 * first stages; wider groups fill the GEMM's tiles). Any zero padding. */
int pthcv_gconv_fits(int64_t cin_g, int64_t cout_g, int64_t kh, int64_t kw, const pthcv_conv2d_params *p);

/* A whole grouped convolution on the thread pool: tasks are (image, group,
 * band of output rows). */
typedef struct pthcv_gconv_args {
    const float *x;        /* [batch][groups * cin_g][h][w], contiguous */
    int64_t batch, h, w;
    int64_t ph, pw;        /* zero padding */
    int groups, cin_g, cout_g, stride;
    const float *weight;   /* [groups * cout_g][cin_g][3][3] */
    const float *bias;     /* [groups * cout_g] or NULL */
    pthcv_activation act;
    float *out;            /* plane (n, co) at out + n*obs + co*ocs, oh*ow floats */
    int64_t oh, ow, ocs, obs;
    const float *res;      /* [batch][groups * cout_g][oh][ow] or NULL */
} pthcv_gconv_args;

/* 0, or PTHCV_ERR_NOMEM with the error set. */
int pthcv_gconv_forward(const pthcv_gconv_args *a);

#endif
