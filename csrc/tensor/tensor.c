/* tensor.c -- tensors: sizes and strides over a shared storage, checked once
 * at creation so that every later access can trust them. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

const char *pthcv_format_dims(char *buf, size_t cap, int n, const int64_t *d)
{
    size_t len = 0;
    buf[len++] = '[';
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "", (long long)d[i]);
    if (len + 2 > cap) {
        strcpy(buf + cap - 5, "...]");
        return buf;
    }
    buf[len++] = ']';
    buf[len] = '\0';
    return buf;
}

pthcv_tensor *pthcv_tensor_over(pthcv_storage *st, int dtype, int ndim, const int64_t *shape, const int64_t *stride,
                                int64_t offset, const char *where)
{
    if (!where) where = "tensor";
    int elsize = pthcv_dtype_size(dtype);
    if (!elsize) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: unknown dtype %d", where, dtype);
    if (!st) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: no storage", where);
    if (ndim < 0 || ndim > PTHCV_MAX_DIMS)
        return PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED, "%s: %d dimensions, pthcv handles 0 to %d", where, ndim,
                               PTHCV_MAX_DIMS);
    if (ndim > 0 && (!shape || !stride)) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: no shape or strides", where);
    if (offset < 0)
        return PTHCV_FAIL_NULL(PTHCV_ERR_FORMAT, "%s: negative storage offset %lld", where, (long long)offset);
    int per = pthcv_dtype_values_per_element(dtype);
    if (offset % per)
        return PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED, "%s: %s tensor starts inside a byte (offset %lld)", where,
                               pthcv_dtype_name(dtype), (long long)offset);

    char sbuf[400], tbuf[400];
    /* numel is 0 as soon as one size is 0, however large the others */
    int64_t numel = 1, max_index = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || stride[i] < 0)
            return PTHCV_FAIL_NULL(PTHCV_ERR_FORMAT, "%s: negative size or stride in shape %s with strides %s", where,
                                   pthcv_format_dims(sbuf, sizeof sbuf, ndim, shape),
                                   pthcv_format_dims(tbuf, sizeof tbuf, ndim, stride));
        if (shape[i] == 0) numel = 0;
    }
    int64_t nbytes;
    for (int i = 0; i < ndim && numel; i++) {
        int64_t reach;
        if (!pthcv_mul_ok(numel, shape[i], &numel) || !pthcv_mul_ok(shape[i] - 1, stride[i], &reach) ||
            !pthcv_add_ok(max_index, reach, &max_index))
            goto overflow;
    }
    /* torch keeps numel * element size in an int64 too: nbytes() relies on it */
    if (!pthcv_mul_ok(numel, elsize, &nbytes)) goto overflow;
    if (numel > 0) {
        int64_t last, capacity;
        if (!pthcv_add_ok(offset, max_index, &last)) goto overflow;
        if (!pthcv_mul_ok(st->nbytes / elsize, per, &capacity)) capacity = INT64_MAX; /* no index can reach past it */
        if (last >= capacity)
            return PTHCV_FAIL_NULL(PTHCV_ERR_FORMAT,
                                   "%s: tensor of shape %s with strides %s and offset %lld reaches element %lld, "
                                   "outside its storage of %lld elements",
                                   where, pthcv_format_dims(sbuf, sizeof sbuf, ndim, shape),
                                   pthcv_format_dims(tbuf, sizeof tbuf, ndim, stride), (long long)offset,
                                   (long long)last, (long long)capacity);
    }

    pthcv_tensor *t = calloc(1, sizeof *t);
    if (!t) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory", where);
    t->refcount = 1;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->stride[i] = stride[i];
    }
    t->offset = offset;
    t->numel = numel;
    t->storage = st;
    pthcv_storage_retain(st);
    return t;

overflow:
    return PTHCV_FAIL_NULL(PTHCV_ERR_FORMAT, "%s: tensor of shape %s with strides %s and offset %lld: size overflow",
                           where, pthcv_format_dims(sbuf, sizeof sbuf, ndim, shape),
                           pthcv_format_dims(tbuf, sizeof tbuf, ndim, stride), (long long)offset);
}

static pthcv_tensor *new_tensor(int dtype, int ndim, const int64_t *shape, int zeroed);

pthcv_tensor *pthcv_tensor_new(int dtype, int ndim, const int64_t *shape) { return new_tensor(dtype, ndim, shape, 1); }

pthcv_tensor *pthcv_tensor_new_uninit(int dtype, int ndim, const int64_t *shape)
{
    return new_tensor(dtype, ndim, shape, 0);
}

static pthcv_tensor *new_tensor(int dtype, int ndim, const int64_t *shape, int zeroed)
{
    int elsize = pthcv_dtype_size(dtype);
    if (!elsize) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "pthcv_tensor_new: unknown dtype %d", dtype);
    if (ndim < 0 || ndim > PTHCV_MAX_DIMS || (ndim > 0 && !shape))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "pthcv_tensor_new: bad shape (%d dimensions)", ndim);

    /* torch's contiguous strides: a size of 0 counts as 1 */
    int64_t stride[PTHCV_MAX_DIMS], numel = 1, run = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        if (shape[i] < 0)
            return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "pthcv_tensor_new: negative size %lld", (long long)shape[i]);
        stride[i] = run;
        if (!pthcv_mul_ok(run, shape[i] ? shape[i] : 1, &run) || !pthcv_mul_ok(numel, shape[i], &numel))
            return PTHCV_FAIL_NULL(PTHCV_ERR_LIMIT, "pthcv_tensor_new: element count overflows");
    }
    int per = pthcv_dtype_values_per_element(dtype);
    int64_t nbytes;
    if (!pthcv_mul_ok((numel + per - 1) / per, elsize, &nbytes))
        return PTHCV_FAIL_NULL(PTHCV_ERR_LIMIT, "pthcv_tensor_new: byte count overflows");
    pthcv_storage *st = pthcv_storage_new_memory_as(dtype, nbytes, zeroed);
    if (!st) return NULL;
    pthcv_tensor *t = pthcv_tensor_over(st, dtype, ndim, shape, stride, 0, "pthcv_tensor_new");
    pthcv_storage_release(st);
    return t;
}

pthcv_tensor *pthcv_tensor_view(pthcv_tensor *t, int ndim, const int64_t *shape, const int64_t *stride, int64_t offset)
{
    if (!t) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "pthcv_tensor_view: no tensor");
    char where[300];
    snprintf(where, sizeof where, "view of %s", t->storage->record ? pthcv_esc(t->storage->record) : "a tensor");
    pthcv_tensor *v = pthcv_tensor_over(t->storage, t->dtype, ndim, shape, stride, offset, where);
    if (!v) return NULL;
    v->qscheme = t->qscheme;
    v->qaxis = t->qaxis;
    v->qscale = t->qscale;
    v->qzero_point = t->qzero_point;
    v->qscales = pthcv_tensor_retain(t->qscales);
    v->qzero_points = pthcv_tensor_retain(t->qzero_points);
    return v;
}

pthcv_tensor *pthcv_tensor_retain(pthcv_tensor *t)
{
    if (t) t->refcount++;
    return t;
}

void pthcv_tensor_release(pthcv_tensor *t)
{
    if (!t || --t->refcount > 0) return;
    pthcv_storage_release(t->storage);
    pthcv_tensor_release(t->qscales);
    pthcv_tensor_release(t->qzero_points);
    free(t);
}

/* An empty tensor's offset was never checked against the storage, so it gets
 * the storage's start: non-NULL, and never past the end of the buffer. */
void *pthcv_tensor_data(pthcv_tensor *t)
{
    if (!t) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "pthcv_tensor_data: no tensor");
    if (pthcv_storage_materialize(t->storage) != PTHCV_OK) return NULL;
    char *base = t->storage->data;
    if (t->numel == 0) return base;
    return base + t->offset / pthcv_dtype_values_per_element(t->dtype) * pthcv_dtype_size(t->dtype);
}

int pthcv_tensor_is_materialized(const pthcv_tensor *t) { return t && t->storage->data != NULL; }

/* torch's definition: dimensions of size 1 may have any stride; empty tensors
 * are contiguous. The offset does not matter. */
int pthcv_tensor_is_contiguous(const pthcv_tensor *t)
{
    if (!t) return 0;
    if (t->numel == 0) return 1;
    int64_t expected = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 1) continue;
        if (t->stride[i] != expected) return 0;
        expected *= t->shape[i];
    }
    return 1;
}

int64_t pthcv_tensor_nbytes(const pthcv_tensor *t)
{
    if (!t) return 0;
    int per = pthcv_dtype_values_per_element(t->dtype);
    return (t->numel + per - 1) / per * pthcv_dtype_size(t->dtype);
}

int64_t pthcv_tensor_storage_nbytes(const pthcv_tensor *t) { return t ? t->storage->nbytes : 0; }

const char *pthcv_tensor_storage_key(const pthcv_tensor *t) { return t && t->storage->key ? t->storage->key : ""; }

const void *pthcv_tensor_storage_id(const pthcv_tensor *t) { return t ? t->storage : NULL; }
