/* safetensors.c -- the safetensors format: an 8-byte little-endian header
 * length, a JSON header naming each tensor's dtype, shape and byte range,
 * padded with spaces to a multiple of 8, then the bytes. */
#include "export.h"
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *st_dtype(int dtype)
{
    switch (dtype) {
    case PTHCV_FLOAT32: return "F32";
    case PTHCV_FLOAT64: return "F64";
    case PTHCV_FLOAT16: return "F16";
    case PTHCV_BFLOAT16: return "BF16";
    case PTHCV_INT8: return "I8";
    case PTHCV_INT16: return "I16";
    case PTHCV_INT32: return "I32";
    case PTHCV_INT64: return "I64";
    case PTHCV_UINT8: return "U8";
    case PTHCV_UINT16: return "U16";
    case PTHCV_UINT32: return "U32";
    case PTHCV_UINT64: return "U64";
    case PTHCV_BOOL: return "BOOL";
    case PTHCV_COMPLEX64: return "C64";
    case PTHCV_FLOAT8_E4M3FN: return "F8_E4M3";
    case PTHCV_FLOAT8_E5M2: return "F8_E5M2";
    default: return NULL;
    }
}

/* A growing string; an allocation failure is remembered and reported once. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[64]; /* numbers and dtype names only */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)n);
}

/* s as a JSON string: quotes, backslashes and control characters escaped;
 * other bytes (UTF-8) as they are. */
static void sb_json_string(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20) {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_put(b, s, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Refuses what safetensors cannot name: a tensor called __metadata__, two
 * tensors of one name, and a name that is not UTF-8 (the header is JSON). */
static int check_names(const char *path, int n, const char *const *names)
{
    const char **sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) return pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", path);
    memcpy(sorted, names, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_names);
    int rc = PTHCV_OK;
    size_t bad;
    for (int i = 0; i < n && rc == PTHCV_OK; i++)
        if (!pthcv_utf8_valid(sorted[i], &bad))
            rc = pthcv_fail(PTHCV_ERR_ARG,
                            "%s: tensor '%s': its name is not UTF-8 (byte 0x%02X at offset %zu), and safetensors "
                            "keys are; rename the tensor",
                            path, pthcv_esc(sorted[i]), (unsigned char)sorted[i][bad], bad);
        else if (strcmp(sorted[i], "__metadata__") == 0)
            rc = pthcv_fail(PTHCV_ERR_ARG, "%s: a tensor cannot be named __metadata__", path);
        else if (i > 0 && strcmp(sorted[i], sorted[i - 1]) == 0)
            rc = pthcv_fail(PTHCV_ERR_ARG, "%s: two tensors are named '%s'", path, sorted[i]);
    free(sorted);
    return rc;
}

/* The JSON header, padded; NULL with the error set. */
static char *build_header(const char *path, int n, const char *const *names, pthcv_tensor *const *tensors,
                          const char *metadata_json, size_t *len)
{
    sbuf b = {NULL, 0, 0, 0};
    sb_str(&b, "{");
    if (metadata_json) {
        sb_str(&b, "\"__metadata__\":");
        sb_str(&b, metadata_json);
    }
    int64_t pos = 0;
    for (int i = 0; i < n; i++) {
        const pthcv_tensor *t = tensors[i];
        const char *dt = st_dtype(t->dtype), *name = pthcv_dtype_name(t->dtype);
        if (!dt) {
            free(b.p);
            if (pthcv_dtype_is_quantized(t->dtype))
                return PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED,
                                       "%s: tensor '%s' is quantized (%s), which safetensors "
                                       "cannot hold; dequantize it first",
                                       path, names[i], name);
            return PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED,
                                   "%s: tensor '%s' is %s, which safetensors has no dtype for; "
                                   "convert it first",
                                   path, names[i], name ? name : "of an unknown dtype");
        }
        int64_t end;
        if (!pthcv_add_ok(pos, pthcv_tensor_nbytes(t), &end)) {
            free(b.p);
            return PTHCV_FAIL_NULL(PTHCV_ERR_LIMIT, "%s: tensors too large for one file", path);
        }
        sb_str(&b, i > 0 || metadata_json ? "," : "");
        sb_json_string(&b, names[i]);
        sb_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", dt);
        for (int d = 0; d < t->ndim; d++) sb_printf(&b, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        sb_printf(&b, "],\"data_offsets\":[%lld,%lld]}", (long long)pos, (long long)end);
        pos = end;
    }
    sb_str(&b, "}");
    while (b.len % 8) /* the data then starts 8-aligned */
        sb_str(&b, " ");
    if (b.oom) {
        free(b.p);
        return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory building the header", path);
    }
    *len = b.len;
    return b.p;
}

/* Whether s, less surrounding whitespace, at least looks like a JSON object. */
static int looks_like_object(const char *s)
{
    size_t a = strspn(s, " \t\r\n"), z = strlen(s);
    while (z > a && strchr(" \t\r\n", s[z - 1])) z--;
    return z - a >= 2 && s[a] == '{' && s[z - 1] == '}';
}

int pthcv_save_safetensors(const char *path, int n, const char *const *names, pthcv_tensor *const *tensors,
                           const char *metadata_json)
{
    if (!path || n < 0 || (n > 0 && (!names || !tensors)))
        return pthcv_fail(PTHCV_ERR_ARG, "pthcv_save_safetensors: bad arguments");
    for (int i = 0; i < n; i++)
        if (!names[i] || !tensors[i])
            return pthcv_fail(PTHCV_ERR_ARG, "%s: tensor %d has no %s", path, i, names[i] ? "tensor" : "name");
    if (metadata_json && !looks_like_object(metadata_json))
        return pthcv_fail(PTHCV_ERR_ARG, "%s: the metadata is not a JSON object", path);
    int rc = n > 0 ? check_names(path, n, names) : PTHCV_OK;
    if (rc != PTHCV_OK) return rc;

    size_t hlen;
    char *header = build_header(path, n, names, tensors, metadata_json, &hlen);
    if (!header) return pthcv_last_status();
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));

    pthcv_outfile o;
    if ((rc = pthcv_out_open(&o, path)) == PTHCV_OK) {
        if ((rc = pthcv_out_write(&o, len8, 8)) == PTHCV_OK) rc = pthcv_out_write(&o, header, hlen);
        for (int i = 0; i < n && rc == PTHCV_OK; i++) rc = pthcv_out_tensor(&o, tensors[i]);
        if (rc == PTHCV_OK) rc = pthcv_out_commit(&o);
        else pthcv_out_abort(&o);
    }
    free(header);
    return rc;
}
