/*
 * ops_math.c -- elementwise math on float32 (pthcv_unary, pthcv_pow_scalar,
 * pthcv_pow) and the broadcasting walk the comparisons, where and pow share
 * (ops_broadcast, ops.h).
 *
 * exp and log are computed in double from the float input and rounded once
 * to float32: the double result is within about 1e-16 of the true value,
 * so the float result is the correctly rounded one except where the true
 * value lies that close to a rounding boundary. Over all 2^32 float inputs,
 * exp equals glibc's (float)expl everywhere and log equals (float)logl but
 * for 3 inputs (e.g. 0x1.bacb4ap+25, whose log lies 2^-56 of itself from a
 * rounding boundary), where it is less than 0.500000001 ulp off. torch
 * 1.13 uses SLEEF's 1-ulp kernels, so results agree with torch's within 1
 * ulp. The code is branch-free (selects made of bit masks, since gcc turns
 * a ?: around arithmetic into a branch it cannot vectorise), so the SIMD
 * clones vectorise it and give the scalar build's bits: every step is one
 * IEEE operation (no FMA contraction: -ffp-contract=off, Makefile).
 *
 * sqrt, rsqrt (1 / sqrt, as torch), reciprocal, abs, floor, ceil, round
 * (half to even, nearbyintf) and sign are exact. gcc vectorises sqrtf only
 * without errno (-fno-math-errno, which the Makefile gives this file, as
 * torch's build does); the results are the same bits either way.
 */
#include "ops.h"
#include <math.h>
#include <string.h>

/* ---- bit-level helpers ------------------------------------------------------ */

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline uint64_t f64_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}
static inline double bits_f64(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}
/* cond ? a : b as a bit mask, which gcc keeps branch-free */
static inline float select_f32(int cond, float a, float b)
{
    uint32_t m = -(uint32_t)(cond != 0);
    return bits_f32((f32_bits(a) & m) | (f32_bits(b) & ~m));
}

/* ---- exp and log ------------------------------------------------------------- */

/* exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln 2 / 2; exp(r) by its
 * Taylor series to r^13 (the rest is below 1e-17 relative). x is clamped to
 * [-104, 89] first: outside, the float result is 0 or inf anyway, and the
 * scale 2^n stays a normal double. */
static inline float exp_f32(float x)
{
    const double magic = 6755399441055744.0; /* 1.5 * 2^52: t - magic rounds to an integer */
    float xc = select_f32(x > 89.0f, 89.0f, x);
    xc = select_f32(xc < -104.0f, -104.0f, xc);
    xc = select_f32(x == x, xc, 0.0f);
    double d = (double)xc;
    double t = d * 1.44269504088896340736 + magic;
    double n = t - magic;
    /* ln 2 in two parts: n * LN2_HI is exact (its low 21 bits are 0) */
    double r = d - n * 6.93147180369123816490e-01;
    r = r - n * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* 2^n from n's two's-complement bits in t's low word (n in [-151, 129]) */
    uint64_t k = f64_bits(t) - f64_bits(magic);
    double scale = bits_f64((k + 1023u) << 52);
    return select_f32(x == x, (float)(p * scale), x);
}

/* log(x) = e ln 2 + log(m), x = m 2^e with m in [sqrt(1/2), sqrt(2)];
 * log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172, by its series
 * to s^17 (the rest is below 1e-15 relative). Subnormal inputs are scaled
 * by 2^25 first. 0 gives -inf, inf inf, negatives and NaN NaN. */
static inline float log_f32(float x)
{
    int subnormal = x < 0x1p-126f;
    uint32_t b = f32_bits(select_f32(subnormal, x * 0x1p25f, x));
    int32_t e = (int32_t)((b >> 23) & 0xffu) - 127 - (subnormal ? 25 : 0);
    float m = bits_f32((b & 0x007fffffu) | 0x3f800000u); /* [1, 2) */
    int high = m > 1.41421356f;
    m = select_f32(high, m * 0.5f, m);
    e += high;
    double dm = (double)m;
    double s = (dm - 1.0) / (dm + 1.0), z = s * s;
    double p = 1.0 / 17;
    p = p * z + 1.0 / 15;
    p = p * z + 1.0 / 13;
    p = p * z + 1.0 / 11;
    p = p * z + 1.0 / 9;
    p = p * z + 1.0 / 7;
    p = p * z + 1.0 / 5;
    p = p * z + 1.0 / 3;
    p = p * z + 1.0;
    float y = (float)((double)e * 0.69314718055994530942 + 2.0 * s * p);
    y = select_f32(x == 0.0f, -INFINITY, y);
    y = select_f32(x == INFINITY, x, y);
    y = select_f32(x < 0.0f, NAN, y);
    return select_f32(x == x, y, x);
}

/* ---- unary ops ---------------------------------------------------------------- */

static const char *unary_name(int op)
{
    static const char *names[] = {"exp", "log", "sqrt", "rsqrt", "abs", "floor", "ceil", "round", "sign", "reciprocal"};
    return op >= 0 && op <= PTHCV_MATH_RECIPROCAL ? names[op] : "?";
}

PTHCV_SIMD
static void unary_row(float *y, const float *x, int64_t n, int op)
{
    switch (op) {
    case PTHCV_MATH_EXP:
        for (int64_t i = 0; i < n; i++) y[i] = exp_f32(x[i]);
        break;
    case PTHCV_MATH_LOG:
        for (int64_t i = 0; i < n; i++) y[i] = log_f32(x[i]);
        break;
    case PTHCV_MATH_SQRT:
        for (int64_t i = 0; i < n; i++) y[i] = sqrtf(x[i]);
        break;
    case PTHCV_MATH_RSQRT:
        for (int64_t i = 0; i < n; i++) y[i] = 1.0f / sqrtf(x[i]);
        break;
    case PTHCV_MATH_ABS:
        for (int64_t i = 0; i < n; i++) y[i] = fabsf(x[i]);
        break;
    case PTHCV_MATH_FLOOR:
        for (int64_t i = 0; i < n; i++) y[i] = floorf(x[i]);
        break;
    case PTHCV_MATH_CEIL:
        for (int64_t i = 0; i < n; i++) y[i] = ceilf(x[i]);
        break;
    case PTHCV_MATH_ROUND:
        for (int64_t i = 0; i < n; i++) y[i] = nearbyintf(x[i]);
        break;
    /* torch: (0 < x) - (x < 0), so NaN and -0.0 give +0.0 */
    case PTHCV_MATH_SIGN:
        for (int64_t i = 0; i < n; i++) y[i] = (float)((x[i] > 0.0f) - (x[i] < 0.0f));
        break;
    case PTHCV_MATH_RECIPROCAL:
        for (int64_t i = 0; i < n; i++) y[i] = 1.0f / x[i];
        break;
    }
}

/* torch's pow(x, e) for exponents other than its shortcuts: its vectorised
 * kernel's powf(x, (float)e) (the exponent rounded to float32 first; its
 * scalar loop over the last few elements of a tensor keeps e as a double,
 * which differs by a few ulp for exponents like 1.7), here as the double
 * pow rounded once */
static void pow_row(float *y, const float *x, int64_t n, double e)
{
    for (int64_t i = 0; i < n; i++) y[i] = (float)pow((double)x[i], e);
}

/* the shortcuts of pow_scalar that are not unary ops */
enum { POW_SQUARE = 100, POW_CUBE, POW_INV_SQUARE, POW_GENERAL };

PTHCV_SIMD
static void power_row(float *y, const float *x, int64_t n, int kind)
{
    switch (kind) {
    case POW_SQUARE:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i];
        break;
    case POW_CUBE:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i] * x[i];
        break;
    case POW_INV_SQUARE:
        for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (x[i] * x[i]);
        break;
    }
}

typedef struct {
    const float *x;
    float *y;
    int op;   /* a PTHCV_MATH_* op or a POW_* kind */
    double e; /* POW_GENERAL's exponent */
} unary_ctx;

static void unary_task(void *vctx, int64_t begin, int64_t end)
{
    unary_ctx *c = vctx;
    float *y = c->y + begin;
    const float *x = c->x + begin;
    if (c->op == POW_GENERAL) pow_row(y, x, end - begin, c->e);
    else if (c->op >= POW_SQUARE) power_row(y, x, end - begin, c->op);
    else unary_row(y, x, end - begin, c->op);
}

/* y = f(x) elementwise, f one of unary_task's */
static pthcv_tensor *unary_run(pthcv_tensor *x, int op, double e, const char *fn)
{
    const float *xd;
    pthcv_tensor *xc = ops_input(x, fn, "input", &xd);
    if (!xc) return NULL;
    pthcv_tensor *out = pthcv_tensor_new_uninit(PTHCV_FLOAT32, xc->ndim, xc->shape);
    float *y = out ? pthcv_tensor_data(out) : NULL;
    if (out && !y && out->numel) {
        pthcv_tensor_release(out);
        out = NULL;
    }
    if (out && out->numel) {
        unary_ctx c = {xd, y, op, (double)(float)e};
        pthcv_parallel_for(out->numel, op == POW_GENERAL ? 1024 : 8192, unary_task, &c);
    }
    pthcv_tensor_release(xc);
    return out;
}

pthcv_tensor *pthcv_unary(pthcv_tensor *x, int32_t op)
{
    if (op < PTHCV_MATH_EXP || op > PTHCV_MATH_RECIPROCAL)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "unary operation: unknown operation %d", (int)op);
    return unary_run(x, op, 0, unary_name(op));
}

/* torch: exponent 0 fills ones (NaN too), 1 copies, then its kernel's shortcuts */
pthcv_tensor *pthcv_pow_scalar(pthcv_tensor *x, double e)
{
    const char *fn = "pow";
    if (e == 0.0 || e == 1.0) {
        const float *xd;
        pthcv_tensor *xc = ops_input(x, fn, "input", &xd);
        if (!xc) return NULL;
        float *y;
        pthcv_tensor *out = ops_output(xc->ndim, xc->shape, &y);
        for (int64_t i = 0; out && i < out->numel; i++) y[i] = e == 0.0 ? 1.0f : xd[i];
        pthcv_tensor_release(xc);
        return out;
    }
    if (e == 0.5) return unary_run(x, PTHCV_MATH_SQRT, 0, fn);
    if (e == -0.5) return unary_run(x, PTHCV_MATH_RSQRT, 0, fn);
    if (e == -1.0) return unary_run(x, PTHCV_MATH_RECIPROCAL, 0, fn);
    if (e == 2.0) return unary_run(x, POW_SQUARE, 0, fn);
    if (e == 3.0) return unary_run(x, POW_CUBE, 0, fn);
    if (e == -2.0) return unary_run(x, POW_INV_SQUARE, 0, fn);
    return unary_run(x, POW_GENERAL, e, fn);
}

/* ---- broadcasting -------------------------------------------------------------- */

int ops_broadcast(ops_bcast *b, int n, pthcv_tensor *const *xs, const char *fn, int *out_ndim, int64_t *out_shape)
{
    int ndim = 0;
    for (int k = 0; k < n; k++)
        if (xs[k]->ndim > ndim) ndim = xs[k]->ndim;
    memset(b, 0, sizeof *b);
    b->nops = n;
    b->numel = 1;
    for (int d = 0; d < ndim; d++) {
        int64_t size = 1, stride[OPS_BCAST_MAX];
        for (int k = 0; k < n; k++) {
            int dk = d - (ndim - xs[k]->ndim);
            int64_t s = dk >= 0 ? xs[k]->shape[dk] : 1;
            if (s != 1 && size != 1 && s != size) {
                char buf[120] = "";
                for (int j = 0; j < n; j++)
                    snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", j ? " and " : "", ops_shape(xs[j]));
                return pthcv_fail(PTHCV_ERR_ARG, "%s: shapes %s do not broadcast (dimension %d: %lld vs %lld)", fn, buf,
                                  d, (long long)size, (long long)s),
                       0;
            }
            if (s != 1) size = s;
            stride[k] = s == 1 ? 0 : xs[k]->stride[dk];
        }
        out_shape[d] = size;
        b->numel *= size;
        if (size == 1) continue;
        /* merge with the previous kept dim when it is one run in every operand */
        int last = b->ndim - 1, merge = last >= 0;
        for (int k = 0; merge && k < n; k++) merge = b->stride[k][last] == stride[k] * size;
        if (merge) {
            b->shape[last] *= size;
            for (int k = 0; k < n; k++) b->stride[k][last] = stride[k];
            continue;
        }
        b->shape[b->ndim] = size;
        for (int k = 0; k < n; k++) b->stride[k][b->ndim] = stride[k];
        b->ndim++;
    }
    if (b->ndim == 0) { /* one element (or a 0-d result) */
        b->ndim = 1;
        b->shape[0] = 1;
    }
    *out_ndim = ndim;
    return 1;
}

int64_t ops_bcast_rows(const ops_bcast *b) { return b->numel == 0 ? 0 : b->numel / b->shape[b->ndim - 1]; }

int64_t ops_bcast_row(const ops_bcast *b, int64_t r, int64_t *offsets)
{
    int last = b->ndim - 1;
    for (int k = 0; k < b->nops; k++) offsets[k] = 0;
    for (int d = last - 1; d >= 0; d--) {
        int64_t i = r % b->shape[d];
        r /= b->shape[d];
        for (int k = 0; k < b->nops; k++) offsets[k] += i * b->stride[k][d];
    }
    return b->shape[last];
}

/* ---- pow with a tensor exponent -------------------------------------------------- */

typedef struct {
    const float *a, *b;
    float *y;
    const ops_bcast *walk;
} pow_ctx;

static void pow_task(void *vctx, int64_t begin, int64_t end)
{
    pow_ctx *c = vctx;
    int64_t sa = c->walk->stride[0][c->walk->ndim - 1], sb = c->walk->stride[1][c->walk->ndim - 1];
    for (int64_t r = begin; r < end; r++) {
        int64_t off[OPS_BCAST_MAX];
        int64_t n = ops_bcast_row(c->walk, r, off);
        const float *a = c->a + off[0], *b = c->b + off[1];
        float *y = c->y + r * n;
        for (int64_t i = 0; i < n; i++) y[i] = (float)pow((double)a[i * sa], (double)b[i * sb]);
    }
}

pthcv_tensor *pthcv_pow(pthcv_tensor *a, pthcv_tensor *b)
{
    const char *fn = "pow";
    const float *ad, *bd;
    pthcv_tensor *ac = ops_input(a, fn, "base", &ad);
    if (!ac) return NULL;
    pthcv_tensor *bc = ops_input(b, fn, "exponent", &bd), *out = NULL;
    ops_bcast walk;
    int ndim;
    int64_t shape[PTHCV_MAX_DIMS];
    float *y;
    if (bc && ops_broadcast(&walk, 2, (pthcv_tensor *[]){ac, bc}, fn, &ndim, shape) &&
        (out = ops_output(ndim, shape, &y)) && out->numel) {
        pow_ctx c = {ad, bd, y, &walk};
        int64_t rows = ops_bcast_rows(&walk);
        pthcv_parallel_for(rows, ops_grain(walk.numel / rows * 16), pow_task, &c);
    }
    pthcv_tensor_release(ac);
    pthcv_tensor_release(bc);
    return out;
}
