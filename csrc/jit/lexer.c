/*
 * lexer.c -- TorchScript source bytes into tokens, as Python's tokenizer
 * makes them: NAME, numbers, strings, operators, and NEWLINE / INDENT /
 * DEDENT from the indentation of each logical line (brackets join lines).
 *
 * Limits (pthcv_jit_limits): the source size, the token count, the
 * indentation and bracket nesting (max_nesting) and a string literal's bytes
 * are checked as they are reached, and the message names the limit.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strtod_l, newlocale */
#endif
#include "jit.h"
#include <locale.h>
#include <stdlib.h>
#include <string.h>

char *jit_strdup(jit_chunk **arena, const char *s, size_t n)
{
    jit_chunk *c = *arena;
    if (!c || c->cap - c->used < n + 1) {
        size_t cap = n + 1 > 65536 ? n + 1 : 65536;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = *arena;
        *arena = c;
    }
    char *p = c->data + c->used;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    c->used += n + 1;
    return p;
}

void jit_lexer_free(jit_lexer *lx)
{
    free(lx->tokens);
    lx->tokens = NULL;
    for (jit_chunk *c = lx->strings, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    lx->strings = NULL;
}

static jit_token *push(jit_lexer *lx, int type, int line, int64_t start)
{
    if (lx->ntokens >= lx->lim.max_tokens) {
        pthcv_fail(PTHCV_ERR_LIMIT, "%s:%d: more than %lld tokens (max_tokens)", lx->name, line,
                   (long long)lx->lim.max_tokens);
        return NULL;
    }
    if (lx->ntokens == lx->cap) {
        int64_t cap = lx->cap ? lx->cap * 2 : 1024;
        jit_token *t = realloc(lx->tokens, (size_t)cap * sizeof *t);
        if (!t) {
            pthcv_fail(PTHCV_ERR_NOMEM, "%s:%d: out of memory", lx->name, line);
            return NULL;
        }
        lx->tokens = t;
        lx->cap = cap;
    }
    jit_token *t = &lx->tokens[lx->ntokens++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->line = line;
    t->start = start;
    return t;
}

/* Operators, longest first. */
static const struct {
    const char *text;
    int op;
} puncts[] = {
    {"**=", P_AUG_BASE + PTHCV_JOP_POW},
    {"//=", P_AUG_BASE + PTHCV_JOP_FLOORDIV},
    {">>=", P_AUG_BASE + PTHCV_JOP_RSHIFT},
    {"<<=", P_AUG_BASE + PTHCV_JOP_LSHIFT},
    {"...", P_ELLIPSIS},
    {"+=", P_AUG_BASE + PTHCV_JOP_ADD},
    {"-=", P_AUG_BASE + PTHCV_JOP_SUB},
    {"*=", P_AUG_BASE + PTHCV_JOP_MUL},
    {"/=", P_AUG_BASE + PTHCV_JOP_DIV},
    {"%=", P_AUG_BASE + PTHCV_JOP_MOD},
    {"@=", P_AUG_BASE + PTHCV_JOP_MATMUL},
    {"&=", P_AUG_BASE + PTHCV_JOP_BITAND},
    {"|=", P_AUG_BASE + PTHCV_JOP_BITOR},
    {"^=", P_AUG_BASE + PTHCV_JOP_BITXOR},
    {"->", P_ARROW},
    {"**", P_BINOP_BASE + PTHCV_JOP_POW},
    {"//", P_BINOP_BASE + PTHCV_JOP_FLOORDIV},
    {"<<", P_BINOP_BASE + PTHCV_JOP_LSHIFT},
    {">>", P_BINOP_BASE + PTHCV_JOP_RSHIFT},
    {"==", P_EQ},
    {"!=", P_NE},
    {"<=", P_LE},
    {">=", P_GE},
    {"(", P_LPAR},
    {")", P_RPAR},
    {"[", P_LSQB},
    {"]", P_RSQB},
    {"{", P_LBRACE},
    {"}", P_RBRACE},
    {",", P_COMMA},
    {":", P_COLON},
    {".", P_DOT},
    {";", P_SEMI},
    {"=", P_ASSIGN},
    {"+", P_BINOP_BASE + PTHCV_JOP_ADD},
    {"-", P_BINOP_BASE + PTHCV_JOP_SUB},
    {"*", P_BINOP_BASE + PTHCV_JOP_MUL},
    {"/", P_BINOP_BASE + PTHCV_JOP_DIV},
    {"%", P_BINOP_BASE + PTHCV_JOP_MOD},
    {"@", P_BINOP_BASE + PTHCV_JOP_MATMUL},
    {"&", P_BINOP_BASE + PTHCV_JOP_BITAND},
    {"|", P_BINOP_BASE + PTHCV_JOP_BITOR},
    {"^", P_BINOP_BASE + PTHCV_JOP_BITXOR},
    {"~", P_TILDE},
    {"<", P_LT},
    {">", P_GT},
};

static int is_name_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_name_char(int c) { return is_name_start(c) || is_digit(c); }
static int hex_value(int c)
{
    if (is_digit(c)) return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* An integer literal (decimal, 0x, 0o, 0b) at src[*pos]. */
static int lex_int(jit_lexer *lx, int64_t *pos, int line, jit_token *t)
{
    const char *s = lx->src;
    int64_t p = *pos, n = lx->len;
    int base = 10;
    if (s[p] == '0' && p + 1 < n && (s[p + 1] == 'x' || s[p + 1] == 'X')) base = 16;
    else if (s[p] == '0' && p + 1 < n && (s[p + 1] == 'o' || s[p + 1] == 'O')) base = 8;
    else if (s[p] == '0' && p + 1 < n && (s[p + 1] == 'b' || s[p + 1] == 'B')) base = 2;
    if (base != 10) p += 2;
    uint64_t v = 0;
    int digits = 0, overflow = 0;
    for (; p < n; p++) {
        int d = hex_value((unsigned char)s[p]);
        if (d < 0 || d >= base) break;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) overflow = 1;
        else v = v * (uint64_t)base + (uint64_t)d;
        digits++;
    }
    if (!digits) return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: a number literal without digits", lx->name, line);
    if (p < n && (s[p] == 'j' || s[p] == 'J'))
        return pthcv_fail(PTHCV_ERR_UNSUPPORTED, "%s:%d: complex literals are not supported", lx->name, line);
    if (p < n && is_name_char((unsigned char)s[p]))
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: invalid number literal (a letter follows its digits)", lx->name,
                          line);
    if (overflow || v > (uint64_t)INT64_MAX + 1)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: integer literal out of the 64-bit range", lx->name, line);
    t->type = T_INT;
    if (v == (uint64_t)INT64_MAX + 1) {
        t->i = INT64_MIN;
        t->op = 1;
    } else t->i = (int64_t)v;
    *pos = p;
    return PTHCV_OK;
}

/* A decimal number at src[*pos]: an int, or a float when it has '.' or an exponent. */
static int lex_number(jit_lexer *lx, int64_t *pos, int line, jit_token *t, locale_t c_locale)
{
    const char *s = lx->src;
    int64_t p = *pos, n = lx->len;
    while (p < n && is_digit(s[p])) p++;
    int is_float = 0;
    if (p < n && s[p] == '.') {
        is_float = 1;
        p++;
        while (p < n && is_digit(s[p])) p++;
    }
    if (p < n && (s[p] == 'e' || s[p] == 'E')) {
        int64_t q = p + 1;
        if (q < n && (s[q] == '+' || s[q] == '-')) q++;
        if (q < n && is_digit(s[q])) {
            is_float = 1;
            p = q;
            while (p < n && is_digit(s[p])) p++;
        }
    }
    if (!is_float) return lex_int(lx, pos, line, t);
    if (p < n && (s[p] == 'j' || s[p] == 'J'))
        return pthcv_fail(PTHCV_ERR_UNSUPPORTED, "%s:%d: complex literals are not supported", lx->name, line);
    if (p < n && is_name_char((unsigned char)s[p]))
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: invalid number literal (a letter follows its digits)", lx->name,
                          line);
    char buf[512];
    if (p - *pos >= (int64_t)sizeof buf)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: number literal longer than %d characters", lx->name, line,
                          (int)sizeof buf - 1);
    memcpy(buf, s + *pos, (size_t)(p - *pos));
    buf[p - *pos] = '\0';
    t->type = T_FLOAT;
    t->f = strtod_l(buf, NULL, c_locale);
    *pos = p;
    return PTHCV_OK;
}

/* One escape after a backslash at src[*pos] (pointing past the backslash),
 * appended to out; *line advances over an escaped newline. */
static int lex_escape(jit_lexer *lx, int64_t *pos, int *line, char *out, size_t *o)
{
    const char *s = lx->src;
    int64_t p = *pos;
    int c = (unsigned char)s[p++];
    static const char simple[] = "\\\\''\"\"a\ab\bf\fn\nr\rt\tv\v";
    for (const char *e = simple; *e; e += 2)
        if (c == e[0]) {
            out[(*o)++] = e[1];
            *pos = p;
            return PTHCV_OK;
        }
    if (c == '\n') {
        (*line)++;
        *pos = p;
        return PTHCV_OK;
    }
    if (c >= '0' && c <= '7') {
        int v = c - '0';
        for (int k = 0; k < 2 && p < lx->len && s[p] >= '0' && s[p] <= '7'; k++) v = v * 8 + (s[p++] - '0');
        if (v > 255) return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: octal escape above \\377", lx->name, *line);
        out[(*o)++] = (char)v;
        *pos = p;
        return PTHCV_OK;
    }
    if (c == 'x' && p + 1 < lx->len && hex_value((unsigned char)s[p]) >= 0 && hex_value((unsigned char)s[p + 1]) >= 0) {
        out[(*o)++] = (char)(hex_value((unsigned char)s[p]) * 16 + hex_value((unsigned char)s[p + 1]));
        *pos = p + 2;
        return PTHCV_OK;
    }
    if (c >= 0x20 && c < 0x7f)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: unknown escape '\\%c' in a string", lx->name, *line, c);
    return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: unknown escape (byte 0x%02x) in a string", lx->name, *line, c);
}

/* A string literal at src[*pos] (the quote). */
static int lex_string(jit_lexer *lx, int64_t *pos, int *line, jit_token *t)
{
    const char *s = lx->src;
    int64_t p = *pos, n = lx->len;
    char q = s[p];
    if (p + 2 < n && s[p + 1] == q && s[p + 2] == q)
        return pthcv_fail(PTHCV_ERR_UNSUPPORTED, "%s:%d: triple-quoted strings are not supported", lx->name, *line);
    p++;
    /* the literal's bytes bound its decoded length */
    int64_t end = p;
    while (end < n && s[end] != q && s[end] != '\n') end += s[end] == '\\' && end + 1 < n ? 2 : 1;
    if (end >= n || s[end] != q)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: unterminated string literal", lx->name, *line);
    if (end - p > lx->lim.max_literal)
        return pthcv_fail(PTHCV_ERR_LIMIT, "%s:%d: a string literal longer than %lld bytes (max_literal)", lx->name,
                          *line, (long long)lx->lim.max_literal);
    char *out = malloc((size_t)(end - p) + 1);
    if (!out) return pthcv_fail(PTHCV_ERR_NOMEM, "%s:%d: out of memory", lx->name, *line);
    size_t o = 0;
    int st = PTHCV_OK;
    while (p < end && !st) {
        if (s[p] == '\\') {
            p++;
            st = lex_escape(lx, &p, line, out, &o);
        } else if (s[p] == '\0')
            st = pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: NUL byte in a string literal", lx->name, *line);
        else out[o++] = s[p++];
    }
    if (!st) {
        t->type = T_STRING;
        t->str = jit_strdup(&lx->strings, out, o);
        t->len = (int32_t)o;
        if (!t->str) st = pthcv_fail(PTHCV_ERR_NOMEM, "%s:%d: out of memory", lx->name, *line);
    }
    free(out);
    *pos = end + 1;
    return st;
}

/* Operators and brackets at src[*pos]; *depth counts open brackets and
 * opened[] holds the line each one opened on (for "never closed"). */
static int lex_punct(jit_lexer *lx, int64_t *pos, int line, int *depth, int *opened)
{
    const char *s = lx->src + *pos;
    int64_t left = lx->len - *pos;
    for (size_t k = 0; k < sizeof puncts / sizeof puncts[0]; k++) {
        size_t tl = strlen(puncts[k].text);
        if ((int64_t)tl > left || memcmp(s, puncts[k].text, tl)) continue;
        int op = puncts[k].op;
        if (op == P_LPAR || op == P_LSQB || op == P_LBRACE) {
            if (++*depth > lx->lim.max_nesting)
                return pthcv_fail(PTHCV_ERR_LIMIT, "%s:%d: brackets nested deeper than %d (max_nesting)", lx->name,
                                  line, (int)lx->lim.max_nesting);
            opened[*depth - 1] = line;
        } else if (op == P_RPAR || op == P_RSQB || op == P_RBRACE) {
            if (*depth == 0)
                return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: unmatched '%s'", lx->name, line, puncts[k].text);
            --*depth;
        }
        jit_token *t = push(lx, T_OP, line, *pos);
        if (!t) return pthcv_last_status();
        t->op = op;
        t->len = (int32_t)tl;
        *pos += (int64_t)tl;
        return PTHCV_OK;
    }
    int c = (unsigned char)*s;
    if (c >= 0x21 && c < 0x7f)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: unexpected character '%c'", lx->name, line, c);
    return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: unexpected byte 0x%02x", lx->name, line, c);
}

/* The indentation of the line starting at src[p]: its width (tabs to the
 * next multiple of 8), *p moved past it. -1 for a blank or comment-only line. */
static int64_t line_indent(const jit_lexer *lx, int64_t *p)
{
    int64_t w = 0, q = *p;
    for (; q < lx->len; q++) {
        if (lx->src[q] == ' ') w++;
        else if (lx->src[q] == '\t') w = (w / 8 + 1) * 8;
        else if (lx->src[q] == '\f') w = 0;
        else break;
    }
    *p = q;
    if (q >= lx->len || lx->src[q] == '\n' || lx->src[q] == '#' ||
        (lx->src[q] == '\r' && q + 1 < lx->len && lx->src[q + 1] == '\n'))
        return -1;
    return w;
}

/* INDENT / DEDENTs for a new logical line of width w. */
static int indent_line(jit_lexer *lx, int64_t w, int64_t *stack, int *nstack, int line, int64_t start)
{
    if (w > stack[*nstack - 1]) {
        if (*nstack > lx->lim.max_nesting)
            return pthcv_fail(PTHCV_ERR_LIMIT, "%s:%d: blocks nested deeper than %d (max_nesting)", lx->name, line,
                              (int)lx->lim.max_nesting);
        stack[(*nstack)++] = w;
        return push(lx, T_INDENT, line, start) ? PTHCV_OK : pthcv_last_status();
    }
    while (w < stack[*nstack - 1]) {
        --*nstack;
        if (!push(lx, T_DEDENT, line, start)) return pthcv_last_status();
    }
    if (w != stack[*nstack - 1])
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: unindent does not match any outer indentation level", lx->name,
                          line);
    return PTHCV_OK;
}

/* Ends a logical line: a NEWLINE unless the last token is one (or none yet). */
static int end_line(jit_lexer *lx, int line, int64_t start)
{
    if (lx->ntokens == 0 || lx->tokens[lx->ntokens - 1].type == T_NEWLINE ||
        lx->tokens[lx->ntokens - 1].type == T_INDENT || lx->tokens[lx->ntokens - 1].type == T_DEDENT)
        return PTHCV_OK;
    return push(lx, T_NEWLINE, line, start) ? PTHCV_OK : pthcv_last_status();
}

/* One token (not whitespace, not a line start) at src[*pos]. */
static int lex_token(jit_lexer *lx, int64_t *pos, int *line, int *depth, int *opened, locale_t c_locale)
{
    const char *s = lx->src;
    int c = (unsigned char)s[*pos];
    if (is_name_start(c)) {
        int64_t p = *pos;
        while (p < lx->len && is_name_char((unsigned char)s[p])) p++;
        if (p < lx->len && (s[p] == '"' || s[p] == '\''))
            return pthcv_fail(PTHCV_ERR_UNSUPPORTED, "%s:%d: string prefixes (%.*s\"...\") are not supported", lx->name,
                              *line, (int)(p - *pos > 8 ? 8 : p - *pos), s + *pos);
        if (p - *pos > 1024)
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: a name longer than 1024 characters", lx->name, *line);
        jit_token *t = push(lx, T_NAME, *line, *pos);
        if (!t) return pthcv_last_status();
        t->len = (int32_t)(p - *pos);
        *pos = p;
        return PTHCV_OK;
    }
    if (is_digit(c) || (c == '.' && *pos + 1 < lx->len && is_digit(s[*pos + 1]))) {
        jit_token *t = push(lx, T_INT, *line, *pos);
        if (!t) return pthcv_last_status();
        return lex_number(lx, pos, *line, t, c_locale);
    }
    if (c == '"' || c == '\'') {
        jit_token *t = push(lx, T_STRING, *line, *pos);
        if (!t) return pthcv_last_status();
        return lex_string(lx, pos, line, t);
    }
    if (c == '\0') return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: NUL byte in the source", lx->name, *line);
    return lex_punct(lx, pos, *line, depth, opened);
}

static int lex_all(jit_lexer *lx, locale_t c_locale)
{
    int64_t stack[256 + 2]; /* indentation widths; max_nesting is at most 256 */
    int opened[256 + 2];    /* the line of each open bracket */
    int nstack = 1, line = 1, depth = 0, at_line_start = 1;
    stack[0] = 0;
    int64_t pos = 0;
    const char *s = lx->src;
    while (pos < lx->len) {
        if (at_line_start && depth == 0) {
            int64_t w = line_indent(lx, &pos);
            at_line_start = 0;
            if (w >= 0) {
                int st = indent_line(lx, w, stack, &nstack, line, pos);
                if (st) return st;
            }
            continue;
        }
        char c = s[pos];
        if (c == ' ' || c == '\t' || c == '\f' || c == '\r') {
            pos++;
            continue;
        }
        if (c == '#') {
            while (pos < lx->len && s[pos] != '\n') pos++;
            continue;
        }
        if (c == '\\' && pos + 1 < lx->len && (s[pos + 1] == '\n' || s[pos + 1] == '\r')) {
            pos += s[pos + 1] == '\r' && pos + 2 < lx->len && s[pos + 2] == '\n' ? 3 : 2;
            line++;
            continue;
        }
        if (c == '\n') {
            if (depth == 0) {
                int st = end_line(lx, line, pos);
                if (st) return st;
                at_line_start = 1;
            }
            line++;
            pos++;
            continue;
        }
        int st = lex_token(lx, &pos, &line, &depth, opened, c_locale);
        if (st) return st;
    }
    if (depth)
        return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: a bracket opened here is never closed", lx->name,
                          opened[depth - 1]);
    int st = end_line(lx, line, pos);
    while (!st && nstack > 1) {
        nstack--;
        if (!push(lx, T_DEDENT, line, pos)) st = pthcv_last_status();
    }
    if (!st && !push(lx, T_EOF, line, pos)) st = pthcv_last_status();
    return st;
}

int jit_lex(jit_lexer *lx)
{
    if (lx->len > lx->lim.max_source)
        return pthcv_fail(PTHCV_ERR_LIMIT, "%s: %lld bytes of source, more than the limit of %lld (max_source)",
                          lx->name, (long long)lx->len, (long long)lx->lim.max_source);
    locale_t c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (c_locale == (locale_t)0) return pthcv_fail(PTHCV_ERR_NOMEM, "%s: cannot create the C locale", lx->name);
    int st = lex_all(lx, c_locale);
    freelocale(c_locale);
    return st;
}

const char *jit_token_text(const jit_lexer *lx, const jit_token *t, char *buf, size_t n)
{
    switch (t->type) {
    case T_EOF: return "end of file";
    case T_NEWLINE: return "end of line";
    case T_INDENT: return "an indented block";
    case T_DEDENT: return "the end of a block";
    case T_STRING: return "a string";
    case T_INT:
    case T_FLOAT: return "a number";
    default: snprintf(buf, n, "'%.*s'", t->len > 40 ? 40 : t->len, lx->src + t->start); return buf;
    }
}
