/*
 * conv2d_view.h -- what a fused step outside conv2d.c reads of a prepared
 * convolution (internal: dwpw.c). Read-only; valid while c lives.
 */
#ifndef PTHCV_CONV2D_VIEW_H
#define PTHCV_CONV2D_VIEW_H

#include "gemm.h"

typedef struct pthcv_conv2d_view {
    int64_t cout, cin_g, kh, kw, groups;
    pthcv_conv2d_params p;
    int depthwise;     /* the direct depthwise kernels run it (dwconv.h) */
    int half;          /* GEMM weights kept as float16 */
    const float *w;    /* depthwise only: [cout][kh * kw] */
    const float *bias; /* [cout] or NULL */
} pthcv_conv2d_view;

void pthcv_conv2d_view_of(const pthcv_conv2d *c, pthcv_conv2d_view *v);
/* The GEMM weights as A (rows = output channels) for kernel k, float32 or
 * float16 (view.half), made on first use; *sstride: floats between groups.
 * NULL when out of memory (error set). */
const void *pthcv_conv2d_gemm_a(pthcv_conv2d *c, const pthcv_gemm_kernel *k, int64_t *sstride);

#endif
