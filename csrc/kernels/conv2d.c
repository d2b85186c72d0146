/*
 * conv2d.c -- 2-d convolution with PyTorch's semantics (NCHW float32).
 *
 * prepare: checks the parameters, keeps the bias, picks the path and packs
 * the weights for the current instruction set (float32, or float16 for a
 * float16 weight tensor); the pack is the only copy of the weights kept
 * (depthwise and direct grouped layers keep theirs plain, float32). Other
 * instruction sets, Winograd's transformed weights and the small-map form
 * are made on first use from an unpacked copy of it, so pthcv_set_isa may
 * change between calls.
 * forward: makes x contiguous, pads it into a copy for the non-zero padding
 * modes, then runs one path:
 *   - depthwise (one input channel per group, stride 1 or 2, the same
 *     dilation both ways): the direct kernels of dwconv*.c (dilated ones
 *     for dilation > 1) over one zero-padded plane at a time;
 *   - grouped 3x3 with 2 to 16 channels per group, stride 1 or 2 (RegNet,
 *     ResNeXt): the direct kernels of gconv*.c (gconv.h has the envelope);
 *   - 3x3, stride 1, no dilation, one group, at least 8 channels in and out,
 *     output of at least 9 4x4 tiles: Winograd F(4x4, 3x3) (winograd.c), its
 *     transformed weights packed as the GEMM's A; on smaller outputs (7x7)
 *     with at least 64 channels in and out, F(2x2, 3x3) (pthcv_wino_tile);
 *   - everything else: the GEMM (gemm.c) per image and group, with
 *     M = out/groups, K = in/groups * kh * kw, N = oh * ow; its B operand is
 *     packed block by block straight from the image (implicit im2col, no
 *     full im2col buffer); for a 1x1 stride-1 convolution that packing is a
 *     plain copy of rows, and a strided 1x1 without padding samples its
 *     input first to pack like one (forward_decimated); other strided
 *     kernels (3x3/2, the stems) rewrite theirs as row phases by column
 *     taps first, which packs with row copies too (forward_phased), where
 *     one thread packs or all pack the pixels once. On small maps (7x7)
 *     the same product runs as C^T (pixels as rows), which pads less; there,
 *     and on small maps at 2 threads and more, the pixels' panels are packed
 *     once for all tasks (gemm_packed_pixels).
 * Bias, residual and clamp-type activations happen in the kernels' store;
 * other activations right after, while the tile is in cache.
 */
#include "dwconv.h"
#include "gconv.h"
#include "conv2d_view.h"
#include "gemm.h"
#include "ops.h"
#include "winograd.h"
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct pthcv_conv2d {
    int64_t cout, cin_g, kh, kw, groups;
    pthcv_conv2d_params p;
    int half; /* weights kept as float16 (a float16 weight tensor) */
    int depthwise;
    int gconv; /* grouped, few channels a group: the direct kernels of gconv.h */
    float *w;  /* depthwise and gconv only: [cout][cin_g * kh * kw], float32 (a few KB) */
    /* other paths: the GEMM's weights, per group cout/groups x cin_g*kh*kw,
     * in one or both forms: */
    pthcv_gemm_const gemm; /* as A (rows = output channels): the usual product */
    int gemm_made;
    pthcv_gemm_const gemm_t; /* as B (columns = output channels): small maps, C transposed */
    int gemm_t_made;
    int used;                   /* a forward has taken a form: none may be freed now */
    int wino;                   /* the Winograd path may run */
    pthread_mutex_t lock;       /* guards the forms, used and wino_made */
    int wino_made[2];           /* [0]: F(4x4, 3x3), [1]: F(2x2, 3x3) */
    pthcv_gemm_const wino_u[2]; /* Winograd: 36 or 16 A operands, cout x cin (made on first use) */
    float *bias;                /* [cout] or NULL */
};

pthcv_conv2d *pthcv_conv2d_prepare(pthcv_tensor *weight, pthcv_tensor *bias, const pthcv_conv2d_params *p)
{
    if (!weight || !p) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "conv2d: no weight or no parameters");
    if ((weight->dtype != PTHCV_FLOAT32 && weight->dtype != PTHCV_FLOAT16) || weight->ndim != 4)
        return PTHCV_FAIL_NULL(
            PTHCV_ERR_ARG,
            "conv2d: weight must be float32 or float16 [out, in/groups, kh, kw], got %s with %d dimensions",
            pthcv_dtype_name(weight->dtype), weight->ndim);
    int64_t cout = weight->shape[0], cin_g = weight->shape[1], kh = weight->shape[2], kw = weight->shape[3];
    if (p->groups < 1 || cout % p->groups != 0)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "conv2d: out_channels %lld is not divisible by groups %d",
                               (long long)cout, p->groups);
    if (cout < 1 || cin_g < 1 || kh < 1 || kw < 1)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "conv2d: empty weight [%lld, %lld, %lld, %lld]", (long long)cout,
                               (long long)cin_g, (long long)kh, (long long)kw);
    for (int i = 0; i < 2; i++)
        if (p->stride[i] < 1 || p->dilation[i] < 1 || p->padding[i] < 0)
            return PTHCV_FAIL_NULL(
                PTHCV_ERR_ARG, "conv2d: stride (%d, %d) and dilation (%d, %d) must be >= 1, padding (%d, %d) >= 0",
                p->stride[0], p->stride[1], p->dilation[0], p->dilation[1], p->padding[0], p->padding[1]);
    if (p->padding_mode < PTHCV_PAD_ZEROS || p->padding_mode > PTHCV_PAD_CIRCULAR)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG,
                               "conv2d: padding_mode must be zeros, reflect, replicate or circular, got %s",
                               ops_pad_mode_name(p->padding_mode));
    if (!pthcv_act_valid(&p->act))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "conv2d: unknown activation kind %d", p->act.kind);
    if (bias && (bias->dtype != PTHCV_FLOAT32 || bias->ndim != 1 || bias->shape[0] != cout))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG,
                               "conv2d: bias must be float32 [%lld], got %s with %d dimensions (%lld values)",
                               (long long)cout, pthcv_dtype_name(bias->dtype), bias->ndim, (long long)bias->numel);

    pthcv_conv2d *c = calloc(1, sizeof *c);
    if (!c) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "conv2d: out of memory");
    c->cout = cout, c->cin_g = cin_g, c->kh = kh, c->kw = kw, c->groups = p->groups, c->p = *p;
    c->half = weight->dtype == PTHCV_FLOAT16;
    pthread_mutex_init(&c->lock, NULL);
    c->depthwise = cin_g == 1 && p->dilation[0] == p->dilation[1] && p->stride[0] == p->stride[1] &&
        p->stride[0] <= 2 && p->groups > 1;
    /* float16 weights stay on the GEMM, whose pack keeps them float16 */
    const char *genv = getenv("PTHCV_GCONV"); /* "0": grouped layers on the GEMM (for comparisons) */
    c->gconv = !c->depthwise && !c->half && pthcv_gconv_fits(cin_g, cout / p->groups, kh, kw, p) &&
        !(genv && strcmp(genv, "0") == 0);
    /* the weights as float32, for packing (or, depthwise, kept) */
    pthcv_tensor *wc = pthcv_tensor_contiguous(weight);
    const void *wd = wc ? pthcv_tensor_data(wc) : NULL;
    float *w = malloc(sizeof(float) * (size_t)weight->numel);
    if (!wd || !w) {
        free(w);
        goto fail;
    }
    if (c->half) pthcv_halves_to_floats(w, wd, weight->numel);
    else memcpy(w, wd, sizeof(float) * (size_t)weight->numel);
    pthcv_tensor_release(wc);
    wc = NULL;
    if (c->depthwise || c->gconv) {
        c->w = w; /* a few KB: the direct kernels read float32 */
    } else {
        int64_t M = cout / p->groups, K = cin_g * kh * kw;
        int st = pthcv_gemm_const_init(&c->gemm, pthcv_gemm_kernel_for(pthcv_isa()), 0, c->half, p->groups, M, K, w,
                                       M * K, K, 1);
        c->gemm_made = 1;
        free(w);
        if (st != PTHCV_OK) goto fail;
    }
    if (bias) {
        pthcv_tensor *bc = pthcv_tensor_contiguous(bias);
        const float *bd = bc ? pthcv_tensor_data(bc) : NULL;
        c->bias = malloc(sizeof(float) * (size_t)cout);
        if (bd && c->bias) memcpy(c->bias, bd, sizeof(float) * (size_t)cout);
        pthcv_tensor_release(bc);
        if (!bd || !c->bias) goto fail;
    }
    const char *wenv = getenv("PTHCV_WINOGRAD"); /* "0": off (for comparisons) */
    /* Not with float16 weights: Winograd's transformed weights rounded to
     * float16 put outputs 5e-3 (relative) off the float32 result of the
     * same float16 weights (spec/c/kernels_test.c measured it), and keeping
     * them float32 would cost 8x the float16 weights' memory. */
    c->wino = !c->half && kh == 3 && kw == 3 && p->stride[0] == 1 && p->stride[1] == 1 && p->dilation[0] == 1 &&
        p->dilation[1] == 1 && p->groups == 1 && cin_g >= 8 && cout >= 8 && !(wenv && strcmp(wenv, "0") == 0);
    return c;
fail:
    pthcv_tensor_release(wc);
    pthcv_conv2d_free(c);
    if (pthcv_last_status() == PTHCV_OK) pthcv_fail(PTHCV_ERR_NOMEM, "conv2d: out of memory");
    return NULL;
}

void pthcv_conv2d_free(pthcv_conv2d *c)
{
    if (!c) return;
    if (c->gemm_made) pthcv_gemm_const_free(&c->gemm);
    if (c->gemm_t_made) pthcv_gemm_const_free(&c->gemm_t);
    for (int i = 0; i < 2; i++)
        if (c->wino_made[i]) pthcv_gemm_const_free(&c->wino_u[i]);
    pthread_mutex_destroy(&c->lock);
    free(c->w);
    free(c->bias);
    free(c);
}

/* The weights as float32 [groups][cout/groups][cin_g*kh*kw], unpacked from
 * whichever GEMM form exists (c->lock held); malloc'd, NULL when out of
 * memory. */
static float *weights_of(pthcv_conv2d *c)
{
    if (c->gconv) {
        float *w = malloc(sizeof(float) * (size_t)(c->cout * c->cin_g * 9));
        if (w) memcpy(w, c->w, sizeof(float) * (size_t)(c->cout * c->cin_g * 9));
        return w;
    }
    if (c->gemm_made) return pthcv_gemm_const_unpack(&c->gemm);
    float *t = pthcv_gemm_const_unpack(&c->gemm_t); /* [groups][K][M] */
    int64_t M = c->cout / c->groups, K = c->cin_g * c->kh * c->kw;
    float *w = t ? malloc(sizeof(float) * (size_t)(c->cout * K)) : NULL;
    if (w)
        for (int64_t g = 0; g < c->groups; g++)
            for (int64_t i = 0; i < M; i++)
                for (int64_t kk = 0; kk < K; kk++) w[(g * M + i) * K + kk] = t[(g * K + kk) * M + i];
    free(t);
    return w;
}

/* The GEMM weights in the form a forward needs, for kernel k, made on
 * first use. The A form is packed at prepare; when the first forward wants
 * the transposed form (a layer on 7x7 maps), the A form goes, so such a
 * layer keeps one copy. Once a form has been handed out none is freed. */
static const void *gemm_form(pthcv_conv2d *c, int trans, const pthcv_gemm_kernel *k, int64_t *sstride)
{
    int64_t M = c->cout / c->groups, K = c->cin_g * c->kh * c->kw;
    pthcv_gemm_const *f = trans ? &c->gemm_t : &c->gemm;
    int *made = trans ? &c->gemm_t_made : &c->gemm_made;
    pthread_mutex_lock(&c->lock);
    if (!*made) {
        float *w = weights_of(c);
        if (w) {
            int st = trans ? pthcv_gemm_const_init(f, k, 1, c->half, c->groups, K, M, w, M * K, 1, K)
                           : pthcv_gemm_const_init(f, k, 0, c->half, c->groups, M, K, w, M * K, K, 1);
            if (st == PTHCV_OK) {
                *made = 1;
                if (trans && !c->used && c->gemm_made) {
                    pthcv_gemm_const_free(&c->gemm);
                    c->gemm_made = 0;
                }
            } else {
                pthcv_gemm_const_free(f);
            }
        }
        free(w);
    }
    c->used = 1;
    int ok = *made;
    pthread_mutex_unlock(&c->lock);
    return ok ? pthcv_gemm_const_get(f, k, sstride) : NULL;
}

/* The Winograd weights of tile size m for kernel k: U = G g G^T from an
 * unpacked copy of the GEMM's weights, made on first use (each map size
 * needs one form only). */
static const void *wino_weights(pthcv_conv2d *c, int m, const pthcv_gemm_kernel *k, int64_t *sstride)
{
    int f = m == 2, nx = (m + 2) * (m + 2);
    pthread_mutex_lock(&c->lock);
    if (!c->wino_made[f]) {
        float *w = weights_of(c);
        float *u = w ? malloc(sizeof(float) * (size_t)(nx * c->cin_g * c->cout)) : NULL;
        if (u && pthcv_wino_weights(m, w, c->cout, c->cin_g, u) == PTHCV_OK) {
            /* U[xi] as A: element (co, ci) at u[(xi * cin + ci) * cout + co] */
            c->wino_made[f] = pthcv_gemm_const_init(&c->wino_u[f], k, 0, 0, nx, c->cout, c->cin_g, u,
                                                    c->cin_g * c->cout, 1, c->cout) == PTHCV_OK;
            if (!c->wino_made[f]) pthcv_gemm_const_free(&c->wino_u[f]);
        }
        free(u);
        free(w);
    }
    pthread_mutex_unlock(&c->lock);
    return c->wino_made[f] ? pthcv_gemm_const_get(&c->wino_u[f], k, sstride) : NULL;
}

pthcv_tensor *pthcv_conv2d_weight(pthcv_conv2d *c)
{
    if (!c) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "conv2d_weight: no convolution");
    int64_t shape[4] = {c->cout, c->cin_g, c->kh, c->kw};
    pthcv_tensor *t = pthcv_tensor_new(PTHCV_FLOAT32, 4, shape);
    float *d = t ? pthcv_tensor_data(t) : NULL;
    if (!d) return NULL;
    if (c->w) {
        memcpy(d, c->w, sizeof(float) * (size_t)t->numel);
        return t;
    }
    pthread_mutex_lock(&c->lock);
    float *w = weights_of(c);
    pthread_mutex_unlock(&c->lock);
    if (!w) {
        pthcv_tensor_release(t);
        return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "conv2d_weight: out of memory");
    }
    memcpy(d, w, sizeof(float) * (size_t)t->numel);
    free(w);
    return t;
}

int64_t pthcv_conv2d_weight_bytes(pthcv_conv2d *c)
{
    if (!c) return 0;
    int64_t n = c->w ? (int64_t)sizeof(float) * c->cout * c->cin_g * c->kh * c->kw : 0;
    pthread_mutex_lock(&c->lock);
    if (c->gemm_made) n += pthcv_gemm_const_bytes(&c->gemm);
    if (c->gemm_t_made) n += pthcv_gemm_const_bytes(&c->gemm_t);
    for (int i = 0; i < 2; i++)
        if (c->wino_made[i]) n += pthcv_gemm_const_bytes(&c->wino_u[i]);
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* ---- padding modes other than zeros: a padded copy of the input --------------- */
static pthcv_tensor *pad_copy(const float *x, int64_t nc, int64_t h, int64_t w, int ph, int pw, int mode)
{
    int64_t shape[4] = {1, nc, h + 2 * ph, w + 2 * pw};
    pthcv_tensor *t = pthcv_tensor_new(PTHCV_FLOAT32, 4, shape);
    float *d = t ? pthcv_tensor_data(t) : NULL;
    if (!d) return NULL;
    for (int64_t c = 0; c < nc; c++)
        for (int64_t y = 0; y < shape[2]; y++) {
            const float *row = x + (c * h + ops_pad_index(y - ph, h, mode)) * w;
            for (int64_t xx = 0; xx < shape[3]; xx++) *d++ = row[ops_pad_index(xx - pw, w, mode)];
        }
    return t;
}

/* ---- the GEMM path: implicit im2col ------------------------------------------------ */
typedef struct conv_ctx {
    const pthcv_conv2d *c;
    const float *x; /* contiguous input, padding already applied if pad0 */
    int64_t cin, h, w, oh, ow;
    int64_t ph, pw;   /* zero padding still to apply */
    int64_t ocs, obs; /* output plane (n, co) at out + n*obs + co*ocs (floats) */
    int decimated;    /* a 1x1's input already sampled with the stride (forward_decimated): read at stride 1 */
    int phased;       /* the input as its row phases by column taps, padding included (forward_phased):
                         sh x kw planes of h x w (w = ow) a channel */
} conv_ctx;

/* floats from one input channel to the next in x->x */
static int64_t channel_floats(const conv_ctx *x)
{
    int64_t hw = x->h * x->w;
    return x->phased ? x->c->p.stride[0] * x->c->kw * hw : hw;
}

/* n floats from s to d; the whole-panel case (n = nr, a constant per
 * instruction set) inlined, since a call to memcpy would cost as much as
 * the copy. */
static inline void copy_run(float *d, const float *s, int64_t n, int nr)
{
    if (n == 16 && nr == 16) memcpy(d, s, 16 * sizeof(float));
    else if (n == 32 && nr == 32) memcpy(d, s, 32 * sizeof(float));
    else if (n >= 8) memcpy(d, s, sizeof(float) * (size_t)n);
    else
        for (int64_t i = 0; i < n; i++) d[i] = s[i];
}

/* d[i] = s[2 i]: a stride-2 run of the im2col (stems, downsampling
 * layers), vectorised with shuffles in each clone */
PTHCV_SIMD static void gather_s2(float *restrict d, const float *restrict s, int64_t n)
{
    for (int64_t i = 0; i < n; i++) d[i] = s[2 * i];
}

/* The runs of one micro-panel (columns jq..jq+valid-1): columns sharing an
 * output row, each with its start column and the input row and column of
 * tap (0, 0); c[nrun] = valid. A panel of at most 64 columns has at most
 * 65 runs (one-pixel-wide maps). */
typedef struct {
    int64_t c[66], iy[65], ix[65], nrun, valid;
} panel_runs;

static void runs_of(const conv_ctx *x, int sh, int sw, int64_t jq, int64_t valid, panel_runs *r)
{
    r->nrun = 0, r->valid = valid;
    for (int64_t cc = 0, oy = jq / x->ow, ox = jq % x->ow; cc < valid; oy++, ox = 0) {
        r->c[r->nrun] = cc, r->iy[r->nrun] = oy * sh - x->ph, r->ix[r->nrun] = ox * sw - x->pw, r->nrun++;
        cc += x->ow - ox;
    }
    r->c[r->nrun] = valid;
}

/* One row of k (input plane, tap (ky, kx) offsets dy, dx) of one panel:
 * each run is one input row read with the stride, zeros outside the image. */
static void pack_runs(const conv_ctx *x, const panel_runs *r, const float *plane, int64_t dy, int64_t dx, int sw,
                      float *d, int nr)
{
    for (int64_t s = 0; s < r->nrun; s++) {
        int64_t c0 = r->c[s], len = r->c[s + 1] - c0;
        int64_t iy = r->iy[s] + dy, ix0 = r->ix[s] + dx;
        if (iy < 0 || iy >= x->h) {
            for (int64_t i = 0; i < len; i++) d[c0 + i] = 0.0f;
            continue;
        }
        const float *row = plane + iy * x->w;
        /* columns i in [lo, hi) read inside the row, the others are padding
         * (a run shorter than the left padding is all padding: lo <= len) */
        int64_t lo = ix0 >= 0 ? 0 : (-ix0 + sw - 1) / sw;
        int64_t hi = ix0 + (len - 1) * sw < x->w ? len : x->w > ix0 ? (x->w - 1 - ix0) / sw + 1 : 0;
        if (lo > len) lo = len;
        if (hi < lo) hi = lo;
        for (int64_t i = 0; i < lo; i++) d[c0 + i] = 0.0f;
        if (hi > lo) {
            const float *src = row + ix0 + lo * sw;
            float *dst = d + c0 + lo;
            if (sw == 1) copy_run(dst, src, hi - lo, nr);
            else if (sw == 2) gather_s2(dst, src, hi - lo);
            else
                for (int64_t i = 0; i < hi - lo; i++) dst[i] = src[i * sw];
        }
        for (int64_t i = hi; i < len; i++) d[c0 + i] = 0.0f;
    }
    for (int64_t i = r->valid; i < nr; i++) d[i] = 0.0f;
}

/* Packs rows k0..k0+kc-1 (k = (ci, ky, kx)) of columns j0..j0+nc-1 (j = oy*ow + ox)
 * of the virtual im2col matrix of problem p (image p / groups, group p % groups).
 * Row by row of k across a group of panels, so that each row of k reads
 * its input as one stretch (nc floats of a plane for a 1x1 stride-1
 * convolution) that the hardware prefetchers follow; panel by panel, each
 * row of k read a panel's 2 cache lines and jumped a plane ahead, and
 * waited for the L3 at every row (17% of a 256->64 1x1 layer at 56x56).
 * (ci, ky, kx) advance as counters: divisions here would cost as much as
 * the FMAs the packed values feed. */
enum { PACK_GROUP = 8 }; /* panels packed together (8 x 32 columns: the AVX-512 GEMM's B block) */

static void pack_im2col(const void *vctx, int64_t p, float *dst, int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr)
{
    const conv_ctx *x = vctx;
    const pthcv_conv2d *c = x->c;
    int64_t img = p / c->groups, g = p % c->groups;
    int64_t chan = channel_floats(x);
    const float *in = x->x + (img * x->cin + g * c->cin_g) * chan;
    int64_t n = x->oh * x->ow, khw = c->kh * c->kw, pstride = kc * nr;
    int sh = x->decimated ? 1 : c->p.stride[0], sw = x->decimated ? 1 : c->p.stride[1];
    int contiguous = c->kh == 1 && c->kw == 1 && sh == 1 && sw == 1 && x->ph == 0 && x->pw == 0;

    if (contiguous) {
        for (int64_t kk = 0; kk < kc; kk++) {
            const float *src = in + (k0 + kk) * n + j0;
            for (int64_t q = 0; q < nc; q += nr) {
                float *d = dst + q / nr * pstride + kk * nr;
                int64_t valid = nc - q < nr ? nc - q : nr;
                copy_run(d, src + q, valid, nr);
                for (int64_t i = valid; i < nr; i++) d[i] = 0.0f;
            }
        }
        return;
    }
    int dh = c->p.dilation[0], dw = c->p.dilation[1];
    if (x->phased) { /* row k = (ci, ky, kx): plane (ky % sh, kx) of channel ci from row ky / sh, at pixel j */
        int64_t s0 = c->p.stride[0], plane = x->h * x->w;
        int64_t ci = k0 / khw, ky = k0 % khw / c->kw, kx = k0 % c->kw, py = ky % s0, qy = ky / s0;
        for (int64_t kk = 0; kk < kc; kk++) {
            const float *src = in + ci * chan + (py * c->kw + kx) * plane + qy * x->w + j0;
            for (int64_t q = 0; q < nc; q += nr) {
                float *d = dst + q / nr * pstride + kk * nr;
                int64_t valid = nc - q < nr ? nc - q : nr;
                copy_run(d, src + q, valid, nr);
                for (int64_t i = valid; i < nr; i++) d[i] = 0.0f;
            }
            if (++kx == c->kw) {
                kx = 0;
                if (++py == s0) py = 0, qy++;
                if (++ky == c->kh) ky = py = qy = 0, ci++;
            }
        }
        return;
    }
    panel_runs runs[PACK_GROUP];
    for (int64_t q0 = 0; q0 < nc; q0 += PACK_GROUP * nr) {
        int np = 0;
        for (int64_t q = q0; q < nc && np < PACK_GROUP; q += nr, np++)
            runs_of(x, sh, sw, j0 + q, nc - q < nr ? nc - q : nr, &runs[np]);
        float *panels = dst + q0 / nr * pstride;
        int64_t ci = k0 / khw, ky = k0 % khw / c->kw, kx = k0 % c->kw;
        for (int64_t kk = 0; kk < kc; kk++) {
            const float *plane = in + ci * chan;
            for (int i = 0; i < np; i++) pack_runs(x, &runs[i], plane, ky * dh, kx * dw, sw, panels + i * pstride + kk * nr, nr);
            if (++kx == c->kw) {
                kx = 0;
                if (++ky == c->kh) ky = 0, ci++;
            }
        }
    }
}

/* Packing problem p's im2col over all of K, as a packed operand whose
 * panels run along the output pixels: pack_im2col's panels, `width` pixels
 * wide (MR: im2col^T as the A of C^T; NR: the im2col as B); tasks take
 * panels. */
typedef struct {
    const conv_ctx *x;
    int64_t p;
    float *dst;
    int64_t K, kcs;
    int width;
} pack_rows_ctx;

static int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

static void pack_rows_task(void *vctx, int64_t begin, int64_t end)
{
    const pack_rows_ctx *c = vctx;
    int64_t n = c->x->oh * c->x->ow, i0 = begin * c->width, i1 = end * c->width < n ? end * c->width : n;
    int64_t padded = round_up(n, c->width);
    /* the packed operand's K slices (gemm.h), each a run of panels */
    for (int64_t k0 = 0; k0 < c->K; k0 += c->kcs) {
        int64_t kc = c->K - k0 < c->kcs ? c->K - k0 : c->kcs;
        pack_im2col(c->x, c->p, c->dst + pthcv_gemm_panel(padded, c->K, c->kcs, i0, k0), k0, kc, i0, i1 - i0,
                    c->width);
    }
}

/* The product with each problem's im2col packed once, by all threads,
 * before it, where the product's tasks split the output channels and each
 * would otherwise pack all of it again:
 *   - trans (small maps, C^T): the pixels are the rows, their panels
 *     (im2col^T, MR wide, under a MB) are A and the weights B;
 *   - otherwise the pixels' panels (NR wide) are B: at 2 threads and more
 *     on small maps the GEMM cuts the output channels into blocks, and
 *     each block's task would pack the whole im2col of its pixels (4 times
 *     at 2 threads on a 14x14 map, where a 3x3 stride-2 layer's packing is
 *     a twentieth of its work at one thread).
 * The same packed values and products: the same bits. */
static int gemm_packed_pixels(pthcv_conv2d *c, const conv_ctx *x, int64_t batch, float *out, const float *res,
                              const pthcv_gemm_kernel *k, const void *w, int64_t sstride, int trans)
{
    int64_t M = c->cout / c->groups, N = x->oh * x->ow, K = c->cin_g * c->kh * c->kw;
    int width = trans ? k->mr : k->nr;
    int64_t size = trans ? pthcv_gemm_packed_a_size(k, N, K) : pthcv_gemm_packed_b_size(k, K, N);
    float *px = pthcv_scratch(PTHCV_SCRATCH_CONV_A, (size_t)size);
    if (!px) return pthcv_fail(PTHCV_ERR_NOMEM, "conv2d: out of memory for the packed input");
    for (int64_t p = 0; p < batch * c->groups; p++) {
        int64_t set = p % c->groups;
        pack_rows_ctx pc = {.x = x, .p = p, .dst = px, .K = K, .kcs = pthcv_gemm_kslice(k, K), .width = width};
        pthcv_parallel_for((N + width - 1) / width, 1, pack_rows_task, &pc);
        const float *wf = c->half ? NULL : (const float *)w + set * sstride;
        const uint16_t *wh = c->half ? (const uint16_t *)w + set * sstride : NULL;
        const float *bias = c->bias ? c->bias + set * M : NULL;
        /* a residual has the output's layout: planes x->ocs apart */
        pthcv_gemm_problem g = {
            .kernel = k,
            .M = trans ? N : M,
            .N = trans ? M : N,
            .K = K,
            .nprob = 1,
            .nsets = 1,
            .a_packed = trans ? px : wf,
            .a_half = trans ? NULL : wh,
            .a_sstride = trans ? size : sstride,
            .b_packed = trans ? wf : px,
            .b_half = trans ? wh : NULL,
            .b_sstride = trans ? sstride : size,
            .c = out + p / c->groups * x->obs + set * M * x->ocs,
            .ldc = x->ocs,
            .c_pstride = M * x->ocs,
            .c_trans = trans,
            .res = res ? res + p * M * x->ocs : NULL,
            .bias_row = trans ? NULL : bias,
            .bias_col = trans ? bias : NULL,
            .act = c->p.act,
        };
        int st = pthcv_gemm_run(&g);
        if (st != PTHCV_OK) return st;
    }
    return PTHCV_OK;
}

static int forward_decimated(pthcv_conv2d *c, const conv_ctx *x, int64_t batch, float *out, const float *res);
static int forward_phased(pthcv_conv2d *c, const conv_ctx *x, int64_t batch, float *out, const float *res);

static int forward_gemm(pthcv_conv2d *c, const conv_ctx *x, int64_t batch, float *out, const float *res)
{
    int strided = c->p.stride[0] > 1 || c->p.stride[1] > 1;
    if (strided && c->kh == 1 && c->kw == 1 && x->ph == 0 && x->pw == 0 && !x->decimated)
        return forward_decimated(c, x, batch, out, res);
    const pthcv_gemm_kernel *k = pthcv_gemm_kernel_for(pthcv_isa());
    int64_t M = c->cout / c->groups, N = x->oh * x->ow, K = c->cin_g * c->kh * c->kw, sstride;
    /* Small maps: pixels as rows of C^T and output channels as its columns
     * when padding them to MR and NR wastes less (7x7 = 49 pixels fill 54
     * rows of MR = 6 but 64 columns of NR = 16). Same products in the same
     * order, so the same bits either way. */
    int trans = N <= 128 && round_up(N, k->mr) * round_up(M, k->nr) * 20 < round_up(N, k->nr) * round_up(M, k->mr) * 17;
    /* small maps (N within two column blocks) at 2 threads and more: the
     * product cuts M, and M blocks would each pack the im2col again; only
     * where that is a gather of kh * kw taps (a 1x1's packing is a cheap
     * copy, which each task does faster from its own cache than it reads
     * a shared copy) */
    int threads = pthcv_get_num_threads();
    int shared = trans || (threads > 1 && N <= 2 * k->nc && M >= 4 * k->mr && c->kh * c->kw > 1);
    /* The input split into phases first (forward_phased) where one thread
     * packs, or all pack the pixels once together: where several tasks pack
     * their own column blocks at 2 threads it measured slower (a 64->128
     * 3x3/2 layer at 56x56: 0.54 ms against 0.46; the cause is not known,
     * docs/performance.md, "Strided convolutions through their phases"). */
    if (strided && c->kh * c->kw > 1 && c->kh >= c->p.stride[0] && c->p.dilation[0] == 1 && c->p.dilation[1] == 1 &&
        !x->phased && (threads == 1 || shared))
        return forward_phased(c, x, batch, out, res);
    const void *w = gemm_form(c, trans, k, &sstride);
    if (!w) return pthcv_fail(PTHCV_ERR_NOMEM, "conv2d: out of memory packing the weights");
    if (shared) return gemm_packed_pixels(c, x, batch, out, res, k, w, sstride, trans);
    pthcv_gemm_problem g = {
        .kernel = k,
        .M = M,
        .N = N,
        .K = K,
        .nprob = batch * c->groups,
        .nsets = c->groups,
        .a_sstride = sstride,
        .pack_b = pack_im2col,
        .ctx = x,
        .c = out,
        .ldc = x->ocs,
        .c_pstride = M * x->ocs,
        .res = res,
        .bias_row = c->bias,
        .act = c->p.act,
    };
    if (c->half) g.a_half = w;
    else g.a_packed = w;
    if (batch == 1 || x->obs == c->cout * x->ocs) return pthcv_gemm_run(&g);
    /* images further apart than one image of output (a channel slice of a
     * larger destination; no residual then): one product per image */
    for (int64_t i = 0; i < batch; i++) {
        conv_ctx xi = *x;
        xi.x = x->x + i * x->cin * channel_floats(x);
        g.ctx = &xi, g.nprob = c->groups, g.c = out + i * x->obs;
        int st = pthcv_gemm_run(&g);
        if (st != PTHCV_OK) return st;
    }
    return PTHCV_OK;
}

/* A 1x1 convolution with a stride and no padding reads every stride-th
 * pixel of every stride-th row: those pixels are copied out first, in one
 * pass over the input by all threads, and the product then packs its B
 * operand with the plain row copies of a stride-1 1x1 convolution instead
 * of gathering short strided runs per panel (a sixth of a 256->512 1x1/2
 * layer at 56x56), again by every task that packs them. Same values, same
 * products: the same bits. */
typedef struct {
    const conv_ctx *x;
    float *dst;
    int sh, sw;
} decimate_ctx;

static void decimate_task(void *vctx, int64_t begin, int64_t end)
{
    const decimate_ctx *d = vctx;
    const conv_ctx *x = d->x;
    for (int64_t p = begin; p < end; p++) {
        const float *src = x->x + p * x->h * x->w;
        float *dst = d->dst + p * x->oh * x->ow;
        for (int64_t oy = 0; oy < x->oh; oy++, dst += x->ow) {
            const float *row = src + oy * d->sh * x->w;
            if (d->sw == 1) memcpy(dst, row, sizeof(float) * (size_t)x->ow);
            else if (d->sw == 2) gather_s2(dst, row, x->ow);
            else
                for (int64_t ox = 0; ox < x->ow; ox++) dst[ox] = row[ox * d->sw];
        }
    }
}

static int forward_decimated(pthcv_conv2d *c, const conv_ctx *x, int64_t batch, float *out, const float *res)
{
    float *buf = pthcv_scratch(PTHCV_SCRATCH_CONV_X, (size_t)(batch * x->cin * x->oh * x->ow));
    if (!buf) return pthcv_fail(PTHCV_ERR_NOMEM, "conv2d: out of memory for the strided input");
    decimate_ctx d = {.x = x, .dst = buf, .sh = c->p.stride[0], .sw = c->p.stride[1]};
    pthcv_parallel_for(batch * x->cin, 1, decimate_task, &d);
    conv_ctx xd = *x;
    xd.x = buf, xd.h = x->oh, xd.w = x->ow, xd.decimated = 1;
    return forward_gemm(c, &xd, batch, out, res);
}

/* A strided convolution (3x3/2 downsampling layers, the stems) would
 * gather every tap's row at the stride, in runs of an output row's
 * length, for every panel it packs: a quarter of a 64->128 3x3/2 layer's
 * time at 56x56. Instead the input is first rewritten, in one pass by all
 * threads, as its sh row phases by its kw column taps, zero padding
 * included: plane (py, kx) of a channel holds padded pixel
 * (sh i + py, sw ox + kx) at (i, ox), ow wide. Tap (ky, kx) of output
 * pixel j = oy ow + ox is then value j + (ky / sh) ow of plane (ky % sh, kx),
 * so a panel's row of k is one contiguous copy, as for a 1x1 layer. About
 * kw / sw times the input's size; only without dilation and where every row
 * phase is read (kh >= sh). Same values, same products: the same bits. */
typedef struct {
    const conv_ctx *x;
    float *dst;
    int64_t hp; /* rows of a plane: oh + (kh - 1) / sh */
} phase_ctx;

static void phase_task(void *vctx, int64_t begin, int64_t end)
{
    const phase_ctx *d = vctx;
    const conv_ctx *x = d->x;
    const pthcv_conv2d *c = x->c;
    int64_t sh = c->p.stride[0], sw = c->p.stride[1], ow = x->ow;
    for (int64_t p = begin; p < end; p++) {
        const float *src = x->x + p * x->h * x->w;
        float *dst = d->dst + p * sh * c->kw * d->hp * ow;
        for (int64_t py = 0; py < sh; py++)
            for (int64_t kx = 0; kx < c->kw; kx++) {
                /* columns ox in [lo, hi) are inside the image: sw ox + kx - pw in [0, w) */
                int64_t lo = x->pw > kx ? (x->pw - kx + sw - 1) / sw : 0;
                int64_t hi = x->w + x->pw - kx > 0 ? (x->w + x->pw - kx + sw - 1) / sw : 0;
                if (hi > ow) hi = ow;
                if (lo > hi) lo = hi;
                for (int64_t i = 0; i < d->hp; i++, dst += ow) {
                    int64_t iy = sh * i + py - x->ph;
                    if (iy < 0 || iy >= x->h) {
                        memset(dst, 0, sizeof(float) * (size_t)ow);
                        continue;
                    }
                    const float *row = src + iy * x->w + sw * lo + kx - x->pw;
                    for (int64_t j = 0; j < lo; j++) dst[j] = 0.0f;
                    if (sw == 1) memcpy(dst + lo, row, sizeof(float) * (size_t)(hi - lo));
                    else if (sw == 2) gather_s2(dst + lo, row, hi - lo);
                    else
                        for (int64_t j = lo; j < hi; j++) dst[j] = row[(j - lo) * sw];
                    for (int64_t j = hi; j < ow; j++) dst[j] = 0.0f;
                }
            }
    }
}

static int forward_phased(pthcv_conv2d *c, const conv_ctx *x, int64_t batch, float *out, const float *res)
{
    int64_t sh = c->p.stride[0];
    phase_ctx d = {.x = x, .hp = x->oh + (c->kh - 1) / sh};
    d.dst = pthcv_scratch(PTHCV_SCRATCH_CONV_X, (size_t)(batch * x->cin * sh * c->kw * d.hp * x->ow));
    if (!d.dst) return pthcv_fail(PTHCV_ERR_NOMEM, "conv2d: out of memory for the input's phases");
    pthcv_parallel_for(batch * x->cin, 1, phase_task, &d);
    conv_ctx xp = *x;
    xp.x = d.dst, xp.h = d.hp, xp.w = x->ow, xp.ph = xp.pw = 0, xp.phased = 1;
    return forward_gemm(c, &xp, batch, out, res);
}

static int forward_wino(pthcv_conv2d *c, int m, const conv_ctx *x, int64_t batch, float *out, const float *res)
{
    const pthcv_gemm_kernel *k = pthcv_wino_kernel(pthcv_isa(), m, x->oh, x->ow);
    int64_t sstride;
    const void *u = wino_weights(c, m, k, &sstride);
    if (!u) return pthcv_fail(PTHCV_ERR_NOMEM, "conv2d: out of memory packing the weights");
    pthcv_wino_args a = {
        .m = m,
        .kernel = k,
        .u = u,
        .u_sstride = sstride,
        .cin = x->cin,
        .h = x->h,
        .w = x->w,
        .ph = x->ph,
        .pw = x->pw,
        .cout = c->cout,
        .oh = x->oh,
        .ow = x->ow,
        .bias = c->bias,
        .act = c->p.act,
    };
    a.fused = pthcv_act_bounds(&c->p.act, &a.lo, &a.hi);
    int64_t in_img = x->cin * x->h * x->w, out_img = c->cout * x->oh * x->ow;
    for (int64_t i = 0; i < batch; i++) {
        a.x = x->x + i * in_img;
        a.out = out + i * out_img;
        a.res = res ? res + i * out_img : NULL;
        int st = pthcv_wino_forward(&a);
        if (st != PTHCV_OK) return st;
    }
    return PTHCV_OK;
}

/* ---- the depthwise path ---------------------------------------------------------------- */
typedef struct {
    const pthcv_conv2d *c;
    const conv_ctx *x;
    float *out;
    const float *res;
    void (*plane)(const pthcv_dw_args *);
    void (*dilated)(const pthcv_dw_args *, int); /* dilation > 1 */
    float lo, hi;
    int fused;
    atomic_int failed;
} dw_ctx;

static void dw_task(void *vctx, int64_t begin, int64_t end)
{
    dw_ctx *d = vctx;
    const pthcv_conv2d *c = d->c;
    const conv_ctx *x = d->x;
    int64_t hp = x->h + 2 * x->ph, wp = x->w + 2 * x->pw;
    int64_t ldi = wp + PTHCV_DW_SLACK, size = hp * ldi + PTHCV_DW_SLACK;
    float *buf = pthcv_scratch(PTHCV_SCRATCH_DW, (size_t)size);
    if (!buf) {
        atomic_store(&d->failed, 1);
        return;
    }
    /* the zero border and slack stay zero: only the image part is rewritten */
    memset(buf, 0, sizeof(float) * (size_t)size);
    int64_t mult = c->cout / c->groups, plane_out = x->oh * x->ow;
    for (int64_t t = begin; t < end; t++) {
        int64_t img = t / c->cout, oc = t % c->cout, ic = oc / mult;
        const float *src = x->x + (img * x->cin + ic) * x->h * x->w;
        for (int64_t y = 0; y < x->h; y++)
            memcpy(buf + (y + x->ph) * ldi + x->pw, src + y * x->w, sizeof(float) * (size_t)x->w);
        pthcv_dw_args a = {
            .in = buf,
            .ldi = ldi,
            .stride = c->p.stride[0],
            .kh = (int)c->kh,
            .kw = (int)c->kw,
            .w = c->w + oc * c->kh * c->kw,
            .bias = c->bias ? c->bias[oc] : 0.0f,
            .out = d->out + img * x->obs + oc * x->ocs,
            .res = d->res ? d->res + t * plane_out : NULL,
            .oh = x->oh,
            .ow = x->ow,
            .lo = d->lo,
            .hi = d->hi,
        };
        if (c->p.dilation[0] > 1) d->dilated(&a, c->p.dilation[0]);
        else d->plane(&a);
        if (!d->fused) pthcv_act_row(a.out, plane_out, &c->p.act);
    }
}

static int forward_depthwise(pthcv_conv2d *c, const conv_ctx *x, int64_t batch, float *out, const float *res)
{
    dw_ctx d = {.c = c, .x = x, .out = out, .res = res};
    d.plane = pthcv_dw_plane_for(pthcv_isa());
    d.dilated = pthcv_dw_dilated_plane_for(pthcv_isa());
    d.fused = pthcv_act_bounds(&c->p.act, &d.lo, &d.hi);
    if (!d.fused) d.lo = -INFINITY, d.hi = INFINITY;
    atomic_init(&d.failed, 0);
    pthcv_parallel_for(batch * c->cout, 1, dw_task, &d);
    if (atomic_load(&d.failed)) return pthcv_fail(PTHCV_ERR_NOMEM, "conv2d: out of memory for the padded planes");
    return PTHCV_OK;
}

/* ---- the direct grouped path (gconv.h) --------------------------------------------------- */
static int forward_gconv(pthcv_conv2d *c, const conv_ctx *x, int64_t batch, float *out, const float *res)
{
    pthcv_gconv_args a = {.x = x->x,
                          .batch = batch,
                          .h = x->h,
                          .w = x->w,
                          .ph = x->ph,
                          .pw = x->pw,
                          .groups = (int)c->groups,
                          .cin_g = (int)c->cin_g,
                          .cout_g = (int)(c->cout / c->groups),
                          .stride = c->p.stride[0],
                          .weight = c->w,
                          .bias = c->bias,
                          .act = c->p.act,
                          .out = out,
                          .oh = x->oh,
                          .ow = x->ow,
                          .ocs = x->ocs,
                          .obs = x->obs,
                          .res = res};
    return pthcv_gconv_forward(&a);
}

/* ---- forward ------------------------------------------------------------------------------ */
/* Where the output of a forward of image size (batch, cout, oh, ow) goes in
 * dst (a caller's view, pthcv_conv2d_forward_into): its channel and image
 * strides, each plane's oh*ow floats contiguous. 0, or an error naming
 * what differs. */
static int dst_layout(const pthcv_tensor *dst, int ndim, const int64_t *oshape, int64_t *cs, int64_t *bs)
{
    int ok = dst->dtype == PTHCV_FLOAT32 && dst->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = dst->shape[i] == oshape[i];
    int64_t oh = oshape[ndim - 2], ow = oshape[ndim - 1];
    if (ok) ok = (ow == 1 || dst->stride[ndim - 1] == 1) && (oh == 1 || dst->stride[ndim - 2] == ow);
    *cs = ok ? dst->stride[ndim - 3] : 0, *bs = ok && ndim == 4 ? dst->stride[0] : 0;
    /* planes of one image apart, images apart (no output value written twice) */
    if (ok && oshape[ndim - 3] > 1) ok = *cs >= oh * ow;
    if (ok && ndim == 4 && oshape[0] > 1) ok = *bs >= (oshape[1] - 1) * *cs + oh * ow;
    if (ok) return PTHCV_OK;
    return pthcv_fail(PTHCV_ERR_ARG,
                      "conv2d: the destination must be float32 of the output's shape with contiguous planes "
                      "that do not overlap, got %s %s",
                      pthcv_dtype_name(dst->dtype), ops_shape(dst));
}


/* The output shape [N, cout, oh, ow] of c on x (0), or an error naming the
 * shapes; residual (may be NULL) must have that shape. */
static int conv_check(const pthcv_conv2d *c, const pthcv_tensor *x, const pthcv_tensor *residual, int64_t oshape[4])
{
    if (!c || !x) return pthcv_fail(PTHCV_ERR_ARG, "conv2d: no convolution or no input");
    int64_t cin = c->cin_g * c->groups;
    if (x->dtype != PTHCV_FLOAT32 || (x->ndim != 4 && x->ndim != 3) || x->shape[x->ndim - 3] != cin) {
        return pthcv_fail(
            PTHCV_ERR_ARG,
            "conv2d: expected float32 input [N, %lld, H, W] (weight [%lld, %lld, %lld, %lld], groups %lld), got %s %s",
            (long long)cin, (long long)c->cout, (long long)c->cin_g, (long long)c->kh, (long long)c->kw,
            (long long)c->groups, pthcv_dtype_name(x->dtype), ops_shape(x));
    }
    int unbatched = x->ndim == 3;
    int64_t h = x->shape[x->ndim - 2], w = x->shape[x->ndim - 1];
    int ph = c->p.padding[0], pw = c->p.padding[1];
    int64_t eh = c->p.dilation[0] * (c->kh - 1) + 1, ew = c->p.dilation[1] * (c->kw - 1) + 1;
    if (h + 2 * ph < eh || w + 2 * pw < ew) {
        return pthcv_fail(PTHCV_ERR_ARG,
                          "conv2d: input %s padded by (%d, %d) is smaller than the dilated kernel (%lld x %lld)",
                          ops_shape(x), ph, pw, (long long)eh, (long long)ew);
    }
    if (c->p.padding_mode != PTHCV_PAD_ZEROS &&
        (c->p.padding_mode == PTHCV_PAD_REFLECT ? (ph >= h || pw >= w) : (ph > h || pw > w))) {
        return pthcv_fail(PTHCV_ERR_ARG, "conv2d: padding (%d, %d) is too large for %s padding of input %s", ph, pw,
                          ops_pad_mode_name(c->p.padding_mode), ops_shape(x));
    }
    oshape[0] = unbatched ? 1 : x->shape[0], oshape[1] = c->cout;
    oshape[2] = (h + 2 * ph - eh) / c->p.stride[0] + 1, oshape[3] = (w + 2 * pw - ew) / c->p.stride[1] + 1;
    if (residual) {
        int same = residual->dtype == PTHCV_FLOAT32 && residual->ndim == x->ndim;
        for (int i = 0; same && i < x->ndim; i++) same = residual->shape[i] == oshape[i + unbatched];
        if (!same) {
            return pthcv_fail(PTHCV_ERR_ARG,
                              "conv2d: residual must be float32 [%lld, %lld, %lld, %lld] like the output, got %s %s",
                              (long long)oshape[0], (long long)c->cout, (long long)oshape[2], (long long)oshape[3],
                              pthcv_dtype_name(residual->dtype), ops_shape(residual));
        }
    }
    return PTHCV_OK;
}

/* The path a convolution takes for an oh x ow output: 'd'epthwise,
 * Winograd tile size 4 or 2, or 0 (the GEMM). */
static int conv_path(const pthcv_conv2d *c, int64_t oh, int64_t ow)
{
    if (c->depthwise) return 'd';
    if (c->gconv) return 'g';
    return c->wino ? pthcv_wino_tile(c->cin_g, c->cout, oh, ow) : 0;
}

/* Runs path on cx for batch images into out (planes cx->ocs apart, images
 * cx->obs apart), step images a call. */
static int conv_images(pthcv_conv2d *c, int path, const conv_ctx *cx, int64_t batch, int64_t step, float *out,
                       const float *res)
{
    int64_t in_img = cx->cin * cx->h * cx->w, res_img = c->cout * cx->oh * cx->ow;
    int st = PTHCV_OK;
    for (int64_t i = 0; st == PTHCV_OK && i < batch; i += step) {
        conv_ctx ci = *cx;
        ci.x = cx->x + i * in_img;
        float *o = out + i * cx->obs;
        const float *r = res ? res + i * res_img : NULL;
        st = path == 'd' ? forward_depthwise(c, &ci, step, o, r)
            : path == 'g' ? forward_gconv(c, &ci, step, o, r)
            : path       ? forward_wino(c, path, &ci, step, o, r)
                         : forward_gemm(c, &ci, step, o, r);
    }
    return st;
}

/* The output into a new tensor (dst NULL), or into dst; returns the output
 * (a new reference: dst retained), or NULL with the error set. */
static pthcv_tensor *conv2d_run(pthcv_conv2d *c, pthcv_tensor *x, pthcv_tensor *residual, pthcv_tensor *dst)
{
    PTHCV_PROFILE_OP("conv2d");
    OPS_REAL(x);
    OPS_REAL(residual);
    int64_t oshape[4];
    if (conv_check(c, x, residual, oshape) != PTHCV_OK) return NULL;
    int unbatched = x->ndim == 3;
    int64_t batch = oshape[0], oh = oshape[2], ow = oshape[3], cin = c->cin_g * c->groups;
    int64_t h = x->shape[x->ndim - 2], w = x->shape[x->ndim - 1];
    int ph = c->p.padding[0], pw = c->p.padding[1];
    const float *res = NULL;
    pthcv_tensor *rc = NULL, *xc = NULL, *xp = NULL, *y = NULL;
    if (residual && (!(rc = pthcv_tensor_contiguous(residual)) || !(res = pthcv_tensor_data(rc)))) goto done;
    if (!(xc = pthcv_tensor_contiguous(x))) goto done;
    const float *xd = pthcv_tensor_data(xc);
    if (!xd) goto done;
    conv_ctx cx = {.c = c,
                   .x = xd,
                   .cin = cin,
                   .h = h,
                   .w = w,
                   .oh = oh,
                   .ow = ow,
                   .ph = ph,
                   .pw = pw,
                   .ocs = oh * ow,
                   .obs = c->cout * oh * ow};
    if (c->p.padding_mode != PTHCV_PAD_ZEROS && (ph || pw)) {
        if (!(xp = pad_copy(xd, batch * cin, h, w, ph, pw, c->p.padding_mode))) goto done;
        cx.x = pthcv_tensor_data(xp), cx.h = h + 2 * ph, cx.w = w + 2 * pw, cx.ph = cx.pw = 0;
    }
    int path = conv_path(c, oh, ow);
    PTHCV_PROFILE_LABEL("%s %lldx%lld/%d%s", c->depthwise ? "dwconv" : "conv", (long long)c->kh, (long long)c->kw,
                        c->p.stride[0],
                        path == 'd'         ? (c->p.dilation[0] > 1 ? " dilated" : "")
                            : path == 'g'   ? " direct grouped"
                            : path == 4     ? " winograd F(4,3)"
                            : path == 2     ? " winograd F(2,3)"
                            : c->groups > 1 ? " gemm grouped"
                                            : " gemm");
    /* every path writes every output value: into dst directly where the
     * path can write its layout, else through a new tensor copied into it.
     * Every path writes an image's planes when they are contiguous (a
     * channel slice of a concatenation: one image a call when images lie
     * further apart); depthwise writes any plane strides, the GEMM any
     * without a residual, which shares the output's layout. */
    int64_t cs = oh * ow, bs = c->cout * oh * ow;
    if (dst && dst_layout(dst, 4 - unbatched, oshape + unbatched, &cs, &bs) != PTHCV_OK) goto done;
    if (dst && dst->storage == x->storage) {
        pthcv_fail(PTHCV_ERR_ARG, "conv2d: the destination shares the input's storage");
        goto done;
    }
    int planes = cs == oh * ow, whole = planes && (batch == 1 || bs == c->cout * cs); /* whole: a new tensor's layout */
    int direct = dst && (planes || path == 'd' || path == 'g' || (!residual && path == 0));
    if (direct) {
        cx.ocs = cs, cx.obs = bs;
        y = pthcv_tensor_retain(dst);
    } else if (!(y = pthcv_tensor_new_uninit(PTHCV_FLOAT32, 4 - unbatched, oshape + unbatched))) {
        goto done;
    }
    float *out = pthcv_tensor_data(y);
    if (!out) {
        pthcv_tensor_release(y);
        y = NULL;
        goto done;
    }
    int st = conv_images(c, path, &cx, batch, direct && planes && !whole ? 1 : batch, out, res);
    if (st == PTHCV_OK && dst && !direct) {
        float *d = pthcv_tensor_data(dst);
        if (!d) {
            st = PTHCV_ERR_ARG;
        } else {
            int64_t src_stride[4] = {c->cout * oh * ow, oh * ow, ow, 1}, dst_stride[4] = {bs, cs, ow, 1};
            ops_copy_strided(d, dst_stride + unbatched, out, src_stride + unbatched, 4 - unbatched, oshape + unbatched);
            pthcv_tensor_release(y);
            y = pthcv_tensor_retain(dst);
        }
    }
    if (st != PTHCV_OK) {
        pthcv_tensor_release(y);
        y = NULL;
    }
done:
    pthcv_tensor_release(rc);
    pthcv_tensor_release(xc);
    pthcv_tensor_release(xp);
    return y;
}

pthcv_tensor *pthcv_conv2d_forward(pthcv_conv2d *c, pthcv_tensor *x, pthcv_tensor *residual)
{
    return conv2d_run(c, x, residual, NULL);
}

int pthcv_conv2d_forward_into(pthcv_conv2d *c, pthcv_tensor *x, pthcv_tensor *residual, pthcv_tensor *out)
{
    if (!out) return pthcv_fail(PTHCV_ERR_ARG, "conv2d: no destination");
    pthcv_tensor *y = conv2d_run(c, x, residual, out);
    if (!y) return pthcv_last_status();
    pthcv_tensor_release(y);
    return PTHCV_OK;
}

pthcv_tensor *pthcv_conv2d_forward_cat(int32_t n, pthcv_conv2d *const *convs, pthcv_tensor *x)
{
    OPS_REAL(x); /* each convolution is profiled on its own (conv2d_run) */
    if (n < 1 || !convs) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "conv2d_cat: no convolutions");
    int64_t oshape[4], first[4], total = 0;
    for (int i = 0; i < n; i++) {
        if (conv_check(convs[i], x, NULL, oshape) != PTHCV_OK) return NULL;
        if (i == 0) memcpy(first, oshape, sizeof first);
        if (oshape[2] != first[2] || oshape[3] != first[3])
            return PTHCV_FAIL_NULL(
                PTHCV_ERR_ARG, "conv2d_cat: convolution %d gives a %lldx%lld output, convolution 0 %lldx%lld", i,
                (long long)oshape[2], (long long)oshape[3], (long long)first[2], (long long)first[3]);
        total += convs[i]->cout;
    }
    int unbatched = x->ndim == 3;
    int64_t plane = first[2] * first[3], c0 = 0;
    int64_t yshape[4] = {first[0], total, first[2], first[3]}, ystride[4] = {total * plane, plane, first[3], 1};
    pthcv_tensor *y = pthcv_tensor_new_uninit(PTHCV_FLOAT32, 4 - unbatched, yshape + unbatched);
    /* each convolution writes its channels of y through a view */
    for (int i = 0; y && i < n; c0 += convs[i]->cout, i++) {
        int64_t vshape[4] = {first[0], convs[i]->cout, first[2], first[3]};
        pthcv_tensor *v = pthcv_tensor_view(y, 4 - unbatched, vshape + unbatched, ystride + unbatched, c0 * plane);
        pthcv_tensor *r = v ? conv2d_run(convs[i], x, NULL, v) : NULL;
        pthcv_tensor_release(v);
        if (!r) {
            pthcv_tensor_release(y);
            return NULL;
        }
        pthcv_tensor_release(r);
    }
    return y;
}

/* ---- what fused steps elsewhere read (conv2d_view.h) ---------------------------------- */
void pthcv_conv2d_view_of(const pthcv_conv2d *c, pthcv_conv2d_view *v)
{
    *v = (pthcv_conv2d_view){.cout = c->cout,
                             .cin_g = c->cin_g,
                             .kh = c->kh,
                             .kw = c->kw,
                             .groups = c->groups,
                             .p = c->p,
                             .depthwise = c->depthwise,
                             .half = c->half,
                             .w = c->depthwise ? c->w : NULL,
                             .bias = c->bias};
}

const void *pthcv_conv2d_gemm_a(pthcv_conv2d *c, const pthcv_gemm_kernel *k, int64_t *sstride)
{
    const void *w = gemm_form(c, 0, k, sstride);
    if (!w) pthcv_fail(PTHCV_ERR_NOMEM, "conv2d: out of memory packing the weights");
    return w;
}
