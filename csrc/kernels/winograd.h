/*
 * winograd.h -- 3x3 stride-1 convolution by Winograd F(4x4, 3x3) and
 * F(2x2, 3x3) (winograd.c, transform kernels in winograd_avx2.c; internal
 * to csrc/kernels, used by conv2d.c).
 */
#ifndef PTHCV_WINOGRAD_H
#define PTHCV_WINOGRAD_H

#include "gemm.h"

/* The tile size for a 3x3 stride-1 convolution of cin -> cout channels
 * with an oh x ow output: 4 (F(4x4, 3x3)) where the map has at least 9
 * such tiles, 2 (F(2x2, 3x3)) on smaller maps (7x7) with at least 64
 * channels in and out, else 0 (the GEMM). */
int pthcv_wino_tile(int64_t cin, int64_t cout, int64_t oh, int64_t ow);

/* U[xi][ci][co] ((m+2)^2 x cin x cout floats) from w[co][ci][3][3] for tile
 * size m, computed in double; each xi is packed as the GEMM's A (M = cout,
 * K = cin: rs = 1, ks = cout). 0, or PTHCV_ERR_NOMEM (no error set). */
int pthcv_wino_weights(int m, const float *w, int64_t cout, int64_t cin, float *u);

typedef struct pthcv_wino_args {
    int m; /* tile size: 4 or 2 */
    const pthcv_gemm_kernel *kernel;
    const float *u; /* (m+2)^2 packed A operands, u_sstride floats apart */
    int64_t u_sstride;
    const float *x;            /* one image [cin][h][w] */
    int64_t cin, h, w, ph, pw; /* zero padding */
    int64_t cout, oh, ow;
    const float *bias; /* [cout] or NULL */
    const float *res;  /* [cout][oh][ow] or NULL */
    float *out;        /* [cout][oh][ow] */
    pthcv_activation act;
    int fused; /* act is the clamp [lo, hi] */
    float lo, hi;
} pthcv_wino_args;

/* The micro-kernel for an oh x ow output on instruction set isa: the
 * widest whose column panels (NR tiles) the image's tiles fill best; an
 * AVX-512 machine takes the AVX2 kernel on a 14x14 map (16 tiles: one
 * panel of 16, not half of one of 32). */
const pthcv_gemm_kernel *pthcv_wino_kernel(int isa, int m, int64_t oh, int64_t ow);

/* One image; 0 or PTHCV_ERR_NOMEM (error set). */
int pthcv_wino_forward(const pthcv_wino_args *a);

/* Where out8 writes one quad's m x 4m block: its top-left output o (rows
 * ld floats apart), the residual r at the same place (or NULL), and the
 * part of the block inside the output (rows x cols; 0 rows: no quad). */
typedef struct pthcv_wino_dst {
    float *o;
    const float *r;
    int64_t ld;
    int rows, cols;
} pthcv_wino_dst;

/* The store's epilogue: bias, then the residual, then (clamp) max with lo
 * and min with hi (the GEMM micro-kernels' order; a NaN stays NaN) */
typedef struct pthcv_wino_epi {
    float bias, lo, hi;
    int clamp;
} pthcv_wino_epi;

/* One output value z (bias + transform done) through the rest of the
 * epilogue: what every out8 computes, in this order */
static inline float pthcv_wino_finish(float z, const float *r, const pthcv_wino_epi *e)
{
    if (r) z += *r;
    if (e->clamp) {
        z = z < e->lo ? e->lo : z;
        z = z > e->hi ? e->hi : z;
    }
    return z;
}

/* The transforms work on 8 tiles at once, as two "quads" of 4 horizontally
 * adjacent tiles: lanes 0-3 are the quad whose top-left input is at pa,
 * lanes 4-7 the one at pb (rows ld floats apart in a zero-padded plane).
 *   in8:  v[xi * vs + lane] = (B^T d B)[xi] of each tile's a x a input d;
 *   out8: from m[xi * ms + lane] (the products), bias + (A^T m A) of each
 *         tile, + residual, clamped (pthcv_wino_finish), written straight
 *         into the quads' blocks da and db (only their rows x cols).
 * pthcv_wino_* are F(4x4, 3x3) (a = 6), pthcv_wino23_* F(2x2, 3x3) (a = 4).
 * Every version computes the same bits (same operations in the same order:
 * the multiply-adds are explicit, fmaf in C and FMA instructions, and
 * nothing else is contracted). */
typedef void (*pthcv_wino_in8_fn)(const float *pa, const float *pb, int64_t ld, float *v, int64_t vs);
typedef void (*pthcv_wino_out8_fn)(const float *m, int64_t ms, const pthcv_wino_epi *e, const pthcv_wino_dst *da,
                                   const pthcv_wino_dst *db);
void pthcv_wino_in8_scalar(const float *pa, const float *pb, int64_t ld, float *v, int64_t vs);
void pthcv_wino_out8_scalar(const float *m, int64_t ms, const pthcv_wino_epi *e, const pthcv_wino_dst *da,
                            const pthcv_wino_dst *db);
void pthcv_wino_in8_avx2(const float *pa, const float *pb, int64_t ld, float *v, int64_t vs);
void pthcv_wino_out8_avx2(const float *m, int64_t ms, const pthcv_wino_epi *e, const pthcv_wino_dst *da,
                          const pthcv_wino_dst *db);
void pthcv_wino23_in8_scalar(const float *pa, const float *pb, int64_t ld, float *v, int64_t vs);
void pthcv_wino23_out8_scalar(const float *m, int64_t ms, const pthcv_wino_epi *e, const pthcv_wino_dst *da,
                              const pthcv_wino_dst *db);
void pthcv_wino23_in8_avx2(const float *pa, const float *pb, int64_t ld, float *v, int64_t vs);
void pthcv_wino23_out8_avx2(const float *m, int64_t ms, const pthcv_wino_epi *e, const pthcv_wino_dst *da,
                            const pthcv_wino_dst *db);

#endif
