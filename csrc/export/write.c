/* write.c -- files written whole or not at all, for the writers. */
#include "export.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

char *pthcv_tmp_path(const char *path)
{
    size_t n = strlen(path);
    char *tmp = malloc(n + 5);
    if (!tmp) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory", path);
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    return tmp;
}

int pthcv_fail_in(const char *path)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", pthcv_last_error());
    return pthcv_fail(pthcv_last_status() ? pthcv_last_status() : PTHCV_ERR_IO, "%s: %s", path, msg);
}

int pthcv_out_open(pthcv_outfile *o, const char *path)
{
    o->path = path;
    o->f = NULL;
    if (!(o->tmp = pthcv_tmp_path(path))) return PTHCV_ERR_NOMEM;
    if (!(o->f = fopen(o->tmp, "wb"))) {
        int rc = pthcv_fail(PTHCV_ERR_IO, "%s: cannot create %s: %s", path, o->tmp, strerror(errno));
        free(o->tmp);
        o->tmp = NULL;
        return rc;
    }
    return PTHCV_OK;
}

int pthcv_out_write(pthcv_outfile *o, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, o->f) != n)
        return pthcv_fail(PTHCV_ERR_IO, "%s: write failed: %s", o->path, strerror(errno));
    return PTHCV_OK;
}

int pthcv_out_tensor(pthcv_outfile *o, pthcv_tensor *t)
{
    pthcv_tensor *c = pthcv_tensor_contiguous(t);
    const void *data = c ? pthcv_tensor_data(c) : NULL;
    int rc = data ? pthcv_out_write(o, data, (size_t)pthcv_tensor_nbytes(c)) : pthcv_fail_in(o->path);
    pthcv_tensor_release(c);
    return rc;
}

int pthcv_out_commit(pthcv_outfile *o)
{
    int rc = PTHCV_OK;
    FILE *f = o->f;
    o->f = NULL;
    if (fclose(f) != 0) /* the last buffered write may fail only here */
        rc = pthcv_fail(PTHCV_ERR_IO, "%s: write failed: %s", o->path, strerror(errno));
    else if (rename(o->tmp, o->path) != 0)
        rc = pthcv_fail(PTHCV_ERR_IO, "%s: cannot rename %s into place: %s", o->path, o->tmp, strerror(errno));
    if (rc != PTHCV_OK) remove(o->tmp);
    free(o->tmp);
    o->tmp = NULL;
    return rc;
}

void pthcv_out_abort(pthcv_outfile *o)
{
    if (o->f) fclose(o->f);
    o->f = NULL;
    if (o->tmp) remove(o->tmp);
    free(o->tmp);
    o->tmp = NULL;
}
