/* npz.c -- NumPy .npz archives: a zip of `<name>.npy` entries, stored
 * uncompressed, as numpy.savez writes them. Each entry streams its tensor
 * through a libzip source callback, so only one contiguous copy is alive at
 * a time, however many tensors the archive holds. */
#include "export.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

/* Every entry carries the same date (1980-01-02, the DOS epoch plus a day so
 * no time zone pushes it below it): converting the same tensors twice gives
 * the same bytes, which numpy.savez (it stamps the current time) does not. */
enum { NPZ_MTIME = 315619200 };

/* What a failing callback leaves for pthcv_save_npz to report: libzip only
 * knows that a read failed, pthcv knows why. */
typedef struct {
    int status;
    char message[1024];
} npz_failure;

typedef struct {
    pthcv_tensor *t; /* retained */
    char header[PTHCV_NPY_HEADER_MAX];
    uint64_t hlen, size, pos;
    pthcv_tensor *open; /* the contiguous copy, from OPEN to CLOSE */
    const unsigned char *data;
    zip_error_t error;
    npz_failure *failure;
} npy_source;

static zip_int64_t npy_source_cb(void *ud, void *data, zip_uint64_t len, zip_source_cmd_t cmd)
{
    npy_source *s = ud;
    switch (cmd) {
    case ZIP_SOURCE_OPEN:
        s->pos = 0;
        s->open = pthcv_tensor_contiguous(s->t);
        s->data = s->open ? pthcv_tensor_data(s->open) : NULL;
        if (!s->data) {
            s->failure->status = pthcv_last_status();
            snprintf(s->failure->message, sizeof s->failure->message, "%s", pthcv_last_error());
            zip_error_set(&s->error, ZIP_ER_READ, 0);
            return -1;
        }
        return 0;
    case ZIP_SOURCE_READ: {
        uint64_t n = s->size - s->pos < len ? s->size - s->pos : len, done = 0;
        if (s->pos < s->hlen) {
            done = s->hlen - s->pos < n ? s->hlen - s->pos : n;
            memcpy(data, s->header + s->pos, done);
        }
        if (n > done) memcpy((char *)data + done, s->data + (s->pos + done - s->hlen), n - done);
        s->pos += n;
        return (zip_int64_t)n;
    }
    case ZIP_SOURCE_CLOSE:
        pthcv_tensor_release(s->open);
        s->open = NULL;
        return 0;
    case ZIP_SOURCE_STAT: {
        zip_stat_t *st = data;
        zip_stat_init(st);
        st->size = s->size;
        st->valid |= ZIP_STAT_SIZE;
        return sizeof *st;
    }
    case ZIP_SOURCE_ERROR: return zip_error_to_data(&s->error, data, len);
    case ZIP_SOURCE_FREE:
        pthcv_tensor_release(s->open);
        pthcv_tensor_release(s->t);
        zip_error_fini(&s->error);
        free(s);
        return 0;
    case ZIP_SOURCE_SUPPORTS: return ZIP_SOURCE_SUPPORTS_READABLE;
    default: zip_error_set(&s->error, ZIP_ER_OPNOTSUPP, 0); return -1;
    }
}

/* Adds `<name>.npy` for t (raw: `<name>`, t's bytes alone, no .npy
 * header); on failure the error is set and nothing is added. */
static int add_entry(zip_t *za, const char *path, const char *name, pthcv_tensor *t, npz_failure *failure, int raw)
{
    size_t bad;
    if (!pthcv_utf8_valid(name, &bad))
        return pthcv_fail(PTHCV_ERR_ARG,
                          "%s: tensor '%s': its name is not UTF-8 (byte 0x%02X at offset %zu), and npz member "
                          "names are; rename the tensor",
                          path, pthcv_esc(name), (unsigned char)name[bad], bad);
    char label[300];
    snprintf(label, sizeof label, "tensor '%s'", name);
    npy_source *s = calloc(1, sizeof *s);
    char *entry = malloc(strlen(name) + 5);
    if (!s || !entry) {
        free(s);
        free(entry);
        return pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", path);
    }
    int hlen = raw ? 0 : pthcv_npy_header(path, label, t, s->header);
    if (hlen < 0) {
        free(s);
        free(entry);
        return pthcv_last_status();
    }
    s->t = pthcv_tensor_retain(t);
    s->hlen = (uint64_t)hlen;
    s->size = s->hlen + (uint64_t)pthcv_tensor_nbytes(t);
    s->failure = failure;
    zip_error_init(&s->error);
    sprintf(entry, raw ? "%s" : "%s.npy", name);

    int rc = PTHCV_OK;
    zip_error_t zerr;
    zip_error_init(&zerr);
    zip_source_t *src = zip_source_function_create(npy_source_cb, s, &zerr);
    if (!src) {
        npy_source_cb(s, NULL, 0, ZIP_SOURCE_FREE);
        rc = pthcv_fail(PTHCV_ERR_NOMEM, "%s: %s", path, zip_error_strerror(&zerr));
    } else {
        zip_int64_t idx = zip_file_add(za, entry, src, ZIP_FL_ENC_UTF_8);
        if (idx < 0) {
            zip_source_free(src); /* frees s too */
            rc = zip_error_code_zip(zip_get_error(za)) == ZIP_ER_EXISTS
                ? pthcv_fail(PTHCV_ERR_ARG, "%s: two tensors are named '%s'", path, name)
                : pthcv_fail(PTHCV_ERR_IO, "%s: cannot add %s: %s", path, entry, zip_strerror(za));
        } else if (zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_STORE, 0) < 0) {
            rc = pthcv_fail(PTHCV_ERR_IO, "%s: cannot store %s: %s", path, entry, zip_strerror(za));
        } else if (zip_file_set_mtime(za, (zip_uint64_t)idx, NPZ_MTIME, 0) < 0) {
            rc = pthcv_fail(PTHCV_ERR_IO, "%s: cannot date %s: %s", path, entry, zip_strerror(za));
        }
    }
    zip_error_fini(&zerr);
    free(entry);
    return rc;
}

/* libzip writes nothing at all for an archive without entries; numpy.savez()
 * writes the 22-byte end-of-directory record alone. */
static int save_empty_zip(const char *path)
{
    static const unsigned char eocd[22] = {'P', 'K', 5, 6};
    pthcv_outfile o;
    int rc = pthcv_out_open(&o, path);
    if (rc != PTHCV_OK) return rc;
    if ((rc = pthcv_out_write(&o, eocd, sizeof eocd)) != PTHCV_OK) {
        pthcv_out_abort(&o);
        return rc;
    }
    return pthcv_out_commit(&o);
}

static int save_zip(const char *path, int n, const char *const *names, pthcv_tensor *const *tensors, int raw);

int pthcv_save_npz(const char *path, int n, const char *const *names, pthcv_tensor *const *tensors)
{
    return save_zip(path, n, names, tensors, 0);
}

int pthcv_save_zip_raw(const char *path, int n, const char *const *names, pthcv_tensor *const *tensors)
{
    return save_zip(path, n, names, tensors, 1);
}

static int save_zip(const char *path, int n, const char *const *names, pthcv_tensor *const *tensors, int raw)
{
    if (!path || n < 0 || (n > 0 && (!names || !tensors)))
        return pthcv_fail(PTHCV_ERR_ARG, "pthcv_save_%s: bad arguments", raw ? "zip_raw" : "npz");
    for (int i = 0; i < n; i++)
        if (!names[i] || !tensors[i])
            return pthcv_fail(PTHCV_ERR_ARG, "%s: tensor %d has no %s", path, i, names[i] ? "tensor" : "name");
    if (n == 0) return save_empty_zip(path);

    char *tmp = pthcv_tmp_path(path);
    if (!tmp) return PTHCV_ERR_NOMEM;
    int zerr = 0, rc = PTHCV_OK;
    zip_t *za = zip_open(tmp, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    if (!za) {
        zip_error_t e;
        zip_error_init_with_code(&e, zerr);
        rc = pthcv_fail(PTHCV_ERR_IO, "%s: cannot create %s: %s", path, tmp, zip_error_strerror(&e));
        zip_error_fini(&e);
        free(tmp);
        return rc;
    }
    npz_failure failure = {PTHCV_OK, ""};
    for (int i = 0; i < n && rc == PTHCV_OK; i++) rc = add_entry(za, path, names[i], tensors[i], &failure, raw);
    if (rc != PTHCV_OK) {
        zip_discard(za);
    } else if (zip_close(za) != 0) {
        rc = failure.status != PTHCV_OK ? pthcv_fail(failure.status, "%s: %s", path, failure.message)
                                        : pthcv_fail(PTHCV_ERR_IO, "%s: %s", path, zip_strerror(za));
        zip_discard(za);
    } else if (rename(tmp, path) != 0) {
        rc = pthcv_fail(PTHCV_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    }
    if (rc != PTHCV_OK) remove(tmp);
    free(tmp);
    return rc;
}
