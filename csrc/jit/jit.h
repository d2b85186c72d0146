/*
 * jit.h -- the parts of the TorchScript source parser and how they meet.
 *
 *   lexer.c    bytes -> tokens, with Python's NEWLINE/INDENT/DEDENT
 *   parser.c   tokens -> the syntax tree of pthcv.h (pthcv_jit_parse)
 *
 * Everything is bounded by pthcv_jit_limits; messages are
 * "<name>:<line>: <what>", set with pthcv_fail.
 */
#ifndef PTHCV_JIT_H
#define PTHCV_JIT_H

#include "../internal.h"

enum { T_EOF = 0, T_NEWLINE, T_INDENT, T_DEDENT, T_NAME, T_INT, T_FLOAT, T_STRING, T_OP };

/* Punctuation (token.op). */
enum {
    P_LPAR = 1,
    P_RPAR,
    P_LSQB,
    P_RSQB,
    P_LBRACE,
    P_RBRACE,
    P_COMMA,
    P_COLON,
    P_DOT,
    P_SEMI,
    P_ARROW,
    P_ASSIGN,
    P_ELLIPSIS,
    /* binary operators: PTHCV_JOP_* value + P_BINOP_BASE; augmented: + P_AUG_BASE */
    P_BINOP_BASE = 32,
    P_AUG_BASE = 64,
    P_TILDE = 96,
    P_EQ,
    P_NE,
    P_LT,
    P_LE,
    P_GT,
    P_GE
};

typedef struct jit_token {
    int32_t type; /* T_* */
    int32_t op;   /* T_OP: P_*; T_INT: 1 when the literal is 2^63 (valid only negated) */
    int32_t line;
    int32_t len;     /* T_NAME: bytes at src + start; T_STRING: bytes of str */
    int64_t start;   /* offset in the source */
    int64_t i;       /* T_INT */
    double f;        /* T_FLOAT */
    const char *str; /* T_STRING: escapes resolved, NUL-terminated, in the string arena */
} jit_token;

/* Strings live in chunks that never move, freed together. */
typedef struct jit_chunk {
    struct jit_chunk *next;
    size_t used, cap;
    char data[];
} jit_chunk;

typedef struct jit_lexer {
    const char *src;
    int64_t len;
    const char *name;
    pthcv_jit_limits lim;
    jit_token *tokens;
    int64_t ntokens, cap;
    jit_chunk *strings;
} jit_lexer;

/* Tokenizes the whole source; 0 or a status with the error set. The token
 * array always ends with T_EOF on success. */
int jit_lex(jit_lexer *lx);
/* Copies n bytes into the string arena, NUL-terminated; NULL when out of memory. */
char *jit_strdup(jit_chunk **arena, const char *s, size_t n);
void jit_lexer_free(jit_lexer *lx);
/* How a token reads in a message: "'foo'", "end of line", ... into buf. */
const char *jit_token_text(const jit_lexer *lx, const jit_token *t, char *buf, size_t n);

#endif
