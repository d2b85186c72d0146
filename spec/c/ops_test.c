/* ops_test.c -- checks of the non-convolution inference ops (csrc/kernels/ops_*.c,
 * conv_transpose2d.c).
 *
 *   ops_test [--dump FILE] [--compare FILE] [FIXTURE_DIR...]
 *
 * 1. A battery of seeded cases over odd shapes (1, 3, 7, 17, 33 channels,
 *    borders, strides, dilations, ceil_mode edges) runs with 1 and with 3
 *    threads: the results must be bit-identical, and equal to the plain
 *    reference loops below (bit-exact for pooling, close for sums).
 *    --dump writes the battery's results to FILE; --compare checks them
 *    bit for bit against such a file. The Makefile builds this test twice,
 *    with the SIMD clones and as a scalar build (-DPTHCV_NO_CLONES
 *    -fno-tree-vectorize), and compares the two.
 * 2. Torch's answers: every FIXTURE_DIR holds ops.txt + ops.bin written by
 *    spec/fixtures/make_op_fixtures_ops.py (committed: spec/fixtures/ops_misc;
 *    tools/run-specs adds a fresh set when torch is installed).
 * 3. Argument errors: wrong dtypes, shapes that do not fit, named in the
 *    message.
 * Ends with "N passed, N failed"; exit status 1 if anything failed.
 */
#include "internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#include "check.h"

/* ---- helpers -------------------------------------------------------------- */

static uint64_t rng = 88172645463325252ull;

static float frand(void)   /* uniform in [-2, 2) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (4.0 / 16777216.0) - 2.0);
}

static int irand(int lo, int hi)   /* in [lo, hi] */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (int)((rng >> 33) % (uint64_t)(hi - lo + 1));
}

static pthcv_tensor *tensor(int ndim, const int64_t *shape, const float *vals)
{
    pthcv_tensor *t = pthcv_tensor_new(PTHCV_FLOAT32, ndim, shape);
    if (t && vals && t->numel)
        memcpy(pthcv_tensor_data(t), vals, (size_t)t->numel * sizeof(float));
    return t;
}

static pthcv_tensor *random_tensor(int ndim, const int64_t *shape)
{
    pthcv_tensor *t = pthcv_tensor_new(PTHCV_FLOAT32, ndim, shape);
    float *p = pthcv_tensor_data(t);
    for (int64_t i = 0; i < t->numel; i++)
        p[i] = frand();
    return t;
}

#define SHAPE(...) (sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), ((int64_t[]){__VA_ARGS__})

static float *data(pthcv_tensor *t) { return pthcv_tensor_data(t); }

static int same_bits(float a, float b)
{
    if (a != a && b != b)
        return 1;
    return memcmp(&a, &b, sizeof a) == 0;
}

static int same_shape(const pthcv_tensor *a, const pthcv_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

/* got vs want: tol 0 bit-exact, else |d| <= tol * max|want| (NaN matches NaN) */
static int close_to(pthcv_tensor *got, pthcv_tensor *want, double tol, char *why, size_t cap)
{
    if (!same_shape(got, want)) {
        snprintf(why, cap, "shape %d-d, want %d-d", got->ndim, want->ndim);
        return 0;
    }
    const float *g = data(got), *w = data(want);
    double scale = 0;
    for (int64_t i = 0; i < want->numel; i++)
        if (isfinite(w[i]) && fabs(w[i]) > scale)
            scale = fabs(w[i]);
    if (scale == 0)
        scale = 1;
    for (int64_t i = 0; i < want->numel; i++) {
        int ok = tol == 0 || !isfinite(w[i]) ? same_bits(g[i], w[i]) : fabs((double)g[i] - w[i]) <= tol * scale;
        if (!ok) {
            snprintf(why, cap, "element %lld: %.9g, want %.9g", (long long)i, g[i], w[i]);
            return 0;
        }
    }
    return 1;
}

/* ---- the battery: results kept for thread / build comparison ---------------- */

typedef struct {
    float *v;
    size_t n, cap;
} floats;

static floats results;   /* every battery output, in order */

static void keep(pthcv_tensor *t)
{
    float marker = t ? (float)t->numel : -1.0f;
    size_t need = results.n + 1 + (t ? (size_t)t->numel : 0);
    if (need > results.cap) {
        results.cap = need * 2;
        results.v = realloc(results.v, results.cap * sizeof(float));
    }
    results.v[results.n++] = marker;
    if (t && t->numel) {
        memcpy(results.v + results.n, data(t), (size_t)t->numel * sizeof(float));
        results.n += (size_t)t->numel;
    }
}

/* torch's pooling by the book, one output at a time */
static int64_t out_size(int64_t in, int k, int s, int p, int d, int ceil_mode)
{
    int64_t num = in + 2 * p - (int64_t)d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
    int64_t out = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
    if (ceil_mode && (out - 1) * s >= in + p)
        out--;
    return out;
}

static pthcv_tensor *pool_reference(pthcv_tensor *x, const pthcv_pool2d_params *p)
{
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t OH = out_size(H, p->kernel[0], p->stride[0], p->padding[0], p->dilation[0], p->ceil_mode);
    int64_t OW = out_size(W, p->kernel[1], p->stride[1], p->padding[1], p->dilation[1], p->ceil_mode);
    if (OH < 1 || OW < 1)
        return NULL;
    pthcv_tensor *y = pthcv_tensor_new(PTHCV_FLOAT32, 4, (int64_t[]){N, C, OH, OW});
    const float *xd = data(x);
    float *yd = data(y);
    for (int64_t pl = 0; pl < N * C; pl++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                const float *in = xd + pl * H * W;
                float r;
                if (p->kind == PTHCV_POOL_MAX) {
                    r = -INFINITY;
                    for (int ky = 0; ky < p->kernel[0]; ky++)
                        for (int kx = 0; kx < p->kernel[1]; kx++) {
                            int64_t ih = oh * p->stride[0] - p->padding[0] + ky * p->dilation[0];
                            int64_t iw = ow * p->stride[1] - p->padding[1] + kx * p->dilation[1];
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                continue;
                            float v = in[ih * W + iw];
                            if (v > r || isnan(v))
                                r = v;
                        }
                } else {
                    int64_t h0 = oh * p->stride[0] - p->padding[0], w0 = ow * p->stride[1] - p->padding[1];
                    int64_t h1 = h0 + p->kernel[0], w1 = w0 + p->kernel[1];
                    if (h1 > H + p->padding[0]) h1 = H + p->padding[0];
                    if (w1 > W + p->padding[1]) w1 = W + p->padding[1];
                    int64_t pool = (h1 - h0) * (w1 - w0);
                    if (h0 < 0) h0 = 0;
                    if (w0 < 0) w0 = 0;
                    if (h1 > H) h1 = H;
                    if (w1 > W) w1 = W;
                    float s = 0;
                    for (int64_t ih = h0; ih < h1; ih++)
                        for (int64_t iw = w0; iw < w1; iw++)
                            s += in[ih * W + iw];
                    int64_t div = p->divisor_override ? p->divisor_override
                                  : p->count_include_pad ? pool : (h1 - h0) * (w1 - w0);
                    r = (h0 >= h1 || w0 >= w1) ? 0.0f : s / (float)div;
                }
                yd[(pl * OH + oh) * OW + ow] = r;
            }
    return y;
}

static void battery_pool(void)
{
    static const int channels[] = {1, 3, 7, 17, 33};
    for (int iter = 0; iter < 400; iter++) {
        pthcv_pool2d_params p = {0};
        p.kind = iter & 1 ? PTHCV_POOL_AVG : PTHCV_POOL_MAX;
        for (int i = 0; i < 2; i++) {
            p.kernel[i] = irand(1, 5);
            p.stride[i] = irand(1, 3);
            p.padding[i] = irand(0, p.kernel[i] / 2);
            p.dilation[i] = p.kind == PTHCV_POOL_MAX ? irand(1, 2) : 1;
        }
        p.ceil_mode = irand(0, 1);
        p.count_include_pad = irand(0, 1);
        p.divisor_override = p.kind == PTHCV_POOL_AVG && irand(0, 5) == 0 ? 3 : 0;
        int64_t shape[4] = {irand(1, 2), channels[irand(0, 4)], irand(1, 13), irand(1, 40)};
        pthcv_tensor *x = random_tensor(4, shape);
        if (iter % 7 == 0)
            data(x)[irand(0, (int)x->numel - 1)] = NAN;
        pthcv_tensor *want = pool_reference(x, &p), *got = pthcv_pool2d(x, &p);
        char why[200];
        if (!want) {
            CHECK(got == NULL, "pool %d: output size < 1 accepted", iter);
        } else {
            CHECK(got && close_to(got, want, 0, why, sizeof why),
                  "pool %d (%s k%dx%d s%dx%d p%dx%d d%dx%d ceil %d cip %d div %d, x %lldx%lldx%lldx%lld): %s", iter,
                  p.kind ? "avg" : "max", p.kernel[0], p.kernel[1], p.stride[0], p.stride[1], p.padding[0],
                  p.padding[1], p.dilation[0], p.dilation[1], p.ceil_mode, p.count_include_pad, p.divisor_override,
                  (long long)shape[0], (long long)shape[1], (long long)shape[2], (long long)shape[3],
                  got ? why : pthcv_last_error());
        }
        keep(got);
        pthcv_tensor_release(x);
        pthcv_tensor_release(want);
        pthcv_tensor_release(got);
    }
    /* adaptive: global average against a double sum */
    for (int iter = 0; iter < 30; iter++) {
        int64_t shape[4] = {irand(1, 2), irand(1, 40), irand(1, 9), irand(1, 9)};
        pthcv_tensor *x = random_tensor(4, shape);
        pthcv_tensor *g = pthcv_adaptive_pool2d(x, PTHCV_POOL_AVG, 1, 1);
        int bad = !g;
        for (int64_t pl = 0; g && pl < shape[0] * shape[1]; pl++) {
            double s = 0;
            for (int64_t i = 0; i < shape[2] * shape[3]; i++)
                s += data(x)[pl * shape[2] * shape[3] + i];
            bad += fabs(data(g)[pl] - s / (double)(shape[2] * shape[3])) > 1e-6;
        }
        CHECK(!bad, "global average pooling %d: %d planes differ", iter, bad);
        keep(g);
        int oh = irand(1, 9), ow = irand(1, 9);
        pthcv_tensor *m = pthcv_adaptive_pool2d(x, iter & 1 ? PTHCV_POOL_MAX : PTHCV_POOL_AVG, oh, ow);
        CHECK(m && m->shape[2] == oh && m->shape[3] == ow, "adaptive pool %d: %s", iter, pthcv_last_error());
        keep(m);
        pthcv_tensor_release(x);
        pthcv_tensor_release(g);
        pthcv_tensor_release(m);
    }
}

/* conv_transpose2d as a gather: y[oh, ow] = sum over taps landing there */
static pthcv_tensor *convt_reference(pthcv_tensor *x, pthcv_tensor *w, pthcv_tensor *b, const int32_t *s,
                                     const int32_t *p, const int32_t *op, const int32_t *d, int g)
{
    int64_t N = x->shape[0], Cin = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t cog = w->shape[1], kh = w->shape[2], kw = w->shape[3], Cout = cog * g, cig = Cin / g;
    int64_t OH = (H - 1) * s[0] - 2 * p[0] + d[0] * (kh - 1) + op[0] + 1;
    int64_t OW = (W - 1) * s[1] - 2 * p[1] + d[1] * (kw - 1) + op[1] + 1;
    pthcv_tensor *y = pthcv_tensor_new(PTHCV_FLOAT32, 4, (int64_t[]){N, Cout, OH, OW});
    for (int64_t n = 0; n < N; n++)
        for (int64_t oc = 0; oc < Cout; oc++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double acc = b ? data(b)[oc] : 0;
                    int64_t gi = oc / cog;
                    for (int64_t ic = gi * cig; ic < (gi + 1) * cig; ic++)
                        for (int64_t ky = 0; ky < kh; ky++)
                            for (int64_t kx = 0; kx < kw; kx++) {
                                int64_t th = oh + p[0] - ky * d[0], tw = ow + p[1] - kx * d[1];
                                if (th < 0 || tw < 0 || th % s[0] || tw % s[1])
                                    continue;
                                int64_t ih = th / s[0], iw = tw / s[1];
                                if (ih >= H || iw >= W)
                                    continue;
                                acc += (double)data(x)[((n * Cin + ic) * H + ih) * W + iw]
                                       * data(w)[((ic * cog + oc % cog) * kh + ky) * kw + kx];
                            }
                    data(y)[((n * Cout + oc) * OH + oh) * OW + ow] = (float)acc;
                }
    return y;
}

static void battery_convt(void)
{
    for (int iter = 0; iter < 40; iter++) {
        int32_t s[2], p[2], op[2], d[2];
        int g = irand(1, 3);
        int64_t cin = g * irand(1, 3), cog = irand(1, 3), kh = irand(1, 4), kw = irand(1, 4);
        for (int i = 0; i < 2; i++) {
            s[i] = irand(1, 3);
            d[i] = irand(1, 2);
            p[i] = irand(0, 2);
            op[i] = irand(0, (s[i] > d[i] ? s[i] : d[i]) - 1);
        }
        int64_t xs[4] = {irand(1, 2), cin, irand(1, 7), irand(1, 9)};
        pthcv_tensor *x = random_tensor(4, xs);
        pthcv_tensor *w = random_tensor(SHAPE(cin, cog, kh, kw));
        pthcv_tensor *b = iter & 1 ? random_tensor(SHAPE(cog * g)) : NULL;
        int64_t oh = (xs[2] - 1) * s[0] - 2 * p[0] + d[0] * (kh - 1) + op[0] + 1;
        int64_t ow = (xs[3] - 1) * s[1] - 2 * p[1] + d[1] * (kw - 1) + op[1] + 1;
        pthcv_tensor *got = pthcv_conv_transpose2d(x, w, b, s, p, op, d, g);
        if (oh < 1 || ow < 1) {
            CHECK(got == NULL, "conv_transpose2d %d: empty output accepted", iter);
        } else {
            pthcv_tensor *want = convt_reference(x, w, b, s, p, op, d, g);
            char why[200];
            CHECK(got && close_to(got, want, 1e-5, why, sizeof why), "conv_transpose2d %d: %s", iter,
                  got ? why : pthcv_last_error());
            pthcv_tensor_release(want);
        }
        keep(got);
        pthcv_tensor_release(got);
        pthcv_tensor_release(x);
        pthcv_tensor_release(w);
        pthcv_tensor_release(b);
    }
}

static void battery_matmul(void)
{
    for (int iter = 0; iter < 30; iter++) {
        int64_t m = irand(1, 40), k = irand(1, 300), n = iter % 5 == 0 ? 1 : irand(1, 1100);
        int64_t batch = irand(1, 3);
        pthcv_tensor *a = random_tensor(SHAPE(batch, m, k)), *b = random_tensor(SHAPE(k, n));
        pthcv_tensor *c = pthcv_matmul(a, b);
        int bad = !c;
        for (int64_t t = 0; c && t < batch; t++)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j += 7) {
                    double s = 0, mag = 0;
                    for (int64_t q = 0; q < k; q++) {
                        double v = (double)data(a)[(t * m + i) * k + q] * data(b)[q * n + j];
                        s += v;
                        mag += fabs(v);
                    }
                    bad += fabs(data(c)[(t * m + i) * n + j] - s) > 1e-5 * mag + 1e-6;
                }
        CHECK(!bad, "matmul %d ([%lld, %lld, %lld] x [%lld, %lld]): %d elements off", iter, (long long)batch,
              (long long)m, (long long)k, (long long)k, (long long)n, bad);
        keep(c);
        pthcv_tensor_release(a);
        pthcv_tensor_release(b);
        pthcv_tensor_release(c);
    }
}

/* the remaining ops over odd shapes; checked against torch by the fixtures,
 * here for thread and build agreement */
static void battery_misc(void)
{
    static const int channels[] = {1, 3, 7, 17, 33};
    for (int iter = 0; iter < 20; iter++) {
        int64_t shape[4] = {irand(1, 2), channels[iter % 5], irand(1, 9), irand(1, 70)};
        pthcv_tensor *x = random_tensor(4, shape);
        pthcv_tensor *c1 = random_tensor(SHAPE(shape[1])), *c2 = random_tensor(SHAPE(shape[1]));
        pthcv_tensor *var = random_tensor(SHAPE(shape[1]));
        for (int i = 0; i < shape[1]; i++)
            data(var)[i] = fabsf(data(var)[i]) + 0.1f;
        pthcv_tensor *outs[32];
        int n = 0;
        outs[n++] = pthcv_batch_norm(x, c1, var, c2, c1, 1e-5);
        outs[n++] = pthcv_layer_norm(x, 2, NULL, NULL, 1e-5);
        outs[n++] = pthcv_group_norm(x, 1, c1, c2, 1e-5);
        for (int a = PTHCV_ACT_NONE; a <= PTHCV_ACT_CLAMP; a++)
            outs[n++] = pthcv_activate(x, &(pthcv_activation){a, a == PTHCV_ACT_CLAMP ? -0.5f : 0.1f, 0.7f});
        outs[n++] = pthcv_prelu(x, c1);
        outs[n++] = pthcv_softmax(x, iter % 4, 0);
        outs[n++] = pthcv_softmax(x, -1, 1);
        pthcv_tensor *col = pthcv_tensor_view(c1, 3, (int64_t[]){shape[1], 1, 1}, (int64_t[]){1, 1, 1}, 0);
        outs[n++] = pthcv_binary(x, col, PTHCV_BIN_MAX);
        pthcv_tensor_release(col);
        outs[n++] = pthcv_binary_scalar(x, 0.3, PTHCV_BIN_DIV, iter & 1);
        outs[n++] = pthcv_reduce(x, PTHCV_REDUCE_SUM, 2, (int32_t[]){0, 2}, 0);
        outs[n++] = pthcv_reduce(x, PTHCV_REDUCE_MEAN, 2, (int32_t[]){2, 3}, 1);
        outs[n++] = pthcv_reduce(x, PTHCV_REDUCE_MAX, 1, (int32_t[]){1}, 0);
        outs[n++] = pthcv_pad(x, 2, (int64_t[]){1, 2, 0, 1}, PTHCV_PAD_REPLICATE, 0);
        outs[n++] = pthcv_interpolate(x, 2 * (int32_t)shape[2] + 1, 3, PTHCV_INTERP_BILINEAR, iter & 1, 0, 0);
        outs[n++] = pthcv_cat(2, (pthcv_tensor *[]){x, x}, 3);
        for (int i = 0; i < n; i++) {
            CHECK(outs[i] != NULL, "misc %d, op %d: %s", iter, i, pthcv_last_error());
            keep(outs[i]);
            pthcv_tensor_release(outs[i]);
        }
        pthcv_tensor_release(x);
        pthcv_tensor_release(c1);
        pthcv_tensor_release(c2);
        pthcv_tensor_release(var);
    }
}

/* Runs the battery with 1 and with 3 threads; the results must be the same
 * bits. Leaves the results in `results`. */
static void battery(void)
{
    floats runs[2];
    for (int r = 0; r < 2; r++) {
        rng = 88172645463325252ull;
        results.n = 0;
        pthcv_set_num_threads(r == 0 ? 1 : 3);
        battery_pool();
        battery_convt();
        battery_matmul();
        battery_misc();
        runs[r] = results;
        results = (floats){0};
    }
    pthcv_set_num_threads(0);
    size_t diff = runs[0].n == runs[1].n ? 0 : 1;
    for (size_t i = 0; !diff && i < runs[0].n; i++)
        diff += !same_bits(runs[0].v[i], runs[1].v[i]);
    CHECK(diff == 0, "battery: 1 thread and 3 threads differ (%zu values)", diff);
    free(runs[1].v);
    results = runs[0];
}

/* ---- torch fixtures --------------------------------------------------------- */

typedef struct {
    const float *blob;
    int64_t nblob;
    char *fields[64];
    int nfields;
} fixture;

static const char *field(fixture *f, const char *key)
{
    size_t n = strlen(key);
    for (int i = 2; i < f->nfields; i++)
        if (strncmp(f->fields[i], key, n) == 0 && f->fields[i][n] == '=')
            return f->fields[i] + n + 1;
    return NULL;
}

static int ints(fixture *f, const char *key, int32_t *out, int max)
{
    const char *v = field(f, key);
    int n = 0;
    while (v && *v && n < max) {
        char *end;
        out[n++] = (int32_t)strtol(v, &end, 10);
        v = *end == ',' ? end + 1 : NULL;
    }
    return n;
}

static int32_t int_of(fixture *f, const char *key, int32_t dflt)
{
    int32_t v;
    return ints(f, key, &v, 1) ? v : dflt;
}

static double num(fixture *f, const char *key, int i, double dflt)
{
    const char *v = field(f, key);
    for (; v && i > 0; i--) {
        v = strchr(v, ',');
        if (v)
            v++;
    }
    return v ? strtod(v, NULL) : dflt;
}

/* "offset:AxBxC" into a tensor; NULL for "-" (absent) */
static pthcv_tensor *load(fixture *f, const char *spec)
{
    if (strcmp(spec, "-") == 0)
        return NULL;
    char *end;
    int64_t off = strtoll(spec, &end, 10), shape[PTHCV_MAX_DIMS];
    int nd = 0;
    const char *s = end + 1;
    while (*s && nd < PTHCV_MAX_DIMS) {
        shape[nd++] = strtoll(s, &end, 10);
        s = *end == 'x' ? end + 1 : end;
        if (end == s && *s != 'x')
            break;
    }
    pthcv_tensor *t = pthcv_tensor_new(PTHCV_FLOAT32, nd, shape);
    if (t && t->numel && off + t->numel <= f->nblob)
        memcpy(data(t), f->blob + off, (size_t)t->numel * sizeof(float));
    return t;
}

static pthcv_tensor *run_fixture(fixture *f, const char *op, pthcv_tensor **in, int nin)
{
    pthcv_tensor *x = nin > 0 ? in[0] : NULL;
    if (strcmp(op, "pool2d") == 0) {
        pthcv_pool2d_params p = {0};
        const char *kind = field(f, "kind");
        p.kind = kind && strcmp(kind, "avg") == 0 ? PTHCV_POOL_AVG : PTHCV_POOL_MAX;
        ints(f, "k", p.kernel, 2);
        ints(f, "s", p.stride, 2);
        ints(f, "p", p.padding, 2);
        ints(f, "d", p.dilation, 2);
        p.ceil_mode = int_of(f, "ceil", 0);
        p.count_include_pad = int_of(f, "cip", 1);
        p.divisor_override = int_of(f, "div", 0);
        return pthcv_pool2d(x, &p);
    }
    if (strcmp(op, "adaptive_pool2d") == 0) {
        int32_t size[2] = {0, 0};
        ints(f, "size", size, 2);
        const char *kind = field(f, "kind");
        return pthcv_adaptive_pool2d(x, kind && strcmp(kind, "avg") == 0 ? PTHCV_POOL_AVG : PTHCV_POOL_MAX,
                                     size[0], size[1]);
    }
    if (strcmp(op, "batch_norm") == 0)
        return pthcv_batch_norm(x, in[1], in[2], in[3], in[4], num(f, "eps", 0, 1e-5));
    if (strcmp(op, "layer_norm") == 0)
        return pthcv_layer_norm(x, int_of(f, "nd", 1), in[1], in[2], num(f, "eps", 0, 1e-5));
    if (strcmp(op, "group_norm") == 0)
        return pthcv_group_norm(x, int_of(f, "groups", 1), in[1], in[2], num(f, "eps", 0, 1e-5));
    if (strcmp(op, "activate") == 0) {
        pthcv_activation a = {int_of(f, "act", 0), (float)num(f, "alpha", 0, 0), (float)num(f, "beta", 0, 0)};
        return pthcv_activate(x, &a);
    }
    if (strcmp(op, "prelu") == 0)
        return pthcv_prelu(x, in[1]);
    if (strcmp(op, "softmax") == 0)
        return pthcv_softmax(x, int_of(f, "dim", -1), int_of(f, "log", 0));
    if (strcmp(op, "binary") == 0)
        return pthcv_binary(x, in[1], int_of(f, "op", 0));
    if (strcmp(op, "binary_scalar") == 0)
        return pthcv_binary_scalar(x, num(f, "s", 0, 0), int_of(f, "op", 0), int_of(f, "first", 0));
    if (strcmp(op, "cat") == 0)
        return pthcv_cat(nin, in, int_of(f, "dim", 0));
    if (strcmp(op, "pad") == 0) {
        int32_t p32[2 * PTHCV_MAX_DIMS];
        int64_t pads[2 * PTHCV_MAX_DIMS];
        int n = ints(f, "pads", p32, 2 * PTHCV_MAX_DIMS);
        for (int i = 0; i < n; i++)
            pads[i] = p32[i];
        return pthcv_pad(x, n / 2, pads, int_of(f, "mode", 0), num(f, "value", 0, 0));
    }
    if (strcmp(op, "reduce") == 0) {
        int32_t dims[PTHCV_MAX_DIMS];
        int n = ints(f, "dims", dims, PTHCV_MAX_DIMS);
        return pthcv_reduce(x, int_of(f, "op", 0), n, dims, int_of(f, "keepdim", 0));
    }
    if (strcmp(op, "matmul") == 0)
        return pthcv_matmul(x, in[1]);
    if (strcmp(op, "interpolate") == 0) {
        int32_t size[2] = {0, 0};
        ints(f, "size", size, 2);
        return pthcv_interpolate(x, size[0], size[1], int_of(f, "mode", 0), int_of(f, "ac", 0),
                                 num(f, "scale", 0, 0), num(f, "scale", 1, 0));
    }
    if (strcmp(op, "conv_transpose2d") == 0) {
        int32_t s[2] = {1, 1}, p[2] = {0, 0}, op2[2] = {0, 0}, d[2] = {1, 1};
        ints(f, "s", s, 2);
        ints(f, "p", p, 2);
        ints(f, "op", op2, 2);
        ints(f, "d", d, 2);
        return pthcv_conv_transpose2d(x, in[1], in[2], s, p, op2, d, int_of(f, "groups", 1));
    }
    printf("# unknown op %s in fixtures\n", op);
    return NULL;
}

static void fixtures(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/ops.bin", dir);
    FILE *fb = fopen(path, "rb");
    snprintf(path, sizeof path, "%s/ops.txt", dir);
    FILE *ft = fopen(path, "r");
    CHECK(fb && ft, "fixtures: cannot open %s/ops.txt and ops.bin", dir);
    if (!fb || !ft) {
        if (fb) fclose(fb);
        if (ft) fclose(ft);
        return;
    }
    fseek(fb, 0, SEEK_END);
    long size = ftell(fb);
    fseek(fb, 0, SEEK_SET);
    float *blob = malloc((size_t)size + 4);
    size_t got = fread(blob, 1, (size_t)size, fb);
    fclose(fb);
    fixture f = {.blob = blob, .nblob = (int64_t)got / 4};
    char line[8192];
    int cases = 0, before = failed;
    while (fgets(line, sizeof line, ft)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        f.nfields = 0;
        for (char *tok = strtok(line, " \n"); tok && f.nfields < 64; tok = strtok(NULL, " \n"))
            f.fields[f.nfields++] = tok;
        if (f.nfields < 3)
            continue;
        pthcv_tensor *in[32] = {0}, *want = NULL;
        int nin = 0, expect_err = 0;
        for (int i = 2; i < f.nfields; i++) {
            if (strncmp(f.fields[i], "in=", 3) == 0 && nin < 32)
                in[nin++] = load(&f, f.fields[i] + 3);
            else if (strncmp(f.fields[i], "out=", 4) == 0)
                want = load(&f, f.fields[i] + 4);
            else if (strcmp(f.fields[i], "err") == 0)
                expect_err = 1;
        }
        double tol = num(&f, "tol", 0, 0);
        pthcv_tensor *y = run_fixture(&f, f.fields[0], in, nin);
        char why[300] = "";
        if (expect_err)
            CHECK(y == NULL, "%s %s (%s): torch refuses, pthcv accepted", f.fields[0], f.fields[1], dir);
        else
            CHECK(y && want && close_to(y, want, tol, why, sizeof why), "%s %s (%s): %s", f.fields[0], f.fields[1],
                  dir, y ? why : pthcv_last_error());
        cases++;
        pthcv_tensor_release(y);
        pthcv_tensor_release(want);
        for (int i = 0; i < nin; i++)
            pthcv_tensor_release(in[i]);
    }
    fclose(ft);
    free(blob);
    printf("# %s: %d torch cases, %d failed\n", dir, cases, failed - before);
    CHECK(cases > 100, "fixtures in %s: only %d cases", dir, cases);
}

/* ---- argument errors, strided inputs ---------------------------------------- */

static int error_has(const char *word) { return strstr(pthcv_last_error(), word) != NULL; }

static void errors(void)
{
    pthcv_tensor *x = random_tensor(SHAPE(2, 3, 4, 5));
    pthcv_tensor *i64 = pthcv_tensor_new(PTHCV_INT64, 2, (int64_t[]){2, 3});
    pthcv_tensor *v4 = random_tensor(SHAPE(4));
    pthcv_activation relu = {PTHCV_ACT_RELU, 0, 0};

    CHECK(!pthcv_activate(i64, &relu) && error_has("float32") && error_has("int64"), "dtype named: %s",
          pthcv_last_error());
    CHECK(!pthcv_activate(NULL, &relu) && pthcv_last_status() == PTHCV_ERR_ARG, "NULL input");
    pthcv_tensor *m34 = random_tensor(SHAPE(3, 4));
    CHECK(pthcv_binary(x, v4, PTHCV_BIN_ADD) == NULL, "[.., 5] + [4] must fail");
    CHECK(!pthcv_binary(x, m34, PTHCV_BIN_ADD) && error_has("[2, 3, 4, 5]") && error_has("[3, 4]"),
          "broadcast error names shapes: %s", pthcv_last_error());
    CHECK(!pthcv_batch_norm(x, v4, v4, NULL, NULL, 1e-5) && error_has("running_mean") && error_has("[4]"),
          "batch norm channel count: %s", pthcv_last_error());
    CHECK(!pthcv_group_norm(x, 2, NULL, NULL, 1e-5) && error_has("groups"), "group count: %s", pthcv_last_error());
    CHECK(!pthcv_softmax(x, 4, 0) && error_has("dimension 4"), "softmax dim: %s", pthcv_last_error());
    CHECK(!pthcv_matmul(x, x) && error_has("[2, 3, 4, 5]"), "matmul shapes: %s", pthcv_last_error());
    CHECK(!pthcv_cat(2, (pthcv_tensor *[]){x, v4}, 0) && error_has("[4]"), "cat shapes: %s", pthcv_last_error());
    CHECK(!pthcv_pad(x, 1, (int64_t[]){5, 0}, PTHCV_PAD_REFLECT, 0) && error_has("reflect"), "reflect pad: %s",
          pthcv_last_error());
    CHECK(!pthcv_reduce(x, PTHCV_REDUCE_SUM, 2, (int32_t[]){1, -3}, 0) && error_has("twice"), "duplicate dims: %s",
          pthcv_last_error());
    pthcv_pool2d_params avg_dil = {PTHCV_POOL_AVG, {2, 2}, {1, 1}, {0, 0}, {2, 2}, 0, 1, 0};
    CHECK(!pthcv_pool2d(x, &avg_dil) && error_has("dilation"), "avg pool dilation: %s", pthcv_last_error());
    pthcv_tensor *w3 = random_tensor(SHAPE(3, 2, 3, 3));
    CHECK(!pthcv_conv_transpose2d(x, w3, NULL, (int32_t[]){1, 1}, (int32_t[]){0, 0},
                                  (int32_t[]){1, 1}, (int32_t[]){1, 1}, 1)
              && error_has("output_padding"), "output padding >= stride and dilation: %s", pthcv_last_error());

    /* strided inputs: a transposed view gives what its contiguous copy gives */
    pthcv_tensor *t = random_tensor(SHAPE(5, 7));
    pthcv_tensor *tt = pthcv_tensor_view(t, 2, (int64_t[]){7, 5}, (int64_t[]){1, 7}, 0);
    pthcv_tensor *tc = pthcv_tensor_contiguous(tt);
    pthcv_tensor *a1 = pthcv_softmax(tt, 0, 0), *a2 = pthcv_softmax(tc, 0, 0);
    char why[200];
    CHECK(a1 && a2 && close_to(a1, a2, 0, why, sizeof why), "softmax of a view");
    pthcv_tensor *b1 = pthcv_binary(tt, tc, PTHCV_BIN_SUB);
    int zero = b1 != NULL;
    for (int64_t i = 0; b1 && i < b1->numel; i++)
        zero &= data(b1)[i] == 0.0f;
    CHECK(zero, "view - its copy = 0");
    pthcv_tensor *p1 = pthcv_pad(tt, 1, (int64_t[]){1, 1}, PTHCV_PAD_CIRCULAR, 0), *p2 = pthcv_pad(tc, 1, (int64_t[]){1, 1}, PTHCV_PAD_CIRCULAR, 0);
    CHECK(p1 && p2 && close_to(p1, p2, 0, why, sizeof why), "pad of a view");
    pthcv_tensor *c1 = pthcv_cat(2, (pthcv_tensor *[]){tt, tc}, 1), *c2 = pthcv_cat(2, (pthcv_tensor *[]){tc, tc}, 1);
    CHECK(c1 && c2 && close_to(c1, c2, 0, why, sizeof why), "cat of a view");

    /* 0-d and empty */
    pthcv_tensor *s = tensor(0, NULL, (float[]){2.0f});
    pthcv_tensor *sm = pthcv_softmax(s, 0, 0), *sum = pthcv_reduce(s, PTHCV_REDUCE_SUM, 0, NULL, 0);
    CHECK(sm && sm->ndim == 0 && data(sm)[0] == 1.0f, "softmax of a 0-d tensor");
    CHECK(sum && sum->ndim == 0 && data(sum)[0] == 2.0f, "sum of a 0-d tensor");
    pthcv_tensor *dotv = pthcv_matmul(v4, v4);
    CHECK(dotv && dotv->ndim == 0, "1-d @ 1-d is 0-d");
    pthcv_tensor *e = pthcv_tensor_new(PTHCV_FLOAT32, 2, (int64_t[]){0, 3});
    pthcv_tensor *es = pthcv_reduce(e, PTHCV_REDUCE_SUM, 1, (int32_t[]){0}, 0);
    CHECK(es && es->numel == 3 && data(es)[0] == 0.0f, "sum over an empty dimension is 0");
    pthcv_tensor *ea = pthcv_activate(e, &relu);
    CHECK(ea && ea->numel == 0, "activation of an empty tensor");

    pthcv_tensor *all[] = {x, i64, v4, m34, w3, t, tt, tc, a1, a2, b1, p1, p2, c1, c2, s, sm, sum, dotv, e, es, ea};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        pthcv_tensor_release(all[i]);
}

int main(int argc, char **argv)
{
    const char *dump = NULL, *compare = NULL;
    const char *dirs[16];
    int ndirs = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dump") == 0 && i + 1 < argc)
            dump = argv[++i];
        else if (strcmp(argv[i], "--compare") == 0 && i + 1 < argc)
            compare = argv[++i];
        else if (ndirs < 15)
            dirs[ndirs++] = argv[i];
    }
    battery();
    if (dump) {
        FILE *f = fopen(dump, "wb");
        CHECK(f && fwrite(results.v, sizeof(float), results.n, f) == results.n, "cannot write %s", dump);
        if (f)
            fclose(f);
    }
    if (compare) {
        FILE *f = fopen(compare, "rb");
        size_t n = 0, diff = 0, first = (size_t)-1;
        float v;
        while (f && fread(&v, sizeof v, 1, f) == 1) {
            if (n >= results.n || !same_bits(v, results.v[n])) {
                diff++;
                if (first == (size_t)-1)
                    first = n;
            }
            n++;
        }
        if (f)
            fclose(f);
        CHECK(f && n == results.n && diff == 0,
              "SIMD and scalar builds differ: %zu of %zu values (first at %zd), %zu in the other build", diff,
              results.n, (ssize_t)first, n);
    }
    for (int i = 0; i < ndirs; i++)
        fixtures(dirs[i]);
    errors();
    free(results.v);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
