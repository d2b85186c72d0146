/*
 * ops_math_index.c -- values with their indices and values picked by
 * indices: max / min along a dim (pthcv_max_dim), a stable sort
 * (pthcv_sort), gather and index_select.
 *
 * A tensor is seen as [outer, D, inner] around the dim. Indices are int64,
 * counted from index_base (0 as torch, 1 as pthcv's Lua Tensor methods).
 * Everything here moves or compares values, so results are exact and the
 * same for every instruction set and thread count.
 */
#include "ops.h"
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* outer / D / inner of x around dim d (a 0-d tensor is [1, 1, 1]) */
static void split_at(const pthcv_tensor *x, int d, int64_t *outer, int64_t *size, int64_t *inner)
{
    *outer = *inner = *size = 1;
    for (int i = 0; i < x->ndim; i++) {
        if (i < d) *outer *= x->shape[i];
        else if (i == d) *size = x->shape[i];
        else *inner *= x->shape[i];
    }
}

/* ---- max / min with indices ------------------------------------------------------ */

/* whether v replaces the best m so far: larger (smaller), or the first NaN */
static inline int improves(float v, float m, int find_min)
{
    return (find_min ? v < m : v > m) | ((v != v) & (m == m));
}

typedef struct {
    const float *x;
    float *values;
    int64_t *indices;
    int64_t size, inner, nblocks, base;
    int find_min;
} max_ctx;

enum { COLUMNS = 256 };

/* over (outer, block of COLUMNS inner positions): each column's best, the
 * columns side by side so the loop vectorises */
PTHCV_SIMD
static void max_columns(float *m, int64_t *k, const float *x, int64_t size, int64_t stride, int64_t w, int find_min)
{
    for (int64_t j = 0; j < w; j++) {
        m[j] = x[j];
        k[j] = 0;
    }
    for (int64_t d = 1; d < size; d++)
        for (int64_t j = 0; j < w; j++) {
            float v = x[d * stride + j];
            int take = improves(v, m[j], find_min);
            m[j] = take ? v : m[j];
            k[j] = take ? d : k[j];
        }
}

static void max_task(void *vctx, int64_t begin, int64_t end)
{
    max_ctx *c = vctx;
    for (int64_t t = begin; t < end; t++) {
        int64_t o = t / c->nblocks, j0 = (t % c->nblocks) * COLUMNS;
        int64_t w = c->inner - j0 < COLUMNS ? c->inner - j0 : COLUMNS;
        float m[COLUMNS];
        int64_t k[COLUMNS];
        max_columns(m, k, c->x + o * c->size * c->inner + j0, c->size, c->inner, w, c->find_min);
        for (int64_t j = 0; j < w; j++) {
            if (c->values) c->values[o * c->inner + j0 + j] = m[j];
            if (c->indices) c->indices[o * c->inner + j0 + j] = k[j] + c->base;
        }
    }
}

/* the shape of a reduction over dim d (kept with size 1 when keepdim) */
static int reduced_shape(const pthcv_tensor *x, int d, int keepdim, int64_t *shape)
{
    int n = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != d) shape[n++] = x->shape[i];
        else if (keepdim) shape[n++] = 1;
    return n;
}

int pthcv_max_dim(pthcv_tensor *x, int32_t dim, int32_t keepdim, int32_t find_min, int32_t index_base,
                  pthcv_tensor **values, pthcv_tensor **indices)
{
    const char *fn = find_min ? "min" : "max";
    if (values) *values = NULL;
    if (indices) *indices = NULL;
    const float *xd;
    pthcv_tensor *xc = ops_input(x, fn, "input", &xd);
    if (!xc) return pthcv_last_status();
    int d = ops_dim(dim, x->ndim);
    int64_t outer, size, inner, shape[PTHCV_MAX_DIMS];
    int status = PTHCV_OK;
    if (d < 0) {
        status = pthcv_fail(PTHCV_ERR_ARG, "%s: dimension %d out of range for input %s", fn, (int)dim, ops_shape(x));
        goto done;
    }
    split_at(x, d, &outer, &size, &inner);
    if (size == 0) {
        status = pthcv_fail(PTHCV_ERR_ARG, "%s: dimension %d of input %s is empty", fn, d, ops_shape(x));
        goto done;
    }
    int nd = x->ndim == 0 ? 0 : reduced_shape(x, d, keepdim, shape);
    pthcv_tensor *v = values ? pthcv_tensor_new_uninit(PTHCV_FLOAT32, nd, shape) : NULL;
    pthcv_tensor *k = indices ? pthcv_tensor_new_uninit(PTHCV_INT64, nd, shape) : NULL;
    int64_t count = outer * inner;
    max_ctx c = {xd,
                 v && count ? pthcv_tensor_data(v) : NULL,
                 k && count ? pthcv_tensor_data(k) : NULL,
                 size,
                 inner,
                 (inner + COLUMNS - 1) / COLUMNS,
                 index_base,
                 find_min};
    if ((values && (!v || (count && !c.values))) || (indices && (!k || (count && !c.indices)))) {
        pthcv_tensor_release(v);
        pthcv_tensor_release(k);
        status = pthcv_last_status() ? pthcv_last_status() : PTHCV_ERR_NOMEM;
        goto done;
    }
    if (count > 0)
        pthcv_parallel_for(outer * c.nblocks, ops_grain(size * (inner < COLUMNS ? inner : COLUMNS)), max_task, &c);
    if (values) *values = v;
    if (indices) *indices = k;
done:
    pthcv_tensor_release(xc);
    return status;
}

/* ---- stable sort -------------------------------------------------------------------- */

typedef struct {
    float v;
    int64_t i;
} keyed;

/* whether a goes strictly before b: NaN is larger than everything */
static inline int before(const keyed *a, const keyed *b, int descending)
{
    if (descending) return a->v > b->v || (a->v != a->v && b->v == b->v);
    return a->v < b->v || (a->v == a->v && b->v != b->v);
}

enum { RUN = 16 }; /* insertion-sorted runs, then merged */

/* Sorts e[0..n) stably, tmp[0..n) as scratch; returns where the result is. */
static keyed *merge_sort(keyed *e, keyed *tmp, int64_t n, int descending)
{
    for (int64_t s = 0; s < n; s += RUN) {
        int64_t end = s + RUN < n ? s + RUN : n;
        for (int64_t i = s + 1; i < end; i++) {
            keyed k = e[i];
            int64_t j = i;
            for (; j > s && before(&k, &e[j - 1], descending); j--) e[j] = e[j - 1];
            e[j] = k;
        }
    }
    for (int64_t width = RUN; width < n; width *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * width) {
            int64_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            int64_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi) tmp[o++] = before(&e[b], &e[a], descending) ? e[b++] : e[a++];
            while (a < mid) tmp[o++] = e[a++];
            while (b < hi) tmp[o++] = e[b++];
        }
        keyed *swap = e;
        e = tmp;
        tmp = swap;
    }
    return e;
}

typedef struct {
    const float *x;
    float *values;
    int64_t *indices;
    int64_t size, inner, base;
    int descending;
    atomic_int failed;
} sort_ctx;

/* over lines (outer, inner position): D values at stride inner */
static void sort_task(void *vctx, int64_t begin, int64_t end)
{
    sort_ctx *c = vctx;
    keyed *buf = malloc((size_t)c->size * 2 * sizeof *buf);
    if (!buf) {
        atomic_store(&c->failed, 1);
        return;
    }
    for (int64_t line = begin; line < end; line++) {
        int64_t first = line / c->inner * c->size * c->inner + line % c->inner;
        for (int64_t d = 0; d < c->size; d++) buf[d] = (keyed){c->x[first + d * c->inner], d};
        keyed *s = merge_sort(buf, buf + c->size, c->size, c->descending);
        for (int64_t d = 0; d < c->size; d++) {
            if (c->values) c->values[first + d * c->inner] = s[d].v;
            c->indices[first + d * c->inner] = s[d].i + c->base;
        }
    }
    free(buf);
}

int pthcv_sort(pthcv_tensor *x, int32_t dim, int32_t descending, int32_t index_base, pthcv_tensor **values,
               pthcv_tensor **indices)
{
    const char *fn = "sort";
    if (values) *values = NULL;
    if (!indices) return pthcv_fail(PTHCV_ERR_ARG, "%s: no place for the indices", fn);
    *indices = NULL;
    const float *xd;
    pthcv_tensor *xc = ops_input(x, fn, "input", &xd);
    if (!xc) return pthcv_last_status();
    int d = ops_dim(dim, x->ndim), status = PTHCV_OK;
    pthcv_tensor *v = NULL, *k = NULL;
    if (d < 0) {
        status = pthcv_fail(PTHCV_ERR_ARG, "%s: dimension %d out of range for input %s", fn, (int)dim, ops_shape(x));
        goto done;
    }
    sort_ctx c = {.x = xd, .base = index_base, .descending = descending};
    int64_t outer;
    split_at(x, d, &outer, &c.size, &c.inner);
    k = pthcv_tensor_new_uninit(PTHCV_INT64, x->ndim, x->shape);
    v = values ? pthcv_tensor_new_uninit(PTHCV_FLOAT32, x->ndim, x->shape) : NULL;
    if (!k || (values && !v) ||
        (x->numel && (!(c.indices = pthcv_tensor_data(k)) || (v && !(c.values = pthcv_tensor_data(v)))))) {
        status = pthcv_last_status() ? pthcv_last_status() : PTHCV_ERR_NOMEM;
        goto done;
    }
    atomic_init(&c.failed, 0);
    if (x->numel) pthcv_parallel_for(outer * c.inner, ops_grain(c.size * 16), sort_task, &c);
    if (atomic_load(&c.failed)) {
        status = pthcv_fail(PTHCV_ERR_NOMEM, "%s: no memory for sorting lines of %lld values", fn, (long long)c.size);
        goto done;
    }
    *indices = k;
    if (values) *values = v;
    k = v = NULL;
done:
    pthcv_tensor_release(k);
    pthcv_tensor_release(v);
    pthcv_tensor_release(xc);
    return status;
}

/* ---- gather and index_select ----------------------------------------------------------- */

static int check_values(pthcv_tensor *x, const char *fn)
{
    if (!x) return pthcv_fail(PTHCV_ERR_ARG, "%s: no input tensor", fn), 0;
    if (pthcv_dtype_is_quantized(x->dtype) || pthcv_dtype_size(x->dtype) == 0)
        return pthcv_fail(PTHCV_ERR_UNSUPPORTED, "%s: input of dtype %s is not supported (dequantize it first)", fn,
                          pthcv_dtype_name(x->dtype) ? pthcv_dtype_name(x->dtype) : "unknown"),
               0;
    return 1;
}

/* index as a contiguous int64 tensor (int32 accepted when int32_ok), its
 * values checked against [0, size) after subtracting base; the first bad
 * one named with its position. */
static pthcv_tensor *checked_index(pthcv_tensor *index, int int32_ok, int64_t size, int64_t base, const pthcv_tensor *x,
                                   int d, const char *fn)
{
    if (!index) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: no index tensor", fn);
    if (index->dtype != PTHCV_INT64 && !(int32_ok && index->dtype == PTHCV_INT32)) {
        const char *name = pthcv_dtype_name(index->dtype);
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: the index must be int64%s, got %s", fn, int32_ok ? " or int32" : "",
                               name ? name : "unknown");
    }
    pthcv_tensor *k = pthcv_tensor_to(index, PTHCV_INT64);
    const int64_t *p = k && k->numel ? pthcv_tensor_data(k) : NULL;
    if (k && k->numel && !p) {
        pthcv_tensor_release(k);
        return NULL;
    }
    for (int64_t i = 0; k && i < k->numel; i++) {
        if (p[i] >= base && p[i] - base < size) continue;
        int64_t pos[PTHCV_MAX_DIMS], rest = i;
        for (int j = k->ndim - 1; j >= 0; j--) {
            pos[j] = rest % k->shape[j];
            rest /= k->shape[j];
        }
        char where[120];
        pthcv_fail(PTHCV_ERR_ARG, "%s: index %lld at %s is out of range %lld..%lld for dimension %d of input %s", fn,
                   (long long)p[i], pthcv_format_dims(where, sizeof where, k->ndim, pos), (long long)base,
                   (long long)(base + size - 1), d, ops_shape(x));
        pthcv_tensor_release(k);
        return NULL;
    }
    return k;
}

static inline void copy_element(unsigned char *dst, const unsigned char *src, int size)
{
    switch (size) {
    case 1: *dst = *src; break;
    case 2: memcpy(dst, src, 2); break;
    case 4: memcpy(dst, src, 4); break;
    case 8: memcpy(dst, src, 8); break;
    default: memcpy(dst, src, (size_t)size); break;
    }
}

typedef struct {
    const unsigned char *x;
    unsigned char *y;
    const int64_t *index;
    const pthcv_tensor *xt, *kt; /* shapes and (contiguous) strides */
    int dim, size;
    int64_t base;
} gather_ctx;

/* over rows of the index's last dim */
static void gather_task(void *vctx, int64_t begin, int64_t end)
{
    gather_ctx *c = vctx;
    int last = c->kt->ndim - 1;
    int64_t n = c->kt->shape[last];
    for (int64_t r = begin; r < end; r++) {
        int64_t off = 0, rest = r;
        for (int j = last - 1; j >= 0; j--) {
            int64_t i = rest % c->kt->shape[j];
            rest /= c->kt->shape[j];
            if (j != c->dim) off += i * c->xt->stride[j];
        }
        int64_t step = last == c->dim ? 0 : c->xt->stride[last], dstride = c->xt->stride[c->dim];
        for (int64_t i = 0; i < n; i++) {
            int64_t at = off + i * step + (c->index[r * n + i] - c->base) * dstride;
            copy_element(c->y + (r * n + i) * c->size, c->x + at * c->size, c->size);
        }
    }
}

pthcv_tensor *pthcv_gather(pthcv_tensor *x, int32_t dim, pthcv_tensor *index, int32_t index_base)
{
    const char *fn = "gather";
    if (!check_values(x, fn)) return NULL;
    int d = ops_dim(dim, x->ndim);
    if (d < 0)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: dimension %d out of range for input %s", fn, (int)dim, ops_shape(x));
    /* as torch, a 0-d tensor and a 1-d one of one element are interchangeable here */
    int flat = x->ndim <= 1 && index && index->ndim <= 1;
    if (index && index->ndim != x->ndim && !flat)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: index %s and input %s differ in their number of dimensions", fn,
                               ops_shape(index), ops_shape(x));
    for (int i = 0; index && i < index->ndim && index->ndim == x->ndim; i++)
        if (i != d && index->shape[i] > x->shape[i])
            return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: index %s is larger than input %s in dimension %d", fn,
                                   ops_shape(index), ops_shape(x), i);
    int64_t size = x->ndim ? x->shape[d] : 1;
    pthcv_tensor *k = checked_index(index, 0, size, index_base, x, d, fn);
    if (!k) return NULL;
    pthcv_tensor *xc = pthcv_tensor_contiguous(x), *y = NULL;
    const unsigned char *xd = xc && xc->numel ? pthcv_tensor_data(xc) : NULL;
    if (xc && (xd || !xc->numel) && (y = pthcv_tensor_new_uninit(x->dtype, k->ndim, k->shape)) && y->numel) {
        gather_ctx c = {xd,        pthcv_tensor_data(y), pthcv_tensor_data(k), xc, k, d, pthcv_dtype_size(x->dtype),
                        index_base};
        if (!c.y) {
            pthcv_tensor_release(y);
            y = NULL;
        } else if (flat) {
            for (int64_t i = 0; i < k->numel; i++)
                copy_element(c.y + i * c.size, xd + (c.index[i] - index_base) * c.size, c.size);
        } else {
            int64_t n = k->shape[k->ndim - 1];
            pthcv_parallel_for(k->numel / n, ops_grain(n), gather_task, &c);
        }
    }
    pthcv_tensor_release(xc);
    pthcv_tensor_release(k);
    return y;
}

typedef struct {
    const unsigned char *x;
    unsigned char *y;
    const int64_t *index;
    int64_t count, size, block, base; /* block: bytes of one slice (inner elements) */
} select_ctx;

/* over (outer, position in the index) pairs */
static void select_task(void *vctx, int64_t begin, int64_t end)
{
    select_ctx *c = vctx;
    for (int64_t t = begin; t < end; t++) {
        int64_t o = t / c->count, j = t % c->count;
        memcpy(c->y + t * c->block, c->x + (o * c->size + c->index[j] - c->base) * c->block, (size_t)c->block);
    }
}

pthcv_tensor *pthcv_index_select(pthcv_tensor *x, int32_t dim, pthcv_tensor *index, int32_t index_base)
{
    const char *fn = "index_select";
    if (!check_values(x, fn)) return NULL;
    int d = ops_dim(dim, x->ndim);
    if (d < 0)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: dimension %d out of range for input %s", fn, (int)dim, ops_shape(x));
    if (index && index->ndim > 1)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: the index must be 0-d or 1-d, got %s", fn, ops_shape(index));
    int64_t outer, size, inner;
    split_at(x, d, &outer, &size, &inner);
    pthcv_tensor *k = checked_index(index, 1, size, index_base, x, d, fn);
    if (!k) return NULL;
    if (x->ndim == 0 && k->numel != 1) {
        pthcv_fail(PTHCV_ERR_ARG, "%s: a 0-d input takes one index, got %lld", fn, (long long)k->numel);
        pthcv_tensor_release(k);
        return NULL;
    }
    int64_t shape[PTHCV_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    if (x->ndim) shape[d] = k->numel;
    pthcv_tensor *xc = pthcv_tensor_contiguous(x), *y = NULL;
    const unsigned char *xd = xc && xc->numel ? pthcv_tensor_data(xc) : NULL;
    if (xc && (xd || !xc->numel) && (y = pthcv_tensor_new_uninit(x->dtype, x->ndim, shape)) && y->numel) {
        select_ctx c = {
            xd,        pthcv_tensor_data(y), pthcv_tensor_data(k), k->numel, size, inner * pthcv_dtype_size(x->dtype),
            index_base};
        if (!c.y) {
            pthcv_tensor_release(y);
            y = NULL;
        } else {
            pthcv_parallel_for(outer * c.count, ops_grain(inner), select_task, &c);
        }
    }
    pthcv_tensor_release(xc);
    pthcv_tensor_release(k);
    return y;
}
