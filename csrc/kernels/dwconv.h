/*
 * dwconv.h -- direct depthwise convolution of one channel plane (internal).
 *
 * The caller hands over the input plane already zero padded (so the kernels
 * never test borders), in rows of ldi >= padded width + PTHCV_DW_SLACK
 * floats, with PTHCV_DW_SLACK more floats after the last row: vector loads
 * for the last columns may read past a row's end (values that only feed
 * output lanes that are not stored).
 * out[oy][ox] = clamp(bias + sum_{ky,kx} w[ky*kw + kx] * in[(oy*s + ky)*ldi + ox*s + kx]
 *                     + res[oy][ox], lo, hi)   (taps summed in (ky, kx) order)
 * Other activations are applied by the caller.
 * The dilated kernels (pthcv_dw_dilated_plane_*) take the taps `dilation`
 * apart: in[(oy*s + ky*d)*ldi + ox*s + kx*d], with ldi >= (ow - 1)*s +
 * d*(kw - 1) + 1 + PTHCV_DW_SLACK; the others are these with d = 1.
 */
#ifndef PTHCV_DWCONV_H
#define PTHCV_DWCONV_H

#include "kernels.h"

enum { PTHCV_DW_SLACK = 40 };

typedef struct pthcv_dw_args {
    const float *in;
    int64_t ldi;
    int stride, kh, kw;
    const float *w;
    float bias;
    float *out;
    const float *res; /* NULL: none; same layout as out */
    int64_t oh, ow;
    float lo, hi;
} pthcv_dw_args;

void pthcv_dw_plane_scalar(const pthcv_dw_args *a);
void pthcv_dw_plane_avx2(const pthcv_dw_args *a);
void pthcv_dw_plane_avx512(const pthcv_dw_args *a);
void pthcv_dw_plane_neon(const pthcv_dw_args *a);
/* The plane kernel of an instruction set (the scalar one for others). */
void (*pthcv_dw_plane_for(int isa))(const pthcv_dw_args *);

void pthcv_dw_dilated_plane_scalar(const pthcv_dw_args *a, int dilation);
void pthcv_dw_dilated_plane_avx2(const pthcv_dw_args *a, int dilation);
void pthcv_dw_dilated_plane_avx512(const pthcv_dw_args *a, int dilation);
void pthcv_dw_dilated_plane_neon(const pthcv_dw_args *a, int dilation);
void (*pthcv_dw_dilated_plane_for(int isa))(const pthcv_dw_args *, int);

/* One output value with taps d apart, the reference formula. */
static inline float pthcv_dw_dilated_point(const pthcv_dw_args *a, int d, int64_t oy, int64_t ox)
{
    float acc = a->bias;
    for (int ky = 0; ky < a->kh; ky++) {
        const float *row = a->in + (oy * a->stride + (int64_t)ky * d) * a->ldi;
        for (int kx = 0; kx < a->kw; kx++) acc += a->w[ky * a->kw + kx] * row[ox * a->stride + (int64_t)kx * d];
    }
    if (a->res) acc += a->res[oy * a->ow + ox];
    return acc < a->lo ? a->lo : acc > a->hi ? a->hi : acc;
}

/* One output value, the reference formula. */
static inline float pthcv_dw_point(const pthcv_dw_args *a, int64_t oy, int64_t ox)
{
    return pthcv_dw_dilated_point(a, 1, oy, ox);
}

#endif
