/*
 * plan.c -- what pthcv.nn.plan's steps need besides the kernels: a copy
 * into a caller's view (a concatenation's input written into its slice of
 * the destination, or into every g-th channel of a channel shuffle), and
 * placeholders (tensors with a shape, strides and an offset but no bytes:
 * what a planned forward hands out for values it fused away).
 */
#include "ops.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *dst;
    const float *src;
    const int64_t *dst_stride, *src_stride, *shape;
    int ndim, outer_nd; /* planes: the dims before the last two */
} copy_ctx;

static void copy_task(void *vctx, int64_t begin, int64_t end)
{
    copy_ctx *c = vctx;
    int inner = c->ndim - c->outer_nd;
    for (int64_t p = begin; p < end; p++) {
        int64_t rest = p, doff = 0, soff = 0;
        for (int d = c->outer_nd - 1; d >= 0; d--) {
            int64_t i = rest % c->shape[d];
            rest /= c->shape[d];
            doff += i * c->dst_stride[d];
            soff += i * c->src_stride[d];
        }
        ops_copy_strided(c->dst + doff, c->dst_stride + c->outer_nd, c->src + soff, c->src_stride + c->outer_nd, inner,
                         c->shape + c->outer_nd);
    }
}

int pthcv_copy_into(pthcv_tensor *dst, pthcv_tensor *src)
{
    const char *fn = "pthcv_copy_into";
    if (!dst || !src) return pthcv_fail(PTHCV_ERR_ARG, "%s: no destination or no source", fn);
    int same = dst->dtype == PTHCV_FLOAT32 && src->dtype == PTHCV_FLOAT32 && dst->ndim == src->ndim;
    for (int d = 0; same && d < dst->ndim; d++) same = dst->shape[d] == src->shape[d];
    if (!same)
        return pthcv_fail(PTHCV_ERR_ARG, "%s: expected float32 tensors of one shape, got %s %s and %s %s", fn,
                          pthcv_dtype_name(dst->dtype), ops_shape(dst), pthcv_dtype_name(src->dtype), ops_shape(src));
    if (dst->storage == src->storage)
        return pthcv_fail(PTHCV_ERR_ARG, "%s: the destination shares the source's storage", fn);
    if (dst->numel == 0) return PTHCV_OK;
    float *d = pthcv_tensor_data(dst);
    const float *s = pthcv_tensor_data(src);
    if (!d || !s) return pthcv_last_status();
    copy_ctx c = {.dst = d,
                  .src = s,
                  .dst_stride = dst->stride,
                  .src_stride = src->stride,
                  .shape = dst->shape,
                  .ndim = dst->ndim,
                  .outer_nd = dst->ndim > 2 ? dst->ndim - 2 : 0};
    int64_t planes = 1, plane = 1;
    for (int i = 0; i < c.outer_nd; i++) planes *= dst->shape[i];
    for (int i = c.outer_nd; i < c.ndim; i++) plane *= dst->shape[i];
    pthcv_parallel_for(planes, ops_grain(plane), copy_task, &c);
    return PTHCV_OK;
}

pthcv_tensor *pthcv_tensor_empty(int dtype, int ndim, const int64_t *shape)
{
    return pthcv_tensor_new_uninit(dtype, ndim, shape);
}

pthcv_tensor *pthcv_tensor_placeholder(int dtype, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset,
                                       const char *what)
{
    const char *fn = "pthcv_tensor_placeholder";
    if (ndim < 0 || ndim > PTHCV_MAX_DIMS || (ndim > 0 && (!shape || !stride)) || offset < 0)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: bad layout (%d dimensions)", fn, ndim);
    int size = pthcv_dtype_size(dtype);
    if (size <= 0) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: unknown dtype %d", fn, dtype);
    /* the extent the layout spans, checked again by pthcv_tensor_over */
    int64_t last = offset, nbytes;
    for (int d = 0; d < ndim; d++) {
        int64_t span;
        if (shape[d] < 0 || stride[d] < 0) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: negative size or stride", fn);
        if (shape[d] > 0 && (!pthcv_mul_ok(shape[d] - 1, stride[d], &span) || !pthcv_add_ok(last, span, &last)))
            return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: the layout overflows", fn);
    }
    if (!pthcv_add_ok(last, 1, &last) || !pthcv_mul_ok(last, size, &nbytes))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: the layout overflows", fn);
    pthcv_storage *st = calloc(1, sizeof *st);
    char *key = strdup(what ? what : "(a placeholder)");
    if (!st || !key) {
        free(st);
        free(key);
        return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory", fn);
    }
    /* no data, no source: reading its bytes fails with an error naming key */
    st->refcount = 1;
    st->dtype = dtype;
    st->nbytes = nbytes;
    st->key = key;
    pthcv_tensor *t = pthcv_tensor_over(st, dtype, ndim, shape, stride, offset, fn);
    pthcv_storage_release(st);
    return t;
}
