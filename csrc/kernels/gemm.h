/*
 * gemm.h -- the packed, register-blocked sgemm behind convolutions and
 * linear layers (internal to csrc/kernels).
 *
 *   C[M x N] = A[M x K] . B[K x N]  (+ bias per row or per column)
 *                                    (+ residual R[M x N])  then activation
 *
 * Operands are streamed in packed panels:
 *   A: MR-row micro-panels, k-major: panel p holds rows p*MR..p*MR+MR-1 as
 *      a[k*MR + r] (rows past M are zero);
 *   B: NR-column micro-panels, k-major: b[k*NR + c] (columns past N zero).
 * A packed operand is cut into the K slices the driver runs (pthcv_gemm_kslice)
 * and stored slice by slice, each slice's panels one after another
 * (pthcv_gemm_panel): a pass over one slice of the weights reads one
 * contiguous stretch of memory instead of every panel's part of it, pages
 * apart, which the hardware prefetchers do not follow. With K <= KC this is
 * the plain [panel][K][MR] layout.
 * A constant operand (weights) is packed once (pthcv_gemm_pack_a/_b, over the
 * whole K; pthcv_gemm_const keeps it, float32 or float16, the float16 one
 * converted block by block as it is streamed); the other is packed per
 * block by a callback, which is where a convolution does its implicit
 * im2col. C may be stored transposed (c_trans: a convolution on a small map
 * computes C^T with its pixels as rows).
 *
 * Blocking (BLIS order): a task computes one MC x NC block of C; for each KC
 * slice of K it packs the B block (KC x NC, L2) and then, for each NR
 * micro-panel of it (L1), runs the micro-kernel over the MR panels of the A
 * block. Only KC (fixed per instruction set) shapes the sums, so results do
 * not depend on MC, NC or the thread count.
 */
#ifndef PTHCV_GEMM_H
#define PTHCV_GEMM_H

#include "kernels.h"
#include <pthread.h>

/* One micro-kernel call: an MR x NR tile of C over kc steps of k.
 *   first: start from the bias (bias_row[r] + bias_col[c], missing ones 0)
 *          instead of loading C;
 *   last:  then add res (if not NULL) and clamp to [lo, hi], then the
 *          activation act when it is not PTHCV_ACT_NONE: GELU
 *          (approximate='none'), SiLU or Hardswish, only the kinds the
 *          kernel's table entry lists (SiLU and Hardswish with
 *          pthcv_act_row's bits); the driver applies the other activations
 *          after the store.
 * c/res hold a full MR x NR tile (row strides ldc/ldr); bias_row has MR
 * values, bias_col NR (the driver pads edges through a scratch tile). */
typedef struct pthcv_ukernel_args {
    int64_t kc;
    const float *a, *b;
    float *c;
    int64_t ldc;
    const float *res;
    int64_t ldr;
    const float *bias_row, *bias_col;
    int first, last;
    float lo, hi;
    int act;  /* PTHCV_ACT_NONE, or a kind in the kernel's acts */
    int rows; /* 0, or 1..mr-1: the tile's first `rows` rows only (kernels whose entry says rows) */
} pthcv_ukernel_args;

typedef void (*pthcv_ukernel_fn)(const pthcv_ukernel_args *a);

/* A micro-kernel and its blocking. mr <= 16, nr <= 64. */
typedef struct pthcv_gemm_kernel {
    int isa;
    int mr, nr;
    int kc;     /* K slice (fixed: it decides the rounding) */
    int mc, nc; /* largest block of C a task computes (multiples of mr, nr) */
    pthcv_ukernel_fn run;
    unsigned acts; /* the activations run applies in its store: bit 1 << kind (pthcv_ukernel_args.act) */
    int rows; /* run takes pthcv_ukernel_args.rows (an edge of M without a scratch tile) */
    /* or NULL: one A panel from a row-major matrix, dst[kk*mr + r] =
     * src[r*ld + kk] (kk < kc; rows past `rows` zero) */
    void (*pack_rows)(float *dst, const float *src, int64_t ld, int rows, int64_t kc);
} pthcv_gemm_kernel;

/* The micro-kernel of an instruction set (isa must be available). */
const pthcv_gemm_kernel *pthcv_gemm_kernel_for(int isa);

/* The micro-kernels, one per file. */
void pthcv_ukernel_scalar(const pthcv_ukernel_args *a);
void pthcv_ukernel_6x16_avx2(const pthcv_ukernel_args *a);
void pthcv_ukernel_8x32_avx512(const pthcv_ukernel_args *a);
void pthcv_ukernel_8x12_neon(const pthcv_ukernel_args *a);
/* The AVX-512 kernel's GELU over x[0..n) in place (its accuracy test). */
void pthcv_gelu_avx512(float *x, int64_t n);
void pthcv_pack_rows_8_avx512(float *dst, const float *src, int64_t ld, int rows, int64_t kc);

/* The K slices of the products (and of a packed operand): nearly equal,
 * at most k->kc long; they depend on K and the instruction set only, and
 * decide the rounding. */
static inline int64_t pthcv_gemm_kslice(const pthcv_gemm_kernel *k, int64_t K)
{
    int64_t n = K > 0 ? (K + k->kc - 1) / k->kc : 1;
    return K > 0 ? (K + n - 1) / n : 0;
}

/* Where the panel of rows (A) or columns (B) i0.. (a multiple of MR or NR)
 * starts its K slice k0.. (a multiple of kcs = pthcv_gemm_kslice) in a
 * packed operand of `lines` rows (A) or columns (B), rounded up to the
 * panel width, and K: the panel's slice is kc = min(kcs, K - k0) steps of
 * one panel width each. */
static inline int64_t pthcv_gemm_panel(int64_t lines_padded, int64_t K, int64_t kcs, int64_t i0, int64_t k0)
{
    int64_t kc = K - k0 < kcs ? K - k0 : kcs;
    return k0 * lines_padded + i0 * kc;
}

/* Packing a constant operand for kernel k into dst (pthcv_gemm_packed_*_size
 * floats, 64-byte aligned): src(i, kk) = src[i*rs + kk*ks] for A,
 * src(kk, j) = src[kk*ks + j*cs] for B. */
int64_t pthcv_gemm_packed_a_size(const pthcv_gemm_kernel *k, int64_t M, int64_t K);
int64_t pthcv_gemm_packed_b_size(const pthcv_gemm_kernel *k, int64_t K, int64_t N);
void pthcv_gemm_pack_a(const pthcv_gemm_kernel *k, float *dst, const float *src, int64_t M, int64_t K, int64_t rs,
                       int64_t ks);
void pthcv_gemm_pack_b(const pthcv_gemm_kernel *k, float *dst, const float *src, int64_t K, int64_t N, int64_t ks,
                       int64_t cs);

/* ---- weights: a constant operand packed once per instruction set ----------
 * The logical matrix of set s is rows x cols (A: M x K, B: K x N), element
 * (i, j) read from src[s * set_stride + i * s0 + j * s1] when packing.
 * Stored float32, or float16 when `half` (module:half(): the kernels convert
 * one block at a time). The first pack is the only copy of the weights a
 * layer keeps: a pack for another instruction set (pthcv_set_isa) is made
 * from an unpacked copy of it, and so is anything derived from the weights
 * later (Winograd's transformed weights, pthcv_conv2d_weight). */
typedef struct pthcv_gemm_const {
    int is_b, half;
    int64_t nsets, rows, cols;
    int ref_isa;                   /* the instruction set of the first pack */
    pthread_mutex_t lock;          /* guards packed[] */
    void *packed[PTHCV_ISA_COUNT]; /* per instruction set: nsets packed operands */
} pthcv_gemm_const;

/* Packs for kernel k; 0 or PTHCV_ERR_NOMEM (error set). */
int pthcv_gemm_const_init(pthcv_gemm_const *w, const pthcv_gemm_kernel *k, int is_b, int half, int64_t nsets,
                          int64_t rows, int64_t cols, const float *src, int64_t set_stride, int64_t s0, int64_t s1);
/* The pack for kernel k (made on first use), *sstride set to the elements
 * between sets; NULL when out of memory. */
const void *pthcv_gemm_const_get(pthcv_gemm_const *w, const pthcv_gemm_kernel *k, int64_t *sstride);
/* The weights back as float32 [nsets][rows][cols] (malloc'd; exact: a
 * float16 pack holds float16 values); NULL when out of memory. */
float *pthcv_gemm_const_unpack(pthcv_gemm_const *w);
void pthcv_gemm_const_free(pthcv_gemm_const *w);
int64_t pthcv_gemm_const_bytes(pthcv_gemm_const *w); /* all packs made so far */

void *pthcv_alloc_aligned(size_t bytes); /* 64-byte aligned, NULL on failure */
void pthcv_free_aligned(void *p);

/* Scratch of the calling thread, at least `floats` long, 64-byte aligned,
 * kept for the thread's next call with the same slot (contents not kept
 * across calls that grow it); NULL when out of memory. */
enum {
    PTHCV_SCRATCH_GEMM_A,
    PTHCV_SCRATCH_GEMM_B,
    PTHCV_SCRATCH_GEMM_C,
    PTHCV_SCRATCH_DW,
    PTHCV_SCRATCH_WINO_V,
    PTHCV_SCRATCH_WINO_M,
    PTHCV_SCRATCH_WINO_X,
    PTHCV_SCRATCH_CONV_A,
    PTHCV_SCRATCH_QGEMM_X,
    PTHCV_SCRATCH_QGEMM_ACC,
    PTHCV_SCRATCH_QCONV_COLS,
    PTHCV_SCRATCH_WINO_SHARED, /* the calling thread's, lent to the pool's tasks for one job (winograd.c) */
    PTHCV_SCRATCH_DWPW_MID,    /* a band of depthwise output (dwpw.c) */
    PTHCV_SCRATCH_CONV_X,      /* a strided convolution's input, sampled (1x1) or split in phases (conv2d.c) */
    PTHCV_SCRATCH_SLOTS
};
float *pthcv_scratch(int slot, size_t floats);

/* A batch of same-shaped problems p = 0..nprob-1 (images x groups of a
 * convolution). Problem p uses A/bias set (p % nsets), and its C (and res)
 * start at c + p*c_pstride. */
typedef struct pthcv_gemm_problem {
    const pthcv_gemm_kernel *kernel;
    int64_t M, N, K, nprob, nsets;
    /* A: prepacked (a_packed + set*a_sstride floats) or packed per block */
    const float *a_packed;
    const uint16_t *a_half; /* or prepacked as float16 (module:half()), converted per block */
    int64_t a_sstride;
    /* dst: [ceil(mc/MR)][kc][MR] for rows i0.., k from k0 */
    void (*pack_a)(const void *ctx, int64_t p, float *dst, int64_t i0, int64_t mc, int64_t k0, int64_t kc, int mr);
    /* B: prepacked (b_packed + set*b_sstride floats) or packed per block,
     * dst: [ceil(nc/NR)][kc][NR] */
    const float *b_packed;
    const uint16_t *b_half; /* or prepacked as float16 */
    int64_t b_sstride;
    void (*pack_b)(const void *ctx, int64_t p, float *dst, int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr);
    const void *ctx;
    float *c;
    int64_t ldc, c_pstride;
    int c_trans;           /* C stored transposed: (i, j) at c[j * ldc + i] (res too) */
    const float *res;      /* same layout as C, or NULL */
    const float *bias_row; /* M per set (bias_row + set*M), or NULL */
    const float *bias_col; /* N per set (bias_col + set*N), or NULL */
    pthcv_activation act;
} pthcv_gemm_problem;

/* Runs the problem on the thread pool. 0, or PTHCV_ERR_NOMEM with the error set. */
int pthcv_gemm_run(const pthcv_gemm_problem *g);

/* Clamp bounds of the clamp-type activations (fused into the micro-kernel's
 * store); returns 0 for the other kinds, which run after the store. */
int pthcv_act_bounds(const pthcv_activation *a, float *lo, float *hi);

#endif
