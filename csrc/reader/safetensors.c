/*
 * safetensors.c -- reads .safetensors files (Hugging Face's format, which
 * `pthcv convert` writes) into the value tree: a dict name -> tensor.
 *
 * Layout: a little-endian uint64 N, N bytes of JSON, then the data section.
 * The JSON is one object: "__metadata__" (an object of strings, checked and
 * left out of the tree) and, per tensor, {"dtype": "F32", "shape": [2, 3],
 * "data_offsets": [begin, end]} with offsets into the data section. The
 * parser below reads exactly that shape of JSON (fixed nesting, no
 * recursion) and refuses anything else. As the format's reference reader
 * does, it requires each tensor's byte count to match its shape and dtype
 * and the tensors to cover the data section without holes or overlaps.
 * Tensors are read lazily from the mapped file, in place when aligned.
 */
#include "reader.h"
#include <stdlib.h>
#include <string.h>

/* The reference implementation's bound on the header (MAX_HEADER_SIZE). */
enum { SAFETENSORS_MAX_HEADER = 100 * 1000 * 1000 };

/* Whether the first bytes look like a safetensors file: a header length
 * below 2^32 and JSON that opens an object. Called before the legacy check
 * (a header length can begin with 0x80, a pickle's PROTO opcode). */
int pthcv_is_safetensors(const unsigned char *head, size_t n)
{
    return n >= 10 && head[4] == 0 && head[5] == 0 && head[6] == 0 && head[7] == 0 && head[8] == '{' &&
        (head[9] == '"' || head[9] == '}' || head[9] == ' ' || head[9] == '\n');
}

/* ---- the JSON of the header ---- */

typedef struct {
    pthcv_file *f;
    const unsigned char *s;
    size_t n, pos; /* pos: next byte of the header */
    char *buf;     /* the last string read, NUL-terminated */
    size_t buf_len, buf_cap;
} json_in;

static int json_fail(json_in *j, const char *what)
{
    return pthcv_fail(PTHCV_ERR_FORMAT, "%s: safetensors header, byte %zu: %s", j->f->path, j->pos + 8, what);
}

static void skip_ws(json_in *j)
{
    while (j->pos < j->n &&
           (j->s[j->pos] == ' ' || j->s[j->pos] == '\t' || j->s[j->pos] == '\n' || j->s[j->pos] == '\r'))
        j->pos++;
}

/* Consumes c (after white space), or fails naming what was expected. */
static int expect(json_in *j, char c, const char *what)
{
    skip_ws(j);
    if (j->pos >= j->n || j->s[j->pos] != (unsigned char)c) return json_fail(j, what);
    j->pos++;
    return PTHCV_OK;
}

/* Whether the next byte (after white space) is c; consumed if so. */
static int accept(json_in *j, char c)
{
    skip_ws(j);
    if (j->pos < j->n && j->s[j->pos] == (unsigned char)c) {
        j->pos++;
        return 1;
    }
    return 0;
}

static int put_byte(json_in *j, unsigned c)
{
    if (j->buf_len + 1 >= j->buf_cap) {
        size_t cap = j->buf_cap ? j->buf_cap * 2 : 64;
        char *nb = realloc(j->buf, cap);
        if (!nb) return pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory reading the safetensors header", j->f->path);
        j->buf = nb;
        j->buf_cap = cap;
    }
    j->buf[j->buf_len++] = (char)c;
    j->buf[j->buf_len] = 0;
    return PTHCV_OK;
}

static int hex4(json_in *j, unsigned *out)
{
    if (j->n - j->pos < 4) return json_fail(j, "a \\u escape needs four hex digits");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = j->s[j->pos + i];
        int d = c >= '0' && c <= '9' ? c - '0'
            : c >= 'a' && c <= 'f'   ? c - 'a' + 10
            : c >= 'A' && c <= 'F'   ? c - 'A' + 10
                                     : -1;
        if (d < 0) return json_fail(j, "a \\u escape needs four hex digits");
        v = v << 4 | (unsigned)d;
    }
    j->pos += 4;
    *out = v;
    return PTHCV_OK;
}

/* A JSON string into j->buf (UTF-8, escapes decoded). */
static int read_string(json_in *j)
{
    int st = expect(j, '"', "expected a string");
    if (st) return st;
    j->buf_len = 0;
    if ((st = put_byte(j, 0))) return st;
    j->buf_len = 0;
    while (1) {
        if (j->pos >= j->n) return json_fail(j, "unterminated string");
        unsigned c = j->s[j->pos++];
        if (c == '"') break;
        if (c < 0x20) return json_fail(j, "a control character inside a string");
        if (c != '\\') {
            if ((st = put_byte(j, c))) return st;
            continue;
        }
        if (j->pos >= j->n) return json_fail(j, "unterminated string");
        c = j->s[j->pos++];
        const char *simple = strchr("\"\\/bfnrt", (int)c);
        if (c && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            if ((st = put_byte(j, (unsigned char)decoded[simple - "\"\\/bfnrt"]))) return st;
            continue;
        }
        if (c != 'u') return json_fail(j, "an unknown escape in a string");
        unsigned cp;
        if ((st = hex4(j, &cp))) return st;
        if (cp >= 0xd800 && cp < 0xdc00) { /* a surrogate pair */
            unsigned lo;
            if (j->n - j->pos < 2 || j->s[j->pos] != '\\' || j->s[j->pos + 1] != 'u')
                return json_fail(j, "an unpaired surrogate in a string");
            j->pos += 2;
            if ((st = hex4(j, &lo))) return st;
            if (lo < 0xdc00 || lo > 0xdfff) return json_fail(j, "an unpaired surrogate in a string");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            return json_fail(j, "an unpaired surrogate in a string");
        }
        if (cp < 0x80) st = put_byte(j, cp);
        else if (cp < 0x800) st = put_byte(j, 0xc0 | cp >> 6) || put_byte(j, 0x80 | (cp & 0x3f));
        else if (cp < 0x10000)
            st = put_byte(j, 0xe0 | cp >> 12) || put_byte(j, 0x80 | (cp >> 6 & 0x3f)) ||
                put_byte(j, 0x80 | (cp & 0x3f));
        else
            st = put_byte(j, 0xf0 | cp >> 18) || put_byte(j, 0x80 | (cp >> 12 & 0x3f)) ||
                put_byte(j, 0x80 | (cp >> 6 & 0x3f)) || put_byte(j, 0x80 | (cp & 0x3f));
        if (st) return pthcv_last_status();
    }
    if (!pthcv_name_is_printable(j->buf, j->buf_len)) return json_fail(j, "a string that is not printable UTF-8");
    return PTHCV_OK;
}

int pthcv_read_digits(const unsigned char *s, size_t n, size_t *pos, int64_t *out)
{
    int64_t v = 0;
    size_t start = *pos;
    while (*pos < n && s[*pos] >= '0' && s[*pos] <= '9') {
        if (v > ((int64_t)1 << 53) / 10) return -1;
        v = v * 10 + (s[(*pos)++] - '0');
    }
    *out = v;
    return *pos > start;
}

/* A non-negative JSON integer below 2^53. */
static int read_count(json_in *j, int64_t *out)
{
    skip_ws(j);
    size_t start = j->pos;
    int got = pthcv_read_digits(j->s, j->n, &j->pos, out);
    if (got < 0) return json_fail(j, "a number too large");
    if (!got) return json_fail(j, "expected a non-negative integer");
    if (j->pos - start > 1 && j->s[start] == '0') return json_fail(j, "a number with a leading zero");
    if (j->pos < j->n && (j->s[j->pos] == '.' || j->s[j->pos] == 'e' || j->s[j->pos] == 'E'))
        return json_fail(j, "expected an integer");
    return PTHCV_OK;
}

/* [n, n, ...] into out[0..*count), at most max items. */
static int read_counts(json_in *j, int64_t *out, int max, int *count)
{
    int st = expect(j, '[', "expected an array of integers");
    if (st) return st;
    *count = 0;
    if (accept(j, ']')) return PTHCV_OK;
    do {
        if (*count == max) return json_fail(j, "an array with too many items (at most 16 dimensions)");
        if ((st = read_count(j, &out[(*count)++]))) return st;
    } while (accept(j, ','));
    return expect(j, ']', "expected ',' or ']'");
}

static const struct {
    const char *name;
    int dtype;
} st_dtypes[] = {
    {"F64", PTHCV_FLOAT64},         {"F32", PTHCV_FLOAT32},
    {"F16", PTHCV_FLOAT16},         {"BF16", PTHCV_BFLOAT16},
    {"I64", PTHCV_INT64},           {"I32", PTHCV_INT32},
    {"I16", PTHCV_INT16},           {"I8", PTHCV_INT8},
    {"U64", PTHCV_UINT64},          {"U32", PTHCV_UINT32},
    {"U16", PTHCV_UINT16},          {"U8", PTHCV_UINT8},
    {"BOOL", PTHCV_BOOL},           {"F8_E4M3", PTHCV_FLOAT8_E4M3FN},
    {"F8_E5M2", PTHCV_FLOAT8_E5M2}, {"C64", PTHCV_COMPLEX64},
};

/* One tensor's description. */
typedef struct {
    int dtype, ndim;
    int64_t shape[PTHCV_MAX_DIMS];
    int64_t begin, end;
} st_entry;

static int read_entry(json_in *j, st_entry *e)
{
    int st = expect(j, '{', "expected a tensor's object {dtype, shape, data_offsets}");
    if (st) return st;
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    if (!accept(j, '}')) do {
            if ((st = read_string(j)) || (st = expect(j, ':', "expected ':'"))) return st;
            if (!strcmp(j->buf, "dtype")) {
                if ((st = read_string(j))) return st;
                e->dtype = -1;
                for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
                    if (!strcmp(j->buf, st_dtypes[i].name)) e->dtype = st_dtypes[i].dtype;
                if (e->dtype < 0) return json_fail(j, "an unknown dtype");
                have_dtype++;
            } else if (!strcmp(j->buf, "shape")) {
                if ((st = read_counts(j, e->shape, PTHCV_MAX_DIMS, &e->ndim))) return st;
                have_shape++;
            } else if (!strcmp(j->buf, "data_offsets")) {
                int64_t off[2];
                int n;
                if ((st = read_counts(j, off, 2, &n))) return st;
                if (n != 2) return json_fail(j, "data_offsets needs two integers [begin, end]");
                e->begin = off[0];
                e->end = off[1];
                have_offsets++;
            } else {
                return json_fail(j, "an unknown key in a tensor's object (dtype, shape and data_offsets only)");
            }
        } while (accept(j, ','));
    if ((st = expect(j, '}', "expected ',' or '}'"))) return st;
    if (have_dtype != 1 || have_shape != 1 || have_offsets != 1)
        return json_fail(j, "a tensor needs dtype, shape and data_offsets, once each");
    return PTHCV_OK;
}

/* "__metadata__": {"key": "value", ...}, checked and dropped. */
static int skip_metadata(json_in *j)
{
    int st = expect(j, '{', "__metadata__ must be an object of strings");
    if (st || accept(j, '}')) return st;
    do {
        if ((st = read_string(j)) || (st = expect(j, ':', "expected ':'")) || (st = read_string(j))) return st;
    } while (accept(j, ','));
    return expect(j, '}', "expected ',' or '}'");
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(pthcv_value *const *)a)->s, (*(pthcv_value *const *)b)->s);
}

/* Fails when two keys of a dict of string keys are equal (sorting a copy:
 * n log n, whatever the file holds). */
int pthcv_check_unique_keys(pthcv_file *f, const pthcv_value *dict, const char *where)
{
    if (dict->n < 2) return PTHCV_OK;
    pthcv_value **keys = malloc((size_t)dict->n * sizeof *keys);
    if (!keys) return pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", f->path);
    for (int64_t i = 0; i < dict->n; i++) keys[i] = dict->items[2 * i];
    qsort(keys, (size_t)dict->n, sizeof *keys, by_name);
    int st = PTHCV_OK;
    for (int64_t i = 1; i < dict->n && !st; i++)
        if (!strcmp(keys[i - 1]->s, keys[i]->s))
            st = pthcv_fail(PTHCV_ERR_FORMAT, "%s: tensor '%s' is named twice in the %s", f->path, keys[i]->s, where);
    free(keys);
    return st;
}

static int by_begin(const void *a, const void *b)
{
    const int64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Checks one entry against the data section and adds its tensor to the dict. */
static int add_tensor(pthcv_file *f, pthcv_value *dict, const char *name, const st_entry *e, uint64_t data_start,
                      uint64_t data_len)
{
    int64_t numel = 1, nbytes, stride[PTHCV_MAX_DIMS];
    for (int d = e->ndim - 1; d >= 0; d--) {
        stride[d] = numel;
        if (!pthcv_mul_ok(numel, e->shape[d], &numel))
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s: tensor '%s': its shape overflows the element count", f->path,
                              name);
    }
    if (!pthcv_mul_ok(numel, pthcv_dtype_size(e->dtype), &nbytes))
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: tensor '%s': its shape overflows the byte count", f->path, name);
    if (e->begin > e->end || (uint64_t)e->end > data_len)
        return pthcv_fail(PTHCV_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%lld, %lld] outside the data section of %llu bytes", f->path,
                          name, (long long)e->begin, (long long)e->end, (unsigned long long)data_len);
    if (e->end - e->begin != nbytes)
        return pthcv_fail(PTHCV_ERR_FORMAT,
                          "%s: tensor '%s': %lld bytes at data_offsets [%lld, %lld], but %s %s needs %lld", f->path,
                          name, (long long)(e->end - e->begin), (long long)e->begin, (long long)e->end,
                          pthcv_dtype_name(e->dtype), e->ndim ? "of its shape" : "scalar", (long long)nbytes);
    int st = pthcv_file_charge(f, nbytes, name);
    if (st) return st;
    pthcv_storage *s = pthcv_storage_new_record(f->src, e->dtype, nbytes, name, name);
    if (!s) return pthcv_last_status();
    s->file_offset = (int64_t)(data_start + (uint64_t)e->begin);
    int align = pthcv_dtype_size(e->dtype) > 8 ? 8 : pthcv_dtype_size(e->dtype);
    s->in_place = s->file_offset % align == 0;
    char where[512];
    snprintf(where, sizeof where, "%s: tensor '%s'", f->path, name);
    pthcv_tensor *t = pthcv_tensor_over(s, e->dtype, e->ndim, e->shape, stride, 0, where);
    pthcv_storage_release(s);
    if (!t) return pthcv_last_status();
    pthcv_value *k = pthcv_value_str(f, name), *v = k ? pthcv_value_new(f, PTHCV_V_TENSOR) : NULL;
    if (!v) {
        pthcv_tensor_release(t);
        return pthcv_last_status();
    }
    v->tensor = t;
    return pthcv_value_push(dict, k, v);
}

static int parse_header(pthcv_file *f, json_in *j, uint64_t data_start, uint64_t data_len)
{
    pthcv_value *dict = pthcv_value_new(f, PTHCV_V_DICT);
    if (!dict) return pthcv_last_status();
    f->root = dict;
    int64_t(*ranges)[2] = NULL;
    int64_t nranges = 0, cap = 0;
    int st = expect(j, '{', "the header is not a JSON object");
    if (!st && !accept(j, '}')) do {
            if ((st = read_string(j)) || (st = expect(j, ':', "expected ':'"))) break;
            if (!strcmp(j->buf, "__metadata__")) {
                if ((st = skip_metadata(j))) break;
                continue;
            }
            char *name = pthcv_file_strdup(f, j->buf, j->buf_len);
            if (!name) {
                st = pthcv_last_status();
                break;
            }
            if (dict->n >= f->opts.max_values) {
                st = pthcv_fail(PTHCV_ERR_LIMIT, "%s: more than %lld tensors (max_values)", f->path,
                                (long long)f->opts.max_values);
                break;
            }
            st_entry e;
            memset(&e, 0, sizeof e);
            if ((st = read_entry(j, &e)) || (st = add_tensor(f, dict, name, &e, data_start, data_len))) break;
            if (nranges == cap) {
                cap = cap ? cap * 2 : 64;
                void *nr = realloc(ranges, (size_t)cap * sizeof *ranges);
                if (!nr) {
                    st = pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", f->path);
                    break;
                }
                ranges = nr;
            }
            ranges[nranges][0] = e.begin;
            ranges[nranges++][1] = e.end;
        } while (accept(j, ','));
    if (!st) st = expect(j, '}', "expected ',' or '}'");
    if (!st) {
        skip_ws(j);
        if (j->pos != j->n) st = json_fail(j, "text after the header's object");
    }
    if (!st) st = pthcv_check_unique_keys(f, dict, "safetensors header");
    /* the tensors tile the data section: sorted by begin, each ends where the next begins */
    if (!st && nranges) qsort(ranges, (size_t)nranges, sizeof *ranges, by_begin);
    uint64_t at = 0;
    for (int64_t i = 0; !st && i < nranges; i++) {
        if ((uint64_t)ranges[i][0] != at)
            st = pthcv_fail(PTHCV_ERR_FORMAT, "%s: the tensors' data_offsets %s at byte %llu of the data section",
                            f->path, (uint64_t)ranges[i][0] > at ? "leave a hole" : "overlap", (unsigned long long)at);
        at = (uint64_t)ranges[i][1];
    }
    if (!st && at != data_len)
        st = pthcv_fail(PTHCV_ERR_FORMAT, "%s: the data section has %llu bytes, the tensors cover %llu", f->path,
                        (unsigned long long)data_len, (unsigned long long)at);
    free(ranges);
    return st;
}

int pthcv_open_safetensors(pthcv_file *f)
{
    unsigned char *map;
    size_t size;
    int st = pthcv_open_mapped(f, &map, &size);
    if (st) return st;
    f->format = "safetensors";
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | map[i];
    if (n > SAFETENSORS_MAX_HEADER)
        return pthcv_fail(PTHCV_ERR_FORMAT,
                          "%s: a safetensors header of %llu bytes, more than the format's limit of %d", f->path,
                          (unsigned long long)n, SAFETENSORS_MAX_HEADER);
    if (n > size - 8)
        return pthcv_fail(PTHCV_ERR_FORMAT,
                          "%s: truncated: the safetensors header claims %llu bytes, the file has %zu after its length",
                          f->path, (unsigned long long)n, size - 8);
    json_in j = {.f = f, .s = map + 8, .n = (size_t)n};
    st = parse_header(f, &j, 8 + n, size - 8 - n);
    free(j.buf);
    return st;
}
