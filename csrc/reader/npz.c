/*
 * npz.c -- reads NumPy .npz archives (numpy.savez, savez_compressed, and
 * `pthcv convert`) into the value tree: a dict name -> tensor, the names
 * being the members' without ".npy".
 *
 * pthcv_open_zip hands a zip archive over when it has no data.pkl record.
 * Each member must be a .npy array: magic "\x93NUMPY", version 1, 2 or 3,
 * a header length (2 bytes in version 1, 4 after), then the header, a
 * Python dict literal such as {'descr': '<f4', 'fortran_order': False,
 * 'shape': (3, 4), }, parsed here without evaluating anything. Object arrays
 * ('|O', pickled data) and structured dtypes are refused. The bytes after
 * the header must be exactly the array's; they are read lazily, stored
 * members in place when aligned, deflated ones (savez_compressed) inflated
 * by libzip on first touch.
 */
#include "reader.h"
#include <stdlib.h>
#include <string.h>
#include <zip.h>

/* Headers longer than this are refused (numpy's writers stay far below). */
enum { NPY_MAX_HEADER = 65536 };

static const struct {
    const char *descr;
    int dtype;
} npy_dtypes[] = {
    {"f8", PTHCV_FLOAT64},   {"f4", PTHCV_FLOAT32},     {"f2", PTHCV_FLOAT16}, {"i8", PTHCV_INT64},
    {"i4", PTHCV_INT32},     {"i2", PTHCV_INT16},       {"i1", PTHCV_INT8},    {"u8", PTHCV_UINT64},
    {"u4", PTHCV_UINT32},    {"u2", PTHCV_UINT16},      {"u1", PTHCV_UINT8},   {"b1", PTHCV_BOOL},
    {"c8", PTHCV_COMPLEX64}, {"c16", PTHCV_COMPLEX128},
};

typedef struct {
    int dtype, big_endian, fortran, ndim;
    int64_t shape[PTHCV_MAX_DIMS];
} npy_header;

typedef struct {
    const char *s;
    size_t n, pos;
    const char *path, *member;
} lit_in;

static int lit_fail(lit_in *l, const char *what)
{
    return pthcv_fail(PTHCV_ERR_FORMAT, "%s: member '%s': .npy header, byte %zu: %s", l->path, l->member, l->pos, what);
}

static void lit_ws(lit_in *l)
{
    while (l->pos < l->n &&
           (l->s[l->pos] == ' ' || l->s[l->pos] == '\n' || l->s[l->pos] == '\t' || l->s[l->pos] == '\r'))
        l->pos++;
}

static int lit_accept(lit_in *l, char c)
{
    lit_ws(l);
    if (l->pos < l->n && l->s[l->pos] == c) {
        l->pos++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes (all a .npy header's strings are plain)
 * into buf[size]. */
static int lit_string(lit_in *l, char *buf, size_t size)
{
    lit_ws(l);
    if (l->pos >= l->n || (l->s[l->pos] != '\'' && l->s[l->pos] != '"')) return lit_fail(l, "expected a quoted string");
    char q = l->s[l->pos++];
    size_t len = 0;
    while (l->pos < l->n && l->s[l->pos] != q) {
        char c = l->s[l->pos++];
        if (c == '\\' || (unsigned char)c < 0x20 || (unsigned char)c >= 0x7f || len + 1 >= size)
            return lit_fail(l, "a string that is not a plain dtype or key name");
        buf[len++] = c;
    }
    if (l->pos >= l->n) return lit_fail(l, "unterminated string");
    l->pos++;
    buf[len] = 0;
    return PTHCV_OK;
}

static int lit_shape(lit_in *l, npy_header *h)
{
    if (!lit_accept(l, '(')) return lit_fail(l, "shape must be a tuple");
    h->ndim = 0;
    while (!lit_accept(l, ')')) {
        if (h->ndim == PTHCV_MAX_DIMS) return lit_fail(l, "more than 16 dimensions");
        lit_ws(l);
        int64_t v;
        int got = pthcv_read_digits((const unsigned char *)l->s, l->n, &l->pos, &v);
        if (got < 0) return lit_fail(l, "a dimension too large");
        if (!got) return lit_fail(l, "a dimension is not a non-negative integer");
        if (l->pos < l->n && l->s[l->pos] == 'L') l->pos++; /* Python 2's long */
        h->shape[h->ndim++] = v;
        if (!lit_accept(l, ',')) {
            if (!lit_accept(l, ')')) return lit_fail(l, "expected ',' or ')' in shape");
            break;
        }
    }
    return PTHCV_OK;
}

static int parse_descr(lit_in *l, const char *d, npy_header *h)
{
    if (!strcmp(d + (*d ? 1 : 0), "O") || !strcmp(d, "O"))
        return lit_fail(l, "an object array (its data is a pickle): pthcv reads numeric arrays only");
    char order = d[0];
    if (order != '<' && order != '>' && order != '|' && order != '=')
        return lit_fail(l, "an unsupported dtype (structured or without byte order)");
    for (size_t i = 0; i < sizeof npy_dtypes / sizeof *npy_dtypes; i++)
        if (!strcmp(d + 1, npy_dtypes[i].descr)) {
            h->dtype = npy_dtypes[i].dtype;
            h->big_endian = order == '>' && pthcv_dtype_size(h->dtype) > 1;
            return PTHCV_OK;
        }
    return lit_fail(l, "an unsupported dtype");
}

/* The header dict: descr, fortran_order and shape, each once, nothing else. */
static int parse_npy_dict(lit_in *l, npy_header *h)
{
    int have = 0;
    char key[32], str[32];
    if (!lit_accept(l, '{')) return lit_fail(l, "the header is not a dict");
    while (!lit_accept(l, '}')) {
        int st = lit_string(l, key, sizeof key);
        if (st) return st;
        if (!lit_accept(l, ':')) return lit_fail(l, "expected ':'");
        if (!strcmp(key, "descr") && !(have & 1)) {
            if ((st = lit_string(l, str, sizeof str)) || (st = parse_descr(l, str, h))) return st;
            have |= 1;
        } else if (!strcmp(key, "fortran_order") && !(have & 2)) {
            lit_ws(l);
            if (l->n - l->pos >= 4 && !memcmp(l->s + l->pos, "True", 4)) {
                h->fortran = 1;
                l->pos += 4;
            } else if (l->n - l->pos >= 5 && !memcmp(l->s + l->pos, "False", 5)) {
                h->fortran = 0;
                l->pos += 5;
            } else return lit_fail(l, "fortran_order must be True or False");
            have |= 2;
        } else if (!strcmp(key, "shape") && !(have & 4)) {
            if ((st = lit_shape(l, h))) return st;
            have |= 4;
        } else {
            return lit_fail(l, "an unknown or repeated key (descr, fortran_order and shape only)");
        }
        if (!lit_accept(l, ',')) {
            if (!lit_accept(l, '}')) return lit_fail(l, "expected ',' or '}'");
            break;
        }
    }
    if (have != 7) return lit_fail(l, "descr, fortran_order or shape is missing");
    lit_ws(l);
    if (l->pos != l->n) return lit_fail(l, "text after the header's dict");
    return PTHCV_OK;
}

/* Reads the first `want` bytes of member idx into buf; *got: how many there were. */
static int read_member_start(pthcv_file *f, zip_uint64_t idx, const char *name, unsigned char *buf, size_t want,
                             size_t *got)
{
    zip_file_t *zf = zip_fopen_index(f->zip, idx, 0);
    if (!zf) return pthcv_fail(PTHCV_ERR_IO, "%s: member '%s': cannot open: %s", f->path, name, zip_strerror(f->zip));
    size_t done = 0;
    while (done < want) {
        zip_int64_t n = zip_fread(zf, buf + done, want - done);
        if (n < 0) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s", zip_file_strerror(zf));
            zip_fclose(zf);
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: member '%s': %s", f->path, name, msg);
        }
        if (n == 0) break;
        done += (size_t)n;
    }
    zip_fclose(zf);
    *got = done;
    return PTHCV_OK;
}

/* The .npy header of member idx, and where its data starts. */
static int read_npy_header(pthcv_file *f, zip_uint64_t idx, const char *name, uint64_t member_size, npy_header *h,
                           size_t *data_at)
{
    unsigned char start[12];
    size_t got;
    int st = read_member_start(f, idx, name, start, member_size < 12 ? (size_t)member_size : 12, &got);
    if (st) return st;
    if (got < 10 || memcmp(start, "\x93NUMPY", 6))
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: member '%s' is not a .npy array (no \\x93NUMPY magic)", f->path, name);
    size_t hlen, pre;
    if (start[6] == 1) {
        hlen = (size_t)start[8] | (size_t)start[9] << 8;
        pre = 10;
    } else if ((start[6] == 2 || start[6] == 3) && got >= 12) {
        hlen = (size_t)start[8] | (size_t)start[9] << 8 | (size_t)start[10] << 16 | (size_t)start[11] << 24;
        pre = 12;
    } else {
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: member '%s': .npy version %d.%d is not one numpy writes", f->path,
                          name, start[6], start[7]);
    }
    if (hlen > NPY_MAX_HEADER)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: member '%s': a .npy header of %zu bytes, more than %d", f->path, name,
                          hlen, NPY_MAX_HEADER);
    if (pre + hlen > member_size)
        return pthcv_fail(PTHCV_ERR_FORMAT,
                          "%s: member '%s' is truncated: its .npy header needs %zu bytes, it has %llu", f->path, name,
                          pre + hlen, (unsigned long long)member_size);
    unsigned char *buf = malloc(pre + hlen);
    if (!buf) return pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", f->path);
    st = read_member_start(f, idx, name, buf, pre + hlen, &got);
    if (!st && got != pre + hlen)
        st = pthcv_fail(PTHCV_ERR_FORMAT, "%s: member '%s' is truncated inside its .npy header", f->path, name);
    if (!st) {
        lit_in l = {.s = (const char *)buf + pre, .n = hlen, .path = f->path, .member = name};
        memset(h, 0, sizeof *h);
        st = parse_npy_dict(&l, h);
    }
    free(buf);
    *data_at = pre + hlen;
    return st;
}

/* Adds member idx (name ends in ".npy") to the dict as key -> tensor. */
static int add_member(pthcv_file *f, pthcv_value *dict, zip_uint64_t idx, const char *name)
{
    zip_stat_t zs;
    if (zip_stat_index(f->zip, idx, 0, &zs) || !(zs.valid & ZIP_STAT_SIZE))
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: member '%s': no size in the zip directory", f->path, name);
    int st = pthcv_zip_check_entry(f, &zs, name);
    if (st) return st;
    npy_header h;
    size_t data_at = 0;
    if ((st = read_npy_header(f, idx, name, zs.size, &h, &data_at))) return st;
    int esz = pthcv_dtype_size(h.dtype);
    int64_t numel = 1, nbytes, stride[PTHCV_MAX_DIMS];
    for (int k = 0; k < h.ndim; k++) {
        int d = h.fortran ? k : h.ndim - 1 - k; /* fastest-varying dimension first */
        stride[d] = numel;
        if (!pthcv_mul_ok(numel, h.shape[d], &numel))
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: member '%s': its shape overflows the element count", f->path,
                              name);
    }
    if (!pthcv_mul_ok(numel, esz, &nbytes))
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: member '%s': its shape overflows the byte count", f->path, name);
    if ((uint64_t)nbytes != zs.size - data_at)
        return pthcv_fail(PTHCV_ERR_FORMAT,
                          "%s: member '%s' holds %llu bytes after its header, its shape and dtype need %lld", f->path,
                          name, (unsigned long long)(zs.size - data_at), (long long)nbytes);
    int align = esz > 8 ? 8 : esz;
    if (data_at % (size_t)align)
        return pthcv_fail(PTHCV_ERR_FORMAT,
                          "%s: member '%s': its data starts at byte %zu, not aligned for %s (numpy pads the header)",
                          f->path, name, data_at, pthcv_dtype_name(h.dtype));
    if ((st = pthcv_file_charge(f, (int64_t)zs.size, name))) return st;
    /* the whole member as bytes, and the array a view of its data */
    pthcv_storage *member = pthcv_storage_new_record(f->src, PTHCV_UINT8, (int64_t)zs.size, name, name);
    if (!member) return pthcv_last_status();
    member->record_index = (int64_t)idx;
    if (h.big_endian) member->swap_bytes = pthcv_dtype_is_complex(h.dtype) ? esz / 2 : esz;
    else pthcv_zip_use_in_place(f, member, idx, &zs, name, h.dtype);
    pthcv_storage *data = pthcv_storage_new_view(member, h.dtype, (int64_t)data_at, nbytes);
    pthcv_storage_release(member);
    if (!data) return pthcv_last_status();
    char where[512];
    snprintf(where, sizeof where, "%s: member '%s'", f->path, name);
    pthcv_tensor *t = pthcv_tensor_over(data, h.dtype, h.ndim, h.shape, stride, 0, where);
    pthcv_storage_release(data);
    if (!t) return pthcv_last_status();
    size_t keylen = strlen(name) - 4;
    char *key = pthcv_file_strdup(f, name, keylen);
    pthcv_value *k = key ? pthcv_value_new(f, PTHCV_V_STR) : NULL, *v = k ? pthcv_value_new(f, PTHCV_V_TENSOR) : NULL;
    if (!v) {
        pthcv_tensor_release(t);
        return pthcv_last_status();
    }
    k->s = key;
    k->len = (int64_t)keylen;
    v->tensor = t;
    return pthcv_value_push(dict, k, v);
}

int pthcv_open_npz(pthcv_file *f)
{
    f->format = "npz";
    pthcv_value *dict = pthcv_value_new(f, PTHCV_V_DICT);
    if (!dict) return pthcv_last_status();
    f->root = dict;
    zip_int64_t n = zip_get_num_entries(f->zip, 0);
    for (zip_int64_t i = 0; i < n; i++) {
        const char *name = zip_get_name(f->zip, (zip_uint64_t)i, 0);
        size_t len = name ? strlen(name) : 0;
        if (!name || !pthcv_name_is_printable(name, len))
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: zip member %lld has a name that is not printable UTF-8", f->path,
                              (long long)i);
        if (len < 5 || strcmp(name + len - 4, ".npy")) {
            if (i == 0)
                return pthcv_fail(
                    PTHCV_ERR_FORMAT,
                    "%s: a zip archive with neither a data.pkl record (torch.save) nor .npy members (numpy.savez): "
                    "its first member is '%s'",
                    f->path, name);
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: member '%s' of an .npz archive is not a .npy array", f->path,
                              name);
        }
        int st = add_member(f, dict, (zip_uint64_t)i, name);
        if (st) return st;
    }
    if (n == 0) return pthcv_fail(PTHCV_ERR_FORMAT, "%s: an empty zip archive", f->path);
    return pthcv_check_unique_keys(f, dict, "archive");
}
