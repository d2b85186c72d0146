/*
 * pickle.c -- the pickle machine.
 *
 * Executes the opcodes of protocols 0 to 5 over an explicit stack, so nesting
 * depth never touches the C stack. Nothing is ever called: GLOBAL only names
 * a function or class, REDUCE/NEWOBJ/INST/OBJ hand the name and arguments to
 * globals.c, which builds a known value or an inert OBJECT. Every read is
 * bounds-checked against the record, every size against the options.
 */
#include "reader.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Memo: index -> value, open addressing (indices come from the file and may be
 * sparse, so an array indexed by them could be made arbitrarily large). */
typedef struct {
    int64_t *keys;
    pthcv_value **vals;
    int64_t cap, count;
} memo_t;

static int memo_put(memo_t *m, int64_t key, pthcv_value *v)
{
    if ((m->count + 1) * 2 > m->cap) {
        int64_t ncap = m->cap ? m->cap * 2 : 64;
        int64_t *nk = malloc(ncap * sizeof *nk);
        pthcv_value **nv = malloc(ncap * sizeof *nv);
        if (!nk || !nv) { free(nk); free(nv); return PTHCV_ERR_NOMEM; }
        for (int64_t i = 0; i < ncap; i++) nk[i] = -1;
        for (int64_t i = 0; i < m->cap; i++) {
            if (m->keys[i] < 0) continue;
            uint64_t h = (uint64_t)m->keys[i] * 0x9E3779B97F4A7C15ull;
            int64_t j = (int64_t)(h & (uint64_t)(ncap - 1));
            while (nk[j] >= 0) j = (j + 1) & (ncap - 1);
            nk[j] = m->keys[i]; nv[j] = m->vals[i];
        }
        free(m->keys); free(m->vals);
        m->keys = nk; m->vals = nv; m->cap = ncap;
    }
    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ull;
    int64_t j = (int64_t)(h & (uint64_t)(m->cap - 1));
    while (m->keys[j] >= 0 && m->keys[j] != key) j = (j + 1) & (m->cap - 1);
    if (m->keys[j] < 0) { m->keys[j] = key; m->count++; }
    m->vals[j] = v;
    return PTHCV_OK;
}

static pthcv_value *memo_get(const memo_t *m, int64_t key)
{
    if (!m->cap || key < 0) return NULL;
    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ull;
    int64_t j = (int64_t)(h & (uint64_t)(m->cap - 1));
    while (m->keys[j] >= 0) {
        if (m->keys[j] == key) return m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

typedef struct {
    pthcv_pickle *p;
    pthcv_value **stack;
    int64_t sp, scap;
    int64_t *marks;
    int64_t nmarks, mcap;
    memo_t memo;
} machine;

#define FAIL(st, ...) return pthcv_fail((st), __VA_ARGS__)
#define FMT_FAIL(m, fmt, ...) \
    return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: " fmt, PK_WHERE((m)->p), ##__VA_ARGS__)

static int push(machine *m, pthcv_value *v)
{
    if (!v) return pthcv_last_status() ? pthcv_last_status() : PTHCV_ERR_NOMEM;
    if (m->sp == m->scap) {
        int64_t ncap = m->scap ? m->scap * 2 : 64;
        pthcv_value **ns = realloc(m->stack, ncap * sizeof *ns);
        if (!ns) FAIL(PTHCV_ERR_NOMEM, "%s: out of memory growing the pickle stack", m->p->file->path);
        m->stack = ns; m->scap = ncap;
    }
    m->stack[m->sp++] = v;
    return PTHCV_OK;
}

/* The stack floor: values below the innermost MARK belong to an outer frame. */
static int64_t floor_of(const machine *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

static int pop(machine *m, pthcv_value **out)
{
    if (m->sp <= floor_of(m)) FMT_FAIL(m, "the stack is empty (unbalanced pickle)");
    *out = m->stack[--m->sp];
    return PTHCV_OK;
}

static int top(machine *m, pthcv_value **out)
{
    if (m->sp <= floor_of(m)) FMT_FAIL(m, "the stack is empty (unbalanced pickle)");
    *out = m->stack[m->sp - 1];
    return PTHCV_OK;
}

/* Pops the items above the innermost MARK; items stay valid in m->stack[*from..sp). */
static int pop_mark(machine *m, int64_t *from)
{
    if (!m->nmarks) FMT_FAIL(m, "no MARK on the stack (unbalanced pickle)");
    *from = m->marks[--m->nmarks];
    return PTHCV_OK;
}

static int need(machine *m, size_t n)
{
    pthcv_pickle *p = m->p;
    if (p->pos > p->len || n > p->len - p->pos)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: truncated: the opcode needs %zu bytes, %zu remain",
                          PK_WHERE(p), n, p->len - (p->pos > p->len ? p->len : p->pos));
    return PTHCV_OK;
}

static uint64_t rd_le(const unsigned char *b, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

/* A newline-terminated argument of a text opcode, without the newline. */
static int read_line(machine *m, const char **s, size_t *n)
{
    pthcv_pickle *p = m->p;
    const unsigned char *start = p->buf + p->pos;
    const unsigned char *nl = memchr(start, '\n', p->len - p->pos);
    if (!nl) FMT_FAIL(m, "truncated: text argument without its newline");
    *s = (const char *)start;
    *n = (size_t)(nl - start);
    p->pos += *n + 1;
    return PTHCV_OK;
}

static pthcv_value *new_int(pthcv_file *f, int64_t v)
{
    pthcv_value *x = pthcv_value_new(f, PTHCV_V_INT);
    if (x) x->i = v;
    return x;
}

static pthcv_value *new_bytes(machine *m, int kind, const void *s, size_t n)
{
    pthcv_file *f = m->p->file;
    if ((int64_t)n > f->opts.max_string) {
        pthcv_fail(PTHCV_ERR_LIMIT, "%s: %s at byte %zu: a string of %zu bytes exceeds the limit of %lld",
                   PK_WHERE(m->p), n, (long long)f->opts.max_string);
        return NULL;
    }
    pthcv_value *x = pthcv_value_new(f, kind);
    if (!x) return NULL;
    x->s = pthcv_file_strdup(f, s, n);
    x->len = (int64_t)n;
    return x->s ? x : NULL;
}

/* LONG1/LONG4 payload: little-endian two's complement; INT when it fits. */
static pthcv_value *new_long(machine *m, const unsigned char *b, size_t n)
{
    pthcv_file *f = m->p->file;
    if (n == 0) return new_int(f, 0);
    if (n <= 8) {
        uint64_t u = rd_le(b, (int)n);
        if (n < 8 && (b[n - 1] & 0x80)) u |= ~0ull << (8 * n);  /* sign-extend */
        return new_int(f, (int64_t)u);
    }
    /* wider: still an int64 if the extra bytes are pure sign extension */
    int neg = (b[n - 1] & 0x80) != 0;
    size_t k = n;
    while (k > 8 && b[k - 1] == (neg ? 0xff : 0x00)) k--;
    if (k <= 8 && ((b[7] & 0x80) != 0) == neg) return new_int(f, (int64_t)rd_le(b, 8));
    return new_bytes(m, PTHCV_V_BIGINT, b, n);
}

/* A decimal LONG beyond 64 bits -> BIGINT bytes (little-endian two's
 * complement, as LONG1 carries them), so every big int has one form. */
static pthcv_value *decimal_bigint(machine *m, const char *s, size_t n)
{
    size_t i = 0, k = n && s[n - 1] == 'L' ? n - 1 : n;
    int neg = 0;
    if (i < k && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    if (i >= k || k - i > 100000) {
        pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: LONG argument is not a number", PK_WHERE(m->p));
        return NULL;
    }
    size_t cap = (k - i) / 2 + 2, len = 1;
    unsigned char *b = calloc(cap, 1);
    if (!b) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory", m->p->file->path);
    for (; i < k; i++) {
        if (s[i] < '0' || s[i] > '9') {
            free(b);
            pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: LONG argument is not a number", PK_WHERE(m->p));
            return NULL;
        }
        unsigned carry = (unsigned)(s[i] - '0');
        for (size_t j = 0; j < len; j++) {
            unsigned v = b[j] * 10u + carry;
            b[j] = (unsigned char)v;
            carry = v >> 8;
        }
        if (carry) b[len++] = (unsigned char)carry;
    }
    if (b[len - 1] & 0x80) len++;          /* room for the sign bit */
    if (neg) {                             /* two's complement */
        unsigned carry = 1;
        for (size_t j = 0; j < len; j++) {
            unsigned v = (unsigned char)~b[j] + carry;
            b[j] = (unsigned char)v;
            carry = v >> 8;
        }
    }
    pthcv_value *v = new_long(m, b, len);
    free(b);
    return v;
}

/* Decimal text (INT, LONG, GET/PUT) -> int64, or BIGINT-as-text refusal. */
static int parse_decimal(machine *m, const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    while (i < n && (s[i] == ' ')) i++;
    if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    if (i >= n) FMT_FAIL(m, "expected a decimal number");
    uint64_t v = 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10) FMT_FAIL(m, "decimal number out of 64-bit range");
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i < n && s[i] == 'L') i++;
    if (i != n) FMT_FAIL(m, "expected a decimal number, found '%.*s'", (int)(n > 40 ? 40 : n), s);
    if (v > (uint64_t)INT64_MAX + (uint64_t)neg) FMT_FAIL(m, "decimal number out of 64-bit range");
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return PTHCV_OK;
}

/* Appends the UTF-8 encoding of code point c to dst (dst has room for 4). */
static size_t put_utf8(unsigned char *dst, uint32_t c)
{
    if (c < 0x80) { dst[0] = (unsigned char)c; return 1; }
    if (c < 0x800) { dst[0] = 0xC0 | (c >> 6); dst[1] = 0x80 | (c & 0x3F); return 2; }
    if (c < 0x10000) { dst[0] = 0xE0 | (c >> 12); dst[1] = 0x80 | ((c >> 6) & 0x3F); dst[2] = 0x80 | (c & 0x3F); return 3; }
    dst[0] = 0xF0 | (c >> 18); dst[1] = 0x80 | ((c >> 12) & 0x3F);
    dst[2] = 0x80 | ((c >> 6) & 0x3F); dst[3] = 0x80 | (c & 0x3F);
    return 4;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Protocol 0 STRING: a Python repr, quoted, with backslash escapes. Yields the
 * raw bytes (Python 2 str); the caller decides str or bytes. */
static int unquote_string(machine *m, const char *s, size_t n, unsigned char *out, size_t *outn)
{
    if (n < 2 || (s[0] != '\'' && s[0] != '"') || s[n - 1] != s[0])
        FMT_FAIL(m, "STRING argument is not quoted");
    size_t o = 0;
    for (size_t i = 1; i + 1 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '\\') { out[o++] = c; continue; }
        if (++i + 1 > n - 1) FMT_FAIL(m, "STRING ends inside an escape");
        c = (unsigned char)s[i];
        switch (c) {
        case 'n': out[o++] = '\n'; break;
        case 't': out[o++] = '\t'; break;
        case 'r': out[o++] = '\r'; break;
        case 'a': out[o++] = '\a'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'v': out[o++] = '\v'; break;
        case '\\': case '\'': case '"': out[o++] = c; break;
        case '\n': break;
        case 'x': {
            if (i + 2 >= n - 1 + 1 || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
                FMT_FAIL(m, "bad \\x escape in STRING");
            out[o++] = (unsigned char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
            break;
        }
        default:
            if (c >= '0' && c <= '7') {
                int v = c - '0', k = 1;
                while (k < 3 && i + 1 < n - 1 && s[i + 1] >= '0' && s[i + 1] <= '7') { v = v * 8 + (s[++i] - '0'); k++; }
                out[o++] = (unsigned char)v;
            } else {
                out[o++] = '\\'; out[o++] = c;
            }
        }
    }
    *outn = o;
    return PTHCV_OK;
}

/* Latin-1 bytes -> UTF-8 (Python 2 str read as Python 3 str, encoding 'latin1'
 * as torch.load defaults to for legacy files). */
static pthcv_value *latin1_str(machine *m, const unsigned char *b, size_t n)
{
    unsigned char *tmp = malloc(n * 2 + 1);
    if (!tmp) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory", m->p->file->path);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) o += put_utf8(tmp + o, b[i]);
    pthcv_value *v = new_bytes(m, PTHCV_V_STR, tmp, o);
    free(tmp);
    return v;
}

/* Protocol 0 UNICODE: raw-unicode-escape (\uXXXX and \UXXXXXXXX only). */
static pthcv_value *raw_unicode(machine *m, const char *s, size_t n)
{
    unsigned char *tmp = malloc(n * 4 + 1);
    if (!tmp) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory", m->p->file->path);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' && i + 1 < n && (s[i + 1] == 'u' || s[i + 1] == 'U')) {
            int digits = s[i + 1] == 'u' ? 4 : 8;
            uint32_t cp = 0;
            int ok = i + 2 + (size_t)digits <= n;
            for (int k = 0; ok && k < digits; k++) {
                int h = hexval(s[i + 2 + k]);
                if (h < 0) ok = 0; else cp = cp * 16 + (uint32_t)h;
            }
            if (ok && cp <= 0x10FFFF) { o += put_utf8(tmp + o, cp); i += 1 + (size_t)digits; continue; }
        }
        o += put_utf8(tmp + o, c);   /* each byte is a Latin-1 code point */
    }
    pthcv_value *v = new_bytes(m, PTHCV_V_STR, tmp, o);
    free(tmp);
    return v;
}

/* Adds item (or a key/value pair when value is not NULL) to a container,
 * tracking nesting depth: values nest without any recursion here, but
 * whoever walks the tree later should not meet a depth the file chose freely. */
static int add_entry(machine *m, pthcv_value *container, pthcv_value *item, pthcv_value *value)
{
    if (pthcv_value_push(container, item, value)) return pthcv_last_status();
    int64_t d = item->depth;
    if (value && value->depth > d) d = value->depth;
    if (d + 1 > container->depth) container->depth = d + 1;
    if (container->depth > m->p->file->opts.max_depth)
        return pthcv_fail(PTHCV_ERR_LIMIT, "%s: %s at byte %zu: nesting depth exceeds the limit of %d",
                          PK_WHERE(m->p), m->p->file->opts.max_depth);
    return PTHCV_OK;
}
#define add_item(m, c, it) add_entry((m), (c), (it), NULL)

static pthcv_value *make_tuple(machine *m, pthcv_value **items, int64_t n)
{
    pthcv_value *t = pthcv_value_new(m->p->file, PTHCV_V_TUPLE);
    if (!t) return NULL;
    for (int64_t i = 0; i < n; i++)
        if (add_item(m, t, items[i])) return NULL;
    return t;
}



static int do_global(machine *m, const char *module, size_t mlen, const char *name, size_t nlen)
{
    pthcv_file *f = m->p->file;
    if (mlen > 512 || nlen > 512) FMT_FAIL(m, "global name longer than 512 bytes");
    char mod[520], nm[520], full[1100];
    memcpy(mod, module, mlen); mod[mlen] = 0;
    memcpy(nm, name, nlen); nm[nlen] = 0;
    if (memchr(mod, 0, mlen) || memchr(nm, 0, nlen)) FMT_FAIL(m, "global name contains a NUL byte");
    snprintf(full, sizeof full, "%s.%s", mod, nm);
    int unsafe = pthcv_global_is_unsafe(mod, nm);
    if (pthcv_file_note_global(f, full, unsafe)) return pthcv_last_status();
    if (unsafe && !f->opts.scan_only) {
        const char *py3 = pthcv_py3_module(mod);
        char alias[1100] = "";
        if (strcmp(py3, mod) != 0) snprintf(alias, sizeof alias, " (%s.%s)", py3, nm);
        return pthcv_fail(PTHCV_ERR_UNSAFE,
                          "%s: %s at byte %zu: refusing unsafe global %s%s: calling it could run code; nothing was loaded",
                          PK_WHERE(m->p), full, alias);
    }
    /* keep the Python 3 spelling so handlers match one name */
    snprintf(full, sizeof full, "%s.%s", pthcv_py3_module(mod), nm);
    pthcv_value *g = pthcv_value_str(f, full);
    if (!g) return pthcv_last_status();
    g->kind = PTHCV_V_GLOBAL;
    if (unsafe) g->flags |= PTHCV_VF_UNSAFE;
    return push(m, g);
}

static int call(machine *m, pthcv_value *callee, pthcv_value *args, pthcv_value *kwargs)
{
    if (callee->kind != PTHCV_V_GLOBAL)
        FMT_FAIL(m, "a call needs a class or function named by GLOBAL, found a value of kind %d", callee->kind);
    if (args->kind != PTHCV_V_TUPLE)
        FMT_FAIL(m, "arguments of %s are not a tuple", callee->s);
    pthcv_value *out = NULL;
    m->p->op_offset = m->p->op_offset;  /* handlers report at the calling opcode */
    int st = pthcv_call_global(m->p, callee, args, kwargs, &out);
    if (st) return st;
    return push(m, out);
}

/* SETITEM(S) target check shared by both opcodes. */
static int dict_target(machine *m, pthcv_value *d, const char *op)
{
    if (d->kind == PTHCV_V_DICT) return PTHCV_OK;
    if (d->kind == PTHCV_V_OBJECT && !(d->n && !(d->flags & PTHCV_VF_OBJECT_DICT))) {
        d->flags |= PTHCV_VF_OBJECT_DICT;
        return PTHCV_OK;
    }
    FMT_FAIL(m, "%s on a value that is not a dict", op);
}

static int list_target(machine *m, pthcv_value *l, const char *op)
{
    if (l->kind == PTHCV_V_LIST) return PTHCV_OK;
    if (l->kind == PTHCV_V_OBJECT && !(l->flags & PTHCV_VF_OBJECT_DICT)) return PTHCV_OK;
    FMT_FAIL(m, "%s on a value that is not a list", op);
}

static int run(machine *m, pthcv_value **result)
{
    pthcv_pickle *p = m->p;
    pthcv_file *f = p->file;
    int st;
    pthcv_value *a, *b, *c;
    int64_t from;
    const char *s; size_t n;

    for (;;) {
        if ((st = need(m, 1))) return st;
        p->op_offset = p->pos;
        unsigned char op = p->buf[p->pos++];
        switch (op) {
        /* ---- structure ---- */
        case 0x80: /* PROTO */
            if ((st = need(m, 1))) return st;
            if (p->buf[p->pos] > 5) FMT_FAIL(m, "unsupported pickle protocol %d", p->buf[p->pos]);
            p->pos++;
            break;
        case 0x95: /* FRAME: an 8-byte length; frames only group opcodes */
            if ((st = need(m, 8))) return st;
            if (rd_le(p->buf + p->pos, 8) > p->len - p->pos - 8)
                return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: truncated: FRAME of %llu bytes, %zu remain",
                                  PK_WHERE(p), (unsigned long long)rd_le(p->buf + p->pos, 8), p->len - p->pos - 8);
            p->pos += 8;
            break;
        case '.': /* STOP */
            if ((st = pop(m, result))) return st;
            if (m->nmarks) FMT_FAIL(m, "STOP with %lld MARKs still open (unbalanced pickle)", (long long)m->nmarks);
            return PTHCV_OK;
        case '(': /* MARK */
            if (m->nmarks >= f->opts.max_depth)
                return pthcv_fail(PTHCV_ERR_LIMIT, "%s: %s at byte %zu: nesting depth exceeds the limit of %d",
                                  PK_WHERE(p), f->opts.max_depth);
            if (m->nmarks == m->mcap) {
                int64_t ncap = m->mcap ? m->mcap * 2 : 16;
                int64_t *nm = realloc(m->marks, ncap * sizeof *nm);
                if (!nm) FAIL(PTHCV_ERR_NOMEM, "%s: out of memory", f->path);
                m->marks = nm; m->mcap = ncap;
            }
            m->marks[m->nmarks++] = m->sp;
            break;
        case '0': /* POP */
            if (m->sp > floor_of(m)) { m->sp--; break; }
            /* Python's POP also discards a MARK when the stack above it is empty */
            if (m->nmarks && m->sp == floor_of(m)) { m->nmarks--; break; }
            FMT_FAIL(m, "POP on an empty stack (unbalanced pickle)");
        case '1': /* POP_MARK */
            if ((st = pop_mark(m, &from))) return st;
            m->sp = from;
            break;
        case '2': /* DUP */
            if ((st = top(m, &a))) return st;
            if ((st = push(m, a))) return st;
            break;

        /* ---- scalars ---- */
        case 'N': if ((st = push(m, pthcv_value_new(f, PTHCV_V_NONE)))) return st; break;
        case 0x88: case 0x89: /* NEWTRUE, NEWFALSE */
            a = pthcv_value_new(f, PTHCV_V_BOOL);
            if (a) a->i = op == 0x88;
            if ((st = push(m, a))) return st;
            break;
        case 'J': /* BININT */
            if ((st = need(m, 4))) return st;
            a = new_int(f, (int32_t)(uint32_t)rd_le(p->buf + p->pos, 4)); p->pos += 4;
            if ((st = push(m, a))) return st;
            break;
        case 'K': /* BININT1 */
            if ((st = need(m, 1))) return st;
            if ((st = push(m, new_int(f, p->buf[p->pos++])))) return st;
            break;
        case 'M': /* BININT2, unsigned */
            if ((st = need(m, 2))) return st;
            a = new_int(f, (int64_t)rd_le(p->buf + p->pos, 2)); p->pos += 2;
            if ((st = push(m, a))) return st;
            break;
        case 0x8a: case 0x8b: { /* LONG1, LONG4 */
            int w = op == 0x8a ? 1 : 4;
            if ((st = need(m, (size_t)w))) return st;
            uint64_t len = rd_le(p->buf + p->pos, w); p->pos += (size_t)w;
            if ((st = need(m, len))) return st;
            a = new_long(m, p->buf + p->pos, (size_t)len); p->pos += len;
            if ((st = push(m, a))) return st;
            break;
        }
        case 'I': { /* INT (text); "01"/"00" are True/False */
            int64_t v;
            if ((st = read_line(m, &s, &n))) return st;
            if (n == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1')) {
                a = pthcv_value_new(f, PTHCV_V_BOOL);
                if (a) a->i = s[1] == '1';
            } else {
                if ((st = parse_decimal(m, s, n, &v))) return st;
                a = new_int(f, v);
            }
            if ((st = push(m, a))) return st;
            break;
        }
        case 'L': { /* LONG (text), may exceed 64 bits */
            int64_t v;
            if ((st = read_line(m, &s, &n))) return st;
            if (parse_decimal(m, s, n, &v) == PTHCV_OK) {
                a = new_int(f, v);
            } else {
                pthcv_clear_error();
                a = decimal_bigint(m, s, n);
            }
            if ((st = push(m, a))) return st;
            break;
        }
        case 'G': { /* BINFLOAT, big-endian */
            if ((st = need(m, 8))) return st;
            uint64_t u = 0;
            for (int i = 0; i < 8; i++) u = (u << 8) | p->buf[p->pos + i];
            p->pos += 8;
            double d;
            memcpy(&d, &u, 8);
            a = pthcv_value_new(f, PTHCV_V_FLOAT);
            if (a) a->f = d;
            if ((st = push(m, a))) return st;
            break;
        }
        case 'F': { /* FLOAT (text) */
            if ((st = read_line(m, &s, &n))) return st;
            char tmp[64];
            if (n == 0 || n >= sizeof tmp) FMT_FAIL(m, "bad FLOAT argument");
            memcpy(tmp, s, n); tmp[n] = 0;
            char *end;
            double d = strtod(tmp, &end);
            if (*end) FMT_FAIL(m, "bad FLOAT argument '%s'", tmp);
            a = pthcv_value_new(f, PTHCV_V_FLOAT);
            if (a) a->f = d;
            if ((st = push(m, a))) return st;
            break;
        }

        /* ---- strings and bytes ---- */
        case 'X': case 0x8c: case 0x8d: /* BINUNICODE, SHORT_BINUNICODE, BINUNICODE8 */
        case 'B': case 'C': case 0x8e: /* BINBYTES, SHORT_BINBYTES, BINBYTES8 */
        case 'T': case 'U':            /* BINSTRING, SHORT_BINSTRING (Python 2 str) */
        case 0x96: {                   /* BYTEARRAY8 */
            int w = (op == 0x8c || op == 'C' || op == 'U') ? 1 : (op == 'X' || op == 'B' || op == 'T') ? 4 : 8;
            if ((st = need(m, (size_t)w))) return st;
            uint64_t len = rd_le(p->buf + p->pos, w);
            if (op == 'T' && (len & 0x80000000u)) FMT_FAIL(m, "negative BINSTRING length");
            p->pos += (size_t)w;
            if ((st = need(m, len))) return st;
            const unsigned char *data = p->buf + p->pos;
            p->pos += len;
            if (op == 'X' || op == 0x8c || op == 0x8d) a = new_bytes(m, PTHCV_V_STR, data, len);
            else if (op == 'T' || op == 'U') a = latin1_str(m, data, len);
            else a = new_bytes(m, op == 0x96 ? PTHCV_V_BYTEARRAY : PTHCV_V_BYTES, data, len);
            if ((st = push(m, a))) return st;
            break;
        }
        case 'S': { /* STRING (text, quoted) */
            if ((st = read_line(m, &s, &n))) return st;
            unsigned char *tmp = malloc(n + 1);
            if (!tmp) FAIL(PTHCV_ERR_NOMEM, "%s: out of memory", f->path);
            size_t o = 0;
            st = unquote_string(m, s, n, tmp, &o);
            a = st ? NULL : latin1_str(m, tmp, o);
            free(tmp);
            if (st) return st;
            if ((st = push(m, a))) return st;
            break;
        }
        case 'V': /* UNICODE (text) */
            if ((st = read_line(m, &s, &n))) return st;
            if ((st = push(m, raw_unicode(m, s, n)))) return st;
            break;

        /* ---- containers ---- */
        case ')': if ((st = push(m, pthcv_value_new(f, PTHCV_V_TUPLE)))) return st; break;
        case ']': if ((st = push(m, pthcv_value_new(f, PTHCV_V_LIST)))) return st; break;
        case '}': if ((st = push(m, pthcv_value_new(f, PTHCV_V_DICT)))) return st; break;
        case 0x8f: if ((st = push(m, pthcv_value_new(f, PTHCV_V_SET)))) return st; break;
        case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
            int64_t k = op - 0x84;
            if (m->sp - floor_of(m) < k) FMT_FAIL(m, "TUPLE%lld needs %lld items on the stack (unbalanced pickle)", (long long)k, (long long)k);
            a = make_tuple(m, m->stack + m->sp - k, k);
            m->sp -= k;
            if ((st = push(m, a))) return st;
            break;
        }
        case 't': case 'l': case 0x91: /* TUPLE, LIST, FROZENSET from MARK */
            if ((st = pop_mark(m, &from))) return st;
            a = pthcv_value_new(f, op == 't' ? PTHCV_V_TUPLE : op == 'l' ? PTHCV_V_LIST : PTHCV_V_FROZENSET);
            for (int64_t i = from; a && i < m->sp; i++)
                if ((st = add_item(m, a, m->stack[i]))) return st;
            m->sp = from;
            if ((st = push(m, a))) return st;
            break;
        case 'd': /* DICT from MARK: key, value pairs */
            if ((st = pop_mark(m, &from))) return st;
            if ((m->sp - from) % 2) FMT_FAIL(m, "DICT with an odd number of items");
            a = pthcv_value_new(f, PTHCV_V_DICT);
            for (int64_t i = from; a && i < m->sp; i += 2)
                if ((st = add_entry(m, a, m->stack[i], m->stack[i + 1]))) return st;
            m->sp = from;
            if ((st = push(m, a))) return st;
            break;
        case 'a': /* APPEND */
            if ((st = pop(m, &b))) return st;
            if ((st = top(m, &a))) return st;
            if ((st = list_target(m, a, "APPEND"))) return st;
            if ((st = add_item(m, a, b))) return st;
            break;
        case 'e': /* APPENDS */
            if ((st = pop_mark(m, &from))) return st;
            if (from <= floor_of(m)) FMT_FAIL(m, "APPENDS without a list below its MARK (unbalanced pickle)");
            a = m->stack[from - 1];
            if ((st = list_target(m, a, "APPENDS"))) return st;
            for (int64_t i = from; i < m->sp; i++)
                if ((st = add_item(m, a, m->stack[i]))) return st;
            m->sp = from;
            break;
        case 0x90: /* ADDITEMS */
            if ((st = pop_mark(m, &from))) return st;
            if (from <= floor_of(m)) FMT_FAIL(m, "ADDITEMS without a set below its MARK (unbalanced pickle)");
            a = m->stack[from - 1];
            if (a->kind != PTHCV_V_SET) FMT_FAIL(m, "ADDITEMS on a value that is not a set");
            for (int64_t i = from; i < m->sp; i++)
                if ((st = add_item(m, a, m->stack[i]))) return st;
            m->sp = from;
            break;
        case 's': /* SETITEM */
            if ((st = pop(m, &c))) return st;
            if ((st = pop(m, &b))) return st;
            if ((st = top(m, &a))) return st;
            if ((st = dict_target(m, a, "SETITEM"))) return st;
            if ((st = add_entry(m, a, b, c))) return st;
            break;
        case 'u': /* SETITEMS */
            if ((st = pop_mark(m, &from))) return st;
            if (from <= floor_of(m)) FMT_FAIL(m, "SETITEMS without a dict below its MARK (unbalanced pickle)");
            if ((m->sp - from) % 2) FMT_FAIL(m, "SETITEMS with an odd number of items");
            a = m->stack[from - 1];
            if ((st = dict_target(m, a, "SETITEMS"))) return st;
            for (int64_t i = from; i < m->sp; i += 2)
                if ((st = add_entry(m, a, m->stack[i], m->stack[i + 1]))) return st;
            m->sp = from;
            break;

        /* ---- memo ---- */
        case 'p': case 'q': case 'r': case 0x94: { /* PUT, BINPUT, LONG_BINPUT, MEMOIZE */
            int64_t idx;
            if (op == 'p') {
                if ((st = read_line(m, &s, &n)) || (st = parse_decimal(m, s, n, &idx))) return st;
            } else if (op == 'q') {
                if ((st = need(m, 1))) return st;
                idx = p->buf[p->pos++];
            } else if (op == 'r') {
                if ((st = need(m, 4))) return st;
                idx = (int64_t)rd_le(p->buf + p->pos, 4); p->pos += 4;
            } else {
                idx = m->memo.count;
            }
            if (idx < 0) FMT_FAIL(m, "negative memo index");
            if (m->memo.count >= f->opts.max_memo && !memo_get(&m->memo, idx))
                return pthcv_fail(PTHCV_ERR_LIMIT, "%s: %s at byte %zu: more than %lld memo entries",
                                  PK_WHERE(p), (long long)f->opts.max_memo);
            if ((st = top(m, &a))) return st;
            if ((st = memo_put(&m->memo, idx, a))) return pthcv_fail(st, "%s: out of memory", f->path);
            break;
        }
        case 'g': case 'h': case 'j': { /* GET, BINGET, LONG_BINGET */
            int64_t idx;
            if (op == 'g') {
                if ((st = read_line(m, &s, &n)) || (st = parse_decimal(m, s, n, &idx))) return st;
            } else if (op == 'h') {
                if ((st = need(m, 1))) return st;
                idx = p->buf[p->pos++];
            } else {
                if ((st = need(m, 4))) return st;
                idx = (int64_t)rd_le(p->buf + p->pos, 4); p->pos += 4;
            }
            a = memo_get(&m->memo, idx);
            if (!a) FMT_FAIL(m, "memo entry %lld is not defined", (long long)idx);
            if ((st = push(m, a))) return st;
            break;
        }

        /* ---- names, calls and objects ---- */
        case 'c': { /* GLOBAL "module\nname\n" */
            const char *mod, *nm; size_t ml, nl;
            if ((st = read_line(m, &mod, &ml)) || (st = read_line(m, &nm, &nl))) return st;
            if ((st = do_global(m, mod, ml, nm, nl))) return st;
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            if ((st = pop(m, &b)) || (st = pop(m, &a))) return st;
            if (a->kind != PTHCV_V_STR || b->kind != PTHCV_V_STR)
                FMT_FAIL(m, "STACK_GLOBAL needs two strings");
            if ((st = do_global(m, a->s, (size_t)a->len, b->s, (size_t)b->len))) return st;
            break;
        case 'R': /* REDUCE */
            if ((st = pop(m, &b)) || (st = pop(m, &a))) return st;
            if ((st = call(m, a, b, NULL))) return st;
            break;
        case 0x81: /* NEWOBJ */
            if ((st = pop(m, &b)) || (st = pop(m, &a))) return st;
            if ((st = call(m, a, b, NULL))) return st;
            break;
        case 0x92: /* NEWOBJ_EX */
            if ((st = pop(m, &c)) || (st = pop(m, &b)) || (st = pop(m, &a))) return st;
            if (c->kind != PTHCV_V_DICT) FMT_FAIL(m, "NEWOBJ_EX keyword arguments are not a dict");
            if ((st = call(m, a, b, c))) return st;
            break;
        case 'i': { /* INST "module\nname\n" with MARKed arguments */
            const char *mod, *nm; size_t ml, nl;
            if ((st = read_line(m, &mod, &ml)) || (st = read_line(m, &nm, &nl))) return st;
            if ((st = pop_mark(m, &from))) return st;
            b = make_tuple(m, m->stack + from, m->sp - from);
            m->sp = from;
            if (!b) return pthcv_last_status();
            if ((st = do_global(m, mod, ml, nm, nl))) return st;
            if ((st = pop(m, &a))) return st;
            if ((st = call(m, a, b, NULL))) return st;
            break;
        }
        case 'o': /* OBJ: MARK class args... */
            if ((st = pop_mark(m, &from))) return st;
            if (m->sp - from < 1) FMT_FAIL(m, "OBJ without a class (unbalanced pickle)");
            a = m->stack[from];
            b = make_tuple(m, m->stack + from + 1, m->sp - from - 1);
            m->sp = from;
            if (!b) return pthcv_last_status();
            if ((st = call(m, a, b, NULL))) return st;
            break;
        case 'b': /* BUILD */
            if ((st = pop(m, &b))) return st;
            if ((st = top(m, &a))) return st;
            if ((st = pthcv_build(p, a, b))) return st;
            break;
        case 'P': case 'Q': { /* PERSID (text), BINPERSID */
            if (op == 'P') {
                if ((st = read_line(m, &s, &n))) return st;
                b = raw_unicode(m, s, n);
                if (!b) return pthcv_last_status();
            } else if ((st = pop(m, &b))) {
                return st;
            }
            if (!p->persistent_load) FMT_FAIL(m, "persistent id in a pickle that cannot reference storages");
            a = NULL;
            if ((st = p->persistent_load(p, b, &a))) return st;
            if ((st = push(m, a))) return st;
            break;
        }
        case 0x82: case 0x83: case 0x84: /* EXT1, EXT2, EXT4 */
            FMT_FAIL(m, "extension-registry opcode 0x%02x: the copyreg extension registry is not available", op);
        case 0x97: /* NEXT_BUFFER */
            FMT_FAIL(m, "NEXT_BUFFER: out-of-band buffers cannot be stored in a file");
        case 0x98: /* READONLY_BUFFER: no-op on an in-band buffer */
            if ((st = top(m, &a))) return st;
            break;
        default:
            FMT_FAIL(m, "unknown opcode 0x%02x", op);
        }
        if (f->nvalues > f->opts.max_values)
            return pthcv_fail(PTHCV_ERR_LIMIT, "%s: %s at byte %zu: more than %lld values built",
                              PK_WHERE(p), (long long)f->opts.max_values);
    }
}

int pthcv_unpickle(pthcv_pickle *p, pthcv_value **out)
{
    machine m;
    memset(&m, 0, sizeof m);
    m.p = p;
    *out = NULL;
    /* allocated up front: opcodes take items at m.stack + k even when none */
    m.scap = 64;
    if (!(m.stack = malloc((size_t)m.scap * sizeof *m.stack)))
        return pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", p->file->path);
    int st = run(&m, out);
    free(m.stack);
    free(m.marks);
    free(m.memo.keys);
    free(m.memo.vals);
    return st;
}
