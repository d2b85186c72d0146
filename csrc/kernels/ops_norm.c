/*
 * ops_norm.c -- eval-mode normalisations: pthcv_batch_norm (running
 * statistics), pthcv_layer_norm and pthcv_group_norm (statistics of the
 * input, biased variance, as torch).
 *
 * Batch norm follows torch's CPU kernel in float32: per channel
 *   alpha = w / sqrt(var + eps), beta = b - mean * alpha, y = x * alpha + beta.
 * Layer and group norm take the mean and variance of each group in double
 * (two passes, OPS_LANES lanes, so every instruction set gives the same
 * bits), then y = (x * rstd - mean * rstd) * w + b in float32.
 * weight and bias may be NULL (1 and 0).
 */
#include "ops.h"
#include <math.h>
#include <stdlib.h>

/* Optional per-channel parameter: NULL, or float32 with `n` values. */
static pthcv_tensor *param(pthcv_tensor *t, int64_t n, const char *fn, const char *what, pthcv_tensor *x,
                           const float **data, int *failed)
{
    *data = NULL;
    if (!t) return NULL;
    pthcv_tensor *c = ops_input(t, fn, what, data);
    if (!c) {
        *failed = 1;
        return NULL;
    }
    if (c->numel != n) {
        pthcv_fail(PTHCV_ERR_ARG, "%s: %s has shape %s (%lld values), input %s needs %lld", fn, what, ops_shape(t),
                   (long long)c->numel, ops_shape(x), (long long)n);
        pthcv_tensor_release(c);
        *data = NULL;
        *failed = 1;
        return NULL;
    }
    return c;
}

/* y = x * a + b */
PTHCV_SIMD
static void affine_row(float *y, const float *x, int64_t n, float a, float b)
{
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * a + b;
}

/* ---- batch norm --------------------------------------------------------- */

typedef struct {
    const float *x;
    float *y;
    const float *alpha, *beta;
    int64_t channels, inner;
} bn_ctx;

static void bn_task(void *vctx, int64_t begin, int64_t end)
{
    bn_ctx *c = vctx;
    for (int64_t p = begin; p < end; p++) {
        int64_t ch = p % c->channels;
        affine_row(c->y + p * c->inner, c->x + p * c->inner, c->inner, c->alpha[ch], c->beta[ch]);
    }
}

pthcv_tensor *pthcv_batch_norm(pthcv_tensor *x, pthcv_tensor *running_mean, pthcv_tensor *running_var,
                               pthcv_tensor *weight, pthcv_tensor *bias, double eps)
{
    PTHCV_PROFILE_OP("batch_norm");
    const char *fn = "batch_norm";
    if (x && x->ndim < 2)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: input %s needs at least 2 dimensions [N, C, ...]", fn, ops_shape(x));
    if (!running_mean || !running_var)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: running_mean and running_var are required (eval mode)", fn);
    const float *xd, *md, *vd, *wd, *bd;
    pthcv_tensor *xc = ops_input(x, fn, "input", &xd);
    if (!xc) return NULL;
    int64_t C = x->shape[1];
    int failed = 0;
    pthcv_tensor *mc = param(running_mean, C, fn, "running_mean", x, &md, &failed);
    pthcv_tensor *vc = failed ? NULL : param(running_var, C, fn, "running_var", x, &vd, &failed);
    pthcv_tensor *wc = failed ? NULL : param(weight, C, fn, "weight", x, &wd, &failed);
    pthcv_tensor *bc = failed ? NULL : param(bias, C, fn, "bias", x, &bd, &failed);
    pthcv_tensor *out = NULL;
    float *ab = NULL;
    if (failed) goto done;
    float *y;
    out = ops_output(x->ndim, x->shape, &y);
    if (!out || x->numel == 0) goto done;
    ab = malloc((size_t)C * 2 * sizeof *ab);
    if (!ab) {
        pthcv_tensor_release(out);
        out = PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory", fn);
        goto done;
    }
    for (int64_t ch = 0; ch < C; ch++) {
        float invstd = 1.0f / sqrtf(vd[ch] + (float)eps);
        float a = invstd * (wd ? wd[ch] : 1.0f);
        ab[ch] = a;
        ab[C + ch] = (bd ? bd[ch] : 0.0f) - md[ch] * a;
    }
    bn_ctx c = {xd, y, ab, ab + C, C, x->numel / (x->shape[0] * C)};
    pthcv_parallel_for(x->shape[0] * C, ops_grain(c.inner), bn_task, &c);
done:
    free(ab);
    pthcv_tensor_release(xc);
    pthcv_tensor_release(mc);
    pthcv_tensor_release(vc);
    pthcv_tensor_release(wc);
    pthcv_tensor_release(bc);
    return out;
}

/* ---- layer norm ------------------------------------------------------------ */

/* mean and 1/sqrt(var + eps) of n values (n >= 1), in double */
static void moments(const float *x, int64_t n, double eps, double *mean, double *rstd)
{
    double m = ops_sum_f64(x, n) / (double)n;
    double var = ops_sumsq_dev_f64(x, n, m) / (double)n;
    *mean = m;
    *rstd = 1.0 / sqrt(var + eps);
}

/* y = (x * a + b) * w + c, elementwise w and c (either may be NULL) */
PTHCV_SIMD
static void norm_affine_row(float *y, const float *x, int64_t n, float a, float b, const float *w, const float *c)
{
    if (w && c)
        for (int64_t i = 0; i < n; i++) y[i] = (x[i] * a + b) * w[i] + c[i];
    else if (w)
        for (int64_t i = 0; i < n; i++) y[i] = (x[i] * a + b) * w[i];
    else if (c)
        for (int64_t i = 0; i < n; i++) y[i] = (x[i] * a + b) + c[i];
    else
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * a + b;
}

typedef struct {
    const float *x, *w, *b;
    float *y;
    int64_t n;
    double eps;
} ln_ctx;

static void ln_task(void *vctx, int64_t begin, int64_t end)
{
    ln_ctx *c = vctx;
    for (int64_t r = begin; r < end; r++) {
        const float *x = c->x + r * c->n;
        double mean, rstd;
        moments(x, c->n, c->eps, &mean, &rstd);
        norm_affine_row(c->y + r * c->n, x, c->n, (float)rstd, (float)(-mean * rstd), c->w, c->b);
    }
}

pthcv_tensor *pthcv_layer_norm(pthcv_tensor *x, int32_t normalized_ndim, pthcv_tensor *weight, pthcv_tensor *bias,
                               double eps)
{
    PTHCV_PROFILE_OP("layer_norm");
    const char *fn = "layer_norm";
    if (x && (normalized_ndim < 1 || normalized_ndim > x->ndim))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: cannot normalise the last %d dimensions of input %s", fn,
                               (int)normalized_ndim, ops_shape(x));
    const float *xd, *wd, *bd;
    pthcv_tensor *xc = ops_input(x, fn, "input", &xd);
    if (!xc) return NULL;
    int64_t n = 1;
    for (int d = x->ndim - normalized_ndim; d < x->ndim; d++) n *= x->shape[d];
    int failed = 0;
    pthcv_tensor *wc = param(weight, n, fn, "weight", x, &wd, &failed);
    pthcv_tensor *bc = failed ? NULL : param(bias, n, fn, "bias", x, &bd, &failed);
    pthcv_tensor *out = NULL;
    if (!failed) {
        float *y;
        out = ops_output(x->ndim, x->shape, &y);
        if (out && x->numel > 0) {
            ln_ctx c = {xd, wd, bd, y, n, eps};
            pthcv_parallel_for(x->numel / n, ops_grain(n * 3), ln_task, &c);
        }
    }
    pthcv_tensor_release(xc);
    pthcv_tensor_release(wc);
    pthcv_tensor_release(bc);
    return out;
}

/* ---- group norm ------------------------------------------------------------ */

typedef struct {
    const float *x, *w, *b;
    float *y;
    int64_t channels, per_group, inner; /* channels per group: per_group */
    double eps;
} gn_ctx;

/* over (sample, group) pairs: one contiguous span of per_group * inner */
static void gn_task(void *vctx, int64_t begin, int64_t end)
{
    gn_ctx *c = vctx;
    int64_t groups = c->channels / c->per_group, span = c->per_group * c->inner;
    for (int64_t p = begin; p < end; p++) {
        const float *x = c->x + p * span;
        float *y = c->y + p * span;
        double mean, rstd;
        moments(x, span, c->eps, &mean, &rstd);
        for (int64_t k = 0; k < c->per_group; k++) {
            int64_t ch = (p % groups) * c->per_group + k;
            double w = c->w ? c->w[ch] : 1.0, b = c->b ? c->b[ch] : 0.0;
            float a = (float)(rstd * w), s = (float)(b - mean * rstd * w);
            affine_row(y + k * c->inner, x + k * c->inner, c->inner, a, s);
        }
    }
}

pthcv_tensor *pthcv_group_norm(pthcv_tensor *x, int32_t groups, pthcv_tensor *weight, pthcv_tensor *bias, double eps)
{
    PTHCV_PROFILE_OP("group_norm");
    const char *fn = "group_norm";
    if (x && x->ndim < 2)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: input %s needs at least 2 dimensions [N, C, ...]", fn, ops_shape(x));
    if (x && (groups < 1 || x->shape[1] % groups))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: %d groups do not divide the %lld channels of input %s", fn,
                               (int)groups, (long long)x->shape[1], ops_shape(x));
    const float *xd, *wd, *bd;
    pthcv_tensor *xc = ops_input(x, fn, "input", &xd);
    if (!xc) return NULL;
    int64_t C = x->shape[1];
    int failed = 0;
    pthcv_tensor *wc = param(weight, C, fn, "weight", x, &wd, &failed);
    pthcv_tensor *bc = failed ? NULL : param(bias, C, fn, "bias", x, &bd, &failed);
    pthcv_tensor *out = NULL;
    if (!failed) {
        float *y;
        out = ops_output(x->ndim, x->shape, &y);
        if (out && x->numel > 0) {
            gn_ctx c = {xd, wd, bd, y, C, C / groups, x->numel / (x->shape[0] * C), eps};
            pthcv_parallel_for(x->shape[0] * groups, ops_grain(c.per_group * c.inner * 3), gn_task, &c);
        }
    }
    pthcv_tensor_release(xc);
    pthcv_tensor_release(wc);
    pthcv_tensor_release(bc);
    return out;
}
