/*
 * gemm.c -- the sgemm driver (blocking, packing, threads) and the scalar
 * reference micro-kernel. See gemm.h for the layout and the contract.
 */
#include "gemm.h"
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

void *pthcv_alloc_aligned(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(&p, 64, (bytes + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}

void pthcv_free_aligned(void *p) { free(p); }

/* Per-thread scratch, grown on demand and kept: the pool's workers live as
 * long as the process, and a fresh buffer per task would be fresh pages
 * (page faults) for every layer. */
float *pthcv_scratch(int slot, size_t floats)
{
    static _Thread_local float *buf[PTHCV_SCRATCH_SLOTS];
    static _Thread_local size_t cap[PTHCV_SCRATCH_SLOTS];
    if (slot < 0 || slot >= PTHCV_SCRATCH_SLOTS) return NULL;
    if (floats > cap[slot]) {
        size_t want = floats + floats / 4;
        float *p = pthcv_alloc_aligned(sizeof(float) * want);
        if (!p) return NULL;
        pthcv_free_aligned(buf[slot]);
        buf[slot] = p;
        cap[slot] = want;
    }
    return buf[slot];
}

/* ---- the micro-kernels' table ------------------------------------------------
 * KC: the B micro-panel (KC x NR) stays in L1 (32 KB) beside the A panel;
 * MC x KC of A and KC x NC of B share L2 (512 KB per core here). */
static const pthcv_gemm_kernel kernels[] = {
    {PTHCV_ISA_SCALAR, 4, 8, 256, 128, 256, pthcv_ukernel_scalar, 0, 0, NULL},
#if defined(__x86_64__)
    {PTHCV_ISA_AVX2, 6, 16, 256, 120, 192, pthcv_ukernel_6x16_avx2, 0, 0, NULL},
    {PTHCV_ISA_AVX512, 8, 32, 256, 128, 256, pthcv_ukernel_8x32_avx512,
     1u << PTHCV_ACT_GELU | 1u << PTHCV_ACT_SILU | 1u << PTHCV_ACT_HARDSWISH, 1, pthcv_pack_rows_8_avx512},
#endif
#if defined(__aarch64__)
    {PTHCV_ISA_NEON, 8, 12, 256, 128, 192, pthcv_ukernel_8x12_neon, 0, 0, NULL},
#endif
};

const pthcv_gemm_kernel *pthcv_gemm_kernel_for(int isa)
{
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (kernels[i].isa == isa) return &kernels[i];
    return &kernels[0];
}

/* ---- the scalar reference micro-kernel (4 x 8) ------------------------------- */
void pthcv_ukernel_scalar(const pthcv_ukernel_args *p)
{
    enum { MR = 4, NR = 8 };
    float acc[MR][NR];
    for (int r = 0; r < MR; r++)
        for (int c = 0; c < NR; c++)
            acc[r][c] = p->first ? (p->bias_row ? p->bias_row[r] : 0.0f) + (p->bias_col ? p->bias_col[c] : 0.0f)
                                 : p->c[r * p->ldc + c];
    const float *a = p->a, *b = p->b;
    for (int64_t k = 0; k < p->kc; k++, a += MR, b += NR)
        for (int r = 0; r < MR; r++)
            for (int c = 0; c < NR; c++) acc[r][c] += a[r] * b[c];
    for (int r = 0; r < MR; r++)
        for (int c = 0; c < NR; c++) {
            float v = acc[r][c];
            if (p->last) {
                if (p->res) v += p->res[r * p->ldr + c];
                v = v < p->lo ? p->lo : v > p->hi ? p->hi : v;
            }
            p->c[r * p->ldc + c] = v;
        }
}

int pthcv_act_bounds(const pthcv_activation *a, float *lo, float *hi)
{
    *lo = -INFINITY;
    *hi = INFINITY;
    switch (a ? a->kind : PTHCV_ACT_NONE) {
    case PTHCV_ACT_NONE: return 1;
    case PTHCV_ACT_RELU: *lo = 0.0f; return 1;
    case PTHCV_ACT_RELU6:
        *lo = 0.0f;
        *hi = 6.0f;
        return 1;
    case PTHCV_ACT_CLAMP:
        *lo = a->alpha;
        *hi = a->beta;
        return 1;
    default: return 0;
    }
}

/* ---- packing constant operands -------------------------------------------------- */
int64_t pthcv_gemm_packed_a_size(const pthcv_gemm_kernel *k, int64_t M, int64_t K)
{
    return (M + k->mr - 1) / k->mr * k->mr * (K > 0 ? K : 1);
}

int64_t pthcv_gemm_packed_b_size(const pthcv_gemm_kernel *k, int64_t K, int64_t N)
{
    return (N + k->nr - 1) / k->nr * k->nr * (K > 0 ? K : 1);
}

/* The panels of `lines` rows (A) or columns (B), `width` wide, slice by
 * slice (gemm.h): value (line l, step kk) read from src[l * ls + kk * ks];
 * lines past the last are zero. */
static void pack_panels(float *dst, const float *src, int64_t lines, int64_t K, int64_t ls, int64_t ks, int width,
                        int64_t kcs)
{
    int64_t padded = (lines + width - 1) / width * width;
    for (int64_t k0 = 0; k0 < K; k0 += kcs) {
        int64_t kc = K - k0 < kcs ? K - k0 : kcs;
        for (int64_t i0 = 0; i0 < lines; i0 += width) {
            float *d = dst + pthcv_gemm_panel(padded, K, kcs, i0, k0);
            int n = lines - i0 < width ? (int)(lines - i0) : width;
            for (int64_t kk = k0; kk < k0 + kc; kk++, d += width) {
                const float *s0 = src + i0 * ls + kk * ks;
                for (int r = 0; r < n; r++) d[r] = s0[r * ls];
                for (int r = n; r < width; r++) d[r] = 0.0f;
            }
        }
    }
}

void pthcv_gemm_pack_a(const pthcv_gemm_kernel *k, float *dst, const float *src, int64_t M, int64_t K, int64_t rs,
                       int64_t ks)
{
    pack_panels(dst, src, M, K, rs, ks, k->mr, pthcv_gemm_kslice(k, K));
}

void pthcv_gemm_pack_b(const pthcv_gemm_kernel *k, float *dst, const float *src, int64_t K, int64_t N, int64_t ks,
                       int64_t cs)
{
    pack_panels(dst, src, N, K, cs, ks, k->nr, pthcv_gemm_kslice(k, K));
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* ---- the driver ------------------------------------------------------------------ */
typedef struct {
    const pthcv_gemm_problem *g;
    int64_t mc, nc, kcs; /* block sizes (nc: the widest N block) */
    int64_t mp, np;      /* M and N rounded up to MR and NR: a packed operand's panels */
    int64_t nm, nn;      /* blocks per problem */
    int64_t pn;          /* N's panels, NR columns each, dealt to the nn blocks as evenly as can be */
    float lo, hi;
    int fused; /* the activation is done in the micro-kernel: a clamp, or one of its acts (act) */
    int act;
    atomic_int failed;
} gemm_ctx;

/* Tile (i, j) of problem C base cb (and residual base rb). A whole tile of
 * a row-major C is run in place; edges go through a scratch tile so that
 * the micro-kernel always sees a full tile, and so does a transposed C
 * (c_trans: each column of the tile is a row of C^T, copied in and out). */
static void run_tile(const gemm_ctx *x, pthcv_ukernel_args *u, int64_t i, int64_t j, int64_t set, float *cb,
                     const float *rb, const float *partial, int64_t ldp)
{
    const pthcv_gemm_problem *g = x->g;
    const pthcv_gemm_kernel *k = g->kernel;
    int mr = (int)(g->M - i < k->mr ? g->M - i : k->mr);
    int nr = (int)(g->N - j < k->nr ? g->N - j : k->nr);
    const float *brow = g->bias_row ? g->bias_row + set * g->M + i : NULL;
    const float *bcol = g->bias_col ? g->bias_col + set * g->N + j : NULL;
    int64_t ldc = g->ldc;
    /* a whole tile, or the first rows of one where the kernel can stop
     * there: in place */
    if (!g->c_trans && (mr == k->mr || k->rows) && nr == k->nr) {
        u->c = cb + i * ldc + j;
        u->ldc = ldc;
        u->res = rb ? rb + i * ldc + j : NULL;
        u->ldr = ldc;
        u->bias_row = brow;
        u->bias_col = bcol;
        u->rows = mr < k->mr ? mr : 0;
        k->run(u);
        u->rows = 0;
        if (u->last && !x->fused)
            for (int r = 0; r < mr; r++) pthcv_act_row(u->c + r * ldc, nr, &g->act);
        return;
    }
    float tile[16 * 64], rtile[16 * 64], pb_row[16], pb_col[64];
    int64_t ld = k->nr;
    /* element (r, col) of the tile in C (and res) */
    int64_t rs = g->c_trans ? 1 : ldc, cs = g->c_trans ? ldc : 1;
    float *c = g->c_trans ? cb + j * ldc + i : cb + i * ldc + j;
    const float *res = rb ? (g->c_trans ? rb + j * ldc + i : rb + i * ldc + j) : NULL;
    memset(tile, 0, sizeof(float) * (size_t)(k->mr * k->nr));
    if (!u->first && partial) /* a transposed C's sums so far, kept row-major (gemm_task) */
        for (int r = 0; r < k->mr; r++) memcpy(tile + r * ld, partial + r * ldp, sizeof(float) * (size_t)k->nr);
    else if (!u->first)
        for (int r = 0; r < mr; r++)
            for (int col = 0; col < nr; col++) tile[r * ld + col] = c[r * rs + col * cs];
    if (res && u->last) {
        memset(rtile, 0, sizeof(float) * (size_t)(k->mr * k->nr));
        for (int r = 0; r < mr; r++)
            for (int col = 0; col < nr; col++) rtile[r * ld + col] = res[r * rs + col * cs];
    }
    if (brow) {
        memset(pb_row, 0, sizeof pb_row);
        memcpy(pb_row, brow, sizeof(float) * (size_t)mr);
    }
    if (bcol) {
        memset(pb_col, 0, sizeof pb_col);
        memcpy(pb_col, bcol, sizeof(float) * (size_t)nr);
    }
    u->c = tile;
    u->ldc = ld;
    u->res = res && u->last ? rtile : NULL;
    u->ldr = ld;
    u->bias_row = brow ? pb_row : NULL;
    u->bias_col = bcol ? pb_col : NULL;
    k->run(u);
    if (u->last && !x->fused)
        for (int r = 0; r < mr; r++) pthcv_act_row(tile + r * ld, nr, &g->act);
    for (int r = 0; r < mr; r++)
        for (int col = 0; col < nr; col++) c[r * rs + col * cs] = tile[r * ld + col];
}

static void gemm_task(void *vctx, int64_t begin, int64_t end)
{
    gemm_ctx *x = vctx;
    const pthcv_gemm_problem *g = x->g;
    const pthcv_gemm_kernel *k = g->kernel;
    int64_t K = g->K;
    float *abuf = NULL, *bbuf = NULL;
    if (!g->a_packed && !(abuf = pthcv_scratch(PTHCV_SCRATCH_GEMM_A, (size_t)(x->mc * (x->kcs ? x->kcs : 1)))))
        goto fail;
    if (!g->b_packed && !(bbuf = pthcv_scratch(PTHCV_SCRATCH_GEMM_B, (size_t)(x->nc * (x->kcs ? x->kcs : 1)))))
        goto fail;
    int mr = k->mr, nr = k->nr;
    /* A transposed C over several K slices: the sums so far stay in a
     * row-major block (cbuf, ldb), written to C^T once, at the last slice,
     * instead of being transposed out and back in at every slice. */
    float *cbuf = NULL, *bias_pad = NULL;
    int64_t ldb = cdiv(x->nc, nr) * nr;
    if (g->c_trans && K > x->kcs) {
        if (!(cbuf = pthcv_scratch(PTHCV_SCRATCH_GEMM_C, (size_t)((cdiv(x->mc, mr) * mr + 1) * ldb)))) goto fail;
        bias_pad = cbuf + cdiv(x->mc, mr) * mr * ldb;
    }

    for (int64_t t = begin; t < end; t++) {
        int64_t p = t / (x->nm * x->nn), rem = t % (x->nm * x->nn);
        int64_t jb = rem / x->nm, i0 = rem % x->nm * x->mc;
        int64_t j0 = jb * x->pn / x->nn * nr, j1 = (jb + 1) * x->pn / x->nn * nr;
        int64_t mc = g->M - i0 < x->mc ? g->M - i0 : x->mc;
        int64_t nc = (j1 < g->N ? j1 : g->N) - j0;
        int64_t set = p % g->nsets;
        float *cp = g->c + p * g->c_pstride;
        const float *rp = g->res ? g->res + p * g->c_pstride : NULL;
        if (bias_pad)
            for (int64_t jj = 0; jj < ldb; jj++)
                bias_pad[jj] = g->bias_col && jj < nc ? g->bias_col[set * g->N + j0 + jj] : 0.0f;
        int64_t pc = 0;
        do {
            int64_t kc = K - pc < x->kcs ? K - pc : x->kcs;
            const float *ap, *bp;
            int64_t astride, bstride;
            /* a prepacked operand's panels of this block and slice are
             * adjacent (gemm.h): kc steps of a panel apart */
            if (g->a_packed) {
                ap = g->a_packed + set * g->a_sstride + pthcv_gemm_panel(x->mp, K, x->kcs, i0, pc);
                astride = kc * k->mr;
            } else {
                if (g->a_half) /* the float16 panels of this block, converted */
                    pthcv_halves_to_floats(abuf, g->a_half + set * g->a_sstride + pthcv_gemm_panel(x->mp, K, x->kcs, i0, pc),
                                           cdiv(mc, mr) * mr * kc);
                else g->pack_a(g->ctx, p, abuf, i0, mc, pc, kc, mr);
                ap = abuf;
                astride = kc * k->mr;
            }
            if (g->b_packed) {
                bp = g->b_packed + set * g->b_sstride + pthcv_gemm_panel(x->np, K, x->kcs, j0, pc);
                bstride = kc * k->nr;
            } else {
                if (g->b_half)
                    pthcv_halves_to_floats(bbuf, g->b_half + set * g->b_sstride + pthcv_gemm_panel(x->np, K, x->kcs, j0, pc),
                                           cdiv(nc, nr) * nr * kc);
                else g->pack_b(g->ctx, p, bbuf, pc, kc, j0, nc, nr);
                bp = bbuf;
                bstride = kc * k->nr;
            }
            pthcv_ukernel_args u = {
                .kc = kc, .first = pc == 0, .last = pc + kc >= K, .lo = x->lo, .hi = x->hi, .act = x->act};
            if (!x->fused) u.lo = -INFINITY, u.hi = INFINITY;
            for (int64_t jr = 0; jr < nc; jr += k->nr) {
                u.b = bp + jr / k->nr * bstride;
                for (int64_t ir = 0; ir < mc; ir += k->mr) {
                    u.a = ap + ir / k->mr * astride;
                    if (cbuf && !u.last) {
                        u.c = cbuf + ir * ldb + jr;
                        u.ldc = ldb;
                        u.res = NULL;
                        u.bias_row = NULL;
                        u.bias_col = g->bias_col ? bias_pad + jr : NULL;
                        k->run(&u);
                    } else {
                        run_tile(x, &u, i0 + ir, j0 + jr, set, cp, rp, cbuf ? cbuf + ir * ldb + jr : NULL, ldb);
                    }
                }
            }
            pc += kc;
        } while (pc < K);
    }
    return;
fail:
    atomic_store(&x->failed, 1);
}

int pthcv_gemm_run(const pthcv_gemm_problem *g)
{
    const pthcv_gemm_kernel *k = g->kernel;
    if (g->M <= 0 || g->N <= 0 || g->nprob <= 0) return PTHCV_OK;
    gemm_ctx x = {.g = g};
    x.fused = pthcv_act_bounds(&g->act, &x.lo, &x.hi);
    if (!x.fused && g->act.kind > PTHCV_ACT_NONE && g->act.kind < 32 && (k->acts >> g->act.kind & 1u)) {
        x.fused = 1;
        x.act = g->act.kind;
    }

    /* K slices of nearly equal size, at most kc each: depends on K and the
     * instruction set only. */
    x.kcs = pthcv_gemm_kslice(k, g->K);
    x.mp = cdiv(g->M, k->mr) * k->mr;
    x.np = cdiv(g->N, k->nr) * k->nr;

    /* Blocks of C: as large as the caches allow, smaller when there are too
     * few to keep the threads busy (this changes no result). A prepacked A
     * (float32 or float16) is not cut for the cache: a task then packs its
     * B block once for all of M (the A panels stream from L2), where M
     * blocks would each pack it again. Threads get at least two tasks each,
     * and a task count that splits evenly between them where the N blocks
     * allow. */
    int threads = pthcv_get_num_threads();
    int a_pre = g->a_packed || g->a_half, b_pre = g->b_packed || g->b_half;
    int64_t mc_cap = a_pre ? cdiv(g->M, k->mr) * k->mr : k->mc;
    /* likewise a prepacked B with A packed per block (linear layers): one
     * task packs its A block once for all of N */
    int64_t nc_cap = b_pre && !a_pre ? cdiv(g->N, k->nr) * k->nr : k->nc;
    int64_t want = threads > 1 ? 2 * threads : 1;
    /* and there, up to twice the cache's M block in one: the B panels
     * stream from memory once for all of M, not again for a thin rest (a
     * box head's 150 rois: 128 + 22 rows); only when that leaves enough
     * tasks: the threads' share is cut along N then, and each N block
     * packs all of A, where M blocks share that packing out */
    if (b_pre && !a_pre && g->M <= 2 * k->mc && g->nprob * cdiv(g->N, nc_cap) >= want)
        mc_cap = cdiv(g->M, k->mr) * k->mr;
    int64_t nm = cdiv(g->M, mc_cap), nn = cdiv(g->N, nc_cap);
    int64_t pm = cdiv(g->M, k->mr), pn = cdiv(g->N, k->nr);
    while (g->nprob * nm * nn < want && (nm < pm || nn < pn)) {
        if (nn < pn && (g->N / nn >= g->M / nm || nm >= pm)) nn++;
        else nm++;
    }
    while (threads > 1 && (g->nprob * nm * nn) % threads != 0 && g->nprob * nm * nn < 8 * threads && nn < pn) nn++;
    x.mc = cdiv(cdiv(g->M, nm), k->mr) * k->mr;
    /* N blocks of whole panels, their counts differing by one at most (25
     * panels in 4 blocks: 6, 6, 6, 7, not 7, 7, 7, 4), so that the threads'
     * shares are even; where a block starts changes no result */
    x.pn = pn;
    x.nn = nn;
    x.nc = cdiv(pn, nn) * k->nr;
    x.nm = cdiv(g->M, x.mc);
    atomic_init(&x.failed, 0);
    pthcv_parallel_for(g->nprob * x.nm * x.nn, 1, gemm_task, &x);
    if (atomic_load(&x.failed)) return pthcv_fail(PTHCV_ERR_NOMEM, "gemm: out of memory for the packing buffers");
    return PTHCV_OK;
}

/* ---- weights packed once per instruction set ----------------------------------------- */
static int64_t const_set_size(const pthcv_gemm_const *w, const pthcv_gemm_kernel *k)
{
    return w->is_b ? pthcv_gemm_packed_b_size(k, w->rows, w->cols) : pthcv_gemm_packed_a_size(k, w->rows, w->cols);
}

/* nsets packed operands for k from src, float32 or float16 */
static void *const_pack(const pthcv_gemm_const *w, const pthcv_gemm_kernel *k, const float *src, int64_t set_stride,
                        int64_t s0, int64_t s1)
{
    int64_t ss = const_set_size(w, k), n = ss * w->nsets;
    float *pk = pthcv_alloc_aligned(sizeof(float) * (size_t)n);
    if (!pk) return NULL;
    for (int64_t s = 0; s < w->nsets; s++) {
        if (w->is_b) pthcv_gemm_pack_b(k, pk + s * ss, src + s * set_stride, w->rows, w->cols, s0, s1);
        else pthcv_gemm_pack_a(k, pk + s * ss, src + s * set_stride, w->rows, w->cols, s0, s1);
    }
    if (!w->half) return pk;
    uint16_t *h = pthcv_alloc_aligned(sizeof(uint16_t) * (size_t)n);
    if (h) pthcv_floats_to_halves(h, pk, n);
    pthcv_free_aligned(pk);
    return h;
}

int pthcv_gemm_const_init(pthcv_gemm_const *w, const pthcv_gemm_kernel *k, int is_b, int half, int64_t nsets,
                          int64_t rows, int64_t cols, const float *src, int64_t set_stride, int64_t s0, int64_t s1)
{
    memset(w, 0, sizeof *w);
    w->is_b = is_b, w->half = half, w->nsets = nsets, w->rows = rows, w->cols = cols, w->ref_isa = k->isa;
    pthread_mutex_init(&w->lock, NULL);
    w->packed[k->isa] = const_pack(w, k, src, set_stride, s0, s1);
    if (!w->packed[k->isa]) return pthcv_fail(PTHCV_ERR_NOMEM, "out of memory packing the weights");
    return PTHCV_OK;
}

float *pthcv_gemm_const_unpack(pthcv_gemm_const *w)
{
    const pthcv_gemm_kernel *k = pthcv_gemm_kernel_for(w->ref_isa);
    int64_t ss = const_set_size(w, k), n = ss * w->nsets;
    float *out = malloc(sizeof(float) * (size_t)(w->nsets * w->rows * w->cols > 0 ? w->nsets * w->rows * w->cols : 1));
    float *tmp = w->half ? pthcv_alloc_aligned(sizeof(float) * (size_t)n) : NULL;
    if (!out || (w->half && !tmp)) {
        free(out);
        pthcv_free_aligned(tmp);
        return NULL;
    }
    const float *pk = w->packed[w->ref_isa];
    if (w->half) {
        pthcv_halves_to_floats(tmp, w->packed[w->ref_isa], n);
        pk = tmp;
    }
    /* A: panels of mr rows along K (the cols), B: of nr columns along K
     * (the rows), slice by slice (gemm.h); each value to its (i, j) */
    int64_t p = w->is_b ? k->nr : k->mr, inner = w->is_b ? w->rows : w->cols, outer = w->is_b ? w->cols : w->rows;
    int64_t si = w->is_b ? 1 : w->cols, sj = w->is_b ? w->cols : 1; /* out steps along outer, inner */
    int64_t kcs = pthcv_gemm_kslice(k, inner), padded = (outer + p - 1) / p * p;
    for (int64_t s = 0; s < w->nsets; s++) {
        float *dst = out + s * w->rows * w->cols;
        for (int64_t k0 = 0; k0 < inner; k0 += kcs)
            for (int64_t o0 = 0; o0 < outer; o0 += p) {
                const float *src = pk + s * ss + pthcv_gemm_panel(padded, inner, kcs, o0, k0);
                int64_t n = outer - o0 < p ? outer - o0 : p, kc = inner - k0 < kcs ? inner - k0 : kcs;
                for (int64_t a = 0; a < kc; a++)
                    for (int64_t r = 0; r < n; r++) dst[(o0 + r) * si + (k0 + a) * sj] = src[a * p + r];
            }
    }
    pthcv_free_aligned(tmp);
    return out;
}

const void *pthcv_gemm_const_get(pthcv_gemm_const *w, const pthcv_gemm_kernel *k, int64_t *sstride)
{
    *sstride = const_set_size(w, k);
    pthread_mutex_lock(&w->lock);
    void *pk = w->packed[k->isa];
    if (!pk) {
        float *u = pthcv_gemm_const_unpack(w);
        if (u) pk = w->packed[k->isa] = const_pack(w, k, u, w->rows * w->cols, w->cols, 1);
        free(u);
    }
    pthread_mutex_unlock(&w->lock);
    return pk;
}

void pthcv_gemm_const_free(pthcv_gemm_const *w)
{
    for (int i = 0; i < PTHCV_ISA_COUNT; i++) pthcv_free_aligned(w->packed[i]);
    memset(w->packed, 0, sizeof w->packed);
    pthread_mutex_destroy(&w->lock);
}

int64_t pthcv_gemm_const_bytes(pthcv_gemm_const *w)
{
    int64_t n = 0;
    pthread_mutex_lock(&w->lock);
    for (int i = 0; i < PTHCV_ISA_COUNT; i++)
        if (w->packed[i]) n += const_set_size(w, pthcv_gemm_kernel_for(i)) * w->nsets * (w->half ? 2 : 4);
    pthread_mutex_unlock(&w->lock);
    return n;
}
