/* reader_test.c -- checks of the reader's tables and of the escaping of
 * text taken from files, below what the Lua specs reach.
 *
 *   reader_test
 *
 * Ends with the line "N passed, N failed"; the exit status is 1 if anything
 * failed. Built by `make ctest` from the reader's sources. */
#include "reader/reader.h"
#include "check.h"
#include <stdlib.h>
#include <string.h>

static int passed, failed;

/* Printable UTF-8: valid sequences, no C0/C1 control character, no DEL. */
static int printable_utf8(const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    while (*s) {
        unsigned c = *s,
                 len = c < 0x80      ? 1
            : c >= 0xC2 && c <= 0xDF ? 2
            : c >= 0xE0 && c <= 0xEF ? 3
            : c >= 0xF0 && c <= 0xF4 ? 4
                                     : 0;
        if (!len || c < 0x20 || c == 0x7F) return 0;
        for (unsigned i = 1; i < len; i++)
            if ((s[i] & 0xC0) != 0x80) return 0;
        if (len == 2 && c == 0xC2 && s[1] < 0xA0) return 0;
        s += len;
    }
    return 1;
}

static void tables(void)
{
    const char *err = pthcv_reader_tables_check();
    CHECK(err == NULL, "a table bsearch needs sorted is not: %s", err);
}

/* The globals that must be refused, and some that must not. */
static void unsafe_globals(void)
{
    static const char *const unsafe[][2] = {
        {"os", "system"},
        {"posix", "system"},
        {"nt", "system"},
        {"os.path", "join"},
        {"subprocess", "Popen"},
        {"builtins", "eval"},
        {"__builtin__", "eval"},
        {"builtins", "getattr"},
        {"__builtin__", "reduce"},
        {"__builtin__", "intern"},
        {"commands", "getoutput"},
        {"thread", "start_new_thread"},
        {"cPickle", "loads"},
        {"_operator", "attrgetter"},
        {"operator", "methodcaller"},
        {"_functools", "partial"},
        {"torch.storage", "_load_from_bytes"},
        {"torch", "load"},
        {"torch.hub", "load"},
        {"pydoc", "locate"},
        {"pkgutil", "resolve_name"},
        {"_socket", "socket"},
        {"socket", "create_connection"},
        /* attribute paths (protocol 4 reads dotted names attribute by attribute) */
        {"torch", "hub.os.system"},
        {"collections", "_sys.exit"},
        {"tarfile", "TarFile.extractall"},
        {"__main__", "Net.__init__.__globals__"},
        {"torch.jit._pickle", "build_intlist.__globals__"},
    };
    for (size_t i = 0; i < sizeof unsafe / sizeof *unsafe; i++)
        CHECK(pthcv_global_is_unsafe(unsafe[i][0], unsafe[i][1]), "%s.%s must be unsafe", unsafe[i][0], unsafe[i][1]);
    static const char *const safe[][2] = {
        {"collections", "OrderedDict"},
        {"torch._utils", "_rebuild_tensor_v2"},
        {"torch", "FloatStorage"},
        {"torch.jit._pickle", "build_intlist"},
        {"__builtin__", "set"},
        {"copy_reg", "_reconstructor"},
        {"numpy.core.multiarray", "_reconstruct"},
        {"torch.serialization", "_get_layout"},
        {"__main__", "Outer.Inner"},
        {"exceptions", "ValueError"},
        {"argparse", "Namespace"},
    };
    for (size_t i = 0; i < sizeof safe / sizeof *safe; i++)
        CHECK(!pthcv_global_is_unsafe(safe[i][0], safe[i][1]), "%s.%s must be safe", safe[i][0], safe[i][1]);
    CHECK(!strcmp(pthcv_py3_module("__builtin__", "reduce"), "functools") &&
              !strcmp(pthcv_py3_module("__builtin__", "set"), "builtins") &&
              !strcmp(pthcv_py3_module("copy_reg", "_reconstructor"), "copyreg") &&
              !strcmp(pthcv_py3_module("collections", "OrderedDict"), "collections"),
          "Python 2 names");
}

static void escaping(void)
{
    CHECK(!strcmp(pthcv_esc("torch._utils._rebuild_tensor_v2"), "torch._utils._rebuild_tensor_v2"), "plain names stay");
    CHECK(!strcmp(pthcv_esc("caf\xc3\xa9.\xe6\xa8\xa1\xe5\x9e\x8b"), "caf\xc3\xa9.\xe6\xa8\xa1\xe5\x9e\x8b"),
          "valid UTF-8 stays: %s", pthcv_esc("caf\xc3\xa9"));
    CHECK(!strcmp(pthcv_esc("a\xff"
                            "b"),
                  "a\\xffb"),
          "a byte that is not UTF-8: %s",
          pthcv_esc("a\xff"
                    "b"));
    CHECK(!strcmp(pthcv_esc("x\ny\x1b[2J\x7f"), "x\\x0ay\\x1b[2J\\x7f"), "control characters: %s",
          pthcv_esc("x\ny\x1b[2J\x7f"));
    CHECK(!strcmp(pthcv_esc("\xc2\x85"), "\\xc2\\x85"), "a C1 control (NEL): %s", pthcv_esc("\xc2\x85"));
    CHECK(!strcmp(pthcv_esc("\xe6\xa8"), "\\xe6\\xa8"), "a sequence cut short: %s", pthcv_esc("\xe6\xa8"));
    CHECK(!strcmp(pthcv_esc("\xc0\xae"), "\\xc0\\xae"), "an overlong form: %s", pthcv_esc("\xc0\xae"));
    CHECK(!strcmp(pthcv_esc("\xed\xa0\x80"), "\\xed\\xa0\\x80"), "a surrogate: %s", pthcv_esc("\xed\xa0\x80"));
    CHECK(!strcmp(pthcv_esc("C:\\x41"), "C:\\\\x41"), "a backslash is doubled, so \\xNN is never ambiguous: %s",
          pthcv_esc("C:\\x41"));
    CHECK(!strcmp(pthcv_esc_n("ab\0cd", 5), "ab\\x00cd"), "NUL inside a counted string: %s", pthcv_esc_n("ab\0cd", 5));
    CHECK(!strcmp(pthcv_esc(NULL), "(null)"), "NULL");

    char long_name[1000];
    memset(long_name, 0xff, sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    const char *e = pthcv_esc(long_name);
    size_t n = strlen(e);
    CHECK(n < 260 && n > 200 && !strcmp(e + n - 3, "...") && !strncmp(e, "\\xff\\xff", 8),
          "a long name is cut on an escape boundary: %zu bytes, ends '%s'", n, e + (n > 10 ? n - 10 : 0));

    /* eight at once, as one message may need */
    const char *s[8];
    char want[8][8];
    for (int i = 0; i < 8; i++) {
        char in[4] = {'a' + i, (char)0xfe, 0, 0};
        s[i] = pthcv_esc(in);
        snprintf(want[i], sizeof want[i], "%c\\xfe", 'a' + i);
    }
    for (int i = 0; i < 8; i++) CHECK(!strcmp(s[i], want[i]), "buffer %d of 8: %s", i, s[i]);
}

static void messages(void)
{
    /* whatever pthcv_fail is given, the message is printable UTF-8 */
    int st = pthcv_fail(PTHCV_ERR_FORMAT, "%s: record '%s' at byte %d", "/tmp/x\xff.pth", "a\x01\x80z", 7);
    CHECK(st == PTHCV_ERR_FORMAT && pthcv_last_status() == PTHCV_ERR_FORMAT, "status %d", st);
    CHECK(!strcmp(pthcv_last_error(), "/tmp/x\\xff.pth: record 'a\\x01\\x80z' at byte 7"), "message: %s",
          pthcv_last_error());
    pthcv_fail(PTHCV_ERR_ARG, "OpenCV says:\n\tline two\r\n");
    CHECK(!strcmp(pthcv_last_error(), "OpenCV says:  line two"), "line ends and tabs become spaces: '%s'",
          pthcv_last_error());

    /* a message longer than the buffer is cut on a character boundary */
    char big[3000];
    for (size_t i = 0; i + 3 < sizeof big; i += 3) memcpy(big + i, "\xe6\xa8\xa1", 3);
    big[sizeof big - 1 - (sizeof big - 1) % 3] = 0;
    pthcv_fail(PTHCV_ERR_FORMAT, "name %s", big);
    const char *m = pthcv_last_error();
    CHECK(printable_utf8(m) && strlen(m) < 1024 && !strcmp(m + strlen(m) - 3, "..."),
          "cut message: %zu bytes, printable %d", strlen(m), printable_utf8(m));
    memset(big, 0xff, sizeof big - 1);
    big[sizeof big - 1] = 0;
    pthcv_fail(PTHCV_ERR_FORMAT, "%s", big);
    m = pthcv_last_error();
    CHECK(printable_utf8(m) && !strcmp(m + strlen(m) - 3, "..."), "cut escapes: %zu bytes", strlen(m));
    /* re-failing with a message already made printable changes nothing */
    pthcv_fail(PTHCV_ERR_FORMAT, "%s", "a\\xffb C:\\\\dir");
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", pthcv_last_error());
    pthcv_fail(PTHCV_ERR_FORMAT, "%s", copy);
    CHECK(!strcmp(pthcv_last_error(), "a\\xffb C:\\\\dir"), "idempotent: %s", pthcv_last_error());
    pthcv_clear_error();
    CHECK(pthcv_last_status() == PTHCV_OK && !*pthcv_last_error(), "cleared");
}

/* The memo's and the storage table's home slots spread keys that differ
 * only in their high bits (memo indices that are multiples of 65536 or of
 * 2^40, as a file may choose them): with the low bits of the product, all
 * 4096 of them shared one slot and each insertion probed every entry
 * before it. */
static void hash_slots(void)
{
    enum { KEYS = 4096, CAP = 8192 };
    static unsigned char used[CAP];
    const int shifts[] = {0, 16, 40};
    for (int s = 0; s < 3; s++) {
        memset(used, 0, sizeof used);
        int distinct = 0;
        for (uint64_t k = 0; k < KEYS; k++) {
            int64_t j = reader_hash_slot(k << shifts[s], CAP);
            CHECK(j >= 0 && j < CAP, "slot %lld of key %llu << %d is outside the table", (long long)j,
                  (unsigned long long)k, shifts[s]);
            if (j >= 0 && j < CAP && !used[j]) used[j] = 1, distinct++;
        }
        CHECK(distinct >= KEYS * 3 / 4, "keys k << %d: %d distinct home slots of %d keys", shifts[s], distinct, KEYS);
    }
}

int main(void)
{
    tables();
    hash_slots();
    unsafe_globals();
    escaping();
    messages();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
