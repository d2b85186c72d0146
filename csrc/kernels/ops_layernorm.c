/*
 * ops_layernorm.c -- LayerNorm over the channels of an NCHW map
 * (pthcv_layer_norm_channels): for every sample and pixel, the C values
 * along dimension 1 normalised, scaled and shifted per channel. This is
 * torch's layer_norm of x.permute(0, 2, 3, 1) permuted back (ConvNeXt's
 * LayerNorm2d), without the two transposing copies: the statistics of a
 * block of PB pixels are gathered channel by channel, vectorised across the
 * pixels, which are contiguous.
 *
 * As pthcv_layer_norm (ops_norm.c): mean and variance in double (biased
 * variance, two passes), then y = (x * rstd - mean * rstd) * w + b in
 * float32. Each pixel's sums run over the channels in order: results do not
 * depend on the blocking, the thread count or the instruction set.
 */
#include "ops.h"
#include <math.h>
#include <string.h>

enum { PB = 256 }; /* pixels per block */

typedef struct {
    const float *x, *w, *b;
    float *y;
    int64_t channels, pixels, nblocks; /* nblocks: pixel blocks per sample */
    double eps;
} lnc_ctx;

/* acc[p] += x[p] */
PTHCV_SIMD
static void add_column(double *acc, const float *x, int64_t n)
{
    for (int64_t p = 0; p < n; p++) acc[p] += (double)x[p];
}

/* acc[p] += (x[p] - mean[p])^2 */
PTHCV_SIMD
static void add_sq_dev(double *acc, const float *x, const double *mean, int64_t n)
{
    for (int64_t p = 0; p < n; p++) {
        double d = (double)x[p] - mean[p];
        acc[p] += d * d;
    }
}

/* y[p] = (x[p] * a[p] + s[p]) * w + c */
PTHCV_SIMD
static void normalise_column(float *y, const float *x, const float *a, const float *s, float w, float c, int64_t n)
{
    for (int64_t p = 0; p < n; p++) y[p] = (x[p] * a[p] + s[p]) * w + c;
}

static void lnc_task(void *vctx, int64_t begin, int64_t end)
{
    lnc_ctx *c = vctx;
    double mean[PB], var[PB];
    float a[PB], s[PB];
    for (int64_t t = begin; t < end; t++) {
        int64_t n = t / c->nblocks, p0 = (t % c->nblocks) * PB;
        int64_t np = c->pixels - p0 < PB ? c->pixels - p0 : PB;
        const float *x = c->x + n * c->channels * c->pixels + p0;
        float *y = c->y + n * c->channels * c->pixels + p0;
        memset(mean, 0, sizeof mean);
        memset(var, 0, sizeof var);
        for (int64_t ch = 0; ch < c->channels; ch++) add_column(mean, x + ch * c->pixels, np);
        for (int64_t p = 0; p < np; p++) mean[p] /= (double)c->channels;
        for (int64_t ch = 0; ch < c->channels; ch++) add_sq_dev(var, x + ch * c->pixels, mean, np);
        for (int64_t p = 0; p < np; p++) {
            double rstd = 1.0 / sqrt(var[p] / (double)c->channels + c->eps);
            a[p] = (float)rstd;
            s[p] = (float)(-mean[p] * rstd);
        }
        for (int64_t ch = 0; ch < c->channels; ch++)
            normalise_column(y + ch * c->pixels, x + ch * c->pixels, a, s, c->w ? c->w[ch] : 1.0f,
                             c->b ? c->b[ch] : 0.0f, np);
    }
}

/* weight or bias: NULL, or float32 with one value per channel */
static pthcv_tensor *channel_param(pthcv_tensor *t, int64_t channels, const char *what, pthcv_tensor *x,
                                   const float **data, int *failed)
{
    const char *fn = "pthcv_layer_norm_channels";
    *data = NULL;
    if (!t || *failed) return NULL;
    pthcv_tensor *c = ops_input(t, fn, what, data);
    if (c && c->numel != channels) {
        pthcv_fail(PTHCV_ERR_ARG, "%s: %s has shape %s, input %s has %lld channels", fn, what, ops_shape(t),
                   ops_shape(x), (long long)channels);
        pthcv_tensor_release(c);
        c = NULL;
    }
    if (!c) *failed = 1;
    return c;
}

pthcv_tensor *pthcv_layer_norm_channels(pthcv_tensor *x, pthcv_tensor *weight, pthcv_tensor *bias, double eps)
{
    const char *fn = "pthcv_layer_norm_channels";
    if (x && x->ndim < 2)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: input %s needs at least 2 dimensions [N, C, ...]", fn, ops_shape(x));
    const float *xd, *wd, *bd;
    pthcv_tensor *xc = ops_input(x, fn, "input", &xd);
    if (!xc) return NULL;
    int failed = 0;
    int64_t C = x->shape[1];
    pthcv_tensor *wc = channel_param(weight, C, "weight", x, &wd, &failed);
    pthcv_tensor *bc = channel_param(bias, C, "bias", x, &bd, &failed);
    pthcv_tensor *out = NULL;
    float *y;
    if (!failed && (out = ops_output(x->ndim, x->shape, &y)) && x->numel > 0) {
        lnc_ctx c = {xd, wd, bd, y, C, x->numel / (x->shape[0] * C), 0, eps};
        c.nblocks = (c.pixels + PB - 1) / PB;
        int64_t per = C * (c.pixels < PB ? c.pixels : PB);
        pthcv_parallel_for(x->shape[0] * c.nblocks, ops_grain(per * 3), lnc_task, &c);
    }
    pthcv_tensor_release(xc);
    pthcv_tensor_release(wc);
    pthcv_tensor_release(bc);
    return out;
}
