/*
 * ops_reduce.c -- sum, mean, max and min over a set of dimensions
 * (pthcv_reduce; torch.sum / torch.mean / torch.amax / torch.amin).
 *
 * Sums are accumulated in double and rounded once (more accurate than
 * torch's float cascade; equal to within the usual tolerance). max/min give
 * NaN when any element is NaN, as torch.amax/amin. Over an empty set: sum 0,
 * mean NaN, max/min an error, as torch.
 *
 * Layout: the contiguous input's dimensions (size-1 ones dropped) are merged
 * into runs of kept and reduced ones. [kept, reduced] reduces rows;
 * [kept, reduced, kept] reduces columns, vectorised across the inner kept
 * run; any other pattern is first copied into [kept..., reduced...] order.
 * Threads split output elements only.
 */
#include "ops.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *reduce_name(int op)
{
    static const char *names[] = {"sum", "mean", "max", "min"};
    return op >= 0 && op <= PTHCV_REDUCE_MIN ? names[op] : "?";
}

/* ---- rows: out[m] = reduce(x[m, 0..r)) ---------------------------------------- */

typedef struct {
    const float *x;
    float *y;
    int64_t r, b, nblocks; /* reduced count; inner kept run (columns) and its blocks */
    int op;
} reduce_ctx;

static void rows_task(void *vctx, int64_t begin, int64_t end)
{
    reduce_ctx *c = vctx;
    for (int64_t m = begin; m < end; m++) {
        const float *x = c->x + m * c->r;
        switch (c->op) {
        case PTHCV_REDUCE_SUM: c->y[m] = (float)ops_sum_f64(x, c->r); break;
        case PTHCV_REDUCE_MEAN: c->y[m] = (float)(ops_sum_f64(x, c->r) / (double)c->r); break;
        case PTHCV_REDUCE_MAX: c->y[m] = ops_max_f32(x, c->r); break;
        case PTHCV_REDUCE_MIN: c->y[m] = ops_min_f32(x, c->r); break;
        }
    }
}

/* ---- columns: out[a, j] = reduce(x[a, 0..r), j]) over a block of j -------------- */

enum { COLUMNS = 256 };

PTHCV_SIMD
static void columns_sum(float *y, const float *x, int64_t r, int64_t stride, int64_t w, double scale)
{
    double acc[COLUMNS];
    for (int64_t j = 0; j < w; j++) acc[j] = 0.0;
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < w; j++) acc[j] += (double)x[i * stride + j];
    for (int64_t j = 0; j < w; j++) y[j] = (float)(acc[j] * scale);
}

PTHCV_SIMD
static void columns_max(float *y, const float *x, int64_t r, int64_t stride, int64_t w, int is_min)
{
    for (int64_t j = 0; j < w; j++) y[j] = x[j];
    if (is_min) {
        for (int64_t i = 1; i < r; i++)
            for (int64_t j = 0; j < w; j++) {
                float v = x[i * stride + j];
                y[j] = ((v < y[j]) | (v != v)) ? v : y[j];
            }
    } else {
        for (int64_t i = 1; i < r; i++)
            for (int64_t j = 0; j < w; j++) {
                float v = x[i * stride + j];
                y[j] = ((v > y[j]) | (v != v)) ? v : y[j];
            }
    }
}

static void columns_task(void *vctx, int64_t begin, int64_t end)
{
    reduce_ctx *c = vctx;
    for (int64_t t = begin; t < end; t++) {
        int64_t a = t / c->nblocks, j0 = (t % c->nblocks) * COLUMNS;
        int64_t w = c->b - j0 < COLUMNS ? c->b - j0 : COLUMNS;
        const float *x = c->x + a * c->r * c->b + j0;
        float *y = c->y + a * c->b + j0;
        if (c->op == PTHCV_REDUCE_SUM || c->op == PTHCV_REDUCE_MEAN)
            columns_sum(y, x, c->r, c->b, w, c->op == PTHCV_REDUCE_MEAN ? 1.0 / (double)c->r : 1.0);
        else columns_max(y, x, c->r, c->b, w, c->op == PTHCV_REDUCE_MIN);
    }
}

pthcv_tensor *pthcv_reduce(pthcv_tensor *x, int32_t op, int32_t ndims, const int32_t *dims, int32_t keepdim)
{
    PTHCV_PROFILE_OP("reduce");
    static const char *const names[] = {"sum", "mean", "amax", "amin"};
    const char *fn = op >= PTHCV_REDUCE_SUM && op <= PTHCV_REDUCE_MIN ? names[op] : "reduction";
    if (op < PTHCV_REDUCE_SUM || op > PTHCV_REDUCE_MIN)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: unknown reduction %d", fn, (int)op);
    if (ndims < 0 || (ndims > 0 && !dims))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: bad dimension list (%d)", fn, (int)ndims);
    const float *xd;
    pthcv_tensor *xc = ops_input(x, fn, "input", &xd);
    if (!xc) return NULL;
    int nd = x->ndim;
    pthcv_tensor *out = NULL, *perm = NULL;

    /* which dimensions go; none listed: all of them */
    int reduced[PTHCV_MAX_DIMS] = {0};
    for (int i = 0; i < ndims; i++) {
        int d = ops_dim(dims[i], nd);
        if (d < 0) {
            pthcv_fail(PTHCV_ERR_ARG, "%s: dimension %d out of range for input %s", fn, (int)dims[i], ops_shape(x));
            goto done;
        }
        if (nd > 0 && reduced[d]) {
            pthcv_fail(PTHCV_ERR_ARG, "%s: dimension %d listed twice", fn, d);
            goto done;
        }
        reduced[d] = 1;
    }
    if (ndims == 0)
        for (int d = 0; d < nd; d++) reduced[d] = 1;

    int64_t out_shape[PTHCV_MAX_DIMS], kept = 1, count = 1;
    int out_nd = 0;
    for (int d = 0; d < nd; d++) {
        if (reduced[d]) count *= x->shape[d];
        else kept *= x->shape[d];
        if (!reduced[d] || keepdim) out_shape[out_nd++] = reduced[d] ? 1 : x->shape[d];
    }
    if (count == 0 && kept > 0 && (op == PTHCV_REDUCE_MAX || op == PTHCV_REDUCE_MIN)) {
        pthcv_fail(PTHCV_ERR_ARG, "%s: %s over an empty set of elements (input %s)", fn, reduce_name(op), ops_shape(x));
        goto done;
    }
    float *y;
    out = ops_output(out_nd, out_shape, &y);
    if (!out || kept == 0) goto done;
    if (count == 0) {
        for (int64_t i = 0; i < kept; i++) y[i] = op == PTHCV_REDUCE_SUM ? 0.0f : NAN;
        goto done;
    }

    /* runs of kept / reduced dimensions, size-1 ones dropped */
    int nruns = 0, run_red[PTHCV_MAX_DIMS];
    int64_t run_size[PTHCV_MAX_DIMS];
    for (int d = 0; d < nd; d++) {
        if (x->shape[d] == 1) continue;
        if (nruns > 0 && run_red[nruns - 1] == reduced[d]) {
            run_size[nruns - 1] *= x->shape[d];
        } else {
            run_red[nruns] = reduced[d];
            run_size[nruns++] = x->shape[d];
        }
    }
    reduce_ctx c = {xd, y, count, 1, 1, op};
    int first = nruns > 0 && !run_red[0] ? 1 : 0; /* a leading kept run */
    if (nruns - first == 2 && run_red[first] && !run_red[first + 1]) {
        c.b = run_size[first + 1];
        c.nblocks = (c.b + COLUMNS - 1) / COLUMNS;
        int64_t a = kept / c.b;
        pthcv_parallel_for(a * c.nblocks, ops_grain(count * (c.b < COLUMNS ? c.b : COLUMNS)), columns_task, &c);
        goto done;
    }
    if (nruns - first > 1) {
        /* interleaved: copy into [kept..., reduced...] order */
        int64_t shape[PTHCV_MAX_DIMS], stride[PTHCV_MAX_DIMS];
        int k = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int d = 0; d < nd; d++)
                if (reduced[d] == pass) {
                    shape[k] = xc->shape[d];
                    stride[k++] = xc->stride[d];
                }
        pthcv_tensor *v = pthcv_tensor_view(xc, nd, shape, stride, xc->offset);
        perm = v ? pthcv_tensor_contiguous(v) : NULL;
        pthcv_tensor_release(v);
        if (!perm || !(c.x = pthcv_tensor_data(perm))) {
            pthcv_tensor_release(out);
            out = NULL;
            goto done;
        }
    }
    pthcv_parallel_for(kept, ops_grain(count), rows_task, &c);
done:
    pthcv_tensor_release(perm);
    pthcv_tensor_release(xc);
    return out;
}
