/*
 * fuzz_reader.c -- drives the whole reader over one input: scan it (scan
 * mode: every pickle, globals listed), then open it, walk the value tree,
 * and materialise every tensor (data, contiguous copy, float32 conversion or
 * dequantisation). Any crash, sanitizer report, leak or hang is a bug; an
 * error status is the expected answer to a damaged file.
 *
 * Every error message on the way must be printable UTF-8 (check_message).
 *
 * Every format pthcv_open reads is reached: zip, tar and legacy pickles,
 * plain pickles, .npz, .safetensors and OpenCV FileStorage (make fuzz links
 * csrc/opencv/filestorage_read.cpp in; without it such files are refused).
 *
 * Built two ways:
 *   - with -fsanitize=fuzzer: libFuzzer's LLVMFuzzerTestOneInput (make fuzz);
 *   - with -DWALK_MAIN: `fuzz_reader FILE...` walks files and prints one line
 *     per file ("ok N tensors" or the error), for valgrind and for replaying
 *     the regression corpus (make valgrind).
 */
#include "pthcv.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Every error message must be printable UTF-8 whatever the file holds
 * (strings from the file are escaped): valid sequences, no C0/C1 control
 * character, no DEL. A message that is not is a bug: abort, so libFuzzer
 * keeps the input and valgrind's run fails. */
static void check_message(void)
{
    const unsigned char *s = (const unsigned char *)pthcv_last_error();
    for (const unsigned char *p = s; *p;) {
        unsigned c = *p,
                 len = c < 0x80      ? 1
            : c >= 0xC2 && c <= 0xDF ? 2
            : c >= 0xE0 && c <= 0xEF ? 3
            : c >= 0xF0 && c <= 0xF4 ? 4
                                     : 0;
        int ok = len && c >= 0x20 && c != 0x7F && !(len == 2 && c == 0xC2 && p[1] < 0xA0);
        for (unsigned i = 1; ok && i < len; i++) ok = (p[i] & 0xC0) == 0x80;
        if (!ok) {
            fprintf(stderr, "error message is not printable UTF-8 at byte %td: %s\n", p - s, (const char *)s);
            abort();
        }
        p += len;
    }
}

/* Touches one tensor the way a user would; returns 0 or a status. */
static int touch_tensor(pthcv_tensor *t)
{
    if (!pthcv_tensor_data(t)) return pthcv_last_status();
    pthcv_tensor *c = pthcv_tensor_contiguous(t);
    if (!c) return pthcv_last_status();
    double re, im;
    if (c->numel > 0 && (pthcv_tensor_get(c, 0, &re, &im) || pthcv_tensor_get(c, c->numel - 1, &re, &im))) {
        pthcv_tensor_release(c);
        return pthcv_last_status();
    }
    pthcv_tensor *f = pthcv_dtype_is_quantized(t->dtype) ? pthcv_tensor_dequantize(t)
                                                         : pthcv_tensor_to(t, PTHCV_FLOAT32);
    /* some conversions are refused (e.g. packed quantized layouts): fine */
    if (f) pthcv_tensor_release(f);
    else check_message();
    pthcv_tensor_release(c);
    return PTHCV_OK;
}

/* A set of visited values, open addressing on the pointer. */
typedef struct {
    const pthcv_value **slot;
    size_t cap, n;
} seen_set;

static int seen_add(seen_set *s, const pthcv_value *v) /* 1 if new, 0 if seen, -1 no memory */
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 256;
        const pthcv_value **ns = calloc(ncap, sizeof *ns);
        if (!ns) return -1;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->slot[i]) continue;
            size_t j = ((uintptr_t)s->slot[i] >> 4) & (ncap - 1);
            while (ns[j]) j = (j + 1) & (ncap - 1);
            ns[j] = s->slot[i];
        }
        free(s->slot);
        s->slot = ns;
        s->cap = ncap;
    }
    size_t j = ((uintptr_t)v >> 4) & (s->cap - 1);
    while (s->slot[j]) {
        if (s->slot[j] == v) return 0;
        j = (j + 1) & (s->cap - 1);
    }
    s->slot[j] = v;
    s->n++;
    return 1;
}

/* Walks a tree without recursion; a value met twice (memo sharing, cycles)
 * is visited once. Returns the number of tensors touched. */
static long walk(const pthcv_value *root)
{
    size_t cap = 64, sp = 0;
    const pthcv_value **stack = malloc(cap * sizeof *stack);
    seen_set seen = {0};
    long tensors = 0;
    if (!stack) return 0;
    if (root) stack[sp++] = root;
    while (sp) {
        const pthcv_value *v = stack[--sp];
        if (seen_add(&seen, v) != 1) continue;
        if ((v->kind == PTHCV_V_TENSOR || v->kind == PTHCV_V_STORAGE) && v->tensor) {
            if (touch_tensor(v->tensor)) check_message();
            tensors++;
        }
        int64_t n = v->kind == PTHCV_V_DICT || (v->flags & PTHCV_VF_OBJECT_DICT) ? 2 * v->n : v->n;
        const pthcv_value *extra[3] = {v->args, v->kwargs, v->state};
        if (sp + (size_t)n + 3 > cap) {
            while (sp + (size_t)n + 3 > cap) cap *= 2;
            const pthcv_value **ns = realloc(stack, cap * sizeof *ns);
            if (!ns) break;
            stack = ns;
        }
        for (int64_t i = 0; i < n; i++) stack[sp++] = v->items[i];
        for (int i = 0; i < 3; i++)
            if (extra[i]) stack[sp++] = extra[i];
    }
    free(stack);
    free(seen.slot);
    return tensors;
}

/* Opens path as a scan does (every pickle read for its globals, storages
 * not followed, damage after a dangerous global tolerated) and lists them. */
static void scan_file(const char *path, const pthcv_options *load_opts)
{
    pthcv_options o = *load_opts;
    o.scan_only = 1;
    pthcv_file *f;
    if (pthcv_open(path, &o, &f) != PTHCV_OK) {
        check_message();
        return;
    }
    int unsafe = 0, any = 0;
    for (int i = 0; i < pthcv_file_global_count(f); i++) {
        if (!pthcv_file_global(f, i, &unsafe)) abort();
        any |= unsafe;
    }
    /* a scan opens a damaged file only to report a dangerous global */
    if (pthcv_file_scan_error(f) && !any) {
        fprintf(stderr, "scan kept a damaged file without a dangerous global: %s\n", pthcv_file_scan_error(f));
        abort();
    }
    walk(pthcv_file_root(f));
    pthcv_close(f);
}

/* Storage bytes and stride-0 expansion allowed per file. The fuzzer's
 * inputs get 4 MiB: the harness copies every tensor twice (contiguous,
 * float32) and under ASan each large block is fresh pages, so at 64 MiB
 * the reader's fuzzer ran 2.4x slower (606 against 1,428 inputs a second).
 * The walk over the committed files keeps 64 MiB, so each regression input
 * is read to its end (timeout-stride0-weights.pth spans over 16 MiB). */
#ifdef WALK_MAIN
#define WALK_LIMIT_BYTES (64 << 20)
#else
#define WALK_LIMIT_BYTES (4 << 20)
#endif

static long walk_file(const char *path)
{
    pthcv_options o;
    pthcv_options_init(&o);
    /* small limits keep each input fast; they are limits, not bugs */
    o.max_total_bytes = WALK_LIMIT_BYTES;
    o.max_expanded_bytes = WALK_LIMIT_BYTES;
    o.max_pickle = 16 << 20;
    o.max_values = 200000;
    scan_file(path, &o);
    pthcv_file *f;
    if (pthcv_open(path, &o, &f) != PTHCV_OK) {
        check_message();
        return -1;
    }
    long n = walk(pthcv_file_root(f));
    if (pthcv_file_constants(f)) n += walk(pthcv_file_constants(f));
    pthcv_close(f);
    return n;
}

#ifdef WALK_MAIN
int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        long n = walk_file(argv[i]);
        if (n >= 0) printf("%s: ok, %ld tensors\n", argv[i], n);
        else printf("%s: refused: %s\n", argv[i], pthcv_last_error());
    }
    return 0;
}
#else
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* pthcv_open takes a path: hand it an anonymous in-memory file */
    int fd = memfd_create("pthcv-fuzz", 0);
    if (fd < 0) return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    walk_file(path);
    close(fd);
    return 0;
}
#endif
