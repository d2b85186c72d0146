/*
 * qgemm.h -- the int8 GEMM behind quantized convolutions and linear layers
 * (internal to csrc/kernels; qgemm.c, qgemm_avx2.c, qgemm_vnni.c,
 * qgemm_neon.c).
 *
 *   acc[M x N] (int32) = W[M x K] (int8 weights) . X[K x N] (activations)
 *
 * then, per output value (requantization, done on each tile while it is in
 * L1: no pass over an int32 buffer), as torch's quantized convolution:
 *   v = (float)(acc - zx * wsum[m] + bq[m]) * mul[m]   (+ residual term)
 *   y = round_half_even(clamp(v, lo - zy, hi - zy)) + zy   stored as uint8
 * or, for a float output, (float)(acc - zx * wsum[m]) * mul[m] + add[m].
 * zx is the activations' zero point, wsum[m] the sum of row m of W, bq[m]
 * the bias in units of sx * sw[m] rounded to an integer, mul[m] = sx * sw[m]
 * / sy, add[m] = bias[m] (sy = 1, zy = 0 for a float output). bq and mul
 * are rounded as torch rounds them (qconv2d.c): the outputs are the bits of
 * torch's quantized models (qnnpack engine; spec/quant_spec.lua).
 *
 * Operands are packed in groups of kg consecutive k (the dot-product width
 * of the instructions): W panels of MR rows as w[k / kg][MR][kg], X panels
 * of NR columns as x[k / kg][NR][kg]; K is padded to a multiple of kg with
 * zero weights. Element types by kernel:
 *   scalar  kg 4, W int8,  X uint8
 *   vnni    kg 4, W int8,  X uint8      (vpdpbusd: u8 x s8, no saturation)
 *   avx2    kg 2, W int16, X int16      (vpmaddwd on widened values: exact)
 *   neon    kg 4, W int8,  X int8 = uint8 - 128   (sdot: s8 x s8); the
 *           -128 is folded into the zero point (zx - 128)
 * Every kernel computes the exact integer sums, so every kernel, thread
 * count and block size gives the same int32 accumulators and hence the same
 * output bits.
 */
#ifndef PTHCV_QGEMM_H
#define PTHCV_QGEMM_H

#include "gemm.h"

enum { PTHCV_QX_U8 = 0, PTHCV_QX_S16 = 1, PTHCV_QX_S8 = 2 }; /* packed X element */

/* One micro-kernel call: an MR x NR int32 tile over kc values of k (a
 * multiple of kg): c = (first ? 0 : c) + a . b; c row-major, NR per row. */
typedef void (*pthcv_qukernel_fn)(int64_t kc, const void *a, const void *b, int32_t *c, int first);

typedef struct pthcv_qgemm_kernel {
    const char *name; /* "scalar", "avx2", "vnni", "neon-dot" */
    int mr, nr, kg;
    int w16;    /* W packed as int16 (else int8) */
    int xtype;  /* PTHCV_QX_* */
    int kc, nc; /* K slice (multiple of kg), columns per block */
    pthcv_qukernel_fn run;
} pthcv_qgemm_kernel;

/* The kernel for the instruction set in use (VNNI or dot-product when the
 * CPU has them), or the scalar one. */
const pthcv_qgemm_kernel *pthcv_qgemm_kernel_now(void);
const pthcv_qgemm_kernel *pthcv_qgemm_kernel_named(const char *name); /* NULL if not available */

void pthcv_qukernel_scalar(int64_t kc, const void *a, const void *b, int32_t *c, int first);
void pthcv_qukernel_avx2(int64_t kc, const void *a, const void *b, int32_t *c, int first);
void pthcv_qukernel_vnni(int64_t kc, const void *a, const void *b, int32_t *c, int first);
void pthcv_qukernel_neon_dot(int64_t kc, const void *a, const void *b, int32_t *c, int first);
int pthcv_cpu_has_vnni(void);    /* isa.c: AVX512-VNNI with AVX-512 F/BW/VL */
int pthcv_cpu_has_dotprod(void); /* isa.c: AArch64 SDOT */

/* K rounded up to kg, and the bytes of a packed W. */
int64_t pthcv_qgemm_kpad(const pthcv_qgemm_kernel *k, int64_t K);
int64_t pthcv_qgemm_packed_w_bytes(const pthcv_qgemm_kernel *k, int64_t M, int64_t K);
/* Packs W (int8, w(i, kk) = src[i * K + kk]) for kernel k into dst (64-byte
 * aligned, pthcv_qgemm_packed_w_bytes). */
void pthcv_qgemm_pack_w(const pthcv_qgemm_kernel *k, void *dst, const int8_t *src, int64_t M, int64_t K);

/* The requantization of one output row m (see the top). */
typedef struct pthcv_requant {
    const float *mul, *add;   /* [M] */
    const int32_t *wsum, *bq; /* [M] */
    int32_t zx;               /* activations' zero point as packed (neon: zx - 128) */
    int32_t zy;               /* output zero point */
    int out_float;            /* store float v instead of uint8 */
    int32_t lo, hi;           /* clamp of the uint8 output (a fused ReLU raises lo) */
    float flo, fhi;           /* clamp of the float output */
    /* residual (uint8, same layout as the output) or NULL: v += (r - zr) * rmul */
    const uint8_t *res;
    int32_t zr;
    float rmul;
} pthcv_requant;

/* Row m's n accumulators acc to out (uint8 or float, per q->out_float),
 * res: the residual's row or NULL. */
void pthcv_qgemm_requant_row(const pthcv_requant *q, int64_t m, const int32_t *acc, int n, void *out,
                             const uint8_t *res);

/* The same for row m from exact integer sums held in floats, zx already
 * subtracted (the depthwise path); the bits of pthcv_qgemm_requant_row. */
void pthcv_qgemm_requant_fsum(const pthcv_requant *q, int64_t m, const float *acc, int64_t n, void *out,
                              const uint8_t *res);

/* The uint8 stores of the requantization, one set per instruction set
 * (qgemm.c: the plain C reference; qrequant_avx2.c, qrequant_avx512.c,
 * qrequant_neon.c), all
 * with the same bits: the reference's float operations in its order, the
 * rounding half to even done by the conversion's own rounding mode.
 *   tile:  rows x n int32 sums (row stride lda) to out (row stride ldo, and
 *          res's): v = (float)(acc + off[r]) * mul[r]
 *                      (+ (float)(res - zr) * rmul), clamped to [lo, hi],
 *          rounded, + zy;
 *   fsum:  one row of n exact integer sums held in floats, off a float;
 *   widen: d[i] = (float)s[i] - zx (the depthwise path's planes). */
typedef struct pthcv_qstore {
    float lo, hi; /* the clamp, in units of the output, zy not added */
    int32_t zy, zr;
    float rmul;
} pthcv_qstore;

typedef struct pthcv_qstore_fns {
    void (*tile)(const pthcv_qstore *s, const int32_t *acc, int rows, int n, int64_t lda, const int32_t *off,
                 const float *mul, const uint8_t *res, uint8_t *out, int64_t ldo);
    void (*fsum)(const pthcv_qstore *s, const float *acc, int64_t n, float off, float mul, const uint8_t *res,
                 uint8_t *out);
    void (*widen)(float *d, const uint8_t *s, int64_t n, float zx);
} pthcv_qstore_fns;

extern const pthcv_qstore_fns pthcv_qstore_scalar, pthcv_qstore_avx2, pthcv_qstore_avx512, pthcv_qstore_neon;
/* The set of the instruction set in use (the scalar one where none is written). */
const pthcv_qstore_fns *pthcv_qstore_now(void);
/* A uint8 requantization's store parameters (pthcv_requant below). */
struct pthcv_requant;
void pthcv_qgemm_qstore_of(const struct pthcv_requant *q, pthcv_qstore *s);

/* A batch of problems p = 0..nprob-1 (images x groups): problem p uses W set
 * p % nsets and writes out + p * out_pstride (row m, column j at
 * m * ldo + j); its X is packed per block by pack_x (columns j0..j0+nc-1,
 * rows k0..k0+kc-1 into dst as [nc / NR][kc / kg][NR][kg]). */
typedef struct pthcv_qgemm_problem {
    const pthcv_qgemm_kernel *kernel;
    int64_t M, N, K, nprob, nsets;
    const void *w; /* packed W, w_sstride bytes between sets */
    int64_t w_sstride;
    /* 0, or nonzero when out of memory */
    int (*pack_x)(const void *ctx, int64_t p, void *dst, int64_t k0, int64_t kc, int64_t j0, int64_t nc);
    const void *ctx;
    void *out;                /* uint8 or float */
    int64_t ldo, out_pstride; /* in elements */
    pthcv_requant rq;         /* mul/add/wsum indexed by set * M + m */
    int64_t res_pstride;
    /* what packing one column panel of X costs, in halves of one MR-row
     * panel's multiply-adds over the same K (0: 1, a plain copy); guides
     * the split between threads only */
    int64_t pack_cost;
} pthcv_qgemm_problem;

/* Runs the problem on the thread pool. 0, or PTHCV_ERR_NOMEM (error set). */
int pthcv_qgemm_run(const pthcv_qgemm_problem *g);

/* Packs rows k0..k0+kc-1 and columns j0..j0+nc-1 of a uint8 matrix
 * src(kk, j) = src[kk * ld + j] into the X layout of kernel k (columns past
 * ncols and rows past nrows are filled with `pad`). */
void pthcv_qgemm_pack_x_rows(const pthcv_qgemm_kernel *k, void *dst, const uint8_t *src, int64_t ld, int64_t nrows,
                             int64_t ncols, int64_t k0, int64_t kc, int64_t j0, int64_t nc, uint8_t pad);

#endif
