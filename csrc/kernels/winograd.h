/*
 * winograd.h -- 3x3 stride-1 convolution by Winograd F(4x4, 3x3)
 * (winograd.c; internal to csrc/kernels, used by conv2d.c).
 */
#ifndef PTHCV_WINOGRAD_H
#define PTHCV_WINOGRAD_H

#include "gemm.h"

/* U[xi][ci][co] (36 x cin x cout floats) from w[co][ci][3][3]; pack each
 * xi as the GEMM's B (K = cin, N = cout, ks = cout, cs = 1). */
void pthcv_wino_weights(const float *w, int64_t cout, int64_t cin, float *u);

typedef struct pthcv_wino_args {
    const pthcv_gemm_kernel *kernel;
    const float *u;                /* 36 packed B operands, u_sstride floats apart */
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

#endif
