/*
 * qdwconv.h -- the int8 depthwise plane with the requantization in its
 * store (internal; qconv2d.c's depthwise path, qdwconv_avx2.c,
 * qdwconv_avx512.c, qdwconv_neon.c).
 *
 * The input plane is widened to floats x - zx and padded as dwconv.h wants
 * (dw: its in, ldi, stride, kh, kw, w, oh, ow; bias 0; out, res, lo, hi
 * unused): the weights are the int8 values as floats, so every product and
 * partial sum is an integer below 2^24 and the float sums are the exact
 * integer sums. The row loop is the float kernels' (dwconv_rows.h); each
 * vector of sums goes straight to the uint8 store of qgemm.h
 * (pthcv_qstore_fns.fsum: v = (sum + off) * mul, + the residual term,
 * clamped, rounded, + zy) instead of through a float plane: the bits of
 * the float kernel followed by fsum.
 */
#ifndef PTHCV_QDWCONV_H
#define PTHCV_QDWCONV_H

#include "dwconv.h"
#include "qgemm.h"

typedef struct pthcv_qdw_args {
    pthcv_dw_args dw; /* first: the row loop's store gets it back from &dw */
    const pthcv_qstore *s;
    float off, mul;     /* this channel's (bias in sum units, multiplier) */
    const uint8_t *res; /* the residual plane (oh x ow) or NULL */
    uint8_t *out;       /* oh x ow */
} pthcv_qdw_args;

typedef void (*pthcv_qdw_plane_fn)(const pthcv_qdw_args *a);

void pthcv_qdw_plane_avx2(const pthcv_qdw_args *a);
void pthcv_qdw_plane_avx512(const pthcv_qdw_args *a);
void pthcv_qdw_plane_neon(const pthcv_qdw_args *a);
/* The fused plane of the instruction set in use for a kh x kw kernel
 * (3x3 and 5x5, stride 1 or 2, on AVX2, AVX-512 and NEON), or NULL: then the float
 * plane kernel and fsum (the reference path, same bits). */
pthcv_qdw_plane_fn pthcv_qdw_plane_for(int isa, int kh, int kw, int stride);

#endif
