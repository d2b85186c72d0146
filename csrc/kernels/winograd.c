/*
 * winograd.c -- 3x3 stride-1 convolutions by Winograd's F(4x4, 3x3)
 * (Lavin & Gray 2015; interpolation points 0, +-1, +-2, infinity) and, on
 * small maps, F(2x2, 3x3) (points 0, +-1, infinity).
 *
 * Each m x m output tile (m = 4 or 2) comes from an a x a input tile d
 * (a = m + 2):
 *     y = A^T [ sum_ci (G g G^T)[co][ci] (.) (B^T d B)[ci] ] A
 * so the a^2 positions xi of the transformed tile are independent matrix
 * products M[xi] (cout x tiles) = U[xi] (cout x cin) . V[xi] (cin x tiles),
 * which run on the GEMM's micro-kernel (gemm.h): U is packed once per
 * instruction set as the A operand, V is written by the input transform
 * straight into the B operand's layout. Per tile and channel pair, 36
 * multiply-adds instead of 144 (F(4x4)), 16 instead of 36 (F(2x2)), for
 * the cost of the transforms (O(channels), not O(channels^2)). F(2x2) is
 * for 7x7-like maps: F(4x4)'s tiles would cover them with much padding
 * (a 7x7 output is 4 tiles of 16 values, 64 for 49), and its 36 U[xi]
 * cost more to stream than its products save.
 *
 * Layout, chosen so that the transforms run on whole vectors: a tile row is
 * cut into "quads" of 4 adjacent tiles, and the transforms take two quads
 * (8 tiles, one per lane) at a time. Lanes are tiles, so the 8 values of a
 * transformed position are 8 adjacent columns of V, and for one output
 * channel 8 adjacent columns of M; the inputs of a quad are 4 overlapping
 * a x a windows of one row band, read from a zero-padded copy of the band
 * with transposes or shuffles (winograd_avx2.c; plain C elsewhere, same
 * bits).
 *
 * The tiles are processed in blocks that one task takes through all three
 * steps (input transform, the 36 products, output transform), so that a
 * block's V and M stay in cache; transforming the whole image first would
 * write both to memory and read them back (megabytes for a 56x56 map).
 * The products sum over cin in the GEMM's KC slices in a fixed order, so
 * neither the block size nor the thread count changes any result; the
 * result differs from the direct convolution by rounding only (relative
 * ~1e-6 for trained-like weights).
 */
#include "winograd.h"
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- weights: U[xi][ci][co] = (G g G^T)[xi], in double ----------------------------- */
static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double G[6][3] = {
    {1.0 / 4, 0, 0},
    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6},
    {1.0 / 24, -1.0 / 12, 1.0 / 6},
    {0, 0, 1},
};

/* Input channel ci for every output channel at once: g[a][co] (the 9 taps,
 * as double) -> t = G g [n][3][co] -> U = t G^T, written to u[xi][ci][co]
 * (n = 6 or 4 rows of G). The loops over co are contiguous, so they
 * vectorise (PTHCV_SIMD: every clone computes the same bits). */
PTHCV_SIMD static void weights_of_channel(const double (*g_rows)[3], int n, const double *restrict g,
                                          double *restrict t, float *restrict u, int64_t cout, int64_t cin, int64_t ci)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 3; j++) {
            const double *g0 = g + (0 * 3 + j) * cout, *g1 = g + (1 * 3 + j) * cout, *g2 = g + (2 * 3 + j) * cout;
            double *tij = t + (i * 3 + j) * cout;
            double c0 = g_rows[i][0], c1 = g_rows[i][1], c2 = g_rows[i][2];
            for (int64_t co = 0; co < cout; co++) tij[co] = c0 * g0[co] + c1 * g1[co] + c2 * g2[co];
        }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            const double *t0 = t + (i * 3 + 0) * cout, *t1 = t + (i * 3 + 1) * cout, *t2 = t + (i * 3 + 2) * cout;
            float *dst = u + ((i * n + j) * cin + ci) * cout;
            double c0 = g_rows[j][0], c1 = g_rows[j][1], c2 = g_rows[j][2];
            for (int64_t co = 0; co < cout; co++) dst[co] = (float)(t0[co] * c0 + t1[co] * c1 + t2[co] * c2);
        }
}

int pthcv_wino_weights(int m, const float *w, int64_t cout, int64_t cin, float *u)
{
    double *g = malloc(sizeof(double) * (size_t)(27 * cout));
    if (!g) return PTHCV_ERR_NOMEM;
    double *t = g + 9 * cout;
    for (int64_t ci = 0; ci < cin; ci++) {
        for (int64_t co = 0; co < cout; co++)
            for (int a = 0; a < 9; a++) g[a * cout + co] = w[(co * cin + ci) * 9 + a];
        if (m == 2) weights_of_channel(G2, 4, g, t, u, cout, cin, ci);
        else weights_of_channel(G, 6, g, t, u, cout, cin, ci);
    }
    free(g);
    return PTHCV_OK;
}

/* ---- the transforms, plain C (the reference for winograd_avx2.c) -------------------- */
/* r = B^T d for one 6-vector: the exact sequence of operations the SIMD
 * version performs (fmaf: one rounding, as the FMA instructions; 12
 * operations, rows 1-2 and 3-4 sharing their terms:
 *   r1, r2 = (d4 - 4 d2) +- (d3 - 4 d1),  r3, r4 = (d4 - d2) +- 2 (d3 - d1)) */
static inline void bt6(const float d[6], float r[6])
{
    float a12 = fmaf(-4.0f, d[2], d[4]), b12 = fmaf(-4.0f, d[1], d[3]);
    float a34 = d[4] - d[2], b34 = d[3] - d[1];
    r[0] = fmaf(4.0f, d[0], fmaf(-5.0f, d[2], d[4]));
    r[1] = a12 + b12;
    r[2] = a12 - b12;
    r[3] = fmaf(2.0f, b34, a34);
    r[4] = fmaf(-2.0f, b34, a34);
    r[5] = fmaf(4.0f, d[1], fmaf(-5.0f, d[3], d[5]));
}

/* r = A^T m for one 6-vector */
static inline void at6(const float m[6], float r[4])
{
    float s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
    r[0] = m[0] + s12 + s34;
    r[1] = fmaf(2.0f, d34, d12);
    r[2] = fmaf(4.0f, s34, s12);
    r[3] = fmaf(8.0f, d34, d12) + m[5];
}

void pthcv_wino_in8_scalar(const float *pa, const float *pb, int64_t ld, float *v, int64_t vs)
{
    for (int l = 0; l < 8; l++) {
        const float *p = l < 4 ? pa + 4 * l : pb + 4 * (l - 4);
        float t[6][6], col[6], r[6];
        for (int i = 0; i < 6; i++) bt6(p + i * ld, t[i]); /* along each row */
        for (int j = 0; j < 6; j++) {                      /* then down each column */
            for (int i = 0; i < 6; i++) col[i] = t[i][j];
            bt6(col, r);
            for (int i = 0; i < 6; i++) v[(i * 6 + j) * vs + l] = r[i];
        }
    }
}

/* value (i, j) of a quad's block into its destination, if inside */
static inline void store_value(const pthcv_wino_dst *d, const pthcv_wino_epi *e, int i, int j, float z)
{
    if (i >= d->rows || j >= d->cols) return;
    int64_t off = i * d->ld + j;
    d->o[off] = pthcv_wino_finish(z, d->r ? d->r + off : NULL, e);
}

void pthcv_wino_out8_scalar(const float *m, int64_t ms, const pthcv_wino_epi *e, const pthcv_wino_dst *da,
                            const pthcv_wino_dst *db)
{
    for (int l = 0; l < 8; l++) {
        float t[6][4], row[6], col[6], y[4];
        for (int i = 0; i < 6; i++) {
            for (int j = 0; j < 6; j++) row[j] = m[(i * 6 + j) * ms + l];
            at6(row, t[i]);
        }
        const pthcv_wino_dst *d = l < 4 ? da : db;
        for (int j = 0; j < 4; j++) {
            for (int i = 0; i < 6; i++) col[i] = t[i][j];
            at6(col, y);
            for (int i = 0; i < 4; i++) store_value(d, e, i, l % 4 * 4 + j, e->bias + y[i]);
        }
    }
}

/* F(2x2, 3x3): r = B^T d and r = A^T m for one 4-vector */
static inline void bt4(const float d[4], float r[4])
{
    r[0] = d[0] - d[2];
    r[1] = d[1] + d[2];
    r[2] = d[2] - d[1];
    r[3] = d[1] - d[3];
}

static inline void at4(const float m[4], float r[2])
{
    r[0] = m[0] + m[1] + m[2];
    r[1] = m[1] - m[2] - m[3];
}

void pthcv_wino23_in8_scalar(const float *pa, const float *pb, int64_t ld, float *v, int64_t vs)
{
    for (int l = 0; l < 8; l++) {
        const float *p = l < 4 ? pa + 2 * l : pb + 2 * (l - 4);
        float t[4][4], col[4], r[4];
        for (int i = 0; i < 4; i++) bt4(p + i * ld, t[i]);
        for (int j = 0; j < 4; j++) {
            for (int i = 0; i < 4; i++) col[i] = t[i][j];
            bt4(col, r);
            for (int i = 0; i < 4; i++) v[(i * 4 + j) * vs + l] = r[i];
        }
    }
}

void pthcv_wino23_out8_scalar(const float *m, int64_t ms, const pthcv_wino_epi *e, const pthcv_wino_dst *da,
                              const pthcv_wino_dst *db)
{
    for (int l = 0; l < 8; l++) {
        float t[4][2], row[4], col[4], y[2];
        for (int i = 0; i < 4; i++) {
            for (int j = 0; j < 4; j++) row[j] = m[(i * 4 + j) * ms + l];
            at4(row, t[i]);
        }
        const pthcv_wino_dst *d = l < 4 ? da : db;
        for (int j = 0; j < 2; j++) {
            for (int i = 0; i < 4; i++) col[i] = t[i][j];
            at4(col, y);
            for (int i = 0; i < 2; i++) store_value(d, e, i, l % 4 * 2 + j, e->bias + y[i]);
        }
    }
}

/* ---- the blocked forward pass ----------------------------------------------------------- */
typedef struct {
    const pthcv_wino_args *a;
    int m, nx;               /* tile size m x m; nx = (m + 2)^2 transformed positions */
    int64_t ld;              /* row length of the zero-padded input bands */
    int64_t qpr, Q, G;       /* quads per tile row, quads, groups of 2 quads */
    int64_t gb;              /* groups per block */
    int64_t sp;              /* columns of a block's V and M: 8 gb rounded up to NR */
    int64_t coutp;           /* rows of M: cout rounded up to MR */
    int64_t vxs, mxs;        /* floats between the transformed positions xi of V and of M */
    int64_t kcs;             /* K slice of the products */
    int64_t nblocks, csplit; /* tasks: nblocks x csplit ranges of output channels */
    int64_t band_rows;       /* most padded rows a block reads */
    int64_t cstep;           /* output channels per range, a multiple of MR */
    int64_t isplit, istep;   /* the shared input transform: isplit ranges of istep input channels */
    float *vshared;          /* every block's V, [nblocks][nx][vxs], or NULL (see pthcv_wino_forward) */
    pthcv_wino_in8_fn in8;
    pthcv_wino_out8_fn out8;
    atomic_int failed;
} wino_ctx;

/* The rows of the zero-padded image that a block's tiles read: padded row
 * r (input row r - ph) of every channel, for r in [m t0, m t1 + 2), tile
 * rows t0..t1-1; pixel (y, x) at [y + ph - m t0][x + pw], zeros around.
 * Each task pads its own band (in cache, and no separate job for it). */
typedef struct {
    float *xp; /* [cin][rows][ld] */
    int64_t t0, rows;
} band;

static void pad_band(const wino_ctx *x, band *b, int64_t ci0, int64_t ci1)
{
    const pthcv_wino_args *a = x->a;
    for (int64_t ci = ci0; ci < ci1; ci++) {
        const float *src = a->x + ci * a->h * a->w;
        float *dst = b->xp + ci * b->rows * x->ld;
        for (int64_t r = 0; r < b->rows; r++, dst += x->ld) {
            int64_t iy = x->m * b->t0 + r - a->ph;
            if (iy < 0 || iy >= a->h) {
                memset(dst, 0, sizeof(float) * (size_t)x->ld);
                continue;
            }
            memset(dst, 0, sizeof(float) * (size_t)a->pw);
            memcpy(dst + a->pw, src + iy * a->w, sizeof(float) * (size_t)a->w);
            memset(dst + a->pw + a->w, 0, sizeof(float) * (size_t)(x->ld - a->pw - a->w));
        }
    }
}

/* top-left input of quad q in channel ci of the band */
static const float *quad_input(const wino_ctx *x, const band *b, int64_t ci, int64_t q)
{
    return b->xp + (ci * b->rows + (q / x->qpr - b->t0) * x->m) * x->ld + q % x->qpr * 4 * x->m;
}

/* The columns of V and M that a block of ng groups uses: its tiles'
 * panels (the products skip the panels past them) */
static int64_t used_columns(const wino_ctx *x, int64_t ng)
{
    int64_t nr = x->a->kernel->nr;
    return (ng * 8 + nr - 1) / nr * nr;
}

/* Columns s0..s1-1 of V (past a block's tiles, in its last panel), input
 * channels ci0..ci1-1, to zero: a run of each panel row, position by position (one
 * value per position at a time would touch a line of V tens of KB apart
 * at every store: 11% of a 28x28 layer's time) */
static void zero_columns(const wino_ctx *x, int64_t s0, int64_t s1, int64_t ci0, int64_t ci1, float *v)
{
    int64_t nr = x->a->kernel->nr, cin = x->a->cin;
    for (int xi = 0; xi < x->nx; xi++)
        for (int64_t s = s0; s < s1; s += nr - s % nr) {
            float *d = v + xi * x->vxs + (s - s % nr) * cin + ci0 * nr + s % nr;
            for (int64_t ci = ci0; ci < ci1; ci++, d += nr) memset(d, 0, sizeof(float) * (size_t)(nr - s % nr));
        }
}

/* V[xi][sp / nr][cin][nr] (positions xi vxs floats apart) for groups
 * g0..g0+ng-1 (columns past them zero), input channels ci0..ci1-1 */
static void transform_input(const wino_ctx *x, const band *b, int64_t g0, int64_t ng, int64_t ci0, int64_t ci1,
                            float *v)
{
    const pthcv_wino_args *a = x->a;
    int nr = a->kernel->nr;
    int64_t cin = a->cin, xi_stride = x->vxs;
    float t[36 * 8];
    int nx = x->nx;
    for (int64_t ci = ci0; ci < ci1; ci++) {
        for (int64_t g = 0; g < ng; g++) {
            int64_t qa = 2 * (g0 + g), qb = qa + 1 < x->Q ? qa + 1 : qa;
            int64_t s = g * 8;
            const float *pa = quad_input(x, b, ci, qa), *pb = quad_input(x, b, ci, qb);
            if (s % nr + 8 <= nr) { /* the 8 columns in one panel: straight into V */
                x->in8(pa, pb, x->ld, v + (s / nr * cin + ci) * nr + s % nr, xi_stride);
                continue;
            }
            x->in8(pa, pb, x->ld, t, 8);
            for (int l = 0; l < 8; l++) {
                float *d = v + ((s + l) / nr * cin + ci) * nr + (s + l) % nr;
                for (int xi = 0; xi < nx; xi++) d[xi * xi_stride] = t[xi * 8 + l];
            }
        }
    }
    zero_columns(x, ng * 8, used_columns(x, ng), ci0, ci1, v);
}

/* M[xi][coutp][sp] (positions mxs floats apart) = U[xi] . V[xi], columns 0..cols-1 (the block's
 * panels): whole micro-kernel tiles (U's panels are zero past cout, V's
 * columns past the block's tiles) over the KC
 * slices of cin; U[xi] is packed slice by slice (gemm.h), so that one
 * slice's panels, streamed from memory on large layers (512 channels:
 * 16 MB of U at F(2x2)), are one contiguous run */
static void multiply(const wino_ctx *x, const float *v, float *m, int64_t co0, int64_t co1, int64_t cols)
{
    const pthcv_wino_args *a = x->a;
    const pthcv_gemm_kernel *k = a->kernel;
    int64_t K = a->cin;
    pthcv_ukernel_args u = {.lo = -INFINITY, .hi = INFINITY, .ldc = x->sp};
    for (int xi = 0; xi < x->nx; xi++) {
        const float *vx = v + xi * x->vxs, *ux = a->u + xi * a->u_sstride;
        float *mx = m + xi * x->mxs;
        for (int64_t pc = 0; pc < K; pc += x->kcs) {
            u.kc = K - pc < x->kcs ? K - pc : x->kcs;
            u.first = pc == 0;
            u.last = pc + u.kc >= K;
            for (int64_t jr = 0; jr < cols; jr += k->nr) {
                u.b = vx + jr * K + pc * k->nr;
                for (int64_t ir = co0; ir < co1; ir += k->mr) {
                    u.a = ux + pthcv_gemm_panel(x->coutp, K, x->kcs, ir, pc);
                    u.c = mx + ir * x->sp + jr;
                    k->run(&u);
                }
            }
        }
    }
}

/* where quad q's block of output channel co goes (no quad past the last:
 * 0 rows) */
static void quad_dst(const wino_ctx *x, int64_t co, int64_t q, pthcv_wino_dst *d)
{
    const pthcv_wino_args *a = x->a;
    int m = x->m;
    if (q >= x->Q) {
        *d = (pthcv_wino_dst){.o = NULL};
        return;
    }
    int64_t oy0 = q / x->qpr * m, ox0 = q % x->qpr * 4 * m;
    int64_t off = (co * a->oh + oy0) * a->ow + ox0;
    d->o = a->out + off;
    d->r = a->res ? a->res + off : NULL;
    d->ld = a->ow;
    d->rows = (int)(a->oh - oy0 < m ? a->oh - oy0 : m);
    d->cols = (int)(a->ow - ox0 < 4 * m ? a->ow - ox0 : 4 * m);
}

/* an activation that is not a clamp, after the store */
static void activate_quad(const pthcv_wino_dst *d, const pthcv_activation *act)
{
    for (int i = 0; i < d->rows; i++) pthcv_act_row(d->o + i * d->ld, d->cols, act);
}

static void transform_output(const wino_ctx *x, int64_t g0, int64_t ng, const float *m, int64_t co0, int64_t co1)
{
    const pthcv_wino_args *a = x->a;
    pthcv_wino_epi e = {.lo = a->lo, .hi = a->hi, .clamp = a->fused};
    int post = !a->fused && a->act.kind != PTHCV_ACT_NONE;
    for (int64_t co = co0; co < co1; co++) {
        e.bias = a->bias ? a->bias[co] : 0.0f;
        for (int64_t g = 0; g < ng; g++) {
            int64_t qa = 2 * (g0 + g);
            pthcv_wino_dst da, db;
            quad_dst(x, co, qa, &da);
            quad_dst(x, co, qa + 1, &db);
            x->out8(m + co * x->sp + g * 8, x->mxs, &e, &da, &db);
            if (post) activate_quad(&da, &a->act), activate_quad(&db, &a->act);
        }
    }
}

/* the tile rows that groups g0..g0+ng-1 cover */
static void band_of(const wino_ctx *x, int64_t g0, int64_t ng, band *b)
{
    int64_t qlast = 2 * (g0 + ng) - 1 < x->Q ? 2 * (g0 + ng) - 1 : x->Q - 1;
    b->t0 = 2 * g0 / x->qpr;
    b->rows = x->m * (qlast / x->qpr + 1 - b->t0) + 2;
}

/* block b's V for input channels ci0..ci1-1, through the band bd */
static void input_of_block(const wino_ctx *x, band *bd, int64_t b, int64_t ci0, int64_t ci1, float *v)
{
    int64_t g0 = b * x->gb, ng = x->G - g0 < x->gb ? x->G - g0 : x->gb;
    band_of(x, g0, ng, bd);
    pad_band(x, bd, ci0, ci1);
    transform_input(x, bd, g0, ng, ci0, ci1, v);
}

/* the shared input transform: task t is block t / isplit, input channels
 * of range t % isplit, into x->vshared */
static void input_task(void *vctx, int64_t begin, int64_t end)
{
    wino_ctx *x = vctx;
    int64_t cin = x->a->cin;
    band bd = {.xp = pthcv_scratch(PTHCV_SCRATCH_WINO_X, (size_t)(cin * x->band_rows * x->ld))};
    for (int64_t t = begin; t < end && bd.xp; t++) {
        int64_t b = t / x->isplit, ci0 = t % x->isplit * x->istep;
        input_of_block(x, &bd, b, ci0, ci0 + x->istep < cin ? ci0 + x->istep : cin,
                       x->vshared + b * x->nx * x->vxs);
    }
    if (!bd.xp) atomic_store(&x->failed, 1);
}

static void block_task(void *vctx, int64_t begin, int64_t end)
{
    wino_ctx *x = vctx;
    const pthcv_wino_args *a = x->a;
    float *v = x->vshared ? NULL : pthcv_scratch(PTHCV_SCRATCH_WINO_V, (size_t)(x->nx * x->vxs));
    float *m = pthcv_scratch(PTHCV_SCRATCH_WINO_M, (size_t)(x->nx * x->mxs));
    band bd;
    bd.xp = x->vshared ? NULL : pthcv_scratch(PTHCV_SCRATCH_WINO_X, (size_t)(a->cin * x->band_rows * x->ld));
    if ((!x->vshared && (!v || !bd.xp)) || !m) {
        atomic_store(&x->failed, 1);
        return;
    }
    for (int64_t t = begin; t < end; t++) {
        int64_t b = t / x->csplit, co0 = t % x->csplit * x->cstep;
        int64_t co1 = co0 + x->cstep < x->coutp ? co0 + x->cstep : x->coutp;
        int64_t g0 = b * x->gb, ng = x->G - g0 < x->gb ? x->G - g0 : x->gb;
        if (x->vshared) v = x->vshared + b * x->nx * x->vxs;
        else if (t == begin || t % x->csplit == 0) /* a task with the previous one's block reuses its V */
            input_of_block(x, &bd, b, 0, a->cin, v);
        multiply(x, v, m, co0, co1, used_columns(x, ng));
        transform_output(x, g0, ng, m, co0, co1 < a->cout ? co1 : a->cout);
    }
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* columns of V an image's tiles take: groups of 2 quads of 4 tiles */
static int64_t tile_columns(int m, int64_t oh, int64_t ow)
{
    int64_t qpr = cdiv(cdiv(ow, m), 4), q = cdiv(oh, m) * qpr;
    return 8 * cdiv(q, 2);
}

int pthcv_wino_tile(int64_t cin, int64_t cout, int64_t oh, int64_t ow)
{
    if (cdiv(oh, 4) * cdiv(ow, 4) >= 9) return 4;
    if (cin >= 64 && cout >= 64 && cdiv(oh, 2) * cdiv(ow, 2) >= 9) return 2;
    return 0;
}

const pthcv_gemm_kernel *pthcv_wino_kernel(int isa, int m, int64_t oh, int64_t ow)
{
    const pthcv_gemm_kernel *k = pthcv_gemm_kernel_for(isa);
    if (isa == PTHCV_ISA_AVX512) {
        const pthcv_gemm_kernel *k2 = pthcv_gemm_kernel_for(PTHCV_ISA_AVX2);
        int64_t n = tile_columns(m, oh, ow);
        if (cdiv(n, k2->nr) * k2->nr < cdiv(n, k->nr) * k->nr) return k2;
    }
    return k;
}

int pthcv_wino_forward(const pthcv_wino_args *a)
{
    const pthcv_gemm_kernel *k = a->kernel;
    int f23 = a->m == 2;
    wino_ctx x = {.a = a, .m = a->m, .nx = (a->m + 2) * (a->m + 2)};
    x.in8 = f23 ? pthcv_wino23_in8_scalar : pthcv_wino_in8_scalar;
    x.out8 = f23 ? pthcv_wino23_out8_scalar : pthcv_wino_out8_scalar;
#if defined(__x86_64__)
    if (k->isa == PTHCV_ISA_AVX2 || k->isa == PTHCV_ISA_AVX512) {
        x.in8 = f23 ? pthcv_wino23_in8_avx2 : pthcv_wino_in8_avx2;
        x.out8 = f23 ? pthcv_wino23_out8_avx2 : pthcv_wino_out8_avx2;
    }
#endif
    int64_t th = cdiv(a->oh, a->m), tw = cdiv(a->ow, a->m);
    x.qpr = cdiv(tw, 4);
    x.Q = th * x.qpr;
    x.G = cdiv(x.Q, 2);
    x.ld = 4 * a->m * x.qpr + 4; /* a quad reads 4m + 2 columns from 4m q */
    x.coutp = cdiv(a->cout, k->mr) * k->mr;
    x.kcs = pthcv_gemm_kslice(k, a->cin);
    /* Groups per block: V and M of a block within WINO_BLOCK_BYTES (they
     * share L2 with the U panels streaming through), at least one NR panel
     * of columns, and about 4 blocks per thread where the image has them. */
    enum { WINO_BLOCK_BYTES = 256 * 1024 };
    int threads = pthcv_get_num_threads();
    int64_t by_cache = WINO_BLOCK_BYTES / (int64_t)sizeof(float) / x.nx / (a->cin + x.coutp) / 8;
    int64_t by_threads = cdiv(x.G, 4 * threads);
    x.gb = by_cache < by_threads ? by_cache : by_threads;
    if (x.gb < cdiv(k->nr, 8)) x.gb = cdiv(k->nr, 8);
    x.sp = cdiv(x.gb * 8, k->nr) * k->nr;
    /* One cache line more than the positions' sizes (multiples of 4 KB on
     * most layers: 32 columns x 128 channels): the transforms write (V)
     * and read (M) all positions of a tile at once, and at a power-of-two
     * stride those 36 lines fall into one set of the L1 cache, evicting
     * each other (half of a 64-channel 56x56 layer's time went to the
     * transforms). */
    x.vxs = x.sp * a->cin + 16;
    x.mxs = x.coutp * x.sp + 16;

    atomic_init(&x.failed, 0);
    /* Few blocks (small maps, 14x14 say): the output channels are split
     * too, and then the input transform is a job of its own (blocks x
     * ranges of input channels) into one V for all blocks, which the
     * products' tasks share: a task per range of output channels would
     * otherwise transform its block's input again (at 2 threads, 4 times
     * on a 7x7 map). A block count that the threads do not divide (7
     * blocks of a 56x56 map at 2 threads: 4 and 3) is split in halves of
     * the output channels, each task transforming its block's input unless
     * the task before it in its chunk did: the threads then end within
     * half a block of each other, for one input transform more. */
    x.nblocks = cdiv(x.G, x.gb);
    int few = threads > 1 && x.nblocks < 2 * threads;
    x.csplit = few ? cdiv(2 * threads, x.nblocks) : threads > 1 && x.nblocks % threads ? 2 : 1;
    x.cstep = cdiv(cdiv(x.coutp, x.csplit), k->mr) * k->mr;
    x.csplit = cdiv(x.coutp, x.cstep);
    x.vshared = NULL;
    if (few && x.csplit > 1) {
        x.vshared = pthcv_scratch(PTHCV_SCRATCH_WINO_SHARED, (size_t)(x.nblocks * x.nx * x.vxs));
        if (!x.vshared) return pthcv_fail(PTHCV_ERR_NOMEM, "conv2d: out of memory for the Winograd buffers");
        x.isplit = threads * 2 > x.nblocks ? cdiv(threads * 2, x.nblocks) : 1;
        x.istep = cdiv(a->cin, x.isplit);
        x.isplit = cdiv(a->cin, x.istep);
    }
    /* a block's band: its first quad's tile row to its last's */
    x.band_rows = 0;
    for (int64_t g0 = 0; g0 < x.G; g0 += x.gb) {
        band b;
        band_of(&x, g0, x.G - g0 < x.gb ? x.G - g0 : x.gb, &b);
        if (b.rows > x.band_rows) x.band_rows = b.rows;
    }
    if (x.vshared) pthcv_parallel_for(x.nblocks * x.isplit, 1, input_task, &x);
    if (!atomic_load(&x.failed)) pthcv_parallel_for(x.nblocks * x.csplit, 1, block_task, &x);
    if (atomic_load(&x.failed)) return pthcv_fail(PTHCV_ERR_NOMEM, "conv2d: out of memory for the Winograd buffers");
    return PTHCV_OK;
}
