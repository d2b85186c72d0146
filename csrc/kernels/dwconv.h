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

/* One output value, the reference formula; the SIMD kernels use it for the
 * columns left over after their vectors. */
static inline float pthcv_dw_point(const pthcv_dw_args *a, int64_t oy, int64_t ox)
{
    float acc = a->bias;
    for (int ky = 0; ky < a->kh; ky++) {
        const float *row = a->in + (oy * a->stride + ky) * a->ldi;
        for (int kx = 0; kx < a->kw; kx++) acc += a->w[ky * a->kw + kx] * row[ox * a->stride + kx];
    }
    if (a->res) acc += a->res[oy * a->ow + ox];
    return acc < a->lo ? a->lo : acc > a->hi ? a->hi : acc;
}

#endif
