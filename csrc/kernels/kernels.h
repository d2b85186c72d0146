/*
 * kernels.h -- what the inference kernels share: the thread pool, the
 * instruction-set dispatch, and small helpers. Public entry points are in
 * pthcv.h (the "Inference" section); everything here is internal.
 *
 * Files: parallel.c (threads), isa.c (CPU detection, pthcv_set_isa),
 * activation.c, half*.c (float16 weights), then one file per op family:
 * conv2d.c (over gemm*.c, winograd*.c, dwconv*.c and gconv*.c), conv_transpose2d.c,
 * linear.c, fold.c (BatchNorm folding) and ops_*.c (pooling, norms,
 * elementwise, shapes, ...; their shared helpers in ops.h). A SIMD
 * micro-kernel file is named by op, tile and instruction set, e.g.
 * gemm_6x16_avx2.c, and is compiled with that instruction set only.
 */
#ifndef PTHCV_KERNELS_H
#define PTHCV_KERNELS_H

#include "../internal.h"

/* ---- threads (parallel.c) ------------------------------------------------
 * Runs fn(ctx, begin, end) over [0, n) cut into contiguous chunks (a few per
 * thread, each at least `grain` long, their lengths differing by 1 at most;
 * serially when n < 2 grain) and returns when every
 * chunk is done. Every thread, the caller's included, takes chunks until
 * none is left, in whatever order they ask, so which thread runs a chunk,
 * and where chunks begin, vary with the thread count and from call to call:
 * fn must compute each index independently of the others, and then results
 * are the same for any thread count. Called from inside a task, it runs
 * fn(ctx, 0, n) serially. */
typedef void (*pthcv_task_fn)(void *ctx, int64_t begin, int64_t end);
void pthcv_parallel_for(int64_t n, int64_t grain, pthcv_task_fn fn, void *ctx);

/* PTHCV_SIMD on a hot loop's function: gcc builds one clone per instruction
 * set (AVX-512, AVX2, baseline SSE2), auto-vectorised for each, and picks one
 * at load time. The loops are written so that every clone computes the same
 * bits: no reassociation (-ffp-contract=off in the Makefile, so no FMA
 * contraction either), and reductions use a fixed number of lanes
 * (OPS_LANES) that each see the same sequence of additions. Build with
 * -DPTHCV_NO_CLONES for the plain version only (spec/c/ops_test.c is
 * compiled both ways and compared). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(PTHCV_NO_CLONES)
#define PTHCV_SIMD \
    __attribute__((target_clones("avx512f", "avx2", "default"), optimize("tree-vectorize", "vect-cost-model=dynamic")))
#else
#define PTHCV_SIMD
#endif

/* ---- instruction sets (isa.c) ---------------------------------------------- */
enum {
    PTHCV_ISA_SCALAR = 0,
    PTHCV_ISA_AVX2 = 1,
    PTHCV_ISA_AVX512 = 2,
    PTHCV_ISA_NEON = 3,
    PTHCV_ISA_COUNT = 4
}; /* families; arrays indexed by PTHCV_ISA_* have this many slots */
/* The family the kernels use now: the best the CPU has, or the forced one. */
int pthcv_isa(void);
int pthcv_isa_available(int isa);    /* compiled in and offered by this CPU */
const char *pthcv_isa_name(int isa); /* "scalar", "avx2", ... */

/* ---- float16 weights (half.c, half_avx2.c, half_neon.c) --------------------
 * module:half() packs keep float16 in memory; the kernels convert one block
 * at a time into float32 scratch. halves -> floats is exact and uses F16C or
 * NEON where the CPU has them; floats -> halves rounds to nearest even. */
void pthcv_halves_to_floats(float *dst, const uint16_t *src, int64_t n);
void pthcv_floats_to_halves(uint16_t *dst, const float *src, int64_t n);
void pthcv_halves_to_floats_f16c(float *dst, const uint16_t *src, int64_t n);
void pthcv_halves_to_floats_neon(float *dst, const uint16_t *src, int64_t n);
int pthcv_cpu_has_f16c(void); /* isa.c */

/* ---- activations (activation.c) -------------------------------------------
 * The one definition of each pthcv_activation kind, PyTorch's formula in
 * float32. pthcv_act_row applies it in place to n floats (a may be NULL:
 * nothing to do); every kernel that fuses an activation uses these, so fused
 * and unfused results agree bit for bit. pthcv_act_valid: kind in range. */
float pthcv_act_scalar(float v, const pthcv_activation *a);
/* 1 if this CPU's SiLU is vm_silu (vmath.h: the multiply-adds fused), 0 if
 * vm_silu_unfused (a CPU without FMA) */
int pthcv_silu_fused(void);
void pthcv_act_row(float *x, int64_t n, const pthcv_activation *a);
int pthcv_act_valid(const pthcv_activation *a);
/* torch's name of a kind, for messages ("relu", "gelu"...; "activation"
 * when out of range). */
const char *pthcv_act_name(int kind);

/* ---- the op profile (profile.c) -------------------------------------------
 * PTHCV_PROFILE_OP("kind") at the top of an entry point times it until the
 * function returns (a cleanup attribute: every return is covered);
 * pthcv_probe_label renames the row once the path is known. */
enum { PTHCV_PROBE_KIND = 48 };
typedef struct pthcv_probe {
    int active, counted;
    int64_t t0;
    char kind[PTHCV_PROBE_KIND];
} pthcv_probe;
pthcv_probe pthcv_probe_begin(const char *kind);
void pthcv_probe_label(pthcv_probe *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pthcv_probe_end(pthcv_probe *p);
#define PTHCV_PROFILE_OP(kind) \
    pthcv_probe pthcv_probe_ __attribute__((cleanup(pthcv_probe_end), unused)) = pthcv_probe_begin(kind)
#define PTHCV_PROFILE_LABEL(...) pthcv_probe_label(&pthcv_probe_, __VA_ARGS__)
/* The pool's share of the profile (parallel.c): whether it is on, the
 * calling thread's CPU time, and one finished job's chunk times. */
int pthcv_profiling(void);
int64_t pthcv_thread_cpu_ns(void);
void pthcv_profile_job(int64_t work_ns, int64_t max_chunk_ns, int threads);

#endif
