/*
 * ops_softmax.c -- softmax and log-softmax along one dimension
 * (pthcv_softmax), as torch computes them: the row's maximum subtracted
 * first, exp in float32, the sum in float32.
 *
 *   softmax:     y = exp(x - max) / sum(exp(x - max))
 *   log_softmax: y = x - max - log(sum(exp(x - max)))
 *
 * A row of all -inf gives NaN, as in torch. The tensor is seen as
 * [outer, D, inner] around the dimension; with inner == 1 the rows are
 * contiguous, otherwise blocks of up to BLOCK inner positions are processed
 * together, vectorised across them. Threads split rows / blocks only.
 */
#include "ops.h"
#include <math.h>

enum { BLOCK = 256 };

typedef struct {
    const float *x;
    float *y;
    int64_t outer, dim, inner, nblocks; /* nblocks: inner blocks per outer index */
    int log;
} softmax_ctx;

/* the exp step: y = exp(x - m), with the scalar libm expf */
static void exp_shifted(float *y, const float *x, int64_t n, float m)
{
    for (int64_t i = 0; i < n; i++) y[i] = expf(x[i] - m);
}

PTHCV_SIMD
static void scale_row(float *y, int64_t n, float s)
{
    for (int64_t i = 0; i < n; i++) y[i] *= s;
}

PTHCV_SIMD
static void sub_row(float *y, const float *x, int64_t n, float s)
{
    for (int64_t i = 0; i < n; i++) y[i] = x[i] - s;
}

static void softmax_rows(void *vctx, int64_t begin, int64_t end)
{
    softmax_ctx *c = vctx;
    int64_t n = c->dim;
    for (int64_t r = begin; r < end; r++) {
        const float *x = c->x + r * n;
        float *y = c->y + r * n;
        float m = ops_max_f32(x, n);
        exp_shifted(y, x, n, m);
        float s = ops_sum_f32(y, n);
        if (c->log) sub_row(y, x, n, m + logf(s));
        else scale_row(y, n, 1.0f / s);
    }
}

/* One block of w <= BLOCK inner positions: each position's column of D
 * values at stride `inner` goes through the same steps as a row, the
 * additions in the order of the column. */
PTHCV_SIMD
static void softmax_block(float *y, const float *x, int64_t dim, int64_t inner, int64_t w, int log)
{
    float m[BLOCK], s[BLOCK];
    for (int64_t j = 0; j < w; j++) {
        m[j] = -INFINITY;
        s[j] = 0.0f;
    }
    for (int64_t d = 0; d < dim; d++)
        for (int64_t j = 0; j < w; j++) {
            float v = x[d * inner + j];
            m[j] = ((v > m[j]) | (v != v)) ? v : m[j];
        }
    for (int64_t d = 0; d < dim; d++) {
        for (int64_t j = 0; j < w; j++) y[d * inner + j] = expf(x[d * inner + j] - m[j]);
        for (int64_t j = 0; j < w; j++) s[j] += y[d * inner + j];
    }
    if (log) {
        for (int64_t j = 0; j < w; j++) s[j] = m[j] + logf(s[j]);
        for (int64_t d = 0; d < dim; d++)
            for (int64_t j = 0; j < w; j++) y[d * inner + j] = x[d * inner + j] - s[j];
    } else {
        for (int64_t j = 0; j < w; j++) s[j] = 1.0f / s[j];
        for (int64_t d = 0; d < dim; d++)
            for (int64_t j = 0; j < w; j++) y[d * inner + j] *= s[j];
    }
}

static void softmax_blocks(void *vctx, int64_t begin, int64_t end)
{
    softmax_ctx *c = vctx;
    for (int64_t b = begin; b < end; b++) {
        int64_t o = b / c->nblocks, j0 = (b % c->nblocks) * BLOCK;
        int64_t w = c->inner - j0 < BLOCK ? c->inner - j0 : BLOCK;
        int64_t off = o * c->dim * c->inner + j0;
        softmax_block(c->y + off, c->x + off, c->dim, c->inner, w, c->log);
    }
}

pthcv_tensor *pthcv_softmax(pthcv_tensor *x, int32_t dim, int32_t log)
{
    PTHCV_PROFILE_OP("softmax");
    const char *fn = log ? "log_softmax" : "softmax";
    const float *xd;
    pthcv_tensor *xc = ops_input(x, fn, "input", &xd);
    if (!xc) return NULL;
    int d = ops_dim(dim, x->ndim);
    if (d < 0) {
        pthcv_tensor_release(xc);
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: dimension %d out of range for input %s", fn, (int)dim, ops_shape(x));
    }
    float *y;
    pthcv_tensor *out = ops_output(x->ndim, x->shape, &y);
    if (out && x->numel > 0) {
        softmax_ctx c = {xd, y, 1, x->ndim ? x->shape[d] : 1, 1, 1, log ? 1 : 0};
        for (int i = 0; i < d; i++) c.outer *= x->shape[i];
        for (int i = d + 1; i < x->ndim; i++) c.inner *= x->shape[i];
        if (c.inner == 1) {
            pthcv_parallel_for(c.outer, ops_grain(c.dim * 8), softmax_rows, &c);
        } else {
            c.nblocks = (c.inner + BLOCK - 1) / BLOCK;
            int64_t per = c.dim * (c.inner < BLOCK ? c.inner : BLOCK);
            pthcv_parallel_for(c.outer * c.nblocks, ops_grain(per * 8), softmax_blocks, &c);
        }
    }
    pthcv_tensor_release(xc);
    return out;
}
