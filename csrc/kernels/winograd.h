/*
 * winograd.h -- 3x3 stride-1 convolution by Winograd F(4x4, 3x3)
 * (winograd.c, transform kernels in winograd_avx2.c; internal to
 * csrc/kernels, used by conv2d.c).
 */
#ifndef PTHCV_WINOGRAD_H
#define PTHCV_WINOGRAD_H

#include "gemm.h"

/* U[xi][ci][co] (36 x cin x cout floats) from w[co][ci][3][3], computed in
 * double; each xi is packed as the GEMM's A (M = cout, K = cin: rs = 1,
 * ks = cout). 0, or PTHCV_ERR_NOMEM (no error set). */
int pthcv_wino_weights(const float *w, int64_t cout, int64_t cin, float *u);

typedef struct pthcv_wino_args {
    const pthcv_gemm_kernel *kernel;
    const float *u;                /* 36 packed A operands, u_sstride floats apart */
    int64_t u_sstride;
    const float *x;                /* one image [cin][h][w] */
    int64_t cin, h, w, ph, pw;     /* zero padding */
    int64_t cout, oh, ow;
    const float *bias;             /* [cout] or NULL */
    const float *res;              /* [cout][oh][ow] or NULL */
    float *out;                    /* [cout][oh][ow] */
    pthcv_activation act;
    int fused;                     /* act is the clamp [lo, hi] */
    float lo, hi;
} pthcv_wino_args;

/* One image; 0 or PTHCV_ERR_NOMEM (error set). */
int pthcv_wino_forward(const pthcv_wino_args *a);

/* The transforms work on 8 tiles at once, as two "quads" of 4 horizontally
 * adjacent tiles: lanes 0-3 are the quad whose top-left input is at pa,
 * lanes 4-7 the one at pb (rows ld floats apart in a zero-padded plane).
 *   in8:  v[xi * 8 + lane] = (B^T d B)[xi] of each tile's 6x6 input d;
 *   out8: from m[xi * ms + lane] (the products), bias + (A^T m A) of each
 *         tile, as the quads' 4 x 16 output blocks za[4][16], zb[4][16].
 * Every version computes the same bits (same operations in the same order,
 * no FMA contraction). */
void pthcv_wino_in8_scalar(const float *pa, const float *pb, int64_t ld, float *v);
void pthcv_wino_out8_scalar(const float *m, int64_t ms, float bias, float *za, float *zb);
void pthcv_wino_in8_avx2(const float *pa, const float *pb, int64_t ld, float *v);
void pthcv_wino_out8_avx2(const float *m, int64_t ms, float bias, float *za, float *zb);

#endif
