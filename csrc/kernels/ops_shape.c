/*
 * ops_shape.c -- data movement: pthcv_cat (torch.cat) and pthcv_pad (F.pad:
 * constant, reflect, replicate, circular over any number of trailing
 * dimensions). Both copy values unchanged, so they are exact.
 */
#include "ops.h"
#include <stdlib.h>
#include <string.h>

/* ---- cat -------------------------------------------------------------------- */

typedef struct {
    int32_t n;
    pthcv_tensor *const *xs;
    const float *const *data;
    float *y;
    int dim;
    int64_t outer, out_row; /* out_row: the output's elements per outer index */
    const int64_t *start;   /* where input i starts along dim */
} cat_ctx;

/* over (outer index, input) pairs: copies input i's block of outer index o */
static void cat_task(void *vctx, int64_t begin, int64_t end)
{
    cat_ctx *c = vctx;
    for (int64_t t = begin; t < end; t++) {
        int64_t o = t / c->n;
        int i = (int)(t % c->n);
        pthcv_tensor *x = c->xs[i];
        if (!c->data[i]) continue;
        int nd = x->ndim, inner_nd = nd - c->dim;
        int64_t inner = 1;
        for (int d = c->dim + 1; d < nd; d++) inner *= x->shape[d];
        float *dst = c->y + o * c->out_row + c->start[i] * inner;
        /* the source block: x's dims dim.. at outer index o */
        const float *src = c->data[i];
        int64_t rest = o;
        for (int d = c->dim - 1; d >= 0; d--) {
            src += (rest % x->shape[d]) * x->stride[d];
            rest /= x->shape[d];
        }
        int64_t dst_stride[PTHCV_MAX_DIMS], run = 1;
        for (int d = nd - 1; d >= c->dim; d--) {
            dst_stride[d - c->dim] = run;
            run *= x->shape[d];
        }
        ops_copy_strided(dst, dst_stride, src, x->stride + c->dim, inner_nd, x->shape + c->dim);
    }
}

static pthcv_tensor *cat_float(int32_t n, pthcv_tensor *const *xs, int32_t dim)
{
    const char *fn = "cat";
    if (n < 1 || !xs) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: no tensors to concatenate", fn);
    /* torch skips 1-d empty tensors (legacy); the first other one sets the shape */
    pthcv_tensor *ref = NULL;
    for (int i = 0; i < n; i++) {
        if (!xs[i]) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: tensor %d is missing", fn, i);
        if (xs[i]->dtype != PTHCV_FLOAT32) {
            const char *name = pthcv_dtype_name(xs[i]->dtype);
            return PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED, "%s: tensor %d must be float32, got %s", fn, i,
                                   name ? name : "an unknown dtype");
        }
        if (!ref && !(xs[i]->ndim == 1 && xs[i]->numel == 0)) ref = xs[i];
    }
    if (!ref) ref = xs[0];
    if (ref->ndim == 0)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: zero-dimensional tensors cannot be concatenated", fn);
    int d = ops_dim(dim, ref->ndim);
    if (d < 0)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: dimension %d out of range for tensors of shape %s", fn, (int)dim,
                               ops_shape(ref));
    int64_t shape[PTHCV_MAX_DIMS];
    memcpy(shape, ref->shape, sizeof shape);
    shape[d] = 0;
    int64_t *start = calloc((size_t)n, sizeof *start);
    const float **data = calloc((size_t)n, sizeof *data);
    pthcv_tensor *out = NULL;
    if (!start || !data) {
        pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", fn);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        pthcv_tensor *x = xs[i];
        if (x->ndim == 1 && x->numel == 0 && x != ref) continue;
        int same = x->ndim == ref->ndim;
        for (int k = 0; same && k < ref->ndim; k++) same = k == d || x->shape[k] == ref->shape[k];
        if (!same) {
            pthcv_fail(PTHCV_ERR_ARG,
                       "%s: tensor %d of shape %s does not match tensor of shape %s except in dimension %d", fn, i,
                       ops_shape(x), ops_shape(ref), d);
            goto done;
        }
        start[i] = shape[d];
        shape[d] += x->shape[d];
        if (x->numel > 0 && !(data[i] = pthcv_tensor_data(x))) goto done;
    }
    float *y;
    out = ops_output(ref->ndim, shape, &y);
    if (!out || out->numel == 0) goto done;
    cat_ctx c = {n, xs, data, y, d, 1, 1, start};
    for (int k = 0; k < d; k++) c.outer *= shape[k];
    c.out_row = out->numel / c.outer;
    pthcv_parallel_for(c.outer * n, ops_grain(c.out_row / n + 1), cat_task, &c);
done:
    free(start);
    free(data);
    return out;
}

/* quantized inputs (int8 layers' outputs) are concatenated as their real values */
pthcv_tensor *pthcv_cat(int32_t n, pthcv_tensor *const *xs, int32_t dim)
{
    PTHCV_PROFILE_OP("cat");
    int quantized = 0;
    for (int i = 0; xs && i < n; i++) quantized |= xs[i] && pthcv_dtype_is_quantized(xs[i]->dtype);
    if (!quantized) return cat_float(n, xs, dim);
    pthcv_tensor **real = calloc((size_t)n, sizeof *real), **own = calloc((size_t)n, sizeof *own);
    pthcv_tensor *y = NULL;
    if (real && own) {
        for (int i = 0; i < n; i++) {
            real[i] = xs[i];
            own[i] = ops_dequantized(&real[i]);
        }
        y = cat_float(n, real, dim);
        for (int i = 0; i < n; i++) pthcv_tensor_release(own[i]);
    } else {
        pthcv_fail(PTHCV_ERR_NOMEM, "pthcv_cat: out of memory");
    }
    free(real), free(own);
    return y;
}

/* ---- pad -------------------------------------------------------------------- */

typedef struct {
    const float *x;
    float *y;
    int ndim;
    const int64_t *in_shape, *out_shape;
    int64_t *const *map; /* per dim: output index -> input index, or -1 for the fill value */
    float value;
} pad_ctx;

/* over output rows (all dims but the last) */
static void pad_task(void *vctx, int64_t begin, int64_t end)
{
    pad_ctx *c = vctx;
    int last = c->ndim - 1;
    int64_t n = c->out_shape[last], in_n = c->in_shape[last];
    const int64_t *m = c->map[last];
    for (int64_t r = begin; r < end; r++) {
        float *y = c->y + r * n;
        /* the source row: each outer output index mapped to an input index */
        int64_t off = 0, stride = in_n, rest = r;
        int fill = 0;
        for (int d = last - 1; d >= 0; d--) {
            int64_t i = c->map[d][rest % c->out_shape[d]];
            rest /= c->out_shape[d];
            if (i < 0) fill = 1;
            off += i * stride;
            stride *= c->in_shape[d];
        }
        if (fill) {
            for (int64_t j = 0; j < n; j++) y[j] = c->value;
            continue;
        }
        const float *x = c->x + off;
        for (int64_t j = 0; j < n; j++) y[j] = m[j] < 0 ? c->value : x[m[j]];
    }
}

pthcv_tensor *pthcv_pad(pthcv_tensor *x, int32_t npairs, const int64_t *pads, int32_t mode, double value)
{
    PTHCV_PROFILE_OP("pad");
    const char *fn = "pad";
    if (mode < PTHCV_PAD_ZEROS || mode > PTHCV_PAD_CONSTANT)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: unknown padding mode %d", fn, (int)mode);
    if (npairs < 0 || (npairs > 0 && !pads))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: bad padding list (%d pairs)", fn, (int)npairs);
    if (x && npairs > x->ndim)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: %d padding pairs for input %s of %d dimensions", fn, (int)npairs,
                               ops_shape(x), x->ndim);
    if (mode == PTHCV_PAD_ZEROS) value = 0.0;
    const float *xd;
    pthcv_tensor *xc = ops_input(x, fn, "input", &xd);
    if (!xc) return NULL;
    int nd = x->ndim;
    int64_t out_shape[PTHCV_MAX_DIMS];
    int64_t *map[PTHCV_MAX_DIMS] = {0};
    pthcv_tensor *out = NULL;
    for (int d = 0; d < nd; d++) {
        int k = nd - 1 - d; /* pair k pads dimension d */
        int64_t n = x->shape[d], left = k < npairs ? pads[2 * k] : 0, right = k < npairs ? pads[2 * k + 1] : 0;
        out_shape[d] = n + left + right;
        int constant = mode == PTHCV_PAD_ZEROS || mode == PTHCV_PAD_CONSTANT;
        if (out_shape[d] < (constant ? 0 : 1)) {
            pthcv_fail(PTHCV_ERR_ARG, "%s: padding (%lld, %lld) of dimension %d of input %s leaves size %lld", fn,
                       (long long)left, (long long)right, d, ops_shape(x), (long long)out_shape[d]);
            goto done;
        }
        if (mode == PTHCV_PAD_REFLECT && (left >= n || right >= n)) {
            pthcv_fail(PTHCV_ERR_ARG,
                       "%s: reflect padding (%lld, %lld) must be less than the size %lld of dimension %d of input %s",
                       fn, (long long)left, (long long)right, (long long)n, d, ops_shape(x));
            goto done;
        }
        if (mode == PTHCV_PAD_CIRCULAR && (left > n || right > n)) {
            pthcv_fail(PTHCV_ERR_ARG,
                       "%s: circular padding (%lld, %lld) wraps around dimension %d of input %s more than once", fn,
                       (long long)left, (long long)right, d, ops_shape(x));
            goto done;
        }
        if (!constant && k < npairs && n == 0) {
            pthcv_fail(PTHCV_ERR_ARG, "%s: %s padding of the empty dimension %d of input %s", fn,
                       ops_pad_mode_name(mode), d, ops_shape(x));
            goto done;
        }
        map[d] = malloc((size_t)(out_shape[d] ? out_shape[d] : 1) * sizeof *map[d]);
        if (!map[d]) {
            pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", fn);
            goto done;
        }
        for (int64_t o = 0; o < out_shape[d]; o++) map[d][o] = ops_pad_index(o - left, n, mode);
    }
    float *y;
    out = ops_output(nd, out_shape, &y);
    if (!out || out->numel == 0) goto done;
    if (nd == 0) {
        *y = *xd;
        goto done;
    }
    pad_ctx c = {xd, y, nd, x->shape, out_shape, map, (float)value};
    int64_t row = out_shape[nd - 1];
    pthcv_parallel_for(out->numel / row, ops_grain(row), pad_task, &c);
done:
    for (int d = 0; d < nd; d++) free(map[d]);
    pthcv_tensor_release(xc);
    return out;
}
