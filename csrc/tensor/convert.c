/* convert.c -- element values: scalar formats, contiguous copies, dtype
 * conversion with torch's semantics, dequantisation, single-element access. */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- 16-bit floats --------------------------------------------------------
 * Portable integer versions, bit-exact with c10::Half and c10::BFloat16
 * (round to nearest even, subnormals kept, NaN made quiet), independent of
 * the FPU's rounding mode and flush-to-zero settings. */

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

float pthcv_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    if (exp == 0x1F) /* inf, or NaN with its payload, made quiet as a float operation would */
        return f32_from(sign | 0x7F800000u | (mant << 13) | (mant ? 0x400000u : 0));
    if (exp == 0) {
        if (mant == 0) return f32_from(sign);
        /* subnormal mant * 2^-24: normalise into a float exponent */
        uint32_t e = 113; /* float exponent of 2^-14, the smallest normal half */
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e--;
        }
        return f32_from(sign | (e << 23) | ((mant & 0x3FFu) << 13));
    }
    return f32_from(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t pthcv_float_to_half(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t a = x & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return sign | 0x7E00u;  /* NaN: c10 gives the canonical quiet NaN */
    if (a >= 0x477FF000u) return sign | 0x7C00u; /* >= 65520 rounds past 65504 to inf */
    if (a >= 0x38800000u) {                      /* >= 2^-14: a normal half */
        /* add just under half an ulp, plus one when the kept bit is odd: ties go to even */
        uint32_t r = a + 0xFFFu + ((a >> 13) & 1u);
        return sign | (uint16_t)((r - 0x38000000u) >> 13); /* rebias 127 -> 15 */
    }
    if (a < 0x33000000u) return sign; /* below 2^-25: rounds to zero */
    /* subnormal half: round mant * 2^(e-150) to a multiple of 2^-24 */
    uint32_t e = a >> 23, mant = (a & 0x7FFFFFu) | 0x800000u;
    uint32_t shift = 126 - e; /* 14..24 */
    uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (q & 1u))) q++;
    return sign | (uint16_t)q;
}

float pthcv_bfloat16_to_float(uint16_t b) { return f32_from((uint32_t)b << 16); }

uint16_t pthcv_float_to_bfloat16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0u; /* c10 drops the sign and payload of NaN */
    return (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

/* ---- 8-bit floats ---------------------------------------------------------
 * The four torch kinds differ in exponent bias and in what the top codes
 * mean: e5m2 is IEEE-like (inf and NaNs), e4m3fn has no inf and one NaN per
 * sign (S.1111.111), the fnuz kinds have no inf, no -0 and one NaN (0x80).
 * Encoding is c10's: round to nearest even; too large becomes inf for e5m2,
 * NaN for the others. */

enum { F8_IEEE, F8_FN, F8_FNUZ };
typedef struct {
    int mant_bits, bias, kind;
    uint8_t max_code;
} f8_format;

static const f8_format *f8_fmt(int dtype)
{
    static const f8_format e4m3fn = {3, 7, F8_FN, 0x7E}, e5m2 = {2, 15, F8_IEEE, 0x7B},
                           e4m3fnuz = {3, 8, F8_FNUZ, 0x7F}, e5m2fnuz = {2, 16, F8_FNUZ, 0x7F};
    switch (dtype) {
    case PTHCV_FLOAT8_E4M3FN: return &e4m3fn;
    case PTHCV_FLOAT8_E5M2: return &e5m2;
    case PTHCV_FLOAT8_E4M3FNUZ: return &e4m3fnuz;
    default: return &e5m2fnuz;
    }
}

static float f8_decode(const f8_format *fm, uint8_t code)
{
    int m_bits = fm->mant_bits, e_bits = 7 - m_bits;
    int e = (code >> m_bits) & ((1 << e_bits) - 1), m = code & ((1 << m_bits) - 1);
    int neg = code & 0x80;
    if ((fm->kind == F8_FNUZ && code == 0x80) || (fm->kind == F8_FN && (code & 0x7F) == 0x7F)) return NAN;
    if (fm->kind == F8_IEEE && e == (1 << e_bits) - 1) return m ? NAN : neg ? -INFINITY : INFINITY;
    double v = e ? ldexp(1.0 + ldexp(m, -m_bits), e - fm->bias) : ldexp(m, 1 - fm->bias - m_bits);
    return (float)(neg ? -v : v);
}

static uint8_t f8_encode(const f8_format *fm, float f)
{
    uint8_t sign = (f32_bits(f) >> 24) & 0x80u;
    uint8_t nan = fm->kind == F8_FNUZ ? 0x80 : (uint8_t)(sign | 0x7F);
    uint8_t overflow = fm->kind == F8_IEEE ? (uint8_t)(sign | 0x7C) : nan;
    if (isnan(f)) return nan;
    double a = fabs((double)f);
    if (isinf(a)) return overflow;
    int m_bits = fm->mant_bits, emin = 1 - fm->bias, ex;
    frexp(a, &ex);
    int e = ex - 1 < emin ? emin : ex - 1; /* a's binade; subnormals share the lowest one's ulp */
    /* nearbyint rounds ties to even in the default rounding mode, which pthcv never changes */
    double r = ldexp(nearbyint(ldexp(a, m_bits - e)), e - m_bits);
    if (r > f8_decode(fm, fm->max_code)) return overflow;
    if (r == 0) return fm->kind == F8_FNUZ ? 0 : sign;
    frexp(r, &ex);
    if (ex - 1 < emin) return (uint8_t)(sign | (int)ldexp(r, m_bits - emin));
    int field = ex - 1 + fm->bias, mant = (int)ldexp(r, m_bits - (ex - 1)) - (1 << m_bits);
    return (uint8_t)(sign | field << m_bits | mant);
}

/* ---- one element as a number ----------------------------------------------
 * Integers travel as integers, so int64 -> int32 wraps exactly as a C cast
 * does in torch, and int64 -> float32 rounds once, as torch's static_cast. */

enum { NUM_INT, NUM_UINT, NUM_REAL, NUM_COMPLEX };
typedef struct {
    int kind;
    int64_t i;     /* NUM_INT (and bool) */
    uint64_t u;    /* NUM_UINT: uint64 values */
    double re, im; /* NUM_REAL, NUM_COMPLEX */
} num;

/* Unaligned-safe reads and writes: storages read from files need no alignment. */
static uint16_t rd16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static uint32_t rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static float rdf(const unsigned char *p)
{
    float v;
    memcpy(&v, p, 4);
    return v;
}
static double rdd(const unsigned char *p)
{
    double v;
    memcpy(&v, p, 8);
    return v;
}
static void wr16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }
static void wr32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static void wrf(unsigned char *p, float v) { memcpy(p, &v, 4); }
static void wrd(unsigned char *p, double v) { memcpy(p, &v, 8); }

static num int_num(int64_t i)
{
    num v = {NUM_INT, i, 0, 0, 0};
    return v;
}
static num real_num(double re)
{
    num v = {NUM_REAL, 0, 0, re, 0};
    return v;
}
static num complex_num(double re, double im)
{
    num v = {NUM_COMPLEX, 0, 0, re, im};
    return v;
}

/* A signed integer of 1, 2, 4 or 8 bytes. */
static int64_t rdi(const unsigned char *p, int width)
{
    int8_t a;
    int16_t b;
    int32_t c;
    int64_t d;
    switch (width) {
    case 1: memcpy(&a, p, 1); return a;
    case 2: memcpy(&b, p, 2); return b;
    case 4: memcpy(&c, p, 4); return c;
    default: memcpy(&d, p, 8); return d;
    }
}

/* Quantized types hold plain integers; pthcv_tensor_get returns them raw. */
static num load(int dtype, const unsigned char *p)
{
    switch (dtype) {
    case PTHCV_FLOAT32: return real_num(rdf(p));
    case PTHCV_FLOAT64: return real_num(rdd(p));
    case PTHCV_FLOAT16: return real_num(pthcv_half_to_float(rd16(p)));
    case PTHCV_BFLOAT16: return real_num(pthcv_bfloat16_to_float(rd16(p)));
    case PTHCV_FLOAT8_E4M3FN:
    case PTHCV_FLOAT8_E5M2:
    case PTHCV_FLOAT8_E4M3FNUZ:
    case PTHCV_FLOAT8_E5M2FNUZ: return real_num(f8_decode(f8_fmt(dtype), p[0]));
    case PTHCV_COMPLEX32: return complex_num(pthcv_half_to_float(rd16(p)), pthcv_half_to_float(rd16(p + 2)));
    case PTHCV_COMPLEX64: return complex_num(rdf(p), rdf(p + 4));
    case PTHCV_COMPLEX128: return complex_num(rdd(p), rdd(p + 8));
    case PTHCV_BOOL: return int_num(p[0] != 0);
    case PTHCV_INT8:
    case PTHCV_QINT8: return int_num(rdi(p, 1));
    case PTHCV_INT16: return int_num(rdi(p, 2));
    case PTHCV_INT32:
    case PTHCV_QINT32: return int_num(rdi(p, 4));
    case PTHCV_INT64: return int_num(rdi(p, 8));
    case PTHCV_UINT16: return int_num(rd16(p));
    case PTHCV_UINT32: return int_num(rd32(p));
    case PTHCV_UINT64: {
        num v = {NUM_UINT, 0, rd64(p), 0, 0};
        return v;
    }
    default: return int_num(p[0]); /* uint8, quint8 */
    }
}

static float num_f32(num v) { return v.kind == NUM_INT ? (float)v.i : v.kind == NUM_UINT ? (float)v.u : (float)v.re; }

static double num_f64(num v) { return v.kind == NUM_INT ? (double)v.i : v.kind == NUM_UINT ? (double)v.u : v.re; }

/* A float to integer bits, truncating toward zero. Where torch's cast is
 * undefined (NaN, inf, out of range) this gives INT64_MIN, as x86 does; to a
 * narrower type the low bits are kept, as torch's uint8 path via int64 does. */
static uint64_t real_to_bits(double x, int dtype)
{
    if (dtype == PTHCV_UINT64 && x >= 9223372036854775808.0 && x < 18446744073709551616.0) return (uint64_t)x;
    if (x >= -9223372036854775808.0 && x < 9223372036854775808.0) return (uint64_t)(int64_t)x;
    return (uint64_t)1 << 63;
}

static uint64_t num_bits(num v, int dtype)
{
    return v.kind == NUM_INT ? (uint64_t)v.i : v.kind == NUM_UINT ? v.u : real_to_bits(v.re, dtype);
}

static void store(int dtype, unsigned char *p, num v)
{
    switch (dtype) {
    case PTHCV_FLOAT32: wrf(p, num_f32(v)); break;
    case PTHCV_FLOAT64: wrd(p, num_f64(v)); break;
    /* torch converts to these through float */
    case PTHCV_FLOAT16: wr16(p, pthcv_float_to_half(num_f32(v))); break;
    case PTHCV_BFLOAT16: wr16(p, pthcv_float_to_bfloat16(num_f32(v))); break;
    case PTHCV_FLOAT8_E4M3FN:
    case PTHCV_FLOAT8_E5M2:
    case PTHCV_FLOAT8_E4M3FNUZ:
    case PTHCV_FLOAT8_E5M2FNUZ: p[0] = f8_encode(f8_fmt(dtype), num_f32(v)); break;
    case PTHCV_COMPLEX32:
        wr16(p, pthcv_float_to_half(num_f32(v)));
        wr16(p + 2, pthcv_float_to_half((float)v.im));
        break;
    case PTHCV_COMPLEX64:
        wrf(p, num_f32(v));
        wrf(p + 4, (float)v.im);
        break;
    case PTHCV_COMPLEX128:
        wrd(p, num_f64(v));
        wrd(p + 8, v.im);
        break;
    case PTHCV_BOOL:
        p[0] = v.kind == NUM_INT ? v.i != 0 : v.kind == NUM_UINT ? v.u != 0 : (v.re != 0 || v.im != 0);
        break;
    case PTHCV_INT16:
    case PTHCV_UINT16: wr16(p, (uint16_t)num_bits(v, dtype)); break;
    case PTHCV_INT32:
    case PTHCV_UINT32:
    case PTHCV_QINT32: wr32(p, (uint32_t)num_bits(v, dtype)); break;
    case PTHCV_INT64:
    case PTHCV_UINT64: wr64(p, num_bits(v, dtype)); break;
    default: p[0] = (uint8_t)num_bits(v, dtype); break; /* int8, uint8, qint8, quint8 */
    }
}

/* ---- walking a tensor -------------------------------------------------------
 * Visits the first ndim dimensions in row-major order, keeping the element
 * offset (sum of index * stride). Every term stays within the extent that
 * pthcv_tensor_over checked, so nothing overflows. */
typedef struct {
    int64_t idx[PTHCV_MAX_DIMS];
    int64_t off;
} walker;

static void walker_next(walker *w, int ndim, const int64_t *shape, const int64_t *stride)
{
    for (int d = ndim - 1; d >= 0; d--) {
        if (++w->idx[d] < shape[d]) {
            w->off += stride[d];
            return;
        }
        w->off -= (shape[d] - 1) * stride[d];
        w->idx[d] = 0;
    }
}

/* t's layout with its size-1 dimensions dropped and each dimension merged
 * into the one before it where the two walk as one (stride[d] ==
 * stride[d+1] * shape[d+1]); returns the number of dimensions left (at
 * least 1). The same elements in the same order, with fewer, longer rows: a
 * [512, 256, 1, 1] view, or a stride-0 expansion of one value, is one row. */
static int coalesce(const pthcv_tensor *t, int64_t *shape, int64_t *stride)
{
    int n = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] == 1) continue;
        if (n > 0 && stride[n - 1] == t->stride[d] * t->shape[d]) {
            shape[n - 1] *= t->shape[d];
            stride[n - 1] = t->stride[d];
        } else {
            shape[n] = t->shape[d];
            stride[n] = t->stride[d];
            n++;
        }
    }
    if (n == 0) shape[n] = 1, stride[n] = 0, n = 1;
    return n;
}

/* Copies one element of es bytes; constant sizes let memcpy become a move. */
static void copy_element(unsigned char *dst, const unsigned char *src, int es)
{
    switch (es) {
    case 1: *dst = *src; break;
    case 2: memcpy(dst, src, 2); break;
    case 4: memcpy(dst, src, 4); break;
    case 8: memcpy(dst, src, 8); break;
    default: memcpy(dst, src, 16); break;
    }
}

/* A new zeroed contiguous tensor of t's shape, carrying t's quantization. */
static pthcv_tensor *new_like(const pthcv_tensor *t, int dtype)
{
    pthcv_tensor *out = pthcv_tensor_new(dtype, t->ndim, t->shape);
    if (!out || !pthcv_dtype_is_quantized(dtype)) return out;
    out->qscheme = t->qscheme;
    out->qaxis = t->qaxis;
    out->qscale = t->qscale;
    out->qzero_point = t->qzero_point;
    out->qscales = pthcv_tensor_retain(t->qscales);
    out->qzero_points = pthcv_tensor_retain(t->qzero_points);
    return out;
}

pthcv_tensor *pthcv_tensor_contiguous(pthcv_tensor *t)
{
    if (!t) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "pthcv_tensor_contiguous: no tensor");
    if (pthcv_tensor_is_contiguous(t)) return pthcv_tensor_retain(t);
    if (pthcv_dtype_values_per_element(t->dtype) > 1)
        return PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED, "pthcv_tensor_contiguous: cannot repack a strided %s tensor",
                               pthcv_dtype_name(t->dtype));
    const unsigned char *src = pthcv_tensor_data(t);
    if (!src) return NULL;
    pthcv_tensor *out = new_like(t, t->dtype);
    if (!out) return NULL;
    /* not contiguous implies numel > 0: copy row by row */
    unsigned char *dst = out->storage->data;
    int64_t shape[PTHCV_MAX_DIMS], stride[PTHCV_MAX_DIMS];
    int es = pthcv_dtype_size(t->dtype), last = coalesce(t, shape, stride) - 1;
    int64_t n = shape[last], s = stride[last], rows = t->numel / n;
    walker w = {{0}, 0};
    for (int64_t r = 0; r < rows; r++) {
        const unsigned char *row = src + w.off * es;
        if (s == 1) {
            memcpy(dst, row, (size_t)(n * es));
        } else if (s == 0) { /* one value repeated: doubling copies */
            copy_element(dst, row, es);
            for (int64_t done = 1; done < n; done *= 2)
                memcpy(dst + done * es, dst, (size_t)((done < n - done ? done : n - done) * es));
        } else {
            for (int64_t j = 0; j < n; j++) copy_element(dst + j * es, row + j * s * es, es);
        }
        dst += n * es;
        walker_next(&w, last, shape, stride);
    }
    return out;
}

/* The common float conversions of a contiguous tensor in one plain loop
 * (weights to float64 for folding, float16 weights to float32 and back):
 * the same values as load/store, without their per-element dispatch, which
 * was a third of a resnet50's first forward pass. 0 when not one of them. */
static int convert_floats(const pthcv_tensor *t, const unsigned char *src, int dtype, unsigned char *dst)
{
    if (!pthcv_tensor_is_contiguous(t) || (uintptr_t)src % (uintptr_t)pthcv_dtype_size(t->dtype) != 0) return 0;
    int64_t n = t->numel;
    int from = t->dtype;
    if (from == PTHCV_FLOAT32 && dtype == PTHCV_FLOAT64) {
        const float *s = (const float *)src;
        double *d = (double *)dst;
        for (int64_t i = 0; i < n; i++) d[i] = s[i];
    } else if (from == PTHCV_FLOAT64 && dtype == PTHCV_FLOAT32) {
        const double *s = (const double *)src;
        float *d = (float *)dst;
        for (int64_t i = 0; i < n; i++) d[i] = (float)s[i];
    } else if (from == PTHCV_FLOAT16 && dtype == PTHCV_FLOAT32) {
        const uint16_t *s = (const uint16_t *)src;
        float *d = (float *)dst;
        for (int64_t i = 0; i < n; i++) d[i] = pthcv_half_to_float(s[i]);
    } else if (from == PTHCV_FLOAT32 && dtype == PTHCV_FLOAT16) {
        const float *s = (const float *)src;
        uint16_t *d = (uint16_t *)dst;
        for (int64_t i = 0; i < n; i++) d[i] = pthcv_float_to_half(s[i]);
    } else {
        return 0;
    }
    return 1;
}

pthcv_tensor *pthcv_tensor_to(pthcv_tensor *t, int dtype)
{
    if (!t) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "pthcv_tensor_to: no tensor");
    if (!pthcv_dtype_name(dtype)) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "pthcv_tensor_to: unknown dtype %d", dtype);
    if (pthcv_dtype_is_quantized(t->dtype))
        return PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED,
                               "pthcv_tensor_to: cannot convert a %s tensor to %s; dequantize it first",
                               pthcv_dtype_name(t->dtype), pthcv_dtype_name(dtype));
    if (pthcv_dtype_is_quantized(dtype))
        return PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED, "pthcv_tensor_to: pthcv does not quantize (to %s)",
                               pthcv_dtype_name(dtype));
    if (dtype == t->dtype) return pthcv_tensor_contiguous(t);
    const unsigned char *src = pthcv_tensor_data(t);
    if (!src) return NULL;
    pthcv_tensor *out = pthcv_tensor_new(dtype, t->ndim, t->shape);
    if (!out) return NULL;
    unsigned char *dst = out->storage->data;
    if (convert_floats(t, src, dtype, dst)) return out;
    int ses = pthcv_dtype_size(t->dtype), des = pthcv_dtype_size(dtype);
    int64_t shape[PTHCV_MAX_DIMS], stride[PTHCV_MAX_DIMS];
    int ndim = coalesce(t, shape, stride);
    walker w = {{0}, 0};
    for (int64_t i = 0; i < t->numel; i++) {
        store(dtype, dst + i * des, load(t->dtype, src + w.off * ses));
        walker_next(&w, ndim, shape, stride);
    }
    return out;
}

/* ---- quantized values -------------------------------------------------------*/

/* The raw integer at value index idx of a storage (idx counts values, so
 * packed sub-byte types unpack here, low bits first). */
static int64_t raw_value(int dtype, const unsigned char *base, int64_t idx)
{
    int per = pthcv_dtype_values_per_element(dtype);
    if (per == 1) return load(dtype, base + idx * pthcv_dtype_size(dtype)).i;
    int bits = 8 / per;
    return (base[idx / per] >> (idx % per * bits)) & ((1 << bits) - 1);
}

/* Zero points far outside any integer type are damage, and would overflow q - zp. */
static int zero_point_ok(double zp) { return zp >= -4294967296.0 && zp <= 4294967296.0; }

/* The n values of a per-channel parameter tensor, as doubles. */
static double *channel_params(pthcv_tensor *p, int64_t n, const char *what)
{
    if (!p || p->ndim != 1 || p->shape[0] != n)
        return PTHCV_FAIL_NULL(PTHCV_ERR_FORMAT, "pthcv_tensor_dequantize: per-channel %s are not a vector of %lld",
                               what, (long long)n);
    double *out = malloc((size_t)(n ? n : 1) * sizeof *out);
    if (!out) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "pthcv_tensor_dequantize: out of memory");
    for (int64_t c = 0; c < n; c++)
        if (pthcv_tensor_get(p, c * p->stride[0], &out[c], NULL) != PTHCV_OK) {
            free(out);
            return NULL;
        }
    return out;
}

/* torch's arithmetic, to the bit: per tensor (float)(q - zp) * (float)scale;
 * per channel (q - zp) * scale in double, rounded to float once; with float
 * qparams ((float)q - zp) * scale in float. */
pthcv_tensor *pthcv_tensor_dequantize(pthcv_tensor *t)
{
    if (!t) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "pthcv_tensor_dequantize: no tensor");
    if (!pthcv_dtype_is_quantized(t->dtype))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "pthcv_tensor_dequantize: the tensor is %s, not quantized",
                               pthcv_dtype_name(t->dtype));
    int per_channel = t->qscheme == PTHCV_QSCHEME_PER_CHANNEL_AFFINE ||
        t->qscheme == PTHCV_QSCHEME_PER_CHANNEL_SYMMETRIC ||
        t->qscheme == PTHCV_QSCHEME_PER_CHANNEL_AFFINE_FLOAT_QPARAMS;
    int float_qparams = t->qscheme == PTHCV_QSCHEME_PER_CHANNEL_AFFINE_FLOAT_QPARAMS;
    if (!per_channel && t->qscheme != PTHCV_QSCHEME_PER_TENSOR_AFFINE &&
        t->qscheme != PTHCV_QSCHEME_PER_TENSOR_SYMMETRIC)
        return PTHCV_FAIL_NULL(PTHCV_ERR_FORMAT, "pthcv_tensor_dequantize: %s tensor without a known qscheme (%d)",
                               pthcv_dtype_name(t->dtype), t->qscheme);
    if (per_channel && (t->qaxis < 0 || t->qaxis >= t->ndim))
        return PTHCV_FAIL_NULL(PTHCV_ERR_FORMAT, "pthcv_tensor_dequantize: axis %d of a %d-d tensor", t->qaxis,
                               t->ndim);
    if (!per_channel && !zero_point_ok((double)t->qzero_point))
        return PTHCV_FAIL_NULL(PTHCV_ERR_FORMAT, "pthcv_tensor_dequantize: zero point %lld out of range",
                               (long long)t->qzero_point);

    double *scales = NULL, *zps = NULL;
    pthcv_tensor *out = NULL;
    if (per_channel) {
        int64_t n = t->shape[t->qaxis];
        if (!(scales = channel_params(t->qscales, n, "scales")) ||
            !(zps = channel_params(t->qzero_points, n, "zero points")))
            goto done;
        for (int64_t c = 0; c < n; c++)
            if (!float_qparams && !zero_point_ok(zps[c])) {
                pthcv_fail(PTHCV_ERR_FORMAT, "pthcv_tensor_dequantize: zero point %g out of range", zps[c]);
                goto done;
            }
    }
    if (pthcv_storage_materialize(t->storage) != PTHCV_OK ||
        !(out = pthcv_tensor_new(PTHCV_FLOAT32, t->ndim, t->shape)))
        goto done;

    const unsigned char *base = t->storage->data;
    float *dst = out->storage->data, scale = (float)t->qscale;
    if (!per_channel && t->dtype == PTHCV_QUINT8 && pthcv_tensor_is_contiguous(t)) {
        /* an int8 model's activations: the same arithmetic as below, one plain loop */
        const uint8_t *q = base + t->offset;
        int32_t zp = (int32_t)t->qzero_point;
        for (int64_t i = 0; i < t->numel; i++) dst[i] = (float)((int32_t)q[i] - zp) * scale;
        goto done;
    }
    walker w = {{0}, 0};
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t q = raw_value(t->dtype, base, t->offset + w.off);
        if (!per_channel) {
            dst[i] = (float)(q - t->qzero_point) * scale;
        } else {
            int64_t c = w.idx[t->qaxis];
            if (float_qparams) dst[i] = ((float)q - (float)zps[c]) * (float)scales[c];
            else dst[i] = (float)((double)(q - (int64_t)zps[c]) * scales[c]);
        }
        walker_next(&w, t->ndim, t->shape, t->stride);
    }
done:
    free(scales);
    free(zps);
    return out;
}

/* ---- single elements ----------------------------------------------------------*/

/* The storage byte address of value idx = offset + element_offset, checked
 * against the storage, with the storage read in. */
static unsigned char *element_at(pthcv_tensor *t, int64_t element_offset, int64_t *idx, const char *fn)
{
    if (!t) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: no tensor", fn);
    if (pthcv_storage_materialize(t->storage) != PTHCV_OK) return NULL;
    int es = pthcv_dtype_size(t->dtype), per = pthcv_dtype_values_per_element(t->dtype);
    int64_t capacity = t->storage->nbytes / es * per;
    if (!pthcv_add_ok(t->offset, element_offset, idx) || *idx < 0 || *idx >= capacity)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: element offset %lld is outside the storage of %lld elements", fn,
                               (long long)element_offset, (long long)capacity);
    return (unsigned char *)t->storage->data + *idx / per * es;
}

/* NaN as the one quiet NaN, sign and payload dropped. LuaJIT keeps its
 * other types' tags in the payloads of negative NaNs and reads a double as
 * it finds it: torch's max over a NaN stores 0xFFFFFFFF, which as a double
 * (0xFFFFFFFFE0000000) LuaJIT takes for nil. */
static double lua_safe(double x) { return isnan(x) ? (double)NAN : x; }

int pthcv_tensor_get(pthcv_tensor *t, int64_t element_offset, double *re, double *im)
{
    int64_t idx;
    if (!re) return pthcv_fail(PTHCV_ERR_ARG, "pthcv_tensor_get: no place for the value");
    unsigned char *p = element_at(t, element_offset, &idx, "pthcv_tensor_get");
    if (!p) return pthcv_last_status();
    num v = pthcv_dtype_values_per_element(t->dtype) > 1 ? int_num(raw_value(t->dtype, t->storage->data, idx))
                                                         : load(t->dtype, p);
    *re = lua_safe(num_f64(v));
    if (im) *im = v.kind == NUM_COMPLEX ? lua_safe(v.im) : 0;
    return PTHCV_OK;
}

int pthcv_tensor_set(pthcv_tensor *t, int64_t element_offset, double re, double im)
{
    int64_t idx;
    unsigned char *p = element_at(t, element_offset, &idx, "pthcv_tensor_set");
    if (!p) return pthcv_last_status();
    int per = pthcv_dtype_values_per_element(t->dtype);
    if (per == 1) {
        store(t->dtype, p, pthcv_dtype_is_complex(t->dtype) ? complex_num(re, im) : real_num(re));
    } else {
        int bits = 8 / per, shift = (int)(idx % per) * bits, mask = (1 << bits) - 1;
        int q = (int)(real_to_bits(re, PTHCV_INT64) & (uint64_t)mask);
        *p = (unsigned char)((*p & ~(mask << shift)) | q << shift);
    }
    return PTHCV_OK;
}
