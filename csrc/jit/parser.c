/*
 * parser.c -- TorchScript source into the syntax tree pthcv.h describes
 * (pthcv_jit_parse).
 *
 * A recursive descent over the token array, one function per level of
 * Python's grammar for the subset torch's python_print.cpp writes: class
 * and def blocks, assignments (plain, annotated, augmented, tuple
 * unpacking), if/elif/else, for, while, return, raise, assert, pass, break,
 * continue, with, del, import; expressions with Python's precedence, calls
 * with keyword arguments, subscripts and slices, list/tuple/dict displays.
 * The recursion follows the input's nesting, so every level that can nest
 * (an expression in brackets, a unary operator, a block) counts against
 * max_nesting and is refused past it.
 */
#include "jit.h"
#include <stdlib.h>
#include <string.h>

struct pthcv_jit_ast {
    pthcv_jit_node *nodes;
    int32_t count, cap;
    int32_t *last;      /* last child of each node, while building */
    jit_chunk *strings; /* the lexer's strings and the names, owned here */
};

typedef struct parser {
    jit_lexer lx;
    pthcv_jit_ast *ast;
    int64_t pos; /* next token */
    int depth;
} parser;

void pthcv_jit_limits_init(pthcv_jit_limits *l)
{
    l->max_source = 8 << 20;
    l->max_tokens = 2 * 1000 * 1000;
    l->max_nesting = 100;
    l->max_literal = 1 << 20;
}

/* ---- tree building ---- */

static int new_node(parser *p, int kind, int line)
{
    pthcv_jit_ast *a = p->ast;
    if (a->count == a->cap) {
        if (a->cap > INT32_MAX / 2) {
            pthcv_fail(PTHCV_ERR_LIMIT, "%s:%d: more than %d syntax tree nodes", p->lx.name, line, INT32_MAX / 2);
            return -1;
        }
        int32_t cap = a->cap ? a->cap * 2 : 1024;
        pthcv_jit_node *n = realloc(a->nodes, (size_t)cap * sizeof *n);
        if (n) a->nodes = n;
        int32_t *l = n ? realloc(a->last, (size_t)cap * sizeof *l) : NULL;
        if (l) a->last = l;
        if (!n || !l) {
            pthcv_fail(PTHCV_ERR_NOMEM, "%s:%d: out of memory", p->lx.name, line);
            return -1;
        }
        a->cap = cap;
    }
    int32_t i = a->count++;
    pthcv_jit_node *n = &a->nodes[i];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->line = line;
    n->first = n->next = -1;
    n->s = "";
    a->last[i] = -1;
    return i;
}

static void add_kid(parser *p, int parent, int kid)
{
    pthcv_jit_ast *a = p->ast;
    if (a->last[parent] < 0) a->nodes[parent].first = kid;
    else a->nodes[a->last[parent]].next = kid;
    a->last[parent] = kid;
    a->nodes[parent].nkids++;
}

/* A node of `kind` with the given children (all >= 0). */
static int node_with(parser *p, int kind, int line, int nkids, const int *kids)
{
    int n = new_node(p, kind, line);
    if (n < 0) return -1;
    for (int k = 0; k < nkids; k++) add_kid(p, n, kids[k]);
    return n;
}

/* The identifier text of token t as a tree string. */
static const char *token_name(parser *p, const jit_token *t)
{
    const char *s = jit_strdup(&p->lx.strings, p->lx.src + t->start, (size_t)t->len);
    if (!s) pthcv_fail(PTHCV_ERR_NOMEM, "%s:%d: out of memory", p->lx.name, t->line);
    return s;
}

/* ---- tokens ---- */

static const jit_token *peek(parser *p) { return &p->lx.tokens[p->pos]; }
static const jit_token *peek2(parser *p)
{
    return p->lx.tokens[p->pos].type == T_EOF ? &p->lx.tokens[p->pos] : &p->lx.tokens[p->pos + 1];
}
static const jit_token *next(parser *p)
{
    const jit_token *t = &p->lx.tokens[p->pos];
    if (t->type != T_EOF) p->pos++;
    return t;
}
static int is_op(const jit_token *t, int op) { return t->type == T_OP && t->op == op; }
static int is_kw(parser *p, const jit_token *t, const char *kw)
{
    size_t n = strlen(kw);
    return t->type == T_NAME && (size_t)t->len == n && !memcmp(p->lx.src + t->start, kw, n);
}

static int syntax_error(parser *p, const jit_token *t, const char *expected)
{
    char buf[64];
    return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: expected %s, found %s", p->lx.name, t->line, expected,
                      jit_token_text(&p->lx, t, buf, sizeof buf));
}

static int unsupported(parser *p, int line, const char *what)
{
    return pthcv_fail(PTHCV_ERR_UNSUPPORTED,
                      "%s:%d: %s not supported (torch's TorchScript printer does not write this)", p->lx.name, line,
                      what);
}

static int expect_op(parser *p, int op, const char *text)
{
    if (!is_op(peek(p), op)) return syntax_error(p, peek(p), text);
    next(p);
    return PTHCV_OK;
}

static int enter(parser *p, int line)
{
    if (++p->depth > p->lx.lim.max_nesting)
        return pthcv_fail(PTHCV_ERR_LIMIT, "%s:%d: expressions and blocks nested deeper than %d (max_nesting)",
                          p->lx.name, line, (int)p->lx.lim.max_nesting);
    return PTHCV_OK;
}

/* Keywords that cannot be names. */
static int is_reserved(parser *p, const jit_token *t)
{
    static const char *const words[] = {
        "and",  "as",     "assert", "async",  "await",  "break",   "class",    "continue", "def",
        "del",  "elif",   "else",   "except", "False",  "finally", "for",      "from",     "global",
        "if",   "import", "in",     "is",     "lambda", "None",    "nonlocal", "not",      "or",
        "pass", "raise",  "return", "True",   "try",    "while",   "with",     "yield",
    };
    for (size_t k = 0; k < sizeof words / sizeof words[0]; k++)
        if (is_kw(p, t, words[k])) return 1;
    return 0;
}

/* ---- expressions ---- */

static int parse_test(parser *p);
static int parse_bitor(parser *p);

/* Can t start an expression? (ends the items of a bare tuple) */
static int starts_expr(parser *p, const jit_token *t)
{
    if (t->type == T_INT || t->type == T_FLOAT || t->type == T_STRING) return 1;
    if (t->type == T_NAME)
        return !is_reserved(p, t) || is_kw(p, t, "None") || is_kw(p, t, "True") || is_kw(p, t, "False") ||
            is_kw(p, t, "not") || is_kw(p, t, "lambda");
    return is_op(t, P_LPAR) || is_op(t, P_LSQB) || is_op(t, P_LBRACE) || is_op(t, P_TILDE) ||
        is_op(t, P_BINOP_BASE + PTHCV_JOP_ADD) || is_op(t, P_BINOP_BASE + PTHCV_JOP_SUB);
}

/* Adjacent string literals join, as in Python. */
static int parse_strings(parser *p)
{
    const jit_token *t = next(p);
    int n = new_node(p, PTHCV_JIT_STR, t->line);
    if (n < 0) return -1;
    size_t total = (size_t)t->len;
    int64_t first = p->pos - 1;
    while (peek(p)->type == T_STRING) {
        total += (size_t)next(p)->len;
        if ((int64_t)total > p->lx.lim.max_literal) {
            pthcv_fail(PTHCV_ERR_LIMIT, "%s:%d: a string literal longer than %lld bytes (max_literal)", p->lx.name,
                       t->line, (long long)p->lx.lim.max_literal);
            return -1;
        }
    }
    pthcv_jit_node *nd = &p->ast->nodes[n];
    if (p->pos - first == 1) {
        nd->s = t->str;
    } else {
        char *buf = malloc(total + 1);
        if (!buf) {
            pthcv_fail(PTHCV_ERR_NOMEM, "%s:%d: out of memory", p->lx.name, t->line);
            return -1;
        }
        size_t o = 0;
        for (int64_t k = first; k < p->pos; k++) {
            memcpy(buf + o, p->lx.tokens[k].str, (size_t)p->lx.tokens[k].len);
            o += (size_t)p->lx.tokens[k].len;
        }
        nd->s = jit_strdup(&p->lx.strings, buf, o);
        free(buf);
        if (!nd->s) {
            pthcv_fail(PTHCV_ERR_NOMEM, "%s:%d: out of memory", p->lx.name, t->line);
            return -1;
        }
    }
    nd->len = (int64_t)total;
    return n;
}

/* Items up to the closing bracket `close`, into node n; returns the count
 * or -1. A comprehension is refused. */
static int parse_items(parser *p, int n, int close, const char *closing)
{
    int count = 0;
    while (!is_op(peek(p), close)) {
        int item = parse_test(p);
        if (item < 0) return -1;
        add_kid(p, n, item);
        count++;
        if (is_kw(p, peek(p), "for")) return unsupported(p, peek(p)->line, "comprehensions are"), -1;
        if (!is_op(peek(p), P_COMMA)) break;
        next(p);
    }
    if (expect_op(p, close, closing)) return -1;
    return count;
}

static int parse_dict(parser *p, int line)
{
    int n = new_node(p, PTHCV_JIT_DICT, line);
    if (n < 0) return -1;
    while (!is_op(peek(p), P_RBRACE)) {
        int k = parse_test(p);
        if (k < 0) return -1;
        if (!is_op(peek(p), P_COLON)) {
            if (is_kw(p, peek(p), "for")) return unsupported(p, line, "comprehensions are"), -1;
            return unsupported(p, line, "set displays are"), -1;
        }
        next(p);
        int v = parse_test(p);
        if (v < 0) return -1;
        add_kid(p, n, k);
        add_kid(p, n, v);
        if (!is_op(peek(p), P_COMMA)) break;
        next(p);
    }
    return expect_op(p, P_RBRACE, "'}'") ? -1 : n;
}

/* ( ... ): a parenthesised expression or a tuple. */
static int parse_paren(parser *p, int line)
{
    if (is_op(peek(p), P_RPAR)) {
        next(p);
        return new_node(p, PTHCV_JIT_TUPLE, line);
    }
    int first = parse_test(p);
    if (first < 0) return -1;
    if (is_kw(p, peek(p), "for")) return unsupported(p, line, "generator expressions are"), -1;
    if (!is_op(peek(p), P_COMMA)) return expect_op(p, P_RPAR, "')'") ? -1 : first;
    next(p);
    int n = node_with(p, PTHCV_JIT_TUPLE, line, 1, &first);
    if (n < 0 || parse_items(p, n, P_RPAR, "')'") < 0) return -1;
    return n;
}

static int parse_atom(parser *p)
{
    const jit_token *t = peek(p);
    int line = t->line;
    if (t->type == T_STRING) return parse_strings(p);
    if (t->type == T_INT || t->type == T_FLOAT) {
        next(p);
        int n = new_node(p, t->type == T_INT ? PTHCV_JIT_INT : PTHCV_JIT_FLOAT, line);
        if (n < 0) return -1;
        p->ast->nodes[n].i = t->i;
        p->ast->nodes[n].f = t->f;
        p->ast->nodes[n].op = t->op;
        return n;
    }
    if (t->type == T_NAME) {
        int c = is_kw(p, t, "None") ? PTHCV_JCONST_NONE
            : is_kw(p, t, "True")   ? PTHCV_JCONST_TRUE
            : is_kw(p, t, "False")  ? PTHCV_JCONST_FALSE
                                    : -1;
        if (c < 0 && is_kw(p, t, "lambda")) return unsupported(p, line, "lambda expressions are"), -1;
        if (c < 0 && (is_kw(p, t, "yield") || is_kw(p, t, "await")))
            return unsupported(p, line, "generators and coroutines are"), -1;
        if (c < 0 && is_reserved(p, t)) return syntax_error(p, t, "an expression"), -1;
        next(p);
        int n = new_node(p, c >= 0 ? PTHCV_JIT_CONST : PTHCV_JIT_NAME, line);
        if (n < 0) return -1;
        if (c >= 0) p->ast->nodes[n].op = c;
        else if (!(p->ast->nodes[n].s = token_name(p, t))) return -1;
        else p->ast->nodes[n].len = t->len;
        return n;
    }
    if (is_op(t, P_LPAR)) {
        next(p);
        return parse_paren(p, line);
    }
    if (is_op(t, P_LSQB)) {
        next(p);
        int n = new_node(p, PTHCV_JIT_LIST, line);
        return n < 0 || parse_items(p, n, P_RSQB, "']'") < 0 ? -1 : n;
    }
    if (is_op(t, P_LBRACE)) {
        next(p);
        return parse_dict(p, line);
    }
    if (is_op(t, P_ELLIPSIS)) return unsupported(p, line, "the ellipsis (...) is"), -1;
    if (is_op(t, P_BINOP_BASE + PTHCV_JOP_BITXOR))
        return unsupported(p, line, "calls of Python functions (^name) are"), -1;
    return syntax_error(p, t, "an expression"), -1;
}

/* Call arguments after '(' up to ')', as children of the CALL node n. */
static int parse_call_args(parser *p, int n)
{
    int keywords = 0;
    while (!is_op(peek(p), P_RPAR)) {
        const jit_token *t = peek(p);
        if (is_op(t, P_BINOP_BASE + PTHCV_JOP_MUL) || is_op(t, P_BINOP_BASE + PTHCV_JOP_POW))
            return unsupported(p, t->line, "*args and **kwargs arguments are");
        int arg;
        if (t->type == T_NAME && is_op(peek2(p), P_ASSIGN) && !is_reserved(p, t)) {
            next(p);
            next(p);
            int v = parse_test(p);
            if (v < 0 || (arg = node_with(p, PTHCV_JIT_KEYWORD, t->line, 1, &v)) < 0) return pthcv_last_status();
            if (!(p->ast->nodes[arg].s = token_name(p, t))) return pthcv_last_status();
            p->ast->nodes[arg].len = t->len;
            keywords = 1;
        } else {
            if (keywords)
                return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: a positional argument follows a keyword argument",
                                  p->lx.name, t->line);
            if ((arg = parse_test(p)) < 0) return pthcv_last_status();
            if (is_kw(p, peek(p), "for")) return unsupported(p, t->line, "generator expressions are");
        }
        add_kid(p, n, arg);
        if (!is_op(peek(p), P_COMMA)) break;
        next(p);
    }
    return expect_op(p, P_RPAR, "')'");
}

/* One subscript: an expression or a slice [lower]:[upper][:[step]]. */
static int parse_subscript(parser *p)
{
    int line = peek(p)->line;
    int parts[3] = {-1, -1, -1}, np = 0;
    if (!is_op(peek(p), P_COLON)) {
        int e = parse_test(p);
        if (e < 0) return -1;
        if (!is_op(peek(p), P_COLON)) return e;
        parts[0] = e;
    }
    while (np < 2 && is_op(peek(p), P_COLON)) {
        next(p);
        np++;
        const jit_token *t = peek(p);
        if (!is_op(t, P_COLON) && !is_op(t, P_COMMA) && !is_op(t, P_RSQB) && (parts[np] = parse_test(p)) < 0) return -1;
    }
    for (int k = 0; k < 3; k++)
        if (parts[k] < 0 && (parts[k] = new_node(p, PTHCV_JIT_EMPTY, line)) < 0) return -1;
    return node_with(p, PTHCV_JIT_SLICE, line, 3, parts);
}

static int parse_trailers(parser *p, int n)
{
    for (;;) {
        const jit_token *t = peek(p);
        int line = t->line;
        if (is_op(t, P_LPAR)) {
            next(p);
            if ((n = node_with(p, PTHCV_JIT_CALL, line, 1, &n)) < 0 || parse_call_args(p, n)) return -1;
        } else if (is_op(t, P_LSQB)) {
            next(p);
            int idx = parse_subscript(p);
            if (idx < 0) return -1;
            if (is_op(peek(p), P_COMMA)) {
                next(p);
                if ((idx = node_with(p, PTHCV_JIT_TUPLE, line, 1, &idx)) < 0) return -1;
                while (!is_op(peek(p), P_RSQB)) {
                    int s = parse_subscript(p);
                    if (s < 0) return -1;
                    add_kid(p, idx, s);
                    if (!is_op(peek(p), P_COMMA)) break;
                    next(p);
                }
            }
            if (expect_op(p, P_RSQB, "']'")) return -1;
            int kids[2] = {n, idx};
            if ((n = node_with(p, PTHCV_JIT_SUBSCRIPT, line, 2, kids)) < 0) return -1;
        } else if (is_op(t, P_DOT)) {
            next(p);
            const jit_token *name = peek(p);
            if (name->type != T_NAME) return syntax_error(p, name, "an attribute name"), -1;
            next(p);
            if ((n = node_with(p, PTHCV_JIT_ATTR, line, 1, &n)) < 0) return -1;
            if (!(p->ast->nodes[n].s = token_name(p, name))) return -1;
            p->ast->nodes[n].len = name->len;
        } else {
            return n;
        }
    }
}

static int parse_factor(parser *p);

static int parse_power(parser *p)
{
    int base = parse_atom(p);
    if (base < 0 || (base = parse_trailers(p, base)) < 0) return -1;
    if (!is_op(peek(p), P_BINOP_BASE + PTHCV_JOP_POW)) return base;
    int line = next(p)->line;
    if (enter(p, line)) return -1;
    int kids[2] = {base, parse_factor(p)};
    p->depth--;
    if (kids[1] < 0) return -1;
    int n = node_with(p, PTHCV_JIT_BINOP, line, 2, kids);
    if (n >= 0) p->ast->nodes[n].op = PTHCV_JOP_POW;
    return n;
}

/* Unary + - ~; a minus before a number literal is folded into it (that
 * is how -9223372036854775808 reads: 2^63 is only valid negated). */
static int parse_unary(parser *p)
{
    const jit_token *t = peek(p);
    int op = is_op(t, P_BINOP_BASE + PTHCV_JOP_SUB) ? PTHCV_JOP_NEG
        : is_op(t, P_BINOP_BASE + PTHCV_JOP_ADD)    ? PTHCV_JOP_POS
        : is_op(t, P_TILDE)                         ? PTHCV_JOP_INVERT
                                                    : 0;
    if (!op) return parse_power(p);
    next(p);
    if (enter(p, t->line)) return -1;
    int operand = parse_unary(p);
    p->depth--;
    if (operand < 0) return -1;
    pthcv_jit_node *o = &p->ast->nodes[operand];
    if (op == PTHCV_JOP_NEG && o->kind == PTHCV_JIT_INT && (o->op || o->i != INT64_MIN)) {
        if (!o->op) o->i = -o->i; /* 2^63 (op 1) negated is INT64_MIN, already stored */
        o->op = 0;
        return operand;
    }
    if (op == PTHCV_JOP_NEG && o->kind == PTHCV_JIT_FLOAT) {
        o->f = -o->f;
        return operand;
    }
    int n = node_with(p, PTHCV_JIT_UNARY, t->line, 1, &operand);
    if (n >= 0) p->ast->nodes[n].op = op;
    return n;
}

/* A unary expression whose literals are all in range. */
static int parse_factor(parser *p)
{
    int n = parse_unary(p);
    if (n < 0) return -1;
    int k = n;
    while (p->ast->nodes[k].kind == PTHCV_JIT_UNARY) k = p->ast->nodes[k].first;
    if (p->ast->nodes[k].kind == PTHCV_JIT_INT && p->ast->nodes[k].op) {
        pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: integer literal 9223372036854775808 out of the 64-bit range", p->lx.name,
                   p->ast->nodes[k].line);
        return -1;
    }
    return n;
}

/* Left-associative binary levels, loosest first: | ^ & (<< >>) (+ -) (* / // % @). */
static const int binary_levels[][6] = {
    {PTHCV_JOP_BITOR},
    {PTHCV_JOP_BITXOR},
    {PTHCV_JOP_BITAND},
    {PTHCV_JOP_LSHIFT, PTHCV_JOP_RSHIFT},
    {PTHCV_JOP_ADD, PTHCV_JOP_SUB},
    {PTHCV_JOP_MUL, PTHCV_JOP_DIV, PTHCV_JOP_FLOORDIV, PTHCV_JOP_MOD, PTHCV_JOP_MATMUL},
};
enum { NLEVELS = sizeof binary_levels / sizeof binary_levels[0] };

static int parse_binary(parser *p, int level)
{
    int left = level + 1 < NLEVELS ? parse_binary(p, level + 1) : parse_factor(p);
    for (;;) {
        if (left < 0) return -1;
        const jit_token *t = peek(p);
        int op = 0;
        for (int k = 0; k < 6 && binary_levels[level][k]; k++)
            if (is_op(t, P_BINOP_BASE + binary_levels[level][k])) op = binary_levels[level][k];
        if (!op) return left;
        next(p);
        int kids[2] = {left, level + 1 < NLEVELS ? parse_binary(p, level + 1) : parse_factor(p)};
        if (kids[1] < 0) return -1;
        if ((left = node_with(p, PTHCV_JIT_BINOP, t->line, 2, kids)) >= 0) p->ast->nodes[left].op = op;
    }
}

static int parse_bitor(parser *p) { return parse_binary(p, 0); }

/* A comparison operator at the cursor, consumed; 0 when there is none. */
static int comparison_op(parser *p)
{
    const jit_token *t = peek(p);
    static const int ops[][2] = {{P_EQ, PTHCV_JOP_EQ}, {P_NE, PTHCV_JOP_NE}, {P_LT, PTHCV_JOP_LT},
                                 {P_LE, PTHCV_JOP_LE}, {P_GT, PTHCV_JOP_GT}, {P_GE, PTHCV_JOP_GE}};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
        if (is_op(t, ops[k][0])) {
            next(p);
            return ops[k][1];
        }
    if (is_kw(p, t, "in")) {
        next(p);
        return PTHCV_JOP_IN;
    }
    if (is_kw(p, t, "not") && is_kw(p, peek2(p), "in")) {
        next(p);
        next(p);
        return PTHCV_JOP_NOTIN;
    }
    if (is_kw(p, t, "is")) {
        next(p);
        if (is_kw(p, peek(p), "not")) {
            next(p);
            return PTHCV_JOP_ISNOT;
        }
        return PTHCV_JOP_IS;
    }
    return 0;
}

static int parse_comparison(parser *p)
{
    int left = parse_bitor(p);
    if (left < 0) return -1;
    int line = peek(p)->line;
    int op = comparison_op(p);
    if (!op) return left;
    int kids[2] = {left, parse_bitor(p)};
    if (kids[1] < 0) return -1;
    if (comparison_op(p)) return unsupported(p, line, "chained comparisons (a < b < c) are"), -1;
    int n = node_with(p, PTHCV_JIT_COMPARE, line, 2, kids);
    if (n >= 0) p->ast->nodes[n].op = op;
    return n;
}

static int parse_not(parser *p)
{
    const jit_token *t = peek(p);
    if (!is_kw(p, t, "not")) return parse_comparison(p);
    next(p);
    if (enter(p, t->line)) return -1;
    int operand = parse_not(p);
    p->depth--;
    if (operand < 0) return -1;
    int n = node_with(p, PTHCV_JIT_UNARY, t->line, 1, &operand);
    if (n >= 0) p->ast->nodes[n].op = PTHCV_JOP_NOT;
    return n;
}

/* `and` (inner) and `or` (outer) chains. */
static int parse_boolean(parser *p, int is_or)
{
    int left = is_or ? parse_boolean(p, 0) : parse_not(p);
    const char *kw = is_or ? "or" : "and";
    while (left >= 0 && is_kw(p, peek(p), kw)) {
        int line = next(p)->line;
        int kids[2] = {left, is_or ? parse_boolean(p, 0) : parse_not(p)};
        if (kids[1] < 0) return -1;
        if ((left = node_with(p, PTHCV_JIT_BOOLOP, line, 2, kids)) >= 0)
            p->ast->nodes[left].op = is_or ? PTHCV_JOP_OR : PTHCV_JOP_AND;
    }
    return left;
}

/* test: or_test ['if' or_test 'else' test] */
static int parse_test(parser *p)
{
    int line = peek(p)->line;
    if (enter(p, line)) return -1;
    int n = parse_boolean(p, 1);
    if (n >= 0 && is_kw(p, peek(p), "if")) {
        next(p);
        int kids[3] = {-1, n, -1};
        if ((kids[0] = parse_boolean(p, 1)) < 0) n = -1;
        else if (!is_kw(p, peek(p), "else")) n = (syntax_error(p, peek(p), "'else'"), -1);
        else if (next(p), (kids[2] = parse_test(p)) < 0) n = -1;
        else n = node_with(p, PTHCV_JIT_IFEXP, line, 3, kids);
    }
    p->depth--;
    return n;
}

/* Expressions separated by commas; a bare tuple when there is a comma. */
static int parse_testlist(parser *p, int (*item)(parser *))
{
    int line = peek(p)->line;
    int first = item(p);
    if (first < 0 || !is_op(peek(p), P_COMMA)) return first;
    int n = node_with(p, PTHCV_JIT_TUPLE, line, 1, &first);
    while (n >= 0 && is_op(peek(p), P_COMMA)) {
        next(p);
        if (!starts_expr(p, peek(p))) break;
        int e = item(p);
        if (e < 0) return -1;
        add_kid(p, n, e);
    }
    return n;
}

/* ---- statements ---- */

static int parse_stmt(parser *p, int parent);

static int at_line_end(parser *p)
{
    return peek(p)->type == T_NEWLINE || is_op(peek(p), P_SEMI) || peek(p)->type == T_EOF;
}

/* Is node n something an assignment can store into? */
static int assignable(parser *p, int n)
{
    const pthcv_jit_node *nd = &p->ast->nodes[n];
    if (nd->kind == PTHCV_JIT_NAME || nd->kind == PTHCV_JIT_ATTR || nd->kind == PTHCV_JIT_SUBSCRIPT) return 1;
    if (nd->kind != PTHCV_JIT_TUPLE && nd->kind != PTHCV_JIT_LIST) return 0;
    for (int k = nd->first; k >= 0; k = p->ast->nodes[k].next)
        if (p->ast->nodes[k].kind == PTHCV_JIT_TUPLE || p->ast->nodes[k].kind == PTHCV_JIT_LIST || !assignable(p, k))
            return 0; /* one level of unpacking: TorchScript prints no nested targets */
    return 1;
}

static int check_target(parser *p, int n, int line)
{
    if (assignable(p, n)) return PTHCV_OK;
    return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: cannot assign to this expression", p->lx.name, line);
}

/* expression, assignment, annotated or augmented assignment */
static int parse_expr_stmt(parser *p, int parent)
{
    const jit_token *t = peek(p);
    int line = t->line;
    int first = parse_testlist(p, parse_test);
    if (first < 0) return pthcv_last_status();
    int n;
    t = peek(p);
    if (is_op(t, P_COLON)) {
        next(p);
        int kids[3] = {first, parse_test(p), -1};
        if (kids[1] < 0 || check_target(p, first, line)) return pthcv_last_status();
        if (is_op(peek(p), P_ASSIGN)) {
            next(p);
            kids[2] = parse_testlist(p, parse_test);
        } else kids[2] = new_node(p, PTHCV_JIT_EMPTY, line);
        if (kids[2] < 0 || (n = node_with(p, PTHCV_JIT_ANNASSIGN, line, 3, kids)) < 0) return pthcv_last_status();
    } else if (t->type == T_OP && t->op > P_AUG_BASE && t->op < P_AUG_BASE + PTHCV_JOP_NEG) {
        next(p);
        int kids[2] = {first, parse_testlist(p, parse_test)};
        if (kids[1] < 0 || check_target(p, first, line)) return pthcv_last_status();
        const pthcv_jit_node *tn = &p->ast->nodes[first];
        if (tn->kind == PTHCV_JIT_TUPLE || tn->kind == PTHCV_JIT_LIST)
            return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: an augmented assignment to a tuple", p->lx.name, line);
        if ((n = node_with(p, PTHCV_JIT_AUGASSIGN, line, 2, kids)) < 0) return pthcv_last_status();
        p->ast->nodes[n].op = t->op - P_AUG_BASE;
    } else if (is_op(t, P_ASSIGN)) {
        if ((n = node_with(p, PTHCV_JIT_ASSIGN, line, 1, &first)) < 0) return pthcv_last_status();
        int value = first;
        while (is_op(peek(p), P_ASSIGN)) {
            next(p);
            if (check_target(p, value, line)) return pthcv_last_status();
            if ((value = parse_testlist(p, parse_test)) < 0) return pthcv_last_status();
            add_kid(p, n, value);
        }
    } else if ((n = node_with(p, PTHCV_JIT_EXPR, line, 1, &first)) < 0) {
        return pthcv_last_status();
    }
    add_kid(p, parent, n);
    return PTHCV_OK;
}

/* return / raise / assert / del / import; `kw` is the keyword token. */
static int parse_keyword_stmt(parser *p, int parent, const jit_token *kw, int kind)
{
    int line = kw->line;
    int n = new_node(p, kind, line), e;
    if (n < 0) return pthcv_last_status();
    if (kind == PTHCV_JIT_IMPORT) {
        int64_t start = peek(p)->start, end = start;
        do {
            const jit_token *t = next(p);
            if (t->type != T_NAME) return syntax_error(p, t, "a module name");
            end = t->start + t->len;
        } while (is_op(peek(p), P_DOT) && next(p));
        if (is_kw(p, peek(p), "as") || is_op(peek(p), P_COMMA))
            return unsupported(p, line, "import ... as and multiple imports are");
        if (!(p->ast->nodes[n].s = jit_strdup(&p->lx.strings, p->lx.src + start, (size_t)(end - start))))
            return pthcv_fail(PTHCV_ERR_NOMEM, "%s:%d: out of memory", p->lx.name, line);
        p->ast->nodes[n].len = end - start;
    } else if (kind == PTHCV_JIT_DEL) {
        if ((e = parse_testlist(p, parse_bitor)) < 0) return pthcv_last_status();
        if (check_target(p, e, line)) return pthcv_last_status();
        add_kid(p, n, e);
    } else {
        e = at_line_end(p)             ? new_node(p, PTHCV_JIT_EMPTY, line)
            : kind == PTHCV_JIT_RETURN ? parse_testlist(p, parse_test)
                                       : parse_test(p);
        if (e < 0) return pthcv_last_status();
        add_kid(p, n, e);
        if (kind == PTHCV_JIT_RAISE && is_kw(p, peek(p), "from")) return unsupported(p, line, "raise ... from is");
        if (kind == PTHCV_JIT_ASSERT) {
            if (p->ast->nodes[e].kind == PTHCV_JIT_EMPTY) return syntax_error(p, peek(p), "a condition");
            if (is_op(peek(p), P_COMMA)) {
                next(p);
                e = parse_test(p);
            } else e = new_node(p, PTHCV_JIT_EMPTY, line);
            if (e < 0) return pthcv_last_status();
            add_kid(p, n, e);
        }
    }
    add_kid(p, parent, n);
    return PTHCV_OK;
}

/* simple statements separated by ';' up to the end of the line */
static int parse_simple_stmt(parser *p, int parent)
{
    static const struct {
        const char *kw;
        int kind;
    } kws[] = {
        {"pass", PTHCV_JIT_PASS},     {"break", PTHCV_JIT_BREAK},   {"continue", PTHCV_JIT_CONTINUE},
        {"return", PTHCV_JIT_RETURN}, {"raise", PTHCV_JIT_RAISE},   {"assert", PTHCV_JIT_ASSERT},
        {"del", PTHCV_JIT_DEL},       {"import", PTHCV_JIT_IMPORT},
    };
    static const char *const refused[][2] = {
        {"from", "from-imports are"}, {"global", "global statements are"}, {"nonlocal", "nonlocal statements are"},
        {"yield", "generators are"},  {"async", "coroutines are"},         {"await", "coroutines are"},
    };
    for (;;) {
        const jit_token *t = peek(p);
        int done = 0, st = PTHCV_OK;
        for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++)
            if (is_kw(p, t, refused[k][0])) return unsupported(p, t->line, refused[k][1]);
        for (size_t k = 0; k < sizeof kws / sizeof kws[0] && !done; k++) {
            if (!is_kw(p, t, kws[k].kw)) continue;
            done = 1;
            next(p);
            if (kws[k].kind <= PTHCV_JIT_CONTINUE && kws[k].kind >= PTHCV_JIT_PASS) {
                int n = new_node(p, kws[k].kind, t->line);
                if (n < 0) return pthcv_last_status();
                add_kid(p, parent, n);
            } else {
                st = parse_keyword_stmt(p, parent, t, kws[k].kind);
            }
        }
        if (!done) st = parse_expr_stmt(p, parent);
        if (st) return st;
        if (!is_op(peek(p), P_SEMI)) break;
        next(p);
        if (peek(p)->type == T_NEWLINE) break;
    }
    if (peek(p)->type == T_EOF) return PTHCV_OK;
    if (peek(p)->type != T_NEWLINE) return syntax_error(p, peek(p), "the end of the statement");
    next(p);
    return PTHCV_OK;
}

/* ':' then an indented block (or statements on the same line): a BLOCK. */
static int parse_suite(parser *p, int line)
{
    if (expect_op(p, P_COLON, "':'")) return -1;
    if (enter(p, line)) return -1;
    int n = new_node(p, PTHCV_JIT_BLOCK, line);
    if (n < 0) return -1;
    if (peek(p)->type != T_NEWLINE) {
        if (parse_simple_stmt(p, n)) return -1;
    } else {
        next(p);
        if (peek(p)->type != T_INDENT) return syntax_error(p, peek(p), "an indented block"), -1;
        next(p);
        while (peek(p)->type != T_DEDENT && peek(p)->type != T_EOF)
            if (parse_stmt(p, n)) return -1;
        next(p);
    }
    p->depth--;
    return n;
}

/* if test: BLOCK [elif ...] [else: BLOCK]; an elif is an else BLOCK holding an IF. */
static int parse_if(parser *p, int line)
{
    if (enter(p, line)) return -1;
    int kids[3] = {parse_test(p), -1, -1};
    if (kids[0] < 0 || (kids[1] = parse_suite(p, line)) < 0) return -1;
    const jit_token *t = peek(p);
    if (is_kw(p, t, "elif")) {
        next(p);
        int inner = parse_if(p, t->line);
        if (inner < 0 || (kids[2] = node_with(p, PTHCV_JIT_BLOCK, t->line, 1, &inner)) < 0) return -1;
    } else if (is_kw(p, t, "else")) {
        next(p);
        if ((kids[2] = parse_suite(p, t->line)) < 0) return -1;
    } else if ((kids[2] = new_node(p, PTHCV_JIT_EMPTY, line)) < 0) {
        return -1;
    }
    p->depth--;
    return node_with(p, PTHCV_JIT_IF, line, 3, kids);
}

static int parse_loop(parser *p, int line, int is_for)
{
    int kids[3] = {-1, -1, -1}, k = 0;
    if (is_for) {
        if ((kids[k++] = parse_testlist(p, parse_bitor)) < 0 || check_target(p, kids[0], line)) return -1;
        if (!is_kw(p, peek(p), "in")) return syntax_error(p, peek(p), "'in'"), -1;
        next(p);
        if ((kids[k++] = parse_testlist(p, parse_test)) < 0) return -1;
    } else if ((kids[k++] = parse_test(p)) < 0) {
        return -1;
    }
    if ((kids[k++] = parse_suite(p, line)) < 0) return -1;
    if (is_kw(p, peek(p), "else")) return unsupported(p, peek(p)->line, "else blocks of loops are"), -1;
    return node_with(p, is_for ? PTHCV_JIT_FOR : PTHCV_JIT_WHILE, line, k, kids);
}

/* def NAME(params) [-> annotation]: BLOCK */
static int parse_def(parser *p, int line)
{
    const jit_token *name = next(p);
    if (name->type != T_NAME || is_reserved(p, name)) return syntax_error(p, name, "a function name"), -1;
    if (expect_op(p, P_LPAR, "'('")) return -1;
    int params = new_node(p, PTHCV_JIT_PARAMS, line);
    if (params < 0) return -1;
    while (!is_op(peek(p), P_RPAR)) {
        const jit_token *t = next(p);
        if (is_op(t, P_BINOP_BASE + PTHCV_JOP_MUL) || is_op(t, P_BINOP_BASE + PTHCV_JOP_POW) ||
            is_op(t, P_BINOP_BASE + PTHCV_JOP_DIV))
            return unsupported(p, t->line, "*args, **kwargs and positional-only parameters are"), -1;
        if (t->type != T_NAME || is_reserved(p, t)) return syntax_error(p, t, "a parameter name"), -1;
        int kids[2] = {-1, -1};
        for (int k = 0; k < 2; k++) {
            if (is_op(peek(p), k ? P_ASSIGN : P_COLON)) {
                next(p);
                kids[k] = parse_test(p);
            } else kids[k] = new_node(p, PTHCV_JIT_EMPTY, t->line);
            if (kids[k] < 0) return -1;
        }
        int param = node_with(p, PTHCV_JIT_PARAM, t->line, 2, kids);
        if (param < 0 || !(p->ast->nodes[param].s = token_name(p, t))) return -1;
        p->ast->nodes[param].len = t->len;
        add_kid(p, params, param);
        if (!is_op(peek(p), P_COMMA)) break;
        next(p);
    }
    if (expect_op(p, P_RPAR, "')'")) return -1;
    int ret;
    if (is_op(peek(p), P_ARROW)) {
        next(p);
        ret = parse_test(p);
    } else ret = new_node(p, PTHCV_JIT_EMPTY, line);
    int kids[3] = {params, ret, ret < 0 ? -1 : parse_suite(p, line)};
    if (kids[2] < 0) return -1;
    int n = node_with(p, PTHCV_JIT_DEF, line, 3, kids);
    if (n < 0 || !(p->ast->nodes[n].s = token_name(p, name))) return -1;
    p->ast->nodes[n].len = name->len;
    return n;
}

/* class NAME[(bases)]: BLOCK */
static int parse_class(parser *p, int line)
{
    const jit_token *name = next(p);
    if (name->type != T_NAME || is_reserved(p, name)) return syntax_error(p, name, "a class name"), -1;
    int kids[2] = {new_node(p, PTHCV_JIT_TUPLE, line), -1};
    if (kids[0] < 0) return -1;
    if (is_op(peek(p), P_LPAR)) {
        next(p);
        if (parse_items(p, kids[0], P_RPAR, "')'") < 0) return -1;
    }
    if ((kids[1] = parse_suite(p, line)) < 0) return -1;
    int n = node_with(p, PTHCV_JIT_CLASS, line, 2, kids);
    if (n < 0 || !(p->ast->nodes[n].s = token_name(p, name))) return -1;
    p->ast->nodes[n].len = name->len;
    return n;
}

/* with CONTEXT [as TARGET]: BLOCK */
static int parse_with(parser *p, int line)
{
    int kids[3] = {parse_test(p), -1, -1};
    if (kids[0] < 0) return -1;
    if (is_kw(p, peek(p), "as")) {
        next(p);
        if ((kids[1] = parse_bitor(p)) < 0 || check_target(p, kids[1], line)) return -1;
    } else if ((kids[1] = new_node(p, PTHCV_JIT_EMPTY, line)) < 0) {
        return -1;
    }
    if (is_op(peek(p), P_COMMA)) return unsupported(p, line, "with statements of several contexts are"), -1;
    if ((kids[2] = parse_suite(p, line)) < 0) return -1;
    return node_with(p, PTHCV_JIT_WITH, line, 3, kids);
}

static int parse_stmt(parser *p, int parent)
{
    const jit_token *t = peek(p);
    int line = t->line, n = -2;
    if (t->type == T_INDENT) return pthcv_fail(PTHCV_ERR_FORMAT, "%s:%d: unexpected indent", p->lx.name, line);
    if (is_kw(p, t, "if")) {
        next(p);
        n = parse_if(p, line);
    } else if (is_kw(p, t, "while")) {
        next(p);
        n = parse_loop(p, line, 0);
    } else if (is_kw(p, t, "for")) {
        next(p);
        n = parse_loop(p, line, 1);
    } else if (is_kw(p, t, "def")) {
        next(p);
        n = parse_def(p, line);
    } else if (is_kw(p, t, "class")) {
        next(p);
        n = parse_class(p, line);
    } else if (is_kw(p, t, "with")) {
        next(p);
        n = parse_with(p, line);
    } else if (is_kw(p, t, "try")) return unsupported(p, line, "try statements are");
    else if (is_op(t, P_BINOP_BASE + PTHCV_JOP_MATMUL)) return unsupported(p, line, "decorators are");
    else if (is_kw(p, t, "elif") || is_kw(p, t, "else")) return syntax_error(p, t, "a statement (no if before it)");
    if (n == -2) return parse_simple_stmt(p, parent);
    if (n < 0) return pthcv_last_status();
    add_kid(p, parent, n);
    return PTHCV_OK;
}

/* ---- entry points ---- */

pthcv_jit_ast *pthcv_jit_parse(const char *src, int64_t len, const char *name, const pthcv_jit_limits *lim)
{
    if (!name) name = "<source>";
    if (!src || len < 0) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: no source", name);
    parser p;
    memset(&p, 0, sizeof p);
    p.lx.src = src;
    p.lx.len = len;
    p.lx.name = name;
    if (lim) p.lx.lim = *lim;
    else pthcv_jit_limits_init(&p.lx.lim);
    if (p.lx.lim.max_nesting < 1 || p.lx.lim.max_nesting > 256 || p.lx.lim.max_tokens < 1 || p.lx.lim.max_literal < 0 ||
        p.lx.lim.max_literal > INT32_MAX || p.lx.lim.max_source < 0)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: limits out of range (max_nesting 1..256, max_literal < 2^31)", name);
    p.ast = calloc(1, sizeof *p.ast);
    if (!p.ast) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory", name);
    int st = jit_lex(&p.lx);
    int module = st ? -1 : new_node(&p, PTHCV_JIT_MODULE, 1);
    while (module >= 0 && !st && peek(&p)->type != T_EOF) {
        if (peek(&p)->type == T_NEWLINE) next(&p);
        else st = parse_stmt(&p, module);
    }
    if (module < 0 && !st) st = pthcv_last_status();
    p.ast->strings = p.lx.strings;
    p.lx.strings = NULL;
    jit_lexer_free(&p.lx);
    free(p.ast->last);
    p.ast->last = NULL;
    if (st) {
        pthcv_jit_ast_free(p.ast);
        return NULL;
    }
    return p.ast;
}

const pthcv_jit_node *pthcv_jit_ast_nodes(const pthcv_jit_ast *a, int32_t *count)
{
    if (count) *count = a ? a->count : 0;
    return a ? a->nodes : NULL;
}

void pthcv_jit_ast_free(pthcv_jit_ast *a)
{
    if (!a) return;
    free(a->nodes);
    free(a->last);
    for (jit_chunk *c = a->strings, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(a);
}
