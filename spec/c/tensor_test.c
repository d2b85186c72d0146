/* tensor_test.c -- checks of the tensor core and the writers.
 *
 *   tensor_test OUTDIR
 *
 * Runs the checks, writes export samples into OUTDIR for check_exports.py to
 * read back with NumPy (and torch, when installed), and ends with the line
 * "N passed, N failed"; the exit status is 1 if anything failed. */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int passed, failed;

#include "check.h"

static const char *outdir;

static const char *out_path(const char *name)
{
    static char buf[4][1024];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", outdir, name);
    return p;
}

static int file_exists(const char *path) { return access(path, F_OK) == 0; }

static int error_has(const char *word) { return strstr(pthcv_last_error(), word) != NULL; }

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float f32_from(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A contiguous tensor holding vals[i] (through pthcv_tensor_set). */
static pthcv_tensor *make(int dtype, int ndim, const int64_t *shape, const double *vals)
{
    pthcv_tensor *t = pthcv_tensor_new(dtype, ndim, shape);
    for (int64_t i = 0; t && vals && i < t->numel; i++) pthcv_tensor_set(t, i, vals[i], 0);
    return t;
}

static pthcv_tensor *arange(int dtype, int ndim, const int64_t *shape)
{
    pthcv_tensor *t = pthcv_tensor_new(dtype, ndim, shape);
    for (int64_t i = 0; t && i < t->numel; i++) pthcv_tensor_set(t, i, (double)i, 0);
    return t;
}

static double get(pthcv_tensor *t, int64_t off)
{
    double re = NAN;
    pthcv_tensor_get(t, off, &re, NULL);
    return re;
}

/* ---- dtypes -------------------------------------------------------------- */

static void test_dtypes(void)
{
    static const char *names[] = {"float32",    "float64",       "float16",     "bfloat16",        "int8",
                                  "int16",      "int32",         "int64",       "uint8",           "uint16",
                                  "uint32",     "uint64",        "bool",        "complex32",       "complex64",
                                  "complex128", "qint8",         "quint8",      "qint32",          "quint4x2",
                                  "quint2x4",   "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"};
    static const int sizes[] = {4, 8, 2, 2, 1, 2, 4, 8, 1, 2, 4, 8, 1, 4, 8, 16, 1, 1, 4, 1, 1, 1, 1, 1, 1};
    CHECK(PTHCV_DTYPE_COUNT == 25, "dtype count %d", PTHCV_DTYPE_COUNT);
    for (int i = 0; i < PTHCV_DTYPE_COUNT; i++) {
        CHECK(pthcv_dtype_name(i) && strcmp(pthcv_dtype_name(i), names[i]) == 0, "name of %d", i);
        CHECK(pthcv_dtype_from_name(names[i]) == i, "from_name(%s)", names[i]);
        CHECK(pthcv_dtype_size(i) == sizes[i], "size of %s", names[i]);
    }
    CHECK(pthcv_dtype_name(-1) == NULL && pthcv_dtype_name(PTHCV_DTYPE_COUNT) == NULL, "name out of range");
    CHECK(pthcv_dtype_size(99) == 0, "size out of range");
    CHECK(pthcv_dtype_from_name("float") == -1 && pthcv_dtype_from_name(NULL) == -1, "unknown name");
    CHECK(pthcv_dtype_is_floating(PTHCV_BFLOAT16) && pthcv_dtype_is_floating(PTHCV_FLOAT8_E5M2FNUZ) &&
              !pthcv_dtype_is_floating(PTHCV_COMPLEX64) && !pthcv_dtype_is_floating(PTHCV_INT8),
          "is_floating");
    CHECK(pthcv_dtype_is_complex(PTHCV_COMPLEX32) && !pthcv_dtype_is_complex(PTHCV_FLOAT64), "is_complex");
    CHECK(pthcv_dtype_is_quantized(PTHCV_QUINT2X4) && !pthcv_dtype_is_quantized(PTHCV_UINT8), "is_quantized");
}

/* ---- 16-bit floats ------------------------------------------------------- */

static void test_half(void)
{
    static const struct {
        uint32_t f;
        uint16_t h;
    } cases[] = {
        {0x00000000, 0x0000}, {0x80000000, 0x8000}, {0x3F800000, 0x3C00}, /* 0, -0, 1 */
        {0x477FE000, 0x7BFF},                                             /* 65504, the largest half */
        {0x477FEFFF, 0x7BFF},                                             /* just under 65520 */
        {0x477FF000, 0x7C00},                                             /* 65520: a tie, to even = inf */
        {0x7F800000, 0x7C00}, {0xFF800000, 0xFC00}, {0x7FC00000, 0x7E00},
        {0xFFC00001, 0xFE00}, {0x7F800001, 0x7E00}, /* NaNs */
        {0x33800000, 0x0001},                       /* 2^-24, the smallest subnormal */
        {0x33000000, 0x0000},                       /* 2^-25: a tie, to even = 0 */
        {0x33000001, 0x0001},                       /* just above 2^-25 */
        {0x33C00000, 0x0002},                       /* 1.5 * 2^-24: a tie, to even = 2 */
        {0x34200000, 0x0002},                       /* 2.5 * 2^-24: a tie, to even = 2 */
        {0x33A00000, 0x0001},                       /* 1.25 * 2^-24 */
        {0x387FC000, 0x03FF},                       /* the largest subnormal */
        {0x387FE000, 0x0400},                       /* a tie between it and 2^-14: to even */
        {0x38800000, 0x0400},                       /* 2^-14 */
        {0x3F801000, 0x3C00},                       /* 1 + 2^-11: a tie, to even = 1 */
        {0x3F803000, 0x3C02},                       /* 1 + 3 * 2^-11: a tie, to even */
        {0x3F801001, 0x3C01}, {0xC0490FDB, 0xC248}, /* -pi */
        {0x00000001, 0x0000}, {0x80000001, 0x8000}, /* float subnormals underflow */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = pthcv_float_to_half(f32_from(cases[i].f));
        CHECK(h == cases[i].h, "float_to_half(0x%08x) = 0x%04x, want 0x%04x", cases[i].f, h, cases[i].h);
    }
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = pthcv_half_to_float((uint16_t)h);
        int is_nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF);
        if (is_nan ? !isnan(f) : pthcv_float_to_half(f) != h) bad++;
    }
    CHECK(bad == 0, "%d half values do not round-trip", bad);
    CHECK(pthcv_half_to_float(0x0001) == ldexpf(1, -24) && pthcv_half_to_float(0x03FF) == ldexpf(1023, -24),
          "half subnormals decode");
    CHECK(pthcv_half_to_float(0x7BFF) == 65504.0f && isinf(pthcv_half_to_float(0xFC00)), "half max and -inf");
#ifdef __FLT16_MAX__
    /* the compiler's _Float16 conversion is correctly rounded: compare at random */
    uint64_t x = 88172645463325252ull;
    bad = 0;
    for (int i = 0; i < 2000000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        float f = f32_from((uint32_t)x);
        if (i & 1) /* half the samples near the half range */
            f = f32_from(((uint32_t)x & 0x83FFFFFFu) | 0x34000000u) * (float)(1 << (x >> 40 & 15));
        if (isnan(f)) continue;
        _Float16 r = (_Float16)f;
        uint16_t want;
        memcpy(&want, &r, 2);
        if (pthcv_float_to_half(f) != want) bad++;
    }
    CHECK(bad == 0, "%d random floats convert to half unlike _Float16", bad);
#endif
}

static void test_bfloat16(void)
{
    static const struct {
        uint32_t f;
        uint16_t b;
    } cases[] = {
        {0x3F800000, 0x3F80}, {0x3F808000, 0x3F80},                       /* a tie, to even */
        {0x3F818000, 0x3F82}, {0x3F808001, 0x3F81}, {0x7F7FFFFF, 0x7F80}, /* FLT_MAX rounds to inf */
        {0xFF800000, 0xFF80}, {0x7FC00000, 0x7FC0}, {0xFFC00000, 0x7FC0}, /* c10 drops NaN's sign */
        {0x00000001, 0x0000}, {0x00008000, 0x0000}, {0x00018000, 0x0002}, /* subnormals, ties */
        {0x80000000, 0x8000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t b = pthcv_float_to_bfloat16(f32_from(cases[i].f));
        CHECK(b == cases[i].b, "float_to_bfloat16(0x%08x) = 0x%04x, want 0x%04x", cases[i].f, b, cases[i].b);
    }
    int bad = 0;
    for (uint32_t b = 0; b < 0x10000; b++) {
        float f = pthcv_bfloat16_to_float((uint16_t)b);
        if (isnan(f) ? pthcv_float_to_bfloat16(f) != 0x7FC0 : pthcv_float_to_bfloat16(f) != b) bad++;
    }
    CHECK(bad == 0, "%d bfloat16 values do not round-trip", bad);
}

/* ---- 8-bit floats, through tensors --------------------------------------- */

static uint8_t f8_of(int dtype, double v)
{
    int64_t one = 1;
    pthcv_tensor *t = make(dtype, 1, &one, &v);
    uint8_t code = *(uint8_t *)pthcv_tensor_data(t);
    pthcv_tensor_release(t);
    return code;
}

static void test_float8(void)
{
    static const struct {
        int dtype;
        double v;
        uint8_t code;
    } cases[] = {
        {PTHCV_FLOAT8_E4M3FN, 448, 0x7E},
        {PTHCV_FLOAT8_E4M3FN, -448, 0xFE},
        {PTHCV_FLOAT8_E4M3FN, 464, 0x7E}, /* a tie below 480: to even, 448 */
        {PTHCV_FLOAT8_E4M3FN, 470, 0x7F}, /* rounds to 480, which is NaN's code */
        {PTHCV_FLOAT8_E4M3FN, 1e9, 0x7F},
        {PTHCV_FLOAT8_E4M3FN, -INFINITY, 0xFF},
        {PTHCV_FLOAT8_E4M3FN, 0.001953125, 0x01},  /* 2^-9, the smallest subnormal */
        {PTHCV_FLOAT8_E4M3FN, 0.0009765625, 0x00}, /* 2^-10: a tie, to even */
        {PTHCV_FLOAT8_E4M3FN, -0.0, 0x80},
        {PTHCV_FLOAT8_E4M3FN, 1, 0x38},
        {PTHCV_FLOAT8_E4M3FN, 1.0625, 0x38},
        {PTHCV_FLOAT8_E4M3FN, 1.1875, 0x3A}, /* tie between 1.125 and 1.25, to even 1.25 */
        {PTHCV_FLOAT8_E5M2, 57344, 0x7B},
        {PTHCV_FLOAT8_E5M2, 61440, 0x7C}, /* tie: to even = inf */
        {PTHCV_FLOAT8_E5M2, 61439, 0x7B},
        {PTHCV_FLOAT8_E5M2, INFINITY, 0x7C},
        {PTHCV_FLOAT8_E5M2, -1e9, 0xFC},
        {PTHCV_FLOAT8_E5M2, NAN, 0x7F},
        {PTHCV_FLOAT8_E5M2, 1.0 / 65536, 0x01},
        {PTHCV_FLOAT8_E5M2, 1.5, 0x3E},
        {PTHCV_FLOAT8_E4M3FNUZ, 240, 0x7F},
        {PTHCV_FLOAT8_E4M3FNUZ, 250, 0x80},
        {PTHCV_FLOAT8_E4M3FNUZ, -0.0, 0x00},
        {PTHCV_FLOAT8_E4M3FNUZ, 1, 0x40},
        {PTHCV_FLOAT8_E4M3FNUZ, 0.0009765625, 0x01},
        {PTHCV_FLOAT8_E4M3FNUZ, -0.0001, 0x00}, /* rounds to -0, which fnuz lacks */
        {PTHCV_FLOAT8_E5M2FNUZ, NAN, 0x80},
        {PTHCV_FLOAT8_E5M2FNUZ, 1, 0x40},
        {PTHCV_FLOAT8_E5M2FNUZ, 57344, 0x7F},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t c = f8_of(cases[i].dtype, cases[i].v);
        CHECK(c == cases[i].code, "%s(%g) = 0x%02x, want 0x%02x", pthcv_dtype_name(cases[i].dtype), cases[i].v, c,
              cases[i].code);
    }
    /* every code decodes and encodes back (NaNs to NaN) */
    for (int dtype = PTHCV_FLOAT8_E4M3FN; dtype <= PTHCV_FLOAT8_E5M2FNUZ; dtype++) {
        int64_t n = 256;
        pthcv_tensor *t = pthcv_tensor_new(dtype, 1, &n);
        for (int c = 0; c < 256; c++) ((uint8_t *)pthcv_tensor_data(t))[c] = (uint8_t)c;
        pthcv_tensor *f = pthcv_tensor_to(t, PTHCV_FLOAT32), *back = pthcv_tensor_to(f, dtype);
        int bad = 0;
        for (int c = 0; c < 256; c++) {
            float v = ((float *)pthcv_tensor_data(f))[c];
            uint8_t b = ((uint8_t *)pthcv_tensor_data(back))[c];
            if (isnan(v) ? !isnan(get(back, c)) : b != c) bad++;
        }
        CHECK(bad == 0, "%s: %d codes do not round-trip", pthcv_dtype_name(dtype), bad);
        pthcv_tensor_release(t);
        pthcv_tensor_release(f);
        pthcv_tensor_release(back);
    }
}

/* ---- conversions between tensors ------------------------------------------ */

static void test_to(void)
{
    static const double in[] = {-2.7, -0.5, 0.5, 2.7, 127.9, 300, -1, 0, -0.0, NAN};
    int64_t n = 10;
    pthcv_tensor *f = make(PTHCV_FLOAT32, 1, &n, in);

    pthcv_tensor *i32 = pthcv_tensor_to(f, PTHCV_INT32);
    static const int32_t want32[] = {-2, 0, 0, 2, 127, 300, -1, 0, 0};
    CHECK(i32 && memcmp(pthcv_tensor_data(i32), want32, sizeof want32) == 0, "float32 -> int32 truncates");
    pthcv_tensor *u8 = pthcv_tensor_to(f, PTHCV_UINT8);
    static const uint8_t wantu8[] = {254, 0, 0, 2, 127, 44, 255, 0, 0}; /* through int64, as torch */
    CHECK(u8 && memcmp(pthcv_tensor_data(u8), wantu8, sizeof wantu8) == 0, "float32 -> uint8 wraps");
    pthcv_tensor *i8 = pthcv_tensor_to(f, PTHCV_INT8);
    CHECK(i8 && get(i8, 5) == 44 && get(i8, 4) == 127 && get(i8, 0) == -2, "float32 -> int8");
    pthcv_tensor *b = pthcv_tensor_to(f, PTHCV_BOOL);
    static const uint8_t wantb[] = {1, 1, 1, 1, 1, 1, 1, 0, 0, 1};
    CHECK(b && memcmp(pthcv_tensor_data(b), wantb, sizeof wantb) == 0, "float32 -> bool is != 0, NaN true");
    pthcv_tensor *c = pthcv_tensor_to(f, PTHCV_COMPLEX64);
    double re, im;
    CHECK(c && pthcv_tensor_get(c, 3, &re, &im) == PTHCV_OK && re == (float)2.7 && im == 0, "real -> complex");
    pthcv_tensor *d = pthcv_tensor_to(b, PTHCV_FLOAT64);
    CHECK(d && get(d, 0) == 1 && get(d, 7) == 0, "bool -> float64");
    pthcv_tensor *h = pthcv_tensor_to(f, PTHCV_FLOAT16), *bf = pthcv_tensor_to(f, PTHCV_BFLOAT16);
    CHECK(h && ((uint16_t *)pthcv_tensor_data(h))[3] == pthcv_float_to_half(2.7f), "float32 -> float16");
    CHECK(bf && ((uint16_t *)pthcv_tensor_data(bf))[5] == 0x4396, "float32 -> bfloat16");
    pthcv_tensor *same = pthcv_tensor_to(f, PTHCV_FLOAT32);
    CHECK(same == f && f->refcount == 2, "to(own dtype) of a contiguous tensor is the tensor");
    pthcv_tensor_release(same);
    pthcv_tensor_release(i32);
    pthcv_tensor_release(u8);
    pthcv_tensor_release(i8);
    pthcv_tensor_release(b);
    pthcv_tensor_release(c);
    pthcv_tensor_release(d);
    pthcv_tensor_release(h);
    pthcv_tensor_release(bf);
    pthcv_tensor_release(f);

    /* integers convert as integers: wrapping, and one rounding to float32 */
    int64_t n3 = 3;
    pthcv_tensor *big = pthcv_tensor_new(PTHCV_INT64, 1, &n3);
    int64_t *bv = pthcv_tensor_data(big);
    bv[0] = ((int64_t)1 << 32) + 5;
    bv[1] = ((int64_t)1 << 24) + 1;
    bv[2] = INT64_MIN;
    pthcv_tensor *w = pthcv_tensor_to(big, PTHCV_INT32), *fl = pthcv_tensor_to(big, PTHCV_FLOAT32);
    CHECK(w && get(w, 0) == 5 && get(w, 2) == 0, "int64 -> int32 wraps");
    CHECK(fl && get(fl, 1) == 16777216.0 && get(fl, 2) == -9223372036854775808.0, "int64 -> float32");
    pthcv_tensor *u64 = pthcv_tensor_to(big, PTHCV_UINT64);
    CHECK(u64 && ((uint64_t *)pthcv_tensor_data(u64))[2] == (uint64_t)1 << 63, "int64 -> uint64");
    pthcv_tensor *back = pthcv_tensor_to(u64, PTHCV_FLOAT64);
    CHECK(back && get(back, 2) == 9223372036854775808.0, "uint64 -> float64 stays unsigned");
    pthcv_tensor_release(w);
    pthcv_tensor_release(fl);
    pthcv_tensor_release(u64);
    pthcv_tensor_release(back);
    pthcv_tensor_release(big);

    /* complex to real takes the real part; complex32 is two halves */
    int64_t two = 2;
    pthcv_tensor *z = pthcv_tensor_new(PTHCV_COMPLEX128, 1, &two);
    pthcv_tensor_set(z, 0, 1.5, -2.25);
    pthcv_tensor_set(z, 1, 0, 3);
    pthcv_tensor *zr = pthcv_tensor_to(z, PTHCV_FLOAT32), *zb = pthcv_tensor_to(z, PTHCV_BOOL),
                 *zi = pthcv_tensor_to(z, PTHCV_INT16), *z32 = pthcv_tensor_to(z, PTHCV_COMPLEX32);
    CHECK(zr && get(zr, 0) == 1.5 && get(zr, 1) == 0, "complex -> float32 takes the real part");
    CHECK(zb && get(zb, 1) == 1, "complex -> bool looks at both parts");
    CHECK(zi && get(zi, 0) == 1, "complex -> int16");
    CHECK(z32 && pthcv_tensor_get(z32, 0, &re, &im) == PTHCV_OK && re == 1.5 && im == -2.25, "complex32 parts");
    CHECK(z32 && ((uint16_t *)pthcv_tensor_data(z32))[1] == pthcv_float_to_half(-2.25f), "complex32 layout");
    pthcv_tensor_release(zr);
    pthcv_tensor_release(zb);
    pthcv_tensor_release(zi);
    pthcv_tensor_release(z32);
    pthcv_tensor_release(z);

    /* a quantized tensor must be dequantized first */
    pthcv_tensor *q = pthcv_tensor_new(PTHCV_QINT8, 1, &two);
    CHECK(pthcv_tensor_to(q, PTHCV_FLOAT32) == NULL && pthcv_last_status() == PTHCV_ERR_UNSUPPORTED &&
              error_has("dequantize"),
          "to() of a quantized tensor: %s", pthcv_last_error());
    pthcv_tensor_release(q);
}

/* ---- views and contiguous copies ------------------------------------------- */

static void test_views(void)
{
    int64_t s23[] = {2, 3};
    pthcv_tensor *a = arange(PTHCV_FLOAT32, 2, s23);
    CHECK(a && a->stride[0] == 3 && a->stride[1] == 1 && a->numel == 6, "new: contiguous strides");
    CHECK(pthcv_tensor_is_contiguous(a) && pthcv_tensor_nbytes(a) == 24 && pthcv_tensor_storage_nbytes(a) == 24,
          "new: contiguous, 24 bytes");
    CHECK(strcmp(pthcv_tensor_storage_key(a), "") == 0 && pthcv_tensor_is_materialized(a), "memory storage");

    /* transposed */
    int64_t s32[] = {3, 2}, t32[] = {1, 3};
    pthcv_tensor *tr = pthcv_tensor_view(a, 2, s32, t32, 0);
    CHECK(tr && !pthcv_tensor_is_contiguous(tr) && pthcv_tensor_storage_id(tr) == pthcv_tensor_storage_id(a),
          "transposed view shares the storage");
    pthcv_tensor *c = pthcv_tensor_contiguous(tr);
    static const float want_t[] = {0, 3, 1, 4, 2, 5};
    CHECK(c && c != tr && memcmp(pthcv_tensor_data(c), want_t, sizeof want_t) == 0, "contiguous of transposed");
    pthcv_tensor_release(c);

    /* expanded: stride 0 */
    int64_t s3[] = {3}, one[] = {1}, e_shape[] = {2, 3}, e_stride[] = {0, 1};
    pthcv_tensor *row = pthcv_tensor_view(a, 1, s3, one, 3);
    pthcv_tensor *ex = pthcv_tensor_view(row, 2, e_shape, e_stride, 3);
    c = pthcv_tensor_contiguous(ex);
    static const float want_e[] = {3, 4, 5, 3, 4, 5};
    CHECK(c && memcmp(pthcv_tensor_data(c), want_e, sizeof want_e) == 0, "contiguous of expanded");
    CHECK(row && *(float *)pthcv_tensor_data(row) == 3, "data honours the offset");
    pthcv_tensor_release(c);

    /* a contiguous view with an offset is returned as it is */
    c = pthcv_tensor_contiguous(row);
    CHECK(c == row && row->refcount == 2, "contiguous(contiguous) retains");
    pthcv_tensor_release(c);

    /* size-1 dimensions ignore their stride; empty tensors are contiguous */
    int64_t s13[] = {1, 3}, odd[] = {99, 1}, s03[] = {0, 3}, big[] = {7, 1000};
    pthcv_tensor *v1 = pthcv_tensor_view(a, 2, s13, odd, 0), *v0 = pthcv_tensor_view(a, 2, s03, big, 1000000);
    CHECK(v1 && pthcv_tensor_is_contiguous(v1), "size-1 dims ignore stride");
    CHECK(v0 && pthcv_tensor_is_contiguous(v0) && v0->numel == 0 && pthcv_tensor_data(v0) != NULL,
          "empty view anywhere: contiguous, non-NULL data");
    pthcv_tensor_release(v1);
    pthcv_tensor_release(v0);

    /* 0-d */
    pthcv_tensor *s = pthcv_tensor_view(a, 0, NULL, NULL, 5);
    c = pthcv_tensor_to(s, PTHCV_INT64);
    CHECK(s && s->numel == 1 && c && c->ndim == 0 && get(c, 0) == 5, "0-d view and conversion");
    pthcv_tensor_release(c);
    pthcv_tensor_release(s);

    /* strided slice, every other column of a 2x6 */
    int64_t s26[] = {2, 6}, sl_shape[] = {2, 3}, sl_stride[] = {6, 2};
    pthcv_tensor *b = arange(PTHCV_INT16, 2, s26), *sl = pthcv_tensor_view(b, 2, sl_shape, sl_stride, 1);
    c = pthcv_tensor_contiguous(sl);
    static const int16_t want_s[] = {1, 3, 5, 7, 9, 11};
    CHECK(c && memcmp(pthcv_tensor_data(c), want_s, sizeof want_s) == 0, "contiguous of a strided slice");
    pthcv_tensor_release(c);
    pthcv_tensor_release(sl);
    pthcv_tensor_release(b);

    /* 500 layouts of 4 dims (sizes 1-4, strides 0-7, size-1 dims and
     * dimensions that merge among them): contiguous() holds each element
     * where index arithmetic puts it, for 1-, 2- and 4-byte elements */
    const int dts[] = {PTHCV_UINT8, PTHCV_INT16, PTHCV_FLOAT32};
    for (int k = 0; k < 3; k++) {
        int64_t s256[] = {256};
        pthcv_tensor *base = arange(dts[k], 1, s256);
        unsigned lcg = 12345;
        int bad = 0;
        for (int trial = 0; trial < 500 && !bad; trial++) {
            int64_t sh[4], st[4];
            for (int d = 0; d < 4; d++) {
                lcg = lcg * 1103515245u + 12345u;
                sh[d] = 1 + (lcg >> 16) % 4;
                lcg = lcg * 1103515245u + 12345u;
                st[d] = (lcg >> 16) % 8;
            }
            if (trial % 3 == 0) st[3] = 1, st[2] = sh[3], st[1] = 0; /* a contiguous tail after a broadcast */
            pthcv_tensor *v = pthcv_tensor_view(base, 4, sh, st, 5);
            pthcv_tensor *cv = v ? pthcv_tensor_contiguous(v) : NULL;
            if (!cv) { bad = 1; break; }
            int64_t i = 0;
            for (int64_t a0 = 0; a0 < sh[0]; a0++)
                for (int64_t a1 = 0; a1 < sh[1]; a1++)
                    for (int64_t a2 = 0; a2 < sh[2]; a2++)
                        for (int64_t a3 = 0; a3 < sh[3]; a3++, i++)
                            if (get(cv, i) != (double)(5 + a0 * st[0] + a1 * st[1] + a2 * st[2] + a3 * st[3]))
                                bad = 1; /* at most 5 + 3 * 7 * 4 = 89: every dtype holds it */
            pthcv_tensor_release(cv);
            pthcv_tensor_release(v);
        }
        CHECK(!bad, "contiguous() of 500 4-d layouts (%s)", pthcv_dtype_name(dts[k]));
        pthcv_tensor_release(base);
    }

    /* rejected views */
    int64_t past[] = {2, 3}, past_stride[] = {3, 1};
    CHECK(pthcv_tensor_view(a, 2, past, past_stride, 1) == NULL && error_has("outside") && error_has("[2, 3]") &&
              error_has("reaches element 6") && error_has("storage of 6 elements"),
          "view past the end: %s", pthcv_last_error());
    int64_t neg[] = {-1};
    CHECK(pthcv_tensor_view(a, 1, neg, one, 0) == NULL && pthcv_last_status() == PTHCV_ERR_FORMAT, "negative size");
    int64_t negstride[] = {-1};
    CHECK(pthcv_tensor_view(a, 1, s3, negstride, 2) == NULL, "negative stride");
    CHECK(pthcv_tensor_view(a, 1, s3, one, -1) == NULL, "negative offset");
    int64_t huge[] = {(int64_t)1 << 62, 4}, ones[] = {1, 1};
    CHECK(pthcv_tensor_view(a, 2, huge, ones, 0) == NULL && error_has("overflow"), "numel overflow: %s",
          pthcv_last_error());
    int64_t h2[] = {(int64_t)1 << 40, (int64_t)1 << 40}, zeros[] = {0, 0};
    CHECK(pthcv_tensor_view(a, 2, h2, zeros, 0) == NULL && error_has("overflow"), "expanded numel overflow");
    int64_t h3[] = {3}, bigstride[] = {INT64_MAX / 2 + 1};
    CHECK(pthcv_tensor_view(a, 1, h3, bigstride, 0) == NULL && error_has("overflow"), "extent overflow");
    int64_t h4[] = {2}, st4[] = {INT64_MAX};
    CHECK(pthcv_tensor_view(a, 1, h4, st4, 1) == NULL && error_has("overflow"), "offset + extent overflow");
    int64_t e8[] = {(int64_t)1 << 61}, z1[] = {0};
    pthcv_tensor *d = pthcv_tensor_new(PTHCV_FLOAT64, 1, one);
    CHECK(pthcv_tensor_view(d, 1, e8, z1, 0) == NULL && error_has("overflow"), "numel * elsize overflow");
    pthcv_tensor_release(d);
    int64_t dims17[17] = {0};
    CHECK(pthcv_tensor_view(a, 17, dims17, dims17, 0) == NULL && pthcv_last_status() == PTHCV_ERR_UNSUPPORTED,
          "17 dimensions");
    CHECK(pthcv_tensor_new(PTHCV_FLOAT32, 2, huge) == NULL, "new: overflow");
    CHECK(pthcv_tensor_new(99, 0, NULL) == NULL && pthcv_last_status() == PTHCV_ERR_ARG, "new: bad dtype");

    /* new: sizes of 0 count as 1 in the strides, as torch's */
    int64_t s203[] = {2, 0, 3};
    pthcv_tensor *e = pthcv_tensor_new(PTHCV_FLOAT32, 3, s203);
    CHECK(e && e->stride[0] == 3 && e->stride[1] == 3 && e->numel == 0 && pthcv_tensor_data(e), "empty new");
    pthcv_tensor *ec = pthcv_tensor_to(e, PTHCV_FLOAT16);
    CHECK(ec && ec->numel == 0, "empty conversion");
    pthcv_tensor_release(ec);
    pthcv_tensor_release(e);

    pthcv_tensor_release(ex);
    pthcv_tensor_release(row);
    pthcv_tensor_release(tr);
    pthcv_tensor_release(a);
}

/* ---- storages read from a source -------------------------------------------- */

/* A source as the reader makes one: calloc'd, freed by pthcv_source_release. */
typedef struct {
    pthcv_source base;
    const unsigned char *bytes;
    int reads, fail;
} fake_source;

static int destroyed;

static int fake_read(pthcv_source *src, const pthcv_storage *st, void *dst)
{
    fake_source *f = (fake_source *)src;
    f->reads++;
    if (f->fail) return pthcv_fail(PTHCV_ERR_FORMAT, "%s: %s is short", src->path, st->record);
    memcpy(dst, f->bytes, (size_t)st->nbytes);
    return PTHCV_OK;
}

static void fake_destroy(pthcv_source *src)
{
    (void)src;
    destroyed++;
}

static void test_storage(void)
{
    static const unsigned char be[] = {0x3F, 0x80, 0, 0, 0x40, 0x00, 0, 0}; /* 1.0f, 2.0f big-endian */
    fake_source *fs = calloc(1, sizeof *fs);
    fs->base = (pthcv_source){1, strdup("model.pth"), NULL, fake_read, fake_destroy, NULL, 0};
    fs->bytes = be;
    pthcv_storage *st = pthcv_storage_new_record(&fs->base, PTHCV_FLOAT32, 8, "0", "archive/data/0");
    CHECK(st && fs->base.refcount == 2 && st->data == NULL, "record storage retains its source, unread");
    st->swap_bytes = 4;
    int64_t two = 2, one = 1;
    pthcv_tensor *t = pthcv_tensor_over(st, PTHCV_FLOAT32, 1, &two, &one, 0, "model.pth: archive/data/0");
    pthcv_storage_release(st);
    CHECK(t && !pthcv_tensor_is_materialized(t) && strcmp(pthcv_tensor_storage_key(t), "0") == 0, "lazy tensor");
    float *p = pthcv_tensor_data(t);
    CHECK(p && p[0] == 1.0f && p[1] == 2.0f && fs->reads == 1, "read once and byte-swapped");
    CHECK(pthcv_tensor_data(t) == p && fs->reads == 1, "read only once");
    pthcv_tensor_release(t);
    CHECK(destroyed == 0 && fs->base.refcount == 1, "source outlives its storages' release");

    pthcv_tensor *bad = pthcv_tensor_over(
        st = pthcv_storage_new_record(&fs->base, PTHCV_FLOAT32, 8, "1", "archive/data/1"), PTHCV_FLOAT32, 1, &two, &one,
        1, "model.pth: archive/data/1");
    CHECK(bad == NULL && error_has("model.pth: archive/data/1") && error_has("outside"), "record view checked");
    fs->fail = 1;
    pthcv_tensor *t2 = pthcv_tensor_over(st, PTHCV_FLOAT32, 1, &two, &one, 0, "x");
    pthcv_storage_release(st);
    CHECK(pthcv_tensor_data(t2) == NULL && error_has("archive/data/1 is short") && !pthcv_tensor_is_materialized(t2),
          "read failure reported, storage left unread");
    double re;
    CHECK(pthcv_tensor_get(t2, 0, &re, NULL) == PTHCV_ERR_FORMAT, "get on an unreadable storage");
    pthcv_tensor *c = pthcv_tensor_to(t2, PTHCV_FLOAT64);
    CHECK(c == NULL, "conversion of an unreadable storage fails");
    fs->fail = 0;
    CHECK(pthcv_tensor_data(t2) != NULL && fs->reads == 5, "a later read may succeed");

    /* a writer whose tensor cannot be read leaves no file */
    fs->fail = 1;
    pthcv_tensor_release(t2);
    st = pthcv_storage_new_record(&fs->base, PTHCV_FLOAT32, 8, "2", "archive/data/2");
    t2 = pthcv_tensor_over(st, PTHCV_FLOAT32, 1, &two, &one, 0, "x");
    pthcv_storage_release(st);
    const char *names[] = {"w"};
    const char *npz = out_path("unreadable.npz"), *sft = out_path("unreadable.safetensors");
    CHECK(pthcv_save_npz(npz, 1, names, &t2) == PTHCV_ERR_FORMAT && error_has("unreadable.npz: ") &&
              error_has("data/2 is short") && !file_exists(npz),
          "npz of an unreadable tensor: %s", pthcv_last_error());
    CHECK(pthcv_save_safetensors(sft, 1, names, &t2, NULL) == PTHCV_ERR_FORMAT &&
              strstr(pthcv_last_error(), sft) == pthcv_last_error() && !file_exists(sft),
          "safetensors of an unreadable tensor: %s", pthcv_last_error());
    CHECK(pthcv_save_npy(out_path("unreadable.npy"), t2) != PTHCV_OK && !file_exists(out_path("unreadable.npy")) &&
              !file_exists(out_path("unreadable.npy.tmp")),
          "npy of an unreadable tensor");
    pthcv_tensor_release(t2);
    CHECK(destroyed == 0, "source alive while referenced");
    pthcv_source_release(&fs->base);
    CHECK(destroyed == 1, "source destroyed at its last release");

    /* memory storages */
    pthcv_storage *m = pthcv_storage_new_memory(PTHCV_UINT8, 0);
    CHECK(m && m->data && pthcv_storage_materialize(m) == PTHCV_OK, "empty memory storage has data");
    pthcv_storage_release(m);
    CHECK(pthcv_storage_new_memory(PTHCV_UINT8, -1) == NULL && pthcv_last_status() == PTHCV_ERR_ARG, "negative size");

    unsigned char sw[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    pthcv_swap_bytes(sw, 2, 8);
    CHECK(sw[0] == 8 && sw[7] == 1 && sw[8] == 16 && sw[15] == 9, "swap 8");
    pthcv_swap_bytes(sw, 1, 16);
    CHECK(sw[0] == 9 && sw[15] == 8, "swap 16");
    pthcv_swap_bytes(sw, 8, 2);
    CHECK(sw[0] == 10 && sw[1] == 9, "swap 2");
}

/* ---- single elements and quantized tensors ----------------------------------- */

static void test_elements(void)
{
    int64_t n = 4;
    pthcv_tensor *t = pthcv_tensor_new(PTHCV_INT8, 1, &n);
    CHECK(pthcv_tensor_set(t, 1, 3.9, 0) == PTHCV_OK && get(t, 1) == 3, "set truncates");
    CHECK(pthcv_tensor_set(t, 2, -3.9, 0) == PTHCV_OK && get(t, 2) == -3, "set truncates toward zero");
    double re = 0, im = 5;
    CHECK(pthcv_tensor_get(t, 4, &re, &im) == PTHCV_ERR_ARG && error_has("outside"), "get past the end");
    CHECK(pthcv_tensor_get(t, -1, &re, NULL) == PTHCV_ERR_ARG, "get before the start");
    CHECK(pthcv_tensor_get(t, INT64_MAX, &re, NULL) == PTHCV_ERR_ARG, "get overflow");
    CHECK(pthcv_tensor_get(t, 1, &re, &im) == PTHCV_OK && im == 0, "get sets im to 0");
    pthcv_tensor_release(t);

    /* quint4x2: two values a byte, low nibble first */
    int64_t five = 5;
    pthcv_tensor *q = pthcv_tensor_new(PTHCV_QUINT4X2, 1, &five);
    CHECK(q && pthcv_tensor_storage_nbytes(q) == 3 && pthcv_tensor_nbytes(q) == 3, "quint4x2 packs");
    for (int i = 0; i < 5; i++) pthcv_tensor_set(q, i, 10 + i, 0);
    const uint8_t *qb = pthcv_tensor_data(q);
    CHECK(qb[0] == 0xBA && qb[1] == 0xDC && qb[2] == 0x0E, "quint4x2 layout %02x %02x %02x", qb[0], qb[1], qb[2]);
    CHECK(get(q, 3) == 13 && pthcv_tensor_get(q, 6, &re, NULL) == PTHCV_ERR_ARG, "quint4x2 get");
    q->qscheme = PTHCV_QSCHEME_PER_TENSOR_AFFINE;
    q->qscale = 0.5;
    q->qzero_point = 8;
    pthcv_tensor *dq = pthcv_tensor_dequantize(q);
    CHECK(dq && dq->dtype == PTHCV_FLOAT32 && get(dq, 0) == 1 && get(dq, 4) == 3, "quint4x2 dequantize");
    pthcv_tensor_release(dq);
    pthcv_tensor_release(q);

    /* per-tensor qint8 */
    int64_t s23[] = {2, 3};
    static const double raw[] = {-128, -1, 0, 1, 3, 127};
    q = make(PTHCV_QINT8, 2, s23, raw);
    CHECK(get(q, 0) == -128 && get(q, 5) == 127, "quantized get is raw");
    CHECK(pthcv_tensor_dequantize(q) == NULL && error_has("qscheme"), "no qscheme");
    q->qscheme = PTHCV_QSCHEME_PER_TENSOR_AFFINE;
    q->qscale = 0.1;
    q->qzero_point = 3;
    dq = pthcv_tensor_dequantize(q);
    CHECK(dq && get(dq, 4) == 0 && get(dq, 0) == (float)-131 * 0.1f && get(dq, 5) == (float)124 * 0.1f,
          "per-tensor dequantize");
    pthcv_tensor_release(dq);
    /* and transposed */
    int64_t s32[] = {3, 2}, t32[] = {1, 3};
    pthcv_tensor *qt = pthcv_tensor_view(q, 2, s32, t32, 0);
    dq = pthcv_tensor_dequantize(qt);
    CHECK(qt && qt->qscale == 0.1 && dq && get(dq, 1) == (float)-2 * 0.1f, "dequantize a transposed view");
    pthcv_tensor_release(dq);
    pthcv_tensor *qc = pthcv_tensor_contiguous(qt);
    CHECK(qc && qc->qscheme == q->qscheme && qc->qzero_point == 3 && get(qc, 1) == 1, "contiguous keeps qparams");
    pthcv_tensor_release(qc);
    pthcv_tensor_release(qt);

    /* per-channel along axis 1, scales float32, zero points int64 */
    static const double scales[] = {0.5, 0.25, 2}, zps[] = {0, 1, -1};
    int64_t three = 3;
    q->qscheme = PTHCV_QSCHEME_PER_CHANNEL_AFFINE;
    q->qaxis = 1;
    q->qscales = make(PTHCV_FLOAT32, 1, &three, scales);
    q->qzero_points = make(PTHCV_INT64, 1, &three, zps);
    dq = pthcv_tensor_dequantize(q);
    CHECK(dq && get(dq, 0) == -64 && get(dq, 1) == -0.5 && get(dq, 2) == 2 && get(dq, 3) == 0.5 && get(dq, 4) == 0.5 &&
              get(dq, 5) == 256,
          "per-channel dequantize");
    pthcv_tensor_release(dq);
    q->qscheme = PTHCV_QSCHEME_PER_CHANNEL_AFFINE_FLOAT_QPARAMS;
    pthcv_tensor_release(q->qzero_points);
    static const double fzps[] = {0.5, 0, 0};
    q->qzero_points = make(PTHCV_FLOAT32, 1, &three, fzps);
    dq = pthcv_tensor_dequantize(q);
    CHECK(dq && get(dq, 0) == -64.25, "float-qparams dequantize");
    pthcv_tensor_release(dq);
    q->qaxis = 0;
    CHECK(pthcv_tensor_dequantize(q) == NULL && error_has("vector of 2"), "scales of the wrong length");
    q->qaxis = 2;
    CHECK(pthcv_tensor_dequantize(q) == NULL && error_has("axis"), "bad axis");
    pthcv_tensor_release(q);

    pthcv_tensor *f = pthcv_tensor_new(PTHCV_FLOAT32, 1, &three);
    CHECK(pthcv_tensor_dequantize(f) == NULL && error_has("not quantized"), "dequantize of float32");
    pthcv_tensor_release(f);
}

/* ---- writers --------------------------------------------------------------- */

/* Samples for check_exports.py; it knows what each must hold. */
static void write_samples(void)
{
    int64_t s23[] = {2, 3}, s32[] = {3, 2}, t32[] = {1, 3}, s4[] = {4}, s0[] = {0, 3}, s2x[] = {2, 3, 4};
    pthcv_tensor *a = arange(PTHCV_FLOAT32, 2, s23);
    pthcv_tensor *tr = pthcv_tensor_view(a, 2, s32, t32, 0);
    CHECK(pthcv_save_npy(out_path("transposed.npy"), tr) == PTHCV_OK, "npy: %s", pthcv_last_error());
    CHECK(!file_exists(out_path("transposed.npy.tmp")), "no temporary left");
    pthcv_tensor *sc = pthcv_tensor_view(a, 0, NULL, NULL, 4);
    CHECK(pthcv_save_npy(out_path("scalar.npy"), sc) == PTHCV_OK, "npy 0-d");
    pthcv_tensor *e = pthcv_tensor_new(PTHCV_INT64, 2, s0);
    CHECK(pthcv_save_npy(out_path("empty.npy"), e) == PTHCV_OK, "npy empty");

    /* every dtype NumPy has, values 0..n-1 (then -1.5 at the end for the signed/float ones) */
    static const int npy_dtypes[] = {PTHCV_FLOAT32, PTHCV_FLOAT64, PTHCV_FLOAT16,   PTHCV_INT8,      PTHCV_INT16,
                                     PTHCV_INT32,   PTHCV_INT64,   PTHCV_UINT8,     PTHCV_UINT16,    PTHCV_UINT32,
                                     PTHCV_UINT64,  PTHCV_BOOL,    PTHCV_COMPLEX64, PTHCV_COMPLEX128};
    enum { ND = sizeof npy_dtypes / sizeof npy_dtypes[0] };
    pthcv_tensor *all[ND + 1];
    const char *names[ND + 1];
    for (int i = 0; i < ND; i++) {
        all[i] = arange(npy_dtypes[i], 3, s2x);
        pthcv_tensor_set(all[i], 23, -1.5, 2.5);
        names[i] = pthcv_dtype_name(npy_dtypes[i]);
        char file[64];
        snprintf(file, sizeof file, "dtype_%s.npy", names[i]);
        CHECK(pthcv_save_npy(out_path(file), all[i]) == PTHCV_OK, "npy %s: %s", names[i], pthcv_last_error());
    }
    all[ND] = tr;
    names[ND] = "transposed";
    CHECK(pthcv_save_npz(out_path("all.npz"), ND + 1, names, all) == PTHCV_OK, "npz: %s", pthcv_last_error());
    CHECK(pthcv_save_npz(out_path("none.npz"), 0, NULL, NULL) == PTHCV_OK, "empty npz");

    /* safetensors: the same, plus bfloat16 and float8, awkward names, metadata */
    pthcv_tensor *st[ND + 5];
    const char *st_names[ND + 5];
    int n = 0;
    for (int i = 0; i < ND; i++)
        if (npy_dtypes[i] != PTHCV_COMPLEX128) {
            st[n] = all[i];
            st_names[n++] = names[i];
        }
    pthcv_tensor *bf = pthcv_tensor_to(a, PTHCV_BFLOAT16), *f8 = pthcv_tensor_to(a, PTHCV_FLOAT8_E4M3FN);
    st[n] = bf, st_names[n++] = "bfloat16";
    st[n] = f8, st_names[n++] = "float8_e4m3fn";
    st[n] = tr, st_names[n++] = "we\"ird\\na\nme\x01 \xc3\xa9";
    st[n] = sc, st_names[n++] = "scalar";
    st[n] = e, st_names[n++] = "empty";
    CHECK(pthcv_save_safetensors(out_path("all.safetensors"), n, st_names, st,
                                 "{\"format\": \"pt\", \"note\": \"x\"}") == PTHCV_OK,
          "safetensors: %s", pthcv_last_error());
    CHECK(pthcv_save_safetensors(out_path("nometa.safetensors"), 1, st_names, st, NULL) == PTHCV_OK,
          "safetensors without metadata");

    /* refusals: nothing written, messages start with the path */
    const char *p = out_path("refused.npy");
    CHECK(pthcv_save_npy(p, bf) == PTHCV_ERR_UNSUPPORTED && strncmp(pthcv_last_error(), p, strlen(p)) == 0 &&
              error_has("bfloat16") && !file_exists(p),
          "npy refuses bfloat16: %s", pthcv_last_error());
    pthcv_tensor *q = pthcv_tensor_new(PTHCV_QUINT8, 1, s4);
    CHECK(pthcv_save_npy(p, q) == PTHCV_ERR_UNSUPPORTED && error_has("dequantize"), "npy refuses quantized");
    CHECK(pthcv_save_npy(p, f8) == PTHCV_ERR_UNSUPPORTED && error_has("float8_e4m3fn"), "npy refuses float8");
    const char *zn[] = {"ok", "w"};
    pthcv_tensor *zt[] = {a, bf};
    p = out_path("refused.npz");
    CHECK(pthcv_save_npz(p, 2, zn, zt) == PTHCV_ERR_UNSUPPORTED && error_has("tensor 'w'") && !file_exists(p) &&
              !file_exists(out_path("refused.npz.tmp")),
          "npz refuses bfloat16: %s", pthcv_last_error());
    const char *dup[] = {"x", "x"};
    pthcv_tensor *dt[] = {a, a};
    CHECK(pthcv_save_npz(p, 2, dup, dt) == PTHCV_ERR_ARG && error_has("two tensors"), "npz duplicate names");
    p = out_path("refused.safetensors");
    pthcv_tensor *c128 = all[13];
    CHECK(pthcv_save_safetensors(p, 1, zn, &c128, NULL) == PTHCV_ERR_UNSUPPORTED && error_has("complex128") &&
              !file_exists(p),
          "safetensors refuses complex128");
    CHECK(pthcv_save_safetensors(p, 2, dup, dt, NULL) == PTHCV_ERR_ARG && error_has("two tensors"),
          "safetensors duplicate names");
    const char *meta_name[] = {"__metadata__"};
    CHECK(pthcv_save_safetensors(p, 1, meta_name, dt, NULL) == PTHCV_ERR_ARG, "safetensors __metadata__ name");
    CHECK(pthcv_save_safetensors(p, 1, zn, dt, "[1]") == PTHCV_ERR_ARG && error_has("metadata"), "bad metadata");
    CHECK(pthcv_save_safetensors(p, 1, zn, &q, NULL) == PTHCV_ERR_UNSUPPORTED && error_has("dequantize"),
          "safetensors refuses quantized");

    /* I/O errors name the path */
    p = "/nonexistent-dir/x.npy";
    CHECK(pthcv_save_npy(p, a) == PTHCV_ERR_IO && strncmp(pthcv_last_error(), p, strlen(p)) == 0, "npy I/O error: %s",
          pthcv_last_error());
    p = "/nonexistent-dir/x.npz";
    CHECK(pthcv_save_npz(p, 1, zn, zt) == PTHCV_ERR_IO && strncmp(pthcv_last_error(), p, strlen(p)) == 0,
          "npz I/O error: %s", pthcv_last_error());
    p = "/nonexistent-dir/x.safetensors";
    CHECK(pthcv_save_safetensors(p, 1, zn, zt, NULL) == PTHCV_ERR_IO && strncmp(pthcv_last_error(), p, strlen(p)) == 0,
          "safetensors I/O error: %s", pthcv_last_error());
    /* a directory in the way: the rename fails, the temporary is removed */
    p = out_path("isdir.npy");
    mkdir(p, 0755);
    CHECK(pthcv_save_npy(p, a) == PTHCV_ERR_IO && error_has("rename") && !file_exists(out_path("isdir.npy.tmp")),
          "rename failure: %s", pthcv_last_error());
    rmdir(p);

    for (int i = 0; i < ND; i++) pthcv_tensor_release(all[i]);
    pthcv_tensor_release(q);
    pthcv_tensor_release(bf);
    pthcv_tensor_release(f8);
    pthcv_tensor_release(e);
    pthcv_tensor_release(sc);
    pthcv_tensor_release(tr);
    pthcv_tensor_release(a);
}

/* Inputs and pthcv's results, for check_exports.py to compare with torch. */
static void write_parity_samples(void)
{
    enum { N = 4096 };
    int64_t n = N;
    pthcv_tensor *f = pthcv_tensor_new(PTHCV_FLOAT32, 1, &n);
    float *fv = pthcv_tensor_data(f);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < N; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        /* a spread of magnitudes, ties and specials for the 16- and 8-bit formats */
        float v = f32_from(((uint32_t)x & 0x807FFFFFu) | (uint32_t)(96 + (x >> 32) % 64) << 23);
        if (i % 7 == 0) v = f32_from(f32_bits(v) & 0xFFFF8000u);      /* many ties */
        if (i % 11 == 0) v = (float)((int)(x >> 40) % 600) - 300.25f; /* integer-ish, for int conversions */
        fv[i] = i < 4 ? (float[]){INFINITY, -INFINITY, NAN, -0.0f}[i] : v;
    }
    CHECK(pthcv_save_npy(out_path("parity_in.npy"), f) == PTHCV_OK, "parity input");
    static const int targets[] = {PTHCV_FLOAT16, PTHCV_BFLOAT16, PTHCV_INT32, PTHCV_INT8,
                                  PTHCV_UINT8,   PTHCV_BOOL,     PTHCV_INT64, PTHCV_FLOAT64};
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        pthcv_tensor *r = pthcv_tensor_to(f, targets[i]);
        const char *name = pthcv_dtype_name(targets[i]);
        char file[64];
        snprintf(file, sizeof file, "parity_%s.safetensors", name);
        CHECK(r && pthcv_save_safetensors(out_path(file), 1, &name, &r, NULL) == PTHCV_OK, "parity %s", name);
        pthcv_tensor_release(r);
    }
    pthcv_tensor_release(f);

    /* dequantization: raw qint8 values, per tensor and per channel (axis 1 of [4, 5, 6]) */
    int64_t s[] = {4, 5, 6}, five = 5;
    pthcv_tensor *q = pthcv_tensor_new(PTHCV_QINT8, 3, s);
    for (int i = 0; i < 120; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        pthcv_tensor_set(q, i, (double)(int)((x >> 24) % 256) - 128, 0);
    }
    pthcv_tensor *raw = pthcv_tensor_new(PTHCV_INT8, 3, s);
    memcpy(pthcv_tensor_data(raw), pthcv_tensor_data(q), 120);
    CHECK(pthcv_save_npy(out_path("dq_raw.npy"), raw) == PTHCV_OK, "dq raw");
    q->qscheme = PTHCV_QSCHEME_PER_TENSOR_AFFINE;
    q->qscale = 0.0372;
    q->qzero_point = -3;
    pthcv_tensor *d = pthcv_tensor_dequantize(q);
    CHECK(d && pthcv_save_npy(out_path("dq_per_tensor.npy"), d) == PTHCV_OK, "dq per tensor");
    pthcv_tensor_release(d);
    static const double sc[] = {0.0372, 0.11, 1.0 / 3, 0.007, 2.5}, zp[] = {-3, 0, 7, 100, -128};
    q->qscheme = PTHCV_QSCHEME_PER_CHANNEL_AFFINE;
    q->qaxis = 1;
    q->qscales = make(PTHCV_FLOAT64, 1, &five, sc);
    q->qzero_points = make(PTHCV_INT64, 1, &five, zp);
    d = pthcv_tensor_dequantize(q);
    CHECK(d && pthcv_save_npy(out_path("dq_per_channel.npy"), d) == PTHCV_OK, "dq per channel");
    pthcv_tensor_release(d);
    pthcv_tensor_release(q);
    pthcv_tensor_release(raw);
}

int main(int argc, char **argv)
{
    outdir = argc > 1 ? argv[1] : ".";
    test_dtypes();
    test_half();
    test_bfloat16();
    test_float8();
    test_to();
    test_views();
    test_storage();
    test_elements();
    write_samples();
    write_parity_samples();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
