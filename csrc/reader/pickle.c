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
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return PTHCV_ERR_NOMEM;
        }
        for (int64_t i = 0; i < ncap; i++) nk[i] = -1;
        for (int64_t i = 0; i < m->cap; i++) {
            if (m->keys[i] < 0) continue;
            int64_t j = reader_hash_slot((uint64_t)m->keys[i], ncap);
            while (nk[j] >= 0) j = (j + 1) & (ncap - 1);
            nk[j] = m->keys[i];
            nv[j] = m->vals[i];
        }
        free(m->keys);
        free(m->vals);
        m->keys = nk;
        m->vals = nv;
        m->cap = ncap;
    }
    int64_t j = reader_hash_slot((uint64_t)key, m->cap);
    while (m->keys[j] >= 0 && m->keys[j] != key) j = (j + 1) & (m->cap - 1);
    if (m->keys[j] < 0) {
        m->keys[j] = key;
        m->count++;
    }
    m->vals[j] = v;
    return PTHCV_OK;
}

static pthcv_value *memo_get(const memo_t *m, int64_t key)
{
    if (!m->cap || key < 0) return NULL;
    int64_t j = reader_hash_slot((uint64_t)key, m->cap);
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
    pthcv_value *result; /* what STOP popped */
    int stopped;
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
        m->stack = ns;
        m->scap = ncap;
    }
    m->stack[m->sp++] = v;
    return PTHCV_OK;
}

/* The stack floor: values below the innermost MARK belong to an outer frame. */
static int64_t floor_of(const machine *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

/* pop, top, pop_mark: *out is set on every path (NULL or 0 on failure). */
static int pop(machine *m, pthcv_value **out)
{
    *out = NULL;
    if (m->sp <= floor_of(m)) FMT_FAIL(m, "the stack is empty (unbalanced pickle)");
    *out = m->stack[--m->sp];
    return PTHCV_OK;
}

static int top(machine *m, pthcv_value **out)
{
    *out = NULL;
    if (m->sp <= floor_of(m)) FMT_FAIL(m, "the stack is empty (unbalanced pickle)");
    *out = m->stack[m->sp - 1];
    return PTHCV_OK;
}

/* Pops the items above the innermost MARK; items stay valid in m->stack[*from..sp). */
static int pop_mark(machine *m, int64_t *from)
{
    *from = 0;
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
        if (n < 8 && (b[n - 1] & 0x80)) u |= ~0ull << (8 * n); /* sign-extend */
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
        pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: INT or LONG argument is not a decimal number",
                   PK_WHERE(m->p));
        return NULL;
    }
    size_t cap = (k - i) / 2 + 2, len = 1;
    unsigned char *b = calloc(cap, 1);
    if (!b) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory", m->p->file->path);
    for (; i < k; i++) {
        if (s[i] < '0' || s[i] > '9') {
            free(b);
            pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: INT or LONG argument is not a decimal number",
                       PK_WHERE(m->p));
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
    if (b[len - 1] & 0x80) len++; /* room for the sign bit */
    if (neg) {                    /* two's complement */
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
    if (i != n) FMT_FAIL(m, "expected a decimal number, found '%s'", pthcv_esc_n(s, n > 40 ? 40 : n));
    if (v > (uint64_t)INT64_MAX + (uint64_t)neg) FMT_FAIL(m, "decimal number out of 64-bit range");
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return PTHCV_OK;
}

/* Appends the UTF-8 encoding of code point c to dst (dst has room for 4). */
static size_t put_utf8(unsigned char *dst, uint32_t c)
{
    if (c < 0x80) {
        dst[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        dst[0] = 0xC0 | (c >> 6);
        dst[1] = 0x80 | (c & 0x3F);
        return 2;
    }
    if (c < 0x10000) {
        dst[0] = 0xE0 | (c >> 12);
        dst[1] = 0x80 | ((c >> 6) & 0x3F);
        dst[2] = 0x80 | (c & 0x3F);
        return 3;
    }
    dst[0] = 0xF0 | (c >> 18);
    dst[1] = 0x80 | ((c >> 12) & 0x3F);
    dst[2] = 0x80 | ((c >> 6) & 0x3F);
    dst[3] = 0x80 | (c & 0x3F);
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
    if (n < 2 || (s[0] != '\'' && s[0] != '"') || s[n - 1] != s[0]) FMT_FAIL(m, "STRING argument is not quoted");
    size_t o = 0;
    for (size_t i = 1; i + 1 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '\\') {
            out[o++] = c;
            continue;
        }
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
        case '\\':
        case '\'':
        case '"': out[o++] = c; break;
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
                while (k < 3 && i + 1 < n - 1 && s[i + 1] >= '0' && s[i + 1] <= '7') {
                    v = v * 8 + (s[++i] - '0');
                    k++;
                }
                out[o++] = (unsigned char)v;
            } else {
                out[o++] = '\\';
                out[o++] = c;
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
                if (h < 0) ok = 0;
                else cp = cp * 16 + (uint32_t)h;
            }
            if (ok && cp <= 0x10FFFF) {
                o += put_utf8(tmp + o, cp);
                i += 1 + (size_t)digits;
                continue;
            }
        }
        o += put_utf8(tmp + o, c); /* each byte is a Latin-1 code point */
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
        return pthcv_fail(PTHCV_ERR_LIMIT, "%s: %s at byte %zu: nesting depth exceeds the limit of %d", PK_WHERE(m->p),
                          m->p->file->opts.max_depth);
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
    memcpy(mod, module, mlen);
    mod[mlen] = 0;
    memcpy(nm, name, nlen);
    nm[nlen] = 0;
    if (memchr(mod, 0, mlen) || memchr(nm, 0, nlen)) FMT_FAIL(m, "global name contains a NUL byte");
    snprintf(full, sizeof full, "%s.%s", mod, nm);
    int unsafe = pthcv_global_is_unsafe(mod, nm);
    if (pthcv_file_note_global(f, full, unsafe)) return pthcv_last_status();
    if (unsafe && !f->opts.scan_only) {
        const char *py3 = pthcv_py3_module(mod, nm);
        char alias[1100] = "";
        if (strcmp(py3, mod) != 0) snprintf(alias, sizeof alias, " (%s.%s)", py3, pthcv_esc(nm));
        return pthcv_fail(
            PTHCV_ERR_UNSAFE,
            "%s: %s at byte %zu: refusing unsafe global %s%s: calling it could run code; nothing was loaded",
            PK_WHERE(m->p), pthcv_esc(full), alias);
    }
    /* keep the Python 3 spelling so handlers match one name */
    snprintf(full, sizeof full, "%s.%s", pthcv_py3_module(mod, nm), nm);
    pthcv_value *g = pthcv_value_str(f, full);
    if (!g) return pthcv_last_status();
    g->kind = PTHCV_V_GLOBAL;
    if (unsafe) g->flags |= PTHCV_VF_UNSAFE;
    return push(m, g);
}

/* Scan mode (opts.scan_only) reads on where loading stops at what pthcv
 * checks and torch's unpickler does not: a known global's arguments, a
 * storage reference, the target of SETITEM or APPEND, a call of something
 * not named by GLOBAL. torch would go on to run the opcodes after it, so the
 * scan must see their globals too. Returns 1, with the error cleared, when
 * status st may be passed over; never for limits or memory. */
static int scan_past(machine *m, int st)
{
    if (!m->p->file->opts.scan_only || (st != PTHCV_ERR_FORMAT && st != PTHCV_ERR_UNSUPPORTED)) return 0;
    pthcv_clear_error();
    return 1;
}

/* What a scan puts where a value could not be built: None. */
static int push_none(machine *m) { return push(m, pthcv_value_new(m->p->file, PTHCV_V_NONE)); }

static int call(machine *m, pthcv_value *callee, pthcv_value *args, pthcv_value *kwargs)
{
    int st = PTHCV_OK;
    if (callee->kind != PTHCV_V_GLOBAL)
        st = pthcv_fail(
            PTHCV_ERR_FORMAT,
            "%s: %s at byte %zu: a call needs a class or function named by GLOBAL, found a value of kind %d",
            PK_WHERE(m->p), callee->kind);
    else if (args->kind != PTHCV_V_TUPLE)
        st = pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: arguments of %s are not a tuple", PK_WHERE(m->p),
                        pthcv_esc(callee->s));
    if (st) return scan_past(m, st) ? push_none(m) : st;
    pthcv_value *out = NULL;
    st = pthcv_call_global(m->p, callee, args, kwargs, &out);
    if (st && scan_past(m, st)) out = pthcv_inert_call(m->p, callee, args, kwargs);
    else if (st) return st;
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

/* ---- the opcodes --------------------------------------------------------
 * One function per opcode family, as CPython's _pickle.c has load_*; each
 * takes the machine and its opcode byte, with p->pos just past the opcode,
 * and returns a status. `dispatch` maps opcode bytes to them. */
typedef int (*load_fn)(machine *m, unsigned char op);

/* -- structure -- */

static int load_proto(machine *m, unsigned char op)
{
    pthcv_pickle *p = m->p;
    int st = need(m, 1);
    if (st) return st;
    if (p->buf[p->pos] > 5) FMT_FAIL(m, "unsupported pickle protocol %d", p->buf[p->pos]);
    p->pos++;
    return PTHCV_OK;
}

/* FRAME: an 8-byte length; frames only group opcodes */
static int load_frame(machine *m, unsigned char op)
{
    pthcv_pickle *p = m->p;
    int st = need(m, 8);
    if (st) return st;
    uint64_t len = rd_le(p->buf + p->pos, 8);
    if (len > p->len - p->pos - 8)
        FMT_FAIL(m, "truncated: FRAME of %llu bytes, %zu remain", (unsigned long long)len, p->len - p->pos - 8);
    p->pos += 8;
    return PTHCV_OK;
}

static int load_stop(machine *m, unsigned char op)
{
    int st = pop(m, &m->result);
    if (st) return st;
    if (m->nmarks) FMT_FAIL(m, "STOP with %lld MARKs still open (unbalanced pickle)", (long long)m->nmarks);
    m->stopped = 1;
    return PTHCV_OK;
}

static int load_mark(machine *m, unsigned char op)
{
    pthcv_file *f = m->p->file;
    if (m->nmarks >= f->opts.max_depth)
        return pthcv_fail(PTHCV_ERR_LIMIT, "%s: %s at byte %zu: nesting depth exceeds the limit of %d", PK_WHERE(m->p),
                          f->opts.max_depth);
    if (m->nmarks == m->mcap) {
        int64_t ncap = m->mcap ? m->mcap * 2 : 16;
        int64_t *nm = realloc(m->marks, ncap * sizeof *nm);
        if (!nm) FAIL(PTHCV_ERR_NOMEM, "%s: out of memory", f->path);
        m->marks = nm;
        m->mcap = ncap;
    }
    m->marks[m->nmarks++] = m->sp;
    return PTHCV_OK;
}

static int load_pop(machine *m, unsigned char op)
{
    if (m->sp > floor_of(m)) {
        m->sp--;
        return PTHCV_OK;
    }
    /* Python's POP also discards a MARK when the stack above it is empty */
    if (m->nmarks && m->sp == floor_of(m)) {
        m->nmarks--;
        return PTHCV_OK;
    }
    FMT_FAIL(m, "POP on an empty stack (unbalanced pickle)");
}

static int load_pop_mark(machine *m, unsigned char op)
{
    int64_t from;
    int st = pop_mark(m, &from);
    if (st) return st;
    m->sp = from;
    return PTHCV_OK;
}

static int load_dup(machine *m, unsigned char op)
{
    pthcv_value *a;
    int st = top(m, &a);
    return st ? st : push(m, a);
}

/* -- scalars -- */

static int load_none(machine *m, unsigned char op) { return push(m, pthcv_value_new(m->p->file, PTHCV_V_NONE)); }

/* NEWTRUE, NEWFALSE */
static int load_newbool(machine *m, unsigned char op)
{
    pthcv_value *a = pthcv_value_new(m->p->file, PTHCV_V_BOOL);
    if (a) a->i = op == 0x88;
    return push(m, a);
}

/* BININT (4 bytes, signed), BININT1 (1 byte), BININT2 (2 bytes, unsigned) */
static int load_binint(machine *m, unsigned char op)
{
    pthcv_pickle *p = m->p;
    int w = op == 'J' ? 4 : op == 'K' ? 1 : 2;
    int st = need(m, (size_t)w);
    if (st) return st;
    uint64_t u = rd_le(p->buf + p->pos, w);
    p->pos += (size_t)w;
    return push(m, new_int(p->file, op == 'J' ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u));
}

/* LONG1, LONG4: a length (1 or 4 bytes), then two's complement bytes */
static int load_binlong(machine *m, unsigned char op)
{
    pthcv_pickle *p = m->p;
    int w = op == 0x8a ? 1 : 4;
    int st = need(m, (size_t)w);
    if (st) return st;
    uint64_t len = rd_le(p->buf + p->pos, w);
    p->pos += (size_t)w;
    if ((st = need(m, len))) return st;
    pthcv_value *a = new_long(m, p->buf + p->pos, (size_t)len);
    p->pos += len;
    return push(m, a);
}

/* INT, LONG (text): a decimal line, beyond 64 bits a big int (Python reads
 * both with int()); INT's "01" and "00" are True and False */
static int load_decimal(machine *m, unsigned char op)
{
    const char *s;
    size_t n;
    int64_t v;
    int st = read_line(m, &s, &n);
    if (st) return st;
    if (op == 'I' && n == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1')) {
        pthcv_value *a = pthcv_value_new(m->p->file, PTHCV_V_BOOL);
        if (a) a->i = s[1] == '1';
        return push(m, a);
    }
    if (parse_decimal(m, s, n, &v) == PTHCV_OK) return push(m, new_int(m->p->file, v));
    pthcv_clear_error();
    return push(m, decimal_bigint(m, s, n));
}

/* BINFLOAT: big-endian IEEE double */
static int load_binfloat(machine *m, unsigned char op)
{
    pthcv_pickle *p = m->p;
    int st = need(m, 8);
    if (st) return st;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = (u << 8) | p->buf[p->pos + i];
    p->pos += 8;
    pthcv_value *a = pthcv_value_new(p->file, PTHCV_V_FLOAT);
    if (a) memcpy(&a->f, &u, 8);
    return push(m, a);
}

/* FLOAT (text) */
static int load_float(machine *m, unsigned char op)
{
    const char *s;
    size_t n;
    int st = read_line(m, &s, &n);
    if (st) return st;
    char tmp[64], *end;
    if (n == 0 || n >= sizeof tmp) FMT_FAIL(m, "bad FLOAT argument");
    memcpy(tmp, s, n);
    tmp[n] = 0;
    double d = strtod(tmp, &end);
    if (*end) FMT_FAIL(m, "bad FLOAT argument '%s'", pthcv_esc(tmp));
    pthcv_value *a = pthcv_value_new(m->p->file, PTHCV_V_FLOAT);
    if (a) a->f = d;
    return push(m, a);
}

/* -- strings and bytes -- */

/* A length (1, 4 or 8 bytes), then the bytes: BINUNICODE, SHORT_BINUNICODE,
 * BINUNICODE8 (str); BINBYTES, SHORT_BINBYTES, BINBYTES8 (bytes);
 * BINSTRING, SHORT_BINSTRING (a Python 2 str, read as Latin-1); BYTEARRAY8. */
static int load_counted(machine *m, unsigned char op)
{
    pthcv_pickle *p = m->p;
    int w = (op == 0x8c || op == 'C' || op == 'U') ? 1 : (op == 'X' || op == 'B' || op == 'T') ? 4 : 8;
    int st = need(m, (size_t)w);
    if (st) return st;
    uint64_t len = rd_le(p->buf + p->pos, w);
    if (op == 'T' && (len & 0x80000000u)) FMT_FAIL(m, "negative BINSTRING length");
    p->pos += (size_t)w;
    if ((st = need(m, len))) return st;
    const unsigned char *data = p->buf + p->pos;
    p->pos += len;
    pthcv_value *a;
    if (op == 'X' || op == 0x8c || op == 0x8d) a = new_bytes(m, PTHCV_V_STR, data, len);
    else if (op == 'T' || op == 'U') a = latin1_str(m, data, len);
    else a = new_bytes(m, op == 0x96 ? PTHCV_V_BYTEARRAY : PTHCV_V_BYTES, data, len);
    return push(m, a);
}

/* STRING (text, quoted) */
static int load_string(machine *m, unsigned char op)
{
    const char *s;
    size_t n, o = 0;
    int st = read_line(m, &s, &n);
    if (st) return st;
    unsigned char *tmp = malloc(n + 1);
    if (!tmp) FAIL(PTHCV_ERR_NOMEM, "%s: out of memory", m->p->file->path);
    st = unquote_string(m, s, n, tmp, &o);
    pthcv_value *a = st ? NULL : latin1_str(m, tmp, o);
    free(tmp);
    return st ? st : push(m, a);
}

/* UNICODE (text) */
static int load_unicode(machine *m, unsigned char op)
{
    const char *s;
    size_t n;
    int st = read_line(m, &s, &n);
    return st ? st : push(m, raw_unicode(m, s, n));
}

/* -- containers -- */

/* EMPTY_TUPLE, EMPTY_LIST, EMPTY_DICT, EMPTY_SET */
static int load_empty(machine *m, unsigned char op)
{
    int kind = op == ')' ? PTHCV_V_TUPLE : op == ']' ? PTHCV_V_LIST : op == '}' ? PTHCV_V_DICT : PTHCV_V_SET;
    return push(m, pthcv_value_new(m->p->file, kind));
}

/* TUPLE1, TUPLE2, TUPLE3 */
static int load_tuple_n(machine *m, unsigned char op)
{
    int64_t k = op - 0x84;
    if (m->sp - floor_of(m) < k)
        FMT_FAIL(m, "TUPLE%lld needs %lld items on the stack (unbalanced pickle)", (long long)k, (long long)k);
    pthcv_value *a = make_tuple(m, m->stack + m->sp - k, k);
    m->sp -= k;
    return push(m, a);
}

/* TUPLE, LIST, FROZENSET of the items above the MARK */
static int load_sequence(machine *m, unsigned char op)
{
    int64_t from;
    int st = pop_mark(m, &from);
    if (st) return st;
    pthcv_value *a = pthcv_value_new(m->p->file,
                                     op == 't'       ? PTHCV_V_TUPLE
                                         : op == 'l' ? PTHCV_V_LIST
                                                     : PTHCV_V_FROZENSET);
    for (int64_t i = from; a && i < m->sp; i++)
        if ((st = add_item(m, a, m->stack[i]))) return st;
    m->sp = from;
    return push(m, a);
}

/* DICT of the key, value pairs above the MARK */
static int load_dict(machine *m, unsigned char op)
{
    int64_t from;
    int st = pop_mark(m, &from);
    if (st) return st;
    if ((m->sp - from) % 2) FMT_FAIL(m, "DICT with an odd number of items");
    pthcv_value *a = pthcv_value_new(m->p->file, PTHCV_V_DICT);
    for (int64_t i = from; a && i < m->sp; i += 2)
        if ((st = add_entry(m, a, m->stack[i], m->stack[i + 1]))) return st;
    m->sp = from;
    return push(m, a);
}

/* The container below a MARK that APPENDS, ADDITEMS or SETITEMS fill. */
static int below_mark(machine *m, const char *opname, const char *what, int64_t *from, pthcv_value **target)
{
    int st = pop_mark(m, from);
    if (st) return st;
    if (*from <= floor_of(m)) FMT_FAIL(m, "%s without %s below its MARK (unbalanced pickle)", opname, what);
    *target = m->stack[*from - 1];
    return PTHCV_OK;
}

/* In APPEND(S), ADDITEMS and SETITEM(S), a target of the wrong kind ends a
 * load; a scan drops the items (scan_past). */
static int load_append(machine *m, unsigned char op)
{
    pthcv_value *list, *item;
    int st;
    if ((st = pop(m, &item)) || (st = top(m, &list))) return st;
    if ((st = list_target(m, list, "APPEND"))) return scan_past(m, st) ? PTHCV_OK : st;
    return add_item(m, list, item);
}

static int load_appends(machine *m, unsigned char op)
{
    pthcv_value *list;
    int64_t from;
    int st = below_mark(m, "APPENDS", "a list", &from, &list);
    if (st) return st;
    if ((st = list_target(m, list, "APPENDS")) && !scan_past(m, st)) return st;
    for (int64_t i = from; !st && i < m->sp; i++)
        if ((st = add_item(m, list, m->stack[i]))) return st;
    m->sp = from;
    return PTHCV_OK;
}

static int load_additems(machine *m, unsigned char op)
{
    pthcv_value *set;
    int64_t from;
    int st = below_mark(m, "ADDITEMS", "a set", &from, &set);
    if (st) return st;
    if (set->kind != PTHCV_V_SET) {
        st = pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: ADDITEMS on a value that is not a set", PK_WHERE(m->p));
        if (!scan_past(m, st)) return st;
    }
    for (int64_t i = from; !st && i < m->sp; i++)
        if ((st = add_item(m, set, m->stack[i]))) return st;
    m->sp = from;
    return PTHCV_OK;
}

static int load_setitem(machine *m, unsigned char op)
{
    pthcv_value *dict, *key, *value;
    int st;
    if ((st = pop(m, &value)) || (st = pop(m, &key)) || (st = top(m, &dict))) return st;
    if ((st = dict_target(m, dict, "SETITEM"))) return scan_past(m, st) ? PTHCV_OK : st;
    return add_entry(m, dict, key, value);
}

static int load_setitems(machine *m, unsigned char op)
{
    pthcv_value *dict;
    int64_t from;
    int st = below_mark(m, "SETITEMS", "a dict", &from, &dict);
    if (st) return st;
    if ((m->sp - from) % 2) FMT_FAIL(m, "SETITEMS with an odd number of items");
    if ((st = dict_target(m, dict, "SETITEMS")) && !scan_past(m, st)) return st;
    for (int64_t i = from; !st && i < m->sp; i += 2)
        if ((st = add_entry(m, dict, m->stack[i], m->stack[i + 1]))) return st;
    m->sp = from;
    return PTHCV_OK;
}

/* -- memo -- */

/* The index argument of PUT/GET (a decimal line), BINPUT/BINGET (one byte)
 * and LONG_BINPUT/LONG_BINGET (four bytes, unsigned). */
static int memo_index(machine *m, unsigned char op, int64_t *idx)
{
    pthcv_pickle *p = m->p;
    int st;
    if (op == 'p' || op == 'g') {
        const char *s;
        size_t n;
        if ((st = read_line(m, &s, &n))) return st;
        return parse_decimal(m, s, n, idx);
    }
    int w = op == 'q' || op == 'h' ? 1 : 4;
    if ((st = need(m, (size_t)w))) return st;
    *idx = (int64_t)rd_le(p->buf + p->pos, w);
    p->pos += (size_t)w;
    return PTHCV_OK;
}

/* PUT, BINPUT, LONG_BINPUT, MEMOIZE (the next free index) */
static int load_put(machine *m, unsigned char op)
{
    pthcv_file *f = m->p->file;
    pthcv_value *a;
    int64_t idx = m->memo.count;
    int st;
    if (op != 0x94 && (st = memo_index(m, op, &idx))) return st;
    if (idx < 0) FMT_FAIL(m, "negative memo index");
    if (m->memo.count >= f->opts.max_memo && !memo_get(&m->memo, idx))
        return pthcv_fail(PTHCV_ERR_LIMIT, "%s: %s at byte %zu: more than %lld memo entries", PK_WHERE(m->p),
                          (long long)f->opts.max_memo);
    if ((st = top(m, &a))) return st;
    if ((st = memo_put(&m->memo, idx, a))) return pthcv_fail(st, "%s: out of memory", f->path);
    return PTHCV_OK;
}

/* GET, BINGET, LONG_BINGET */
static int load_get(machine *m, unsigned char op)
{
    int64_t idx;
    int st = memo_index(m, op, &idx);
    if (st) return st;
    pthcv_value *a = memo_get(&m->memo, idx);
    if (!a) FMT_FAIL(m, "memo entry %lld is not defined", (long long)idx);
    return push(m, a);
}

/* -- names, calls and objects -- */

/* GLOBAL "module\nname\n" */
static int load_global(machine *m, unsigned char op)
{
    const char *mod, *nm;
    size_t ml, nl;
    int st;
    if ((st = read_line(m, &mod, &ml)) || (st = read_line(m, &nm, &nl))) return st;
    return do_global(m, mod, ml, nm, nl);
}

static int load_stack_global(machine *m, unsigned char op)
{
    pthcv_value *mod, *name;
    int st;
    if ((st = pop(m, &name)) || (st = pop(m, &mod))) return st;
    if (mod->kind != PTHCV_V_STR || name->kind != PTHCV_V_STR) FMT_FAIL(m, "STACK_GLOBAL needs two strings");
    return do_global(m, mod->s, (size_t)mod->len, name->s, (size_t)name->len);
}

/* REDUCE and NEWOBJ: a callable (or class) and its argument tuple */
static int load_reduce(machine *m, unsigned char op)
{
    pthcv_value *callee, *args;
    int st;
    if ((st = pop(m, &args)) || (st = pop(m, &callee))) return st;
    return call(m, callee, args, NULL);
}

static int load_newobj_ex(machine *m, unsigned char op)
{
    pthcv_value *cls, *args, *kwargs;
    int st;
    if ((st = pop(m, &kwargs)) || (st = pop(m, &args)) || (st = pop(m, &cls))) return st;
    if (kwargs->kind != PTHCV_V_DICT) {
        st = pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s at byte %zu: NEWOBJ_EX keyword arguments are not a dict",
                        PK_WHERE(m->p));
        if (!scan_past(m, st)) return st;
        kwargs = NULL;
    }
    return call(m, cls, args, kwargs);
}

/* INST "module\nname\n" with the arguments above the MARK */
static int load_inst(machine *m, unsigned char op)
{
    const char *mod, *nm;
    size_t ml, nl;
    int64_t from;
    pthcv_value *cls;
    int st;
    if ((st = read_line(m, &mod, &ml)) || (st = read_line(m, &nm, &nl)) || (st = pop_mark(m, &from))) return st;
    pthcv_value *args = make_tuple(m, m->stack + from, m->sp - from);
    m->sp = from;
    if (!args) return pthcv_last_status();
    if ((st = do_global(m, mod, ml, nm, nl)) || (st = pop(m, &cls))) return st;
    return call(m, cls, args, NULL);
}

/* OBJ: MARK class args... */
static int load_obj(machine *m, unsigned char op)
{
    int64_t from;
    int st = pop_mark(m, &from);
    if (st) return st;
    if (m->sp - from < 1) FMT_FAIL(m, "OBJ without a class (unbalanced pickle)");
    pthcv_value *cls = m->stack[from];
    pthcv_value *args = make_tuple(m, m->stack + from + 1, m->sp - from - 1);
    m->sp = from;
    if (!args) return pthcv_last_status();
    return call(m, cls, args, NULL);
}

static int load_build(machine *m, unsigned char op)
{
    pthcv_value *obj, *state;
    int st;
    if ((st = pop(m, &state)) || (st = top(m, &obj))) return st;
    st = pthcv_build(m->p, obj, state);
    return st && scan_past(m, st) ? PTHCV_OK : st;
}

/* PERSID (text), BINPERSID: a reference to a storage, resolved by the
 * archive. A scan resolves none (it reads no storage): None stands in. */
static int load_persid(machine *m, unsigned char op)
{
    pthcv_pickle *p = m->p;
    pthcv_value *pid, *out = NULL;
    int st;
    if (op == 'P') {
        const char *s;
        size_t n;
        if ((st = read_line(m, &s, &n))) return st;
        if (!(pid = raw_unicode(m, s, n))) return pthcv_last_status();
    } else if ((st = pop(m, &pid))) {
        return st;
    }
    if (p->file->opts.scan_only) return push_none(m);
    if (!p->persistent_load)
        FMT_FAIL(m, "a persistent id (a reference to a storage) in a pickle that cannot have one%s",
                 p->file->format && !strcmp(p->file->format, "pickle") ? ": a plain pickle has no storages" : "");
    if ((st = p->persistent_load(p, pid, &out))) return st;
    return push(m, out);
}

/* EXT1, EXT2, EXT4 */
static int load_ext(machine *m, unsigned char op)
{
    FMT_FAIL(m, "extension-registry opcode 0x%02x: the copyreg extension registry is not available", op);
}

static int load_next_buffer(machine *m, unsigned char op)
{
    FMT_FAIL(m, "NEXT_BUFFER: out-of-band buffers cannot be stored in a file");
}

/* READONLY_BUFFER: nothing to do on an in-band buffer */
static int load_readonly_buffer(machine *m, unsigned char op)
{
    pthcv_value *a;
    return top(m, &a);
}

static const load_fn dispatch[256] = {
    /* structure */
    [0x80] = load_proto,
    [0x95] = load_frame,
    ['.'] = load_stop,
    ['('] = load_mark,
    ['0'] = load_pop,
    ['1'] = load_pop_mark,
    ['2'] = load_dup,
    /* scalars */
    ['N'] = load_none,
    [0x88] = load_newbool,
    [0x89] = load_newbool,
    ['J'] = load_binint,
    ['K'] = load_binint,
    ['M'] = load_binint,
    [0x8a] = load_binlong,
    [0x8b] = load_binlong,
    ['I'] = load_decimal,
    ['L'] = load_decimal,
    ['G'] = load_binfloat,
    ['F'] = load_float,
    /* strings and bytes */
    ['X'] = load_counted,
    [0x8c] = load_counted,
    [0x8d] = load_counted,
    ['B'] = load_counted,
    ['C'] = load_counted,
    [0x8e] = load_counted,
    ['T'] = load_counted,
    ['U'] = load_counted,
    [0x96] = load_counted,
    ['S'] = load_string,
    ['V'] = load_unicode,
    /* containers */
    [')'] = load_empty,
    [']'] = load_empty,
    ['}'] = load_empty,
    [0x8f] = load_empty,
    [0x85] = load_tuple_n,
    [0x86] = load_tuple_n,
    [0x87] = load_tuple_n,
    ['t'] = load_sequence,
    ['l'] = load_sequence,
    [0x91] = load_sequence,
    ['d'] = load_dict,
    ['a'] = load_append,
    ['e'] = load_appends,
    [0x90] = load_additems,
    ['s'] = load_setitem,
    ['u'] = load_setitems,
    /* memo */
    ['p'] = load_put,
    ['q'] = load_put,
    ['r'] = load_put,
    [0x94] = load_put,
    ['g'] = load_get,
    ['h'] = load_get,
    ['j'] = load_get,
    /* names, calls and objects */
    ['c'] = load_global,
    [0x93] = load_stack_global,
    ['R'] = load_reduce,
    [0x81] = load_reduce,
    [0x92] = load_newobj_ex,
    ['i'] = load_inst,
    ['o'] = load_obj,
    ['b'] = load_build,
    ['P'] = load_persid,
    ['Q'] = load_persid,
    [0x82] = load_ext,
    [0x83] = load_ext,
    [0x84] = load_ext,
    [0x97] = load_next_buffer,
    [0x98] = load_readonly_buffer,
};

int pthcv_pickle_opcode_known(int byte) { return byte >= 0 && byte < 256 && dispatch[byte] != NULL; }

static int run(machine *m)
{
    pthcv_pickle *p = m->p;
    pthcv_file *f = p->file;
    while (!m->stopped) {
        int st = need(m, 1);
        if (st) return st;
        p->op_offset = p->pos;
        unsigned char op = p->buf[p->pos++];
        if (!dispatch[op]) FMT_FAIL(m, "unknown opcode 0x%02x", op);
        if ((st = dispatch[op](m, op))) return st;
        if (f->nvalues > f->opts.max_values)
            return pthcv_fail(PTHCV_ERR_LIMIT, "%s: %s at byte %zu: more than %lld values built", PK_WHERE(p),
                              (long long)f->opts.max_values);
    }
    return PTHCV_OK;
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
    int st = run(&m);
    if (!st) *out = m.result;
    free(m.stack);
    free(m.marks);
    free(m.memo.keys);
    free(m.memo.vals);
    return st;
}
