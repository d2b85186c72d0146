/*
 * gconv.c -- the direct grouped 3x3 convolution (gconv.h): the scalar
 * reference band kernel, the choice of kernel by instruction set, and the
 * driver that cuts a convolution into (image, group, band) tasks, copies
 * each band's input rows into a zero-padded scratch and applies the
 * activations the band kernels do not fuse.
 */
#include "gconv.h"
#include "gemm.h"
#include <math.h>
#include <stdatomic.h>
#include <string.h>

void pthcv_gconv_band_scalar(const pthcv_gconv_band *b)
{
    const int S = b->stride;
    for (int co = 0; co < b->cout_g; co++)
        for (int64_t oy = 0; oy < b->rows; oy++)
            for (int64_t ox = 0; ox < b->ow; ox++) {
                float acc = (b->bias ? b->bias[co] : 0.0f) + 0.0f;
                for (int ci = 0; ci < b->cin_g; ci++) {
                    const float *w = b->w + ((int64_t)co * b->cin_g + ci) * 9;
                    const float *in = b->in + ci * b->lds + oy * S * b->ldi;
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            int64_t c = ox * S + kx; /* where column c lies (gconv.h) */
                            acc += w[ky * 3 + kx] * in[ky * b->ldi + (S == 1 ? c : c % 2 * b->odd + c / 2)];
                        }
                }
                if (b->res) acc += b->res[co * b->rcs + oy * b->ow + ox];
                acc = acc < b->lo ? b->lo : acc > b->hi ? b->hi : acc;
                b->out[co * b->ocs + oy * b->ow + ox] = acc;
            }
}

void (*pthcv_gconv_band_for(int isa, int64_t ow))(const pthcv_gconv_band *)
{
    switch (isa) {
#if defined(__x86_64__)
    case PTHCV_ISA_AVX2: return pthcv_gconv_band_avx2;
    case PTHCV_ISA_AVX512: return ow <= 8 ? pthcv_gconv_band_avx2 : pthcv_gconv_band_avx512;
#endif
#if defined(__aarch64__)
    case PTHCV_ISA_NEON: return pthcv_gconv_band_neon;
#endif
    default: return pthcv_gconv_band_scalar;
    }
}

int pthcv_gconv_fits(int64_t cin_g, int64_t cout_g, int64_t kh, int64_t kw, const pthcv_conv2d_params *p)
{
    return kh == 3 && kw == 3 && p->groups > 1 && cin_g >= 2 && cin_g <= 16 && cout_g >= 1 && cout_g <= 16 &&
        p->stride[0] == p->stride[1] && (p->stride[0] == 1 || p->stride[0] == 2) && p->dilation[0] == 1 &&
        p->dilation[1] == 1;
}

/* ---- the driver ------------------------------------------------------------------- */
/* A stride-2 row: padded column c (src[c - pw] inside, else 0) of the wp
 * columns at even[c / 2] (c even) or odd[c / 2] (c odd). */
PTHCV_SIMD static void split_row(float *restrict even, float *restrict odd, const float *restrict src, int64_t w,
                                 int64_t pw, int64_t wp)
{
    memset(even, 0, sizeof(float) * (size_t)((wp + 1) / 2));
    memset(odd, 0, sizeof(float) * (size_t)(wp / 2));
    int64_t i = 0;
    if (pw % 2) odd[pw / 2] = src[0], i = 1; /* from here on, src[i] lies in an even column */
    int64_t base = (i + pw) / 2, n = (w - i) / 2;
    for (int64_t m = 0; m < n; m++) even[base + m] = src[i + 2 * m], odd[base + m] = src[i + 2 * m + 1];
    if ((w - i) % 2) even[base + n] = src[w - 1];
}

/* A band's padded input stays under this many floats (32 KB, an L1 data
 * cache: the AVX2 kernel reads it once per 4 output channels). */
enum { BAND_FLOATS = 8192 };
/* Bands are cut smaller where there would be fewer tasks than this. */
enum { MIN_TASKS = 32 };

typedef struct {
    const pthcv_gconv_args *a;
    void (*band)(const pthcv_gconv_band *);
    int64_t ldi, odd;          /* a band's row width, and where stride 2's odd columns start */
    int64_t rows, nbands;      /* output rows per band, bands per plane */
    float lo, hi;
    int fused;
    atomic_int failed;
} gconv_ctx;

/* Rows iy0.. of channels [c0, c0 + cin_g) of image img into buf, zero
 * padded, laid out as gconv.h says for the stride: rows_in rows of ldi
 * floats a channel, then the slack. */
static void pad_band(const gconv_ctx *g, const float *img, int64_t c0, int64_t iy0, int64_t rows_in, float *buf)
{
    const pthcv_gconv_args *a = g->a;
    int64_t ldi = g->ldi, wp = a->w + 2 * a->pw;
    for (int64_t ci = 0; ci < a->cin_g; ci++) {
        const float *plane = img + (c0 + ci) * a->h * a->w;
        for (int64_t r = 0; r < rows_in; r++) {
            float *d = buf + (ci * rows_in + r) * ldi;
            int64_t iy = iy0 + r;
            if (iy < 0 || iy >= a->h) {
                memset(d, 0, sizeof(float) * (size_t)ldi);
            } else if (a->stride == 1) {
                memset(d, 0, sizeof(float) * (size_t)a->pw);
                memcpy(d + a->pw, plane + iy * a->w, sizeof(float) * (size_t)a->w);
                memset(d + a->pw + a->w, 0, sizeof(float) * (size_t)(ldi - a->pw - a->w));
            } else {
                split_row(d, d + g->odd, plane + iy * a->w, a->w, a->pw, wp);
            }
        }
    }
    memset(buf + a->cin_g * rows_in * ldi, 0, sizeof(float) * PTHCV_GCONV_SLACK);
}

static void gconv_task(void *vctx, int64_t begin, int64_t end)
{
    gconv_ctx *g = vctx;
    const pthcv_gconv_args *a = g->a;
    const int S = a->stride;
    int64_t cin = (int64_t)a->groups * a->cin_g, cout = (int64_t)a->groups * a->cout_g;
    int64_t max_in = (g->rows - 1) * S + 3;
    float *buf = pthcv_scratch(PTHCV_SCRATCH_DW, (size_t)(a->cin_g * max_in * g->ldi + PTHCV_GCONV_SLACK));
    if (!buf) {
        atomic_store(&g->failed, 1);
        return;
    }
    for (int64_t t = begin; t < end; t++) {
        int64_t band = t % g->nbands, grp = t / g->nbands % a->groups, img = t / g->nbands / a->groups;
        int64_t oy0 = band * g->rows, rows = a->oh - oy0 < g->rows ? a->oh - oy0 : g->rows;
        int64_t rows_in = (rows - 1) * S + 3, co0 = grp * a->cout_g;
        pad_band(g, a->x + img * cin * a->h * a->w, grp * a->cin_g, oy0 * S - a->ph, rows_in, buf);
        pthcv_gconv_band b = {
            .in = buf,
            .ldi = g->ldi,
            .lds = rows_in * g->ldi,
            .odd = g->odd,
            .stride = S,
            .cin_g = a->cin_g,
            .cout_g = a->cout_g,
            .w = a->weight + co0 * a->cin_g * 9,
            .bias = a->bias ? a->bias + co0 : NULL,
            .out = a->out + img * a->obs + co0 * a->ocs + oy0 * a->ow,
            .res = a->res ? a->res + ((img * cout + co0) * a->oh + oy0) * a->ow : NULL,
            .ocs = a->ocs,
            .rcs = a->oh * a->ow,
            .rows = rows,
            .ow = a->ow,
            .lo = g->lo,
            .hi = g->hi,
        };
        g->band(&b);
        if (!g->fused)
            for (int co = 0; co < a->cout_g; co++) pthcv_act_row(b.out + co * a->ocs, rows * a->ow, &a->act);
    }
}

int pthcv_gconv_forward(const pthcv_gconv_args *a)
{
    gconv_ctx g = {.a = a, .band = pthcv_gconv_band_for(pthcv_isa(), a->ow)};
    /* a row holds the padded input row: wp >= (ow - 1)*S + 3 by the output
     * size, so stride 2's even columns (wp + 1) / 2 >= ow + 1 and its odd
     * ones wp / 2 >= ow, as gconv.h asks */
    g.ldi = a->w + 2 * a->pw;
    g.odd = a->stride == 2 ? (g.ldi + 1) / 2 : 0;
    int64_t fit = BAND_FLOATS / (a->cin_g * g.ldi);
    g.rows = fit > 3 ? (fit - 3) / a->stride + 1 : 1;
    /* enough tasks to keep the threads busy (RegNet's 28x28 stage has 13 groups) */
    int64_t planes = a->batch * a->groups, want = (MIN_TASKS + planes - 1) / planes;
    if (want > 1 && g.rows > (a->oh + want - 1) / want) g.rows = (a->oh + want - 1) / want;
    if (g.rows > a->oh) g.rows = a->oh;
    g.nbands = (a->oh + g.rows - 1) / g.rows;
    g.fused = pthcv_act_bounds(&a->act, &g.lo, &g.hi);
    if (!g.fused) g.lo = -INFINITY, g.hi = INFINITY;
    atomic_init(&g.failed, 0);
    pthcv_parallel_for(a->batch * a->groups * g.nbands, 1, gconv_task, &g);
    if (atomic_load(&g.failed)) return pthcv_fail(PTHCV_ERR_NOMEM, "conv2d: out of memory for the padded input rows");
    return PTHCV_OK;
}
