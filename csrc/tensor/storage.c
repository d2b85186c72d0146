/* storage.c -- storages and sources: shared runs of bytes, read on first touch.
 *
 * Reference counts here and in tensor.c are plain ints, not atomics: pthcv is
 * used from one thread at a time (the LuaJIT state), and a storage shared
 * across threads would need a lock around materialisation anyway. */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

static char *dup_string(const char *s)
{
    if (!s) s = "";
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Rejects byte counts that are negative or exceed what malloc can be asked for. */
static int nbytes_ok(int64_t nbytes, const char *what)
{
    if (nbytes < 0)
        return pthcv_fail(PTHCV_ERR_ARG, "%s: negative storage size %lld", pthcv_esc(what), (long long)nbytes);
    if ((uint64_t)nbytes > SIZE_MAX - 1)
        return pthcv_fail(PTHCV_ERR_LIMIT, "%s: storage of %lld bytes is too large for this machine", pthcv_esc(what),
                          (long long)nbytes);
    return PTHCV_OK;
}

pthcv_storage *pthcv_storage_new_memory(int dtype, int64_t nbytes)
{
    return pthcv_storage_new_memory_as(dtype, nbytes, 1);
}

pthcv_storage *pthcv_storage_new_memory_as(int dtype, int64_t nbytes, int zeroed)
{
    if (nbytes_ok(nbytes, "pthcv_storage_new_memory") != PTHCV_OK) return NULL;
    pthcv_storage *st = calloc(1, sizeof *st);
    /* at least one byte, so an empty storage still has a non-NULL data pointer */
    void *data = pthcv_storage_data_alloc(nbytes ? (size_t)nbytes : 1, zeroed);
    if (!st || !data) {
        free(st);
        pthcv_storage_data_free(data, nbytes ? (size_t)nbytes : 1);
        return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "out of memory allocating a storage of %lld bytes", (long long)nbytes);
    }
    st->refcount = 1;
    st->dtype = dtype;
    st->nbytes = nbytes;
    st->data = data;
    st->owns_data = 1;
    return st;
}

pthcv_storage *pthcv_storage_new_record(pthcv_source *src, int dtype, int64_t nbytes, const char *key,
                                        const char *record)
{
    if (!src) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "pthcv_storage_new_record: no source");
    if (nbytes_ok(nbytes, record ? record : "pthcv_storage_new_record") != PTHCV_OK) return NULL;
    pthcv_storage *st = calloc(1, sizeof *st);
    char *k = dup_string(key), *r = dup_string(record);
    if (!st || !k || !r) {
        free(st);
        free(k);
        free(r);
        return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "out of memory recording storage %s", pthcv_esc(key ? key : ""));
    }
    st->refcount = 1;
    st->dtype = dtype;
    st->nbytes = nbytes;
    st->src = src;
    pthcv_source_retain(src);
    st->key = k;
    st->record = r;
    return st;
}

pthcv_storage *pthcv_storage_new_view(pthcv_storage *base, int dtype, int64_t byte_offset, int64_t nbytes)
{
    int64_t end;
    if (!base || byte_offset < 0 || nbytes < 0 || !pthcv_add_ok(byte_offset, nbytes, &end) || end > base->nbytes)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "storage view [%lld, +%lld) outside its base storage",
                               (long long)byte_offset, (long long)nbytes);
    pthcv_storage *st = calloc(1, sizeof *st);
    char *k = dup_string(base->key), *r = dup_string(base->record);
    if (!st || !k || !r) {
        free(st);
        free(k);
        free(r);
        return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "out of memory for a storage view");
    }
    st->refcount = 1;
    st->dtype = dtype;
    st->nbytes = nbytes;
    st->key = k;
    st->record = r;
    st->base = base;
    st->base_offset = byte_offset;
    pthcv_storage_retain(base);
    return st;
}

pthcv_storage *pthcv_storage_new_external(int dtype, void *data, int64_t nbytes, void (*release)(void *ctx), void *ctx)
{
    if (nbytes_ok(nbytes, "pthcv_tensor_from_data") != PTHCV_OK) return NULL;
    if (!data) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "pthcv_tensor_from_data: no data");
    pthcv_storage *st = calloc(1, sizeof *st);
    if (!st) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "out of memory for an external storage");
    st->refcount = 1;
    st->dtype = dtype;
    st->nbytes = nbytes;
    st->data = data;
    st->release = release;
    st->release_ctx = ctx;
    return st;
}

/* The tensor is checked against nbytes like a file's; on failure release is
 * not called, the caller keeps its memory. */
pthcv_tensor *pthcv_tensor_from_data(int dtype, int ndim, const int64_t *shape, const int64_t *stride, void *data,
                                     int64_t nbytes, void (*release)(void *ctx), void *ctx)
{
    pthcv_storage *st = pthcv_storage_new_external(dtype, data, nbytes, NULL, NULL);
    if (!st) return NULL;
    pthcv_tensor *t = pthcv_tensor_over(st, dtype, ndim, shape, stride, 0, "pthcv_tensor_from_data");
    if (t) {
        st->release = release;
        st->release_ctx = ctx;
    }
    pthcv_storage_release(st);
    return t;
}

void pthcv_storage_retain(pthcv_storage *st)
{
    if (st) st->refcount++;
}

void pthcv_storage_release(pthcv_storage *st)
{
    if (!st || --st->refcount > 0) return;
    if (st->owns_data) pthcv_storage_data_free(st->data, st->nbytes ? (size_t)st->nbytes : 1);
    if (st->release) st->release(st->release_ctx);
    pthcv_storage_release(st->base);
    pthcv_source_release(st->src);
    free(st->key);
    free(st->record);
    free(st);
}

/* Always reads into a buffer of our own: a source that maps its file may set
 * data into the map itself before anyone calls this. */
int pthcv_storage_materialize(pthcv_storage *st)
{
    if (!st) return pthcv_fail(PTHCV_ERR_ARG, "pthcv_storage_materialize: no storage");
    if (st->data) return PTHCV_OK;
    if (st->base) {
        int rc = pthcv_storage_materialize(st->base);
        if (rc != PTHCV_OK) return rc;
        st->data = (char *)st->base->data + st->base_offset;
        st->owns_data = 0;
        return PTHCV_OK;
    }
    if (st->src && st->in_place && st->src->map && st->file_offset >= 0 &&
        (uint64_t)st->file_offset + (uint64_t)st->nbytes <= st->src->map_size) {
        /* zero-copy: the mapping is private, so writes stay in this process,
         * and it lives as long as the source, which this storage retains */
        st->data = st->src->map + st->file_offset;
        st->owns_data = 0;
        return PTHCV_OK;
    }
    if (!st->src)
        return pthcv_fail(PTHCV_ERR_ARG, "storage %s has neither bytes nor a source",
                          pthcv_esc(st->key ? st->key : ""));
    void *buf = pthcv_storage_data_alloc(st->nbytes ? (size_t)st->nbytes : 1, 0);
    if (!buf)
        return pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory reading %s (%lld bytes)",
                          st->src->path ? st->src->path : "", pthcv_esc(st->record ? st->record : ""),
                          (long long)st->nbytes);
    int rc = st->src->read(st->src, st, buf);
    if (rc != PTHCV_OK) {
        pthcv_storage_data_free(buf, st->nbytes ? (size_t)st->nbytes : 1);
        return rc;
    }
    if (st->swap_bytes > 1) pthcv_swap_bytes(buf, st->nbytes / st->swap_bytes, st->swap_bytes);
    st->data = buf;
    st->owns_data = 1;
    return PTHCV_OK;
}

void pthcv_source_retain(pthcv_source *src)
{
    if (src) src->refcount++;
}

void pthcv_source_release(pthcv_source *src)
{
    if (!src || --src->refcount > 0) return;
    if (src->destroy) src->destroy(src); /* frees impl; path and the struct are freed here */
    free(src->path);
    free(src);
}

void pthcv_swap_bytes(void *data, int64_t n, int elsize)
{
    unsigned char *p = data;
    if (elsize < 2) return;
    for (int64_t i = 0; i < n; i++, p += elsize)
        for (int a = 0, b = elsize - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}
