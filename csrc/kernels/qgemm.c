/*
 * qgemm.c -- the int8 GEMM driver (blocking, packing, requantization,
 * threads) and the scalar reference micro-kernel. Contract: qgemm.h.
 */
#include "qgemm.h"
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- kernels ------------------------------------------------------------------------
 * KC: a 4 x NR-wide X micro-panel of KC values (KC x NR bytes, 8-16 KB) stays
 * in L1 beside the W panel; NC columns of X per block (KC x NC bytes in L2). */
static const pthcv_qgemm_kernel kscalar = {"scalar", 4, 8, 4, 0, PTHCV_QX_U8, 512, 128, pthcv_qukernel_scalar};
#if defined(__x86_64__)
static const pthcv_qgemm_kernel kavx2 = {"avx2", 6, 16, 2, 1, PTHCV_QX_S16, 256, 96, pthcv_qukernel_avx2};
static const pthcv_qgemm_kernel kvnni = {"vnni", 8, 32, 4, 0, PTHCV_QX_U8, 512, 128, pthcv_qukernel_vnni};
#endif
#if defined(__aarch64__)
static const pthcv_qgemm_kernel kneon = {"neon-dot", 8, 12, 4, 0, PTHCV_QX_S8, 512, 96, pthcv_qukernel_neon_dot};
#endif

const pthcv_qgemm_kernel *pthcv_qgemm_kernel_named(const char *name)
{
    if (strcmp(name, "scalar") == 0) return &kscalar;
#if defined(__x86_64__)
    if (strcmp(name, "avx2") == 0 && pthcv_isa_available(PTHCV_ISA_AVX2)) return &kavx2;
    if (strcmp(name, "vnni") == 0 && pthcv_cpu_has_vnni()) return &kvnni;
#endif
#if defined(__aarch64__)
    if (strcmp(name, "neon-dot") == 0 && pthcv_cpu_has_dotprod()) return &kneon;
#endif
    return NULL;
}

const pthcv_qgemm_kernel *pthcv_qgemm_kernel_now(void)
{
    int isa = pthcv_isa();
    (void)isa;
#if defined(__x86_64__)
    if (isa == PTHCV_ISA_AVX512 && pthcv_cpu_has_vnni()) return &kvnni;
    if (isa == PTHCV_ISA_AVX2 || isa == PTHCV_ISA_AVX512) return &kavx2;
#endif
#if defined(__aarch64__)
    if (isa == PTHCV_ISA_NEON && pthcv_cpu_has_dotprod()) return &kneon;
#endif
    return &kscalar;
}

/* ---- the scalar reference micro-kernel (4 x 8, groups of 4) ---------------------------- */
void pthcv_qukernel_scalar(int64_t kc, const void *av, const void *bv, int32_t *c, int first)
{
    enum { MR = 4, NR = 8, KG = 4 };
    const int8_t *a = av;
    const uint8_t *b = bv;
    int32_t acc[MR][NR];
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) acc[r][j] = first ? 0 : c[r * NR + j];
    for (int64_t k = 0; k < kc; k += KG, a += MR * KG, b += NR * KG)
        for (int r = 0; r < MR; r++)
            for (int j = 0; j < NR; j++)
                for (int g = 0; g < KG; g++) acc[r][j] += (int32_t)a[r * KG + g] * (int32_t)b[j * KG + g];
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) c[r * NR + j] = acc[r][j];
}

/* ---- packing ------------------------------------------------------------------------------ */
static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t pthcv_qgemm_kpad(const pthcv_qgemm_kernel *k, int64_t K) { return cdiv(K, k->kg) * k->kg; }

int64_t pthcv_qgemm_packed_w_bytes(const pthcv_qgemm_kernel *k, int64_t M, int64_t K)
{
    return cdiv(M, k->mr) * k->mr * pthcv_qgemm_kpad(k, K) * (k->w16 ? 2 : 1);
}

void pthcv_qgemm_pack_w(const pthcv_qgemm_kernel *k, void *dst, const int8_t *src, int64_t M, int64_t K)
{
    int mr = k->mr, kg = k->kg;
    int64_t kp = pthcv_qgemm_kpad(k, K);
    for (int64_t i0 = 0; i0 < M; i0 += mr)
        for (int64_t k0 = 0; k0 < kp; k0 += kg)
            for (int r = 0; r < mr; r++)
                for (int g = 0; g < kg; g++) {
                    int64_t i = i0 + r, kk = k0 + g, at = i0 * kp + k0 * mr + r * kg + g;
                    int8_t v = i < M && kk < K ? src[i * K + kk] : 0;
                    if (k->w16) ((int16_t *)dst)[at] = v;
                    else ((int8_t *)dst)[at] = v;
                }
}

/* One X micro-panel group: kg source rows of nr values (NULL rows, and
 * columns from `valid` on, read as pad) interleaved into dst[nr][kg]. Plain
 * loops over whole 32-bit groups, which gcc vectorises (PTHCV_SIMD). */
PTHCV_SIMD static void interleave4(uint32_t *restrict d, const uint8_t *r0, const uint8_t *r1, const uint8_t *r2,
                                   const uint8_t *r3, int nr, uint32_t flip)
{
    for (int j = 0; j < nr; j++)
        d[j] = ((uint32_t)r0[j] | (uint32_t)r1[j] << 8 | (uint32_t)r2[j] << 16 | (uint32_t)r3[j] << 24) ^ flip;
}

PTHCV_SIMD static void interleave2_s16(uint32_t *restrict d, const uint8_t *r0, const uint8_t *r1, int nr)
{
    for (int j = 0; j < nr; j++) d[j] = (uint32_t)r0[j] | (uint32_t)r1[j] << 16;
}

void pthcv_qgemm_pack_x_rows(const pthcv_qgemm_kernel *k, void *dst, const uint8_t *src, int64_t ld, int64_t nrows,
                             int64_t ncols, int64_t k0, int64_t kc, int64_t j0, int64_t nc, uint8_t pad)
{
    int nr = k->nr, kg = k->kg;
    uint8_t padrow[64], edge[4][64];
    memset(padrow, pad, sizeof padrow);
    for (int64_t q = 0; q < nc; q += nr) {
        int64_t jq = j0 + q, valid = ncols - jq < nr ? ncols - jq : nr;
        if (valid < 0) valid = 0;
        for (int64_t kk = 0; kk < kc; kk += kg) {
            const uint8_t *r[4] = {padrow, padrow, padrow, padrow}; /* kg of them set below */
            for (int g = 0; g < kg; g++) {
                int64_t row = k0 + kk + g;
                if (row >= nrows || valid == 0) {
                    r[g] = padrow;
                } else if (valid < nr) { /* a partial panel: the row's columns, then pad */
                    memcpy(edge[g], src + row * ld + jq, (size_t)valid);
                    memset(edge[g] + valid, pad, (size_t)(nr - valid));
                    r[g] = edge[g];
                } else {
                    r[g] = src + row * ld + jq;
                }
            }
            uint32_t *d = (uint32_t *)((char *)dst + (q * kc + kk * nr) * (k->xtype == PTHCV_QX_S16 ? 2 : 1));
            if (kg == 2) interleave2_s16(d, r[0], r[1], nr);
            else interleave4(d, r[0], r[1], r[2], r[3], nr, k->xtype == PTHCV_QX_S8 ? 0x80808080u : 0);
        }
    }
}

/* ---- requantization ------------------------------------------------------------------------
 * Clamped first (to integers, so the same result as clamping the rounded
 * value), then rounded half to even (as torch) by adding and subtracting
 * 1.5 * 2^23: below 2^22 that leaves the nearest integer; the zero point
 * after the rounding, as QNNPACK's. Plain float operations in a fixed order:
 * every clone computes the same bits. */
/* The reference stores of qgemm.h's pthcv_qstore_fns. */
PTHCV_SIMD static void qstore_tile_scalar(const pthcv_qstore *s, const int32_t *restrict acc, int rows, int n,
                                          int64_t lda, const int32_t *restrict off, const float *restrict mul,
                                          const uint8_t *restrict res, uint8_t *restrict o, int64_t ldo)
{
    const float magic = 12582912.0f, lo = s->lo, hi = s->hi, rmul = s->rmul;
    const int32_t zy = s->zy, zr = s->zr;
    for (int r = 0; r < rows; r++) {
        const int32_t *a = acc + r * lda;
        uint8_t *d = o + r * ldo;
        const uint8_t *rr = res ? res + r * ldo : NULL;
        float m = mul[r];
        int32_t f = off[r];
        if (rr)
            for (int j = 0; j < n; j++) {
                float v = (float)(a[j] + f) * m + (float)(rr[j] - zr) * rmul;
                v = v < lo ? lo : v > hi ? hi : v;
                d[j] = (uint8_t)((int32_t)((v + magic) - magic) + zy);
            }
        else
            for (int j = 0; j < n; j++) {
                float v = (float)(a[j] + f) * m;
                v = v < lo ? lo : v > hi ? hi : v;
                d[j] = (uint8_t)((int32_t)((v + magic) - magic) + zy);
            }
    }
}

/* From sums held exactly in floats (the depthwise path's, below 2^24, so
 * acc + off is the same float as (float)(int sum + off)); zx is already out
 * of them. */
PTHCV_SIMD static void qstore_fsum_scalar(const pthcv_qstore *s, const float *restrict acc, int64_t n, float off,
                                          float mul, const uint8_t *restrict res, uint8_t *restrict o)
{
    const float magic = 12582912.0f, lo = s->lo, hi = s->hi, rmul = s->rmul;
    const int32_t zy = s->zy, zr = s->zr;
    if (res)
        for (int64_t j = 0; j < n; j++) {
            float v = (acc[j] + off) * mul + (float)(res[j] - zr) * rmul;
            v = v < lo ? lo : v > hi ? hi : v;
            o[j] = (uint8_t)((int32_t)((v + magic) - magic) + zy);
        }
    else
        for (int64_t j = 0; j < n; j++) {
            float v = (acc[j] + off) * mul;
            v = v < lo ? lo : v > hi ? hi : v;
            o[j] = (uint8_t)((int32_t)((v + magic) - magic) + zy);
        }
}

PTHCV_SIMD static void qstore_widen_scalar(float *restrict d, const uint8_t *restrict s, int64_t n, float zx)
{
    for (int64_t i = 0; i < n; i++) d[i] = (float)s[i] - zx;
}

const pthcv_qstore_fns pthcv_qstore_scalar = {qstore_tile_scalar, qstore_fsum_scalar, qstore_widen_scalar};

const pthcv_qstore_fns *pthcv_qstore_now(void)
{
#if defined(__x86_64__)
    int isa = pthcv_isa();
    if (isa == PTHCV_ISA_AVX512) return &pthcv_qstore_avx512;
    if (isa == PTHCV_ISA_AVX2) return &pthcv_qstore_avx2;
#endif
#if defined(__aarch64__)
    if (pthcv_isa() == PTHCV_ISA_NEON) return &pthcv_qstore_neon;
#endif
    return &pthcv_qstore_scalar;
}

void pthcv_qgemm_qstore_of(const pthcv_requant *q, pthcv_qstore *s)
{
    s->lo = (float)(q->lo - q->zy), s->hi = (float)(q->hi - q->zy), s->zy = q->zy, s->zr = q->zr, s->rmul = q->rmul;
}

void pthcv_qgemm_requant_fsum(const pthcv_requant *q, int64_t m, const float *acc, int64_t n, void *out,
                              const uint8_t *res)
{
    if (q->out_float) {
        float *o = out, add = q->add[m], mul = q->mul[m];
        for (int64_t j = 0; j < n; j++) {
            float v = acc[j] * mul + add;
            o[j] = v < q->flo ? q->flo : v > q->fhi ? q->fhi : v;
        }
        return;
    }
    pthcv_qstore s;
    pthcv_qgemm_qstore_of(q, &s);
    pthcv_qstore_now()->fsum(&s, acc, n, (float)q->bq[m], q->mul[m], res, out);
}

PTHCV_SIMD static void requant_f32(const int32_t *restrict acc, int n, int32_t off, float mul, float add, float lo,
                                   float hi, float *restrict o)
{
    for (int j = 0; j < n; j++) {
        float v = (float)(acc[j] + off) * mul + add; /* a float output keeps the exact bias */
        o[j] = v < lo ? lo : v > hi ? hi : v;
    }
}

/* one row of a tile: n values of acc (row m of the problem's set) to out */
void pthcv_qgemm_requant_row(const pthcv_requant *q, int64_t m, const int32_t *acc, int n, void *out,
                             const uint8_t *res)
{
    int32_t off = q->bq[m] - q->zx * q->wsum[m];
    if (q->out_float) {
        requant_f32(acc, n, off - q->bq[m], q->mul[m], q->add[m], q->flo, q->fhi, out);
        return;
    }
    pthcv_qstore s;
    pthcv_qgemm_qstore_of(q, &s);
    pthcv_qstore_now()->tile(&s, acc, 1, n, n, &off, q->mul + m, res, out, n);
}

/* ---- the driver ------------------------------------------------------------------------------ */
typedef struct {
    const pthcv_qgemm_problem *g;
    int64_t kp, kcs, nc, nn;       /* padded K, K slice, block width, column blocks per problem */
    int64_t mstep, nm;             /* rows per task (a multiple of MR), row ranges */
    const pthcv_qstore_fns *store; /* the uint8 stores of the instruction set in use */
    pthcv_qstore sp;               /* and their parameters */
    atomic_int failed;
} qgemm_ctx;

static void requant_tile(const qgemm_ctx *x, int64_t m0, int rows, const int32_t *acc, int n, int nr, char *out,
                         int64_t ldo, const uint8_t *res)
{
    const pthcv_requant *q = &x->g->rq;
    if (q->out_float) {
        for (int r = 0; r < rows; r++)
            pthcv_qgemm_requant_row(q, m0 + r, acc + r * nr, n, out + (int64_t)r * ldo * (int64_t)sizeof(float), NULL);
        return;
    }
    int32_t off[16];
    for (int r = 0; r < rows; r++) off[r] = q->bq[m0 + r] - q->zx * q->wsum[m0 + r];
    x->store->tile(&x->sp, acc, rows, n, nr, off, q->mul + m0, res, (uint8_t *)out, ldo);
}

static size_t xbytes(const pthcv_qgemm_kernel *k) { return k->xtype == PTHCV_QX_S16 ? 2 : 1; }

/* Task t: problem p, columns j0..j0+nc-1, rows i0..i1-1 (all of M unless
 * the columns are too few to keep the threads busy). X is packed one K
 * slice at a time; the int32 sums of every tile wait in a per-thread
 * buffer until the last slice, whose tiles are requantized as they are
 * summed. */
static void qgemm_task(void *vctx, int64_t begin, int64_t end)
{
    qgemm_ctx *x = vctx;
    const pthcv_qgemm_problem *g = x->g;
    const pthcv_qgemm_kernel *k = g->kernel;
    int mr = k->mr, nr = k->nr;
    int64_t mp = cdiv(x->mstep, mr);
    size_t wb = k->w16 ? 2 : 1, xb = xbytes(k);
    void *xbuf = pthcv_scratch(PTHCV_SCRATCH_QGEMM_X, (size_t)cdiv((int64_t)(x->kcs * x->nc * xb), 4));
    int32_t *acc = (int32_t *)pthcv_scratch(PTHCV_SCRATCH_QGEMM_ACC, (size_t)(mp * mr * x->nc));
    if (!xbuf || !acc) {
        atomic_store(&x->failed, 1);
        return;
    }
    for (int64_t t = begin; t < end; t++) {
        int64_t p = t / (x->nn * x->nm), rem = t % (x->nn * x->nm);
        int64_t j0 = rem / x->nm * x->nc, i0 = rem % x->nm * x->mstep;
        int64_t nc = g->N - j0 < x->nc ? g->N - j0 : x->nc, np = cdiv(nc, nr);
        int64_t i1 = i0 + x->mstep < g->M ? i0 + x->mstep : g->M, ni = cdiv(i1 - i0, mr);
        int64_t set = p % g->nsets;
        const char *w = (const char *)g->w + set * g->w_sstride;
        size_t ob = g->rq.out_float ? sizeof(float) : 1;
        char *out = (char *)g->out + p * g->out_pstride * ob;
        const uint8_t *res = g->rq.res ? g->rq.res + p * g->res_pstride : NULL;
        for (int64_t pc = 0; pc < x->kp; pc += x->kcs) {
            int64_t kc = x->kp - pc < x->kcs ? x->kp - pc : x->kcs;
            int last = pc + kc >= x->kp;
            if (g->pack_x(g->ctx, p, xbuf, pc, kc, j0, np * nr) != 0) {
                atomic_store(&x->failed, 1);
                return;
            }
            /* column panels two at a time, every row panel over them: the
             * X panels stay in L1 while the W panels go by, and the last K
             * slice's tiles are requantized as soon as they are summed,
             * still in L1, a row's two panels one after the other (whole
             * cache lines of uint8 output for NR = 32) */
            for (int64_t jq = 0; jq < np; jq += 2)
                for (int64_t ip = 0; ip < ni; ip++)
                    for (int64_t jp = jq; jp < jq + 2 && jp < np; jp++) {
                        int32_t *c = acc + (jp * mp + ip) * mr * nr;
                        k->run(kc, w + ((i0 + ip * mr) * x->kp + pc * mr) * wb, (const char *)xbuf + jp * kc * nr * xb,
                               c, pc == 0);
                        if (!last) continue;
                        int64_t m = i0 + ip * mr, j = j0 + jp * nr;
                        int rows = (int)(i1 - m < mr ? i1 - m : mr), n = (int)(g->N - j < nr ? g->N - j : nr);
                        requant_tile(x, set * g->M + m, rows, c, n, nr, out + (m * g->ldo + j) * ob, g->ldo,
                                     res ? res + m * g->ldo + j : NULL);
                    }
        }
    }
}

/* The tasks: blocks of columns as wide as the cache allows (k->nc) on one
 * thread. On more, the split of columns (whole panels of NR) and rows
 * (whole panels of MR) whose slowest thread has least to do: tasks are
 * taken one by one, so with T threads and t equal tasks of c units each the
 * last thread ends after ceil(t / T) c. A task's units: its column panels
 * times (its row panels + the packing of its X, which every row range
 * repeats: g->pack_cost / 2 row panels). Ties go to fewer tasks. The split changes no sum: the results
 * are the same for every thread count. */
static void split_work(qgemm_ctx *x, const pthcv_qgemm_problem *g, int threads)
{
    const pthcv_qgemm_kernel *k = g->kernel;
    int64_t pn = cdiv(g->N, k->nr), pm = cdiv(g->M, k->mr), nn0 = cdiv(g->N, k->nc);
    int64_t best_ppb = cdiv(pn, nn0), best_mpb = pm, best_cost = -1, best_tasks = 0;
    int64_t pack = g->pack_cost > 0 ? g->pack_cost : 1;
    for (int64_t nn = nn0; threads > 1 && nn <= pn && nn <= nn0 + 16; nn++) {
        int64_t ppb = cdiv(pn, nn), nn_eff = cdiv(pn, ppb);
        if (nn_eff != nn) continue; /* the same split as a smaller nn */
        for (int64_t nm = 1; nm <= pm && nm <= 16; nm++) {
            int64_t mpb = cdiv(pm, nm);
            if (cdiv(pm, mpb) != nm) continue;
            int64_t tasks = g->nprob * nn * nm, cost = cdiv(tasks, threads) * ppb * (2 * mpb + pack);
            if (best_cost < 0 || cost < best_cost || (cost == best_cost && tasks < best_tasks))
                best_cost = cost, best_tasks = tasks, best_ppb = ppb, best_mpb = mpb;
        }
    }
    x->nc = best_ppb * k->nr;
    x->nn = cdiv(g->N, x->nc);
    x->mstep = best_mpb * k->mr;
    x->nm = cdiv(g->M, x->mstep);
}

int pthcv_qgemm_run(const pthcv_qgemm_problem *g)
{
    const pthcv_qgemm_kernel *k = g->kernel;
    if (g->M <= 0 || g->N <= 0 || g->nprob <= 0) return PTHCV_OK;
    qgemm_ctx x = {.g = g, .kp = pthcv_qgemm_kpad(k, g->K)};
    int64_t nk = cdiv(x.kp, k->kc);
    x.kcs = cdiv(cdiv(x.kp, nk), k->kg) * k->kg;
    split_work(&x, g, pthcv_get_num_threads());
    x.store = pthcv_qstore_now();
    pthcv_qgemm_qstore_of(&g->rq, &x.sp);
    atomic_init(&x.failed, 0);
    pthcv_parallel_for(g->nprob * x.nn * x.nm, 1, qgemm_task, &x);
    if (atomic_load(&x.failed)) return pthcv_fail(PTHCV_ERR_NOMEM, "qgemm: out of memory for the packing buffers");
    return PTHCV_OK;
}
