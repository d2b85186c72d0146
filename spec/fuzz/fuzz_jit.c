/*
 * fuzz_jit.c -- drives the TorchScript source parser (csrc/jit/) over one
 * input and checks the tree it returns: every child and sibling index in
 * range, every node reached once from the MODULE, child counts equal to
 * the chains, strings NUL-terminated at their length. Any crash, sanitizer
 * report, leak, hang or broken tree is a bug; an error status with a
 * "<name>:<line>: " message is the expected answer to bad source.
 *
 * Built two ways:
 *   - with -fsanitize=fuzzer: libFuzzer's LLVMFuzzerTestOneInput (make fuzz),
 *     seeded with the code files of real archives;
 *   - with -DWALK_MAIN: `fuzz_jit FILE...` parses files and prints one line
 *     per file ("ok N nodes" or the error), for valgrind and for replaying
 *     the regression corpus.
 */
#include "pthcv.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Returns the node count, or -1 when parsing failed (a message is set);
 * aborts on a malformed tree. */
static long parse_and_check(const char *src, size_t len, const char *name)
{
    pthcv_jit_ast *a = pthcv_jit_parse(src, (int64_t)len, name, NULL);
    if (!a) {
        const char *msg = pthcv_last_error();
        if (strncmp(msg, name, strlen(name))) {
            fprintf(stderr, "message without the file name: %s\n", msg);
            abort();
        }
        return -1;
    }
    int32_t count;
    const pthcv_jit_node *nodes = pthcv_jit_ast_nodes(a, &count);
    unsigned char *seen = calloc((size_t)count + 1, 1);
    int32_t *stack = malloc(((size_t)count + 1) * sizeof *stack);
    if (!seen || !stack) abort();
    if (count < 1 || nodes[0].kind != PTHCV_JIT_MODULE) abort();
    int32_t sp = 0, reached = 0;
    stack[sp++] = 0;
    seen[0] = 1;
    while (sp) {
        const pthcv_jit_node *n = &nodes[stack[--sp]];
        reached++;
        if (n->kind < 0 || n->kind >= PTHCV_JIT_KIND_COUNT || n->op < 0 || n->op >= PTHCV_JOP_COUNT || n->line < 1)
            abort();
        if (!n->s || n->s[n->len] != '\0' || n->len < 0) abort();
        int32_t kids = 0;
        for (int32_t k = n->first; k >= 0; k = nodes[k].next) {
            if (k >= count || seen[k]) abort(); /* out of range, shared or cyclic */
            seen[k] = 1;
            stack[sp++] = k;
            kids++;
        }
        if (kids != n->nkids) abort();
    }
    free(seen);
    free(stack);
    pthcv_jit_ast_free(a);
    return reached;
}

#ifdef WALK_MAIN
int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            printf("%s: cannot open\n", argv[i]);
            continue;
        }
        char *buf = NULL;
        size_t len = 0, cap = 0, got;
        do {
            if (len == cap && !(buf = realloc(buf, cap = cap ? cap * 2 : 65536))) abort();
            got = fread(buf + len, 1, cap - len, f);
            len += got;
        } while (got);
        fclose(f);
        long n = parse_and_check(buf, len, argv[i]);
        if (n >= 0) printf("%s: ok, %ld nodes\n", argv[i], n);
        else printf("%s: refused: %s\n", argv[i], pthcv_last_error());
        free(buf);
    }
    return 0;
}
#else
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse_and_check((const char *)data, size, "code/__torch__/fuzz.py");
    return 0;
}
#endif
