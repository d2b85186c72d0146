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

static float frand(void) /* uniform in [-2, 2) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (4.0 / 16777216.0) - 2.0);
}

static int irand(int lo, int hi) /* in [lo, hi] */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (int)((rng >> 33) % (uint64_t)(hi - lo + 1));
}

static pthcv_tensor *tensor(int ndim, const int64_t *shape, const float *vals)
{
    pthcv_tensor *t = pthcv_tensor_new(PTHCV_FLOAT32, ndim, shape);
    if (t && vals && t->numel) memcpy(pthcv_tensor_data(t), vals, (size_t)t->numel * sizeof(float));
    return t;
}

static pthcv_tensor *random_tensor(int ndim, const int64_t *shape)
{
    pthcv_tensor *t = pthcv_tensor_new(PTHCV_FLOAT32, ndim, shape);
    float *p = pthcv_tensor_data(t);
    for (int64_t i = 0; i < t->numel; i++) p[i] = frand();
    return t;
}

#define SHAPE(...) (sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), ((int64_t[]){__VA_ARGS__})

static float *data(pthcv_tensor *t) { return pthcv_tensor_data(t); }

static int same_bits(float a, float b)
{
    if (a != a && b != b) return 1;
    return memcmp(&a, &b, sizeof a) == 0;
}

static int same_shape(const pthcv_tensor *a, const pthcv_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
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
        if (isfinite(w[i]) && fabs(w[i]) > scale) scale = fabs(w[i]);
    if (scale == 0) scale = 1;
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

static floats results; /* every battery output, in order */

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
    if (ceil_mode && (out - 1) * s >= in + p) out--;
    return out;
}

static pthcv_tensor *pool_reference(pthcv_tensor *x, const pthcv_pool2d_params *p)
{
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t OH = out_size(H, p->kernel[0], p->stride[0], p->padding[0], p->dilation[0], p->ceil_mode);
    int64_t OW = out_size(W, p->kernel[1], p->stride[1], p->padding[1], p->dilation[1], p->ceil_mode);
    if (OH < 1 || OW < 1) return NULL;
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
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            float v = in[ih * W + iw];
                            if (v > r || isnan(v)) r = v;
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
                        for (int64_t iw = w0; iw < w1; iw++) s += in[ih * W + iw];
                    int64_t div = p->divisor_override ? p->divisor_override
                        : p->count_include_pad        ? pool
                                                      : (h1 - h0) * (w1 - w0);
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
        if (iter % 7 == 0) data(x)[irand(0, (int)x->numel - 1)] = NAN;
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
    /* max over values that tie (-0.0 and +0.0: torch keeps the first of a
     * window, row by row) and NaN / inf taps (the last NaN wins; a step of
     * the vector path whose tap sum is NaN reruns with the NaN rule), on
     * rows wide enough for full 8- and 16-lane steps and their tails */
    static const float ties[] = {-0.0f, 0.0f, -0.0f, 0.0f, 1.0f, -1.0f, INFINITY, -INFINITY, NAN};
    for (int iter = 0; iter < 120; iter++) {
        pthcv_pool2d_params p = {0};
        p.kind = PTHCV_POOL_MAX;
        for (int i = 0; i < 2; i++) {
            p.kernel[i] = irand(1, 4);
            p.stride[i] = irand(1, 3);
            p.padding[i] = irand(0, p.kernel[i] / 2);
            p.dilation[i] = irand(1, 2);
        }
        p.ceil_mode = irand(0, 1);
        int64_t shape[4] = {1, channels[irand(0, 4)], irand(1, 9), irand(1, 75)};
        pthcv_tensor *x = random_tensor(4, shape);
        int spread = iter % 3 == 0 ? 9 : iter % 3 == 1 ? 4 : 8; /* zeros only; with +-1; all but NaN */
        for (int64_t i = 0; i < x->numel; i++) data(x)[i] = ties[irand(0, spread - 1)];
        if (iter % 5 == 0) data(x)[irand(0, (int)x->numel - 1)] = -NAN;
        pthcv_tensor *want = pool_reference(x, &p), *got = pthcv_pool2d(x, &p);
        char why[200];
        if (want)
            CHECK(got && close_to(got, want, 0, why, sizeof why),
                  "pool ties %d (k%dx%d s%dx%d p%dx%d d%dx%d ceil %d, x %lldx%lldx%lld): %s", iter, p.kernel[0],
                  p.kernel[1], p.stride[0], p.stride[1], p.padding[0], p.padding[1], p.dilation[0], p.dilation[1],
                  p.ceil_mode, (long long)shape[1], (long long)shape[2], (long long)shape[3],
                  got ? why : pthcv_last_error());
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
            for (int64_t i = 0; i < shape[2] * shape[3]; i++) s += data(x)[pl * shape[2] * shape[3] + i];
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
                                if (th < 0 || tw < 0 || th % s[0] || tw % s[1]) continue;
                                int64_t ih = th / s[0], iw = tw / s[1];
                                if (ih >= H || iw >= W) continue;
                                acc += (double)data(x)[((n * Cin + ic) * H + ih) * W + iw] *
                                    data(w)[((ic * cog + oc % cog) * kh + ky) * kw + kx];
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
        for (int i = 0; i < shape[1]; i++) data(var)[i] = fabsf(data(var)[i]) + 0.1f;
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

/* ---- elementwise math, comparisons, where, max/sort/gather (ops_math*.c) ---- */

/* results of any dtype kept as float32 (int64 indices and bools are exact) */
static void keep_any(pthcv_tensor *t)
{
    pthcv_tensor *f = t && t->dtype != PTHCV_FLOAT32 ? pthcv_tensor_to(t, PTHCV_FLOAT32) : NULL;
    keep(f ? f : t);
    pthcv_tensor_release(f);
}

/* random values with NaN, infinities, signed zeros, rounding ties,
 * subnormals and the edges of exp's range sprinkled in */
static pthcv_tensor *special_tensor(int ndim, const int64_t *shape, float scale)
{
    static const float specials[] = {NAN,    INFINITY, -INFINITY, 0.0f,      -0.0f,    0.5f,     -0.5f,  2.5f, -1.5f,
                                     1e-40f, -1e-39f,  3e38f,     88.72283f, 88.7229f, -103.97f, -87.5f, 1.0f};
    pthcv_tensor *t = random_tensor(ndim, shape);
    float *p = data(t);
    for (int64_t i = 0; i < t->numel; i++) {
        p[i] *= scale;
        if (irand(0, 4) == 0) p[i] = specials[irand(0, (int)(sizeof specials / sizeof specials[0]) - 1)];
    }
    return t;
}

/* exp and log must be the correctly rounded values, here glibc's long double
 * ones rounded (log differs on 3 of the 2^32 floats, none drawn here); the
 * others exact */
static float unary_reference(int op, float v)
{
    switch (op) {
    case PTHCV_MATH_EXP: return (float)expl((long double)v);
    case PTHCV_MATH_LOG: return (float)logl((long double)v);
    case PTHCV_MATH_SQRT: return sqrtf(v);
    case PTHCV_MATH_RSQRT: return 1.0f / sqrtf(v);
    case PTHCV_MATH_ABS: return fabsf(v);
    case PTHCV_MATH_FLOOR: return floorf(v);
    case PTHCV_MATH_CEIL: return ceilf(v);
    case PTHCV_MATH_ROUND: return nearbyintf(v);
    case PTHCV_MATH_SIGN: return (float)((v > 0.0f) - (v < 0.0f));
    default: return 1.0f / v;
    }
}

static float pow_reference(float v, double e)
{
    if (e == 0.0) return 1.0f;
    if (e == 1.0) return v;
    if (e == 0.5) return sqrtf(v);
    if (e == -0.5) return 1.0f / sqrtf(v);
    if (e == -1.0) return 1.0f / v;
    if (e == 2.0) return v * v;
    if (e == 3.0) return v * v * v;
    if (e == -2.0) return 1.0f / (v * v);
    return (float)pow((double)v, (double)(float)e);
}

static void battery_unary(void)
{
    static const int sizes[] = {1, 3, 7, 17, 33};
    static const double exps[] = {0.0, 1.0, 0.5, -0.5, -1.0, 2.0, 3.0, -2.0, 1.7, -0.3};
    for (int iter = 0; iter < 30; iter++) {
        int64_t shape[3] = {sizes[irand(0, 4)], sizes[irand(0, 4)], irand(1, 300)};
        pthcv_tensor *x = special_tensor(3, shape, iter % 3 ? 4.0f : 60.0f);
        for (int op = PTHCV_MATH_EXP; op <= PTHCV_MATH_RECIPROCAL; op++) {
            pthcv_tensor *y = pthcv_unary(x, op);
            int64_t bad = y ? 0 : -1;
            for (int64_t i = 0; y && i < y->numel; i++) bad += !same_bits(data(y)[i], unary_reference(op, data(x)[i]));
            CHECK(bad == 0, "unary %d on %lldx%lldx%lld: %lld values differ from the reference (%s)", op,
                  (long long)shape[0], (long long)shape[1], (long long)shape[2], (long long)bad,
                  y ? "" : pthcv_last_error());
            keep(y);
            pthcv_tensor_release(y);
        }
        double e = exps[iter % 10];
        pthcv_tensor *y = pthcv_pow_scalar(x, e);
        int64_t bad = y ? 0 : -1;
        for (int64_t i = 0; y && i < y->numel; i++) bad += !same_bits(data(y)[i], pow_reference(data(x)[i], e));
        CHECK(bad == 0, "pow_scalar %g: %lld values differ", e, (long long)bad);
        keep(y);
        pthcv_tensor_release(y);
        /* a strided view gives what its contiguous copy gives */
        pthcv_tensor *v = pthcv_tensor_view(x, 2, (int64_t[]){shape[2], shape[0] * shape[1]}, (int64_t[]){1, shape[2]},
                                            0);
        pthcv_tensor *vc = pthcv_tensor_contiguous(v);
        pthcv_tensor *a = pthcv_unary(v, PTHCV_MATH_EXP), *b = pthcv_unary(vc, PTHCV_MATH_EXP);
        char why[200];
        CHECK(a && b && close_to(a, b, 0, why, sizeof why), "exp of a transposed view: %s", a && b ? why : "failed");
        pthcv_tensor *all[] = {x, v, vc, a, b};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pthcv_tensor_release(all[i]);
    }
}

/* the element of t (aligned right under an ndim-d index) that broadcasting picks */
static int64_t broadcast_offset(const pthcv_tensor *t, int ndim, const int64_t *idx)
{
    int64_t off = 0;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] != 1) off += idx[d + ndim - t->ndim] * t->stride[d];
    return off;
}

/* the multi-index of flat position i in shape */
static void unflatten(int64_t i, int ndim, const int64_t *shape, int64_t *idx)
{
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
}

/* two shapes that broadcast: one of them gets size-1 dims or fewer dims */
static void broadcast_pair(int64_t *sa, int *na, int64_t *sb, int *nb)
{
    static const int sizes[] = {1, 3, 7, 17, 33};
    *na = irand(0, 3);
    *nb = irand(0, 3);
    int n = *na > *nb ? *na : *nb;
    for (int d = 0; d < n; d++) {
        int64_t s = sizes[irand(0, 4)];
        int pick = irand(0, 2);
        if (d >= n - *na) sa[d - (n - *na)] = pick == 1 ? 1 : s;
        if (d >= n - *nb) sb[d - (n - *nb)] = pick == 2 ? 1 : s;
    }
}

static int compare_reference(int op, float u, float v)
{
    switch (op) {
    case PTHCV_CMP_EQ: return u == v;
    case PTHCV_CMP_NE: return u != v;
    case PTHCV_CMP_LT: return u < v;
    case PTHCV_CMP_LE: return u <= v;
    case PTHCV_CMP_GT: return u > v;
    default: return u >= v;
    }
}

static void battery_broadcast(void)
{
    for (int iter = 0; iter < 60; iter++) {
        int64_t sa[3], sb[3];
        int na, nb;
        broadcast_pair(sa, &na, sb, &nb);
        pthcv_tensor *a = special_tensor(na, sa, 2.0f), *b = special_tensor(nb, sb, 2.0f);
        for (int64_t i = 0; i < b->numel; i++) /* ties */
            if (i < a->numel && irand(0, 3) == 0) data(b)[i] = data(a)[i];
        int op = iter % 6;
        pthcv_tensor *m = pthcv_compare(a, b, op), *p = pthcv_pow(a, b);
        int ok = m && p && m->dtype == PTHCV_BOOL;
        int64_t idx[PTHCV_MAX_DIMS];
        for (int64_t i = 0; ok && i < m->numel; i++) {
            unflatten(i, m->ndim, m->shape, idx);
            float u = data(a)[broadcast_offset(a, m->ndim, idx)], v = data(b)[broadcast_offset(b, m->ndim, idx)];
            ok = ((unsigned char *)pthcv_tensor_data(m))[i] == compare_reference(op, u, v) &&
                same_bits(data(p)[i], (float)pow((double)u, (double)v));
        }
        CHECK(ok, "compare %d / pow of %d-d and %d-d tensors: %s", op, na, nb,
              m && p ? "values differ" : pthcv_last_error());
        keep_any(m);
        keep(p);
        /* where: the condition's shape, with a third shape that broadcasts against it */
        pthcv_tensor *c = pthcv_compare(a, b, PTHCV_CMP_GT);
        int64_t so[PTHCV_MAX_DIMS];
        int no = c ? irand(0, c->ndim) : 0;
        for (int d = 0; d < no; d++) so[d] = irand(0, 1) ? 1 : c->shape[c->ndim - no + d];
        pthcv_tensor *other = random_tensor(no, so), *w = c ? pthcv_where(c, a, other) : NULL;
        ok = w != NULL;
        for (int64_t i = 0; ok && i < w->numel; i++) {
            unflatten(i, w->ndim, w->shape, idx);
            int cv = ((unsigned char *)pthcv_tensor_data(c))[broadcast_offset(c, w->ndim, idx)];
            float want = cv ? data(a)[broadcast_offset(a, w->ndim, idx)]
                            : data(other)[broadcast_offset(other, w->ndim, idx)];
            ok = same_bits(data(w)[i], want);
        }
        CHECK(ok, "where %d: %s", iter, w ? "values differ" : pthcv_last_error());
        keep(w);
        pthcv_tensor *all[] = {a, b, m, p, c, other, w};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pthcv_tensor_release(all[i]);
    }
}

/* x[outer, D, inner] seen at (o, d, j) */
static float at3(const pthcv_tensor *x, int64_t size, int64_t inner, int64_t o, int64_t d, int64_t j)
{
    return data((pthcv_tensor *)x)[(o * size + d) * inner + j];
}

/* stable order: NaN larger than everything */
static int sorts_before(float a, float b, int desc)
{
    return desc ? (a > b || (a != a && b == b)) : (a < b || (a == a && b != b));
}

static void battery_index(void)
{
    static const int sizes[] = {1, 3, 7, 17, 33};
    for (int iter = 0; iter < 40; iter++) {
        int nd = irand(1, 3);
        int64_t shape[3];
        for (int d = 0; d < nd; d++) shape[d] = d == nd - 1 && iter % 4 == 0 ? irand(40, 300) : sizes[irand(0, 4)];
        pthcv_tensor *x = special_tensor(nd, shape, 3.0f);
        for (int64_t i = 0; i < x->numel; i++) /* many ties */
            if (data(x)[i] == data(x)[i] && fabsf(data(x)[i]) < 10) data(x)[i] = nearbyintf(data(x)[i]);
        int dim = irand(-nd, nd - 1), d = dim < 0 ? dim + nd : dim, base = iter & 1, desc = irand(0, 1);
        int64_t outer = 1, size = shape[d], inner = 1;
        for (int i = 0; i < nd; i++) {
            if (i < d) outer *= shape[i];
            if (i > d) inner *= shape[i];
        }
        pthcv_tensor *mv, *mk, *sv, *sk;
        int st1 = pthcv_max_dim(x, dim, iter & 2, iter & 4, base, &mv, &mk);
        int st2 = pthcv_sort(x, dim, desc, base, &sv, &sk);
        int ok = st1 == PTHCV_OK && st2 == PTHCV_OK;
        for (int64_t o = 0; ok && o < outer; o++)
            for (int64_t j = 0; ok && j < inner; j++) {
                /* max / min: the first NaN, else the first best */
                int64_t best = 0;
                for (int64_t q = 1; q < size; q++) {
                    float v = at3(x, size, inner, o, q, j), m = at3(x, size, inner, o, best, j);
                    if (m == m && (v != v || (iter & 4 ? v < m : v > m))) best = q;
                }
                ok = same_bits(data(mv)[o * inner + j], at3(x, size, inner, o, best, j)) &&
                    ((int64_t *)pthcv_tensor_data(mk))[o * inner + j] == best + base;
                /* sort: every element's index points at its value, in order */
                const int64_t *k = pthcv_tensor_data(sk);
                for (int64_t q = 0; ok && q < size; q++) {
                    int64_t at = (o * size + q) * inner + j, i = k[at] - base;
                    ok = i >= 0 && i < size && same_bits(data(sv)[at], at3(x, size, inner, o, i, j));
                    if (ok && q > 0) {
                        float prev = data(sv)[at - inner], cur = data(sv)[at];
                        int64_t pi = k[at - inner] - base;
                        ok = !sorts_before(cur, prev, desc) && (sorts_before(prev, cur, desc) || pi < i);
                    }
                }
            }
        CHECK(ok, "max_dim / sort %d (%d-d, dim %d, base %d, descending %d): %s", iter, nd, dim, base, desc,
              st1 || st2 ? pthcv_last_error() : "values differ");
        keep(mv);
        keep_any(mk);
        keep(sv);
        keep_any(sk);
        /* gather with the sort's indices gives the sorted values; index_select of one line */
        pthcv_tensor *g = pthcv_gather(x, dim, sk, base);
        char why[200];
        CHECK(g && close_to(g, sv, 0, why, sizeof why), "gather of the sort's indices: %s",
              g ? why : pthcv_last_error());
        int64_t pick[3] = {size - 1, 0, size / 2};
        pthcv_tensor *k3 = pthcv_tensor_new(PTHCV_INT64, 1, (int64_t[]){3});
        for (int i = 0; i < 3; i++) ((int64_t *)pthcv_tensor_data(k3))[i] = pick[i] + base;
        pthcv_tensor *s = pthcv_index_select(x, dim, k3, base);
        ok = s != NULL;
        for (int64_t o = 0; ok && o < outer; o++)
            for (int64_t q = 0; q < 3; q++)
                for (int64_t j = 0; ok && j < inner; j++)
                    ok = same_bits(data(s)[(o * 3 + q) * inner + j], at3(x, size, inner, o, pick[q], j));
        CHECK(ok, "index_select %d: %s", iter, s ? "values differ" : pthcv_last_error());
        keep(g);
        keep(s);
        pthcv_tensor *all[] = {x, mv, mk, sv, sk, g, k3, s};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pthcv_tensor_release(all[i]);
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
        battery_unary();
        battery_broadcast();
        battery_index();
        runs[r] = results;
        results = (floats){0};
    }
    pthcv_set_num_threads(0);
    size_t diff = runs[0].n == runs[1].n ? 0 : 1;
    for (size_t i = 0; !diff && i < runs[0].n; i++) diff += !same_bits(runs[0].v[i], runs[1].v[i]);
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
        if (strncmp(f->fields[i], key, n) == 0 && f->fields[i][n] == '=') return f->fields[i] + n + 1;
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
        if (v) v++;
    }
    return v ? strtod(v, NULL) : dflt;
}

/* "offset:AxBxC[:dtype]" into a tensor (stored as float32, converted to
 * dtype); NULL for "-" (absent) */
static pthcv_tensor *load(fixture *f, const char *spec)
{
    if (strcmp(spec, "-") == 0) return NULL;
    char *end;
    int64_t off = strtoll(spec, &end, 10), shape[PTHCV_MAX_DIMS];
    int nd = 0;
    const char *s = end + 1;
    while (*s && *s != ':' && nd < PTHCV_MAX_DIMS) {
        shape[nd++] = strtoll(s, &end, 10);
        s = *end == 'x' ? end + 1 : end;
        if (end == s && *s != 'x') break;
    }
    pthcv_tensor *t = pthcv_tensor_new(PTHCV_FLOAT32, nd, shape);
    if (t && t->numel && off + t->numel <= f->nblob) memcpy(data(t), f->blob + off, (size_t)t->numel * sizeof(float));
    int dtype = *s == ':' ? pthcv_dtype_from_name(s + 1) : PTHCV_FLOAT32;
    if (t && dtype != PTHCV_FLOAT32) {
        pthcv_tensor *c = dtype >= 0 ? pthcv_tensor_to(t, dtype) : NULL;
        pthcv_tensor_release(t);
        t = c;
    }
    return t;
}

/* the ops of ops_math*.c; *second: the indices of max_dim and sort */
static pthcv_tensor *run_math_fixture(fixture *f, const char *op, pthcv_tensor **in, pthcv_tensor **second)
{
    pthcv_tensor *x = in[0], *y = NULL;
    if (strcmp(op, "unary") == 0) return pthcv_unary(x, int_of(f, "op", 0));
    if (strcmp(op, "pow_scalar") == 0) return pthcv_pow_scalar(x, num(f, "e", 0, 0));
    if (strcmp(op, "pow") == 0) return pthcv_pow(x, in[1]);
    if (strcmp(op, "compare") == 0) return pthcv_compare(x, in[1], int_of(f, "op", 0));
    if (strcmp(op, "logical_not") == 0) return pthcv_logical_not(x);
    if (strcmp(op, "where") == 0) return pthcv_where(x, in[1], in[2]);
    if (strcmp(op, "gather") == 0) return pthcv_gather(x, int_of(f, "dim", 0), in[1], 0);
    if (strcmp(op, "index_select") == 0) return pthcv_index_select(x, int_of(f, "dim", 0), in[1], 0);
    if (strcmp(op, "max_dim") == 0)
        pthcv_max_dim(x, int_of(f, "dim", 0), int_of(f, "keepdim", 0), int_of(f, "min", 0), 0, &y, second);
    else if (strcmp(op, "sort") == 0) pthcv_sort(x, int_of(f, "dim", -1), int_of(f, "descending", 0), 0, &y, second);
    else printf("# unknown op %s in fixtures\n", op);
    return y;
}

/* got vs want of any dtype: the same dtype, then as float32 (exact for
 * bools and small integers); ulp > 0: each element within ulp units in the
 * last place of want instead of tol */
static int result_matches(pthcv_tensor *got, pthcv_tensor *want, double tol, int ulp, char *why, size_t cap)
{
    if (!got || !want) {
        snprintf(why, cap, "%s", got ? "no result expected" : pthcv_last_error());
        return 0;
    }
    if (got->dtype != want->dtype) {
        snprintf(why, cap, "dtype %s, want %s", pthcv_dtype_name(got->dtype), pthcv_dtype_name(want->dtype));
        return 0;
    }
    if (ulp == 0 && got->dtype == PTHCV_FLOAT32) return close_to(got, want, tol, why, cap);
    pthcv_tensor *g = pthcv_tensor_to(got, PTHCV_FLOAT32), *w = pthcv_tensor_to(want, PTHCV_FLOAT32);
    int ok = close_to(g, w, 0, why, cap);
    if (!ok && ulp > 0 && same_shape(g, w)) {
        ok = 1;
        for (int64_t i = 0; ok && i < w->numel; i++) {
            float a = data(g)[i], b = data(w)[i];
            double step = fabs((double)nextafterf(b, INFINITY) - b);
            ok = same_bits(a, b) || (isfinite(b) && fabs((double)a - b) <= ulp * step);
            if (!ok) snprintf(why, cap, "element %lld: %.9g, want %.9g (within %d ulp)", (long long)i, a, b, ulp);
        }
    }
    pthcv_tensor_release(g);
    pthcv_tensor_release(w);
    return ok;
}

static pthcv_tensor *run_fixture(fixture *f, const char *op, pthcv_tensor **in, int nin, pthcv_tensor **second)
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
        return pthcv_adaptive_pool2d(x, kind && strcmp(kind, "avg") == 0 ? PTHCV_POOL_AVG : PTHCV_POOL_MAX, size[0],
                                     size[1]);
    }
    if (strcmp(op, "batch_norm") == 0) return pthcv_batch_norm(x, in[1], in[2], in[3], in[4], num(f, "eps", 0, 1e-5));
    if (strcmp(op, "layer_norm") == 0)
        return pthcv_layer_norm(x, int_of(f, "nd", 1), in[1], in[2], num(f, "eps", 0, 1e-5));
    if (strcmp(op, "group_norm") == 0)
        return pthcv_group_norm(x, int_of(f, "groups", 1), in[1], in[2], num(f, "eps", 0, 1e-5));
    if (strcmp(op, "activate") == 0) {
        pthcv_activation a = {int_of(f, "act", 0), (float)num(f, "alpha", 0, 0), (float)num(f, "beta", 0, 0)};
        return pthcv_activate(x, &a);
    }
    if (strcmp(op, "prelu") == 0) return pthcv_prelu(x, in[1]);
    if (strcmp(op, "softmax") == 0) return pthcv_softmax(x, int_of(f, "dim", -1), int_of(f, "log", 0));
    if (strcmp(op, "binary") == 0) return pthcv_binary(x, in[1], int_of(f, "op", 0));
    if (strcmp(op, "binary_scalar") == 0)
        return pthcv_binary_scalar(x, num(f, "s", 0, 0), int_of(f, "op", 0), int_of(f, "first", 0));
    if (strcmp(op, "cat") == 0) return pthcv_cat(nin, in, int_of(f, "dim", 0));
    if (strcmp(op, "pad") == 0) {
        int32_t p32[2 * PTHCV_MAX_DIMS];
        int64_t pads[2 * PTHCV_MAX_DIMS];
        int n = ints(f, "pads", p32, 2 * PTHCV_MAX_DIMS);
        for (int i = 0; i < n; i++) pads[i] = p32[i];
        return pthcv_pad(x, n / 2, pads, int_of(f, "mode", 0), num(f, "value", 0, 0));
    }
    if (strcmp(op, "reduce") == 0) {
        int32_t dims[PTHCV_MAX_DIMS];
        int n = ints(f, "dims", dims, PTHCV_MAX_DIMS);
        return pthcv_reduce(x, int_of(f, "op", 0), n, dims, int_of(f, "keepdim", 0));
    }
    if (strcmp(op, "matmul") == 0) return pthcv_matmul(x, in[1]);
    if (strcmp(op, "interpolate") == 0) {
        int32_t size[2] = {0, 0};
        ints(f, "size", size, 2);
        return pthcv_interpolate(x, size[0], size[1], int_of(f, "mode", 0), int_of(f, "ac", 0), num(f, "scale", 0, 0),
                                 num(f, "scale", 1, 0));
    }
    if (strcmp(op, "conv_transpose2d") == 0) {
        int32_t s[2] = {1, 1}, p[2] = {0, 0}, op2[2] = {0, 0}, d[2] = {1, 1};
        ints(f, "s", s, 2);
        ints(f, "p", p, 2);
        ints(f, "op", op2, 2);
        ints(f, "d", d, 2);
        return pthcv_conv_transpose2d(x, in[1], in[2], s, p, op2, d, int_of(f, "groups", 1));
    }
    return run_math_fixture(f, op, in, second);
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
        if (line[0] == '#' || line[0] == '\n') continue;
        f.nfields = 0;
        for (char *tok = strtok(line, " \n"); tok && f.nfields < 64; tok = strtok(NULL, " \n"))
            f.fields[f.nfields++] = tok;
        if (f.nfields < 3) continue;
        pthcv_tensor *in[32] = {0}, *want[2] = {NULL, NULL};
        int nin = 0, nwant = 0, expect_err = 0;
        for (int i = 2; i < f.nfields; i++) {
            if (strncmp(f.fields[i], "in=", 3) == 0 && nin < 32) in[nin++] = load(&f, f.fields[i] + 3);
            else if (strncmp(f.fields[i], "out=", 4) == 0 && nwant < 2) want[nwant++] = load(&f, f.fields[i] + 4);
            else if (strcmp(f.fields[i], "err") == 0) expect_err = 1;
        }
        double tol = num(&f, "tol", 0, 0);
        int ulp = int_of(&f, "ulp", 0);
        pthcv_tensor *y2 = NULL, *y = run_fixture(&f, f.fields[0], in, nin, &y2);
        char why[300] = "";
        if (expect_err) CHECK(y == NULL, "%s %s (%s): torch refuses, pthcv accepted", f.fields[0], f.fields[1], dir);
        else
            CHECK(result_matches(y, want[0], tol, ulp, why, sizeof why) &&
                      (nwant < 2 || result_matches(y2, want[1], 0, 0, why, sizeof why)),
                  "%s %s (%s): %s", f.fields[0], f.fields[1], dir, why);
        cases++;
        pthcv_tensor_release(y);
        pthcv_tensor_release(y2);
        pthcv_tensor_release(want[0]);
        pthcv_tensor_release(want[1]);
        for (int i = 0; i < nin; i++) pthcv_tensor_release(in[i]);
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
    CHECK(!pthcv_conv_transpose2d(x, w3, NULL, (int32_t[]){1, 1}, (int32_t[]){0, 0}, (int32_t[]){1, 1},
                                  (int32_t[]){1, 1}, 1) &&
              error_has("output_padding"),
          "output padding >= stride and dilation: %s", pthcv_last_error());

    /* strided inputs: a transposed view gives what its contiguous copy gives */
    pthcv_tensor *t = random_tensor(SHAPE(5, 7));
    pthcv_tensor *tt = pthcv_tensor_view(t, 2, (int64_t[]){7, 5}, (int64_t[]){1, 7}, 0);
    pthcv_tensor *tc = pthcv_tensor_contiguous(tt);
    pthcv_tensor *a1 = pthcv_softmax(tt, 0, 0), *a2 = pthcv_softmax(tc, 0, 0);
    char why[200];
    CHECK(a1 && a2 && close_to(a1, a2, 0, why, sizeof why), "softmax of a view");
    pthcv_tensor *b1 = pthcv_binary(tt, tc, PTHCV_BIN_SUB);
    int zero = b1 != NULL;
    for (int64_t i = 0; b1 && i < b1->numel; i++) zero &= data(b1)[i] == 0.0f;
    CHECK(zero, "view - its copy = 0");
    pthcv_tensor *p1 = pthcv_pad(tt, 1, (int64_t[]){1, 1}, PTHCV_PAD_CIRCULAR, 0),
                 *p2 = pthcv_pad(tc, 1, (int64_t[]){1, 1}, PTHCV_PAD_CIRCULAR, 0);
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
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pthcv_tensor_release(all[i]);
}

static int64_t *i64_data(pthcv_tensor *t) { return pthcv_tensor_data(t); }

/* the math ops' refusals, int64 exactness, 1-based indices */
static void math_errors(void)
{
    pthcv_tensor *x = random_tensor(SHAPE(2, 3, 4)), *m34 = random_tensor(SHAPE(3, 4)), *v5 = random_tensor(SHAPE(5));
    pthcv_tensor *h = pthcv_tensor_new(PTHCV_FLOAT16, 1, (int64_t[]){4});
    pthcv_tensor *k = pthcv_tensor_new(PTHCV_INT64, 3, (int64_t[]){2, 3, 4});
    CHECK(!pthcv_unary(k, PTHCV_MATH_EXP) && error_has("exp") && error_has("int64"), "unary of int64: %s",
          pthcv_last_error());
    CHECK(!pthcv_unary(x, 99) && error_has("unknown"), "unknown unary op");
    CHECK(!pthcv_compare(x, v5, PTHCV_CMP_GT) && error_has("[2, 3, 4]") && error_has("[5]"), "compare shapes: %s",
          pthcv_last_error());
    CHECK(!pthcv_compare(x, h, PTHCV_CMP_GT) && error_has("float16"), "compare float16: %s", pthcv_last_error());
    CHECK(!pthcv_where(x, x, x) && error_has("bool"), "where's condition: %s", pthcv_last_error());
    pthcv_tensor *mask = pthcv_compare(x, m34, PTHCV_CMP_GT);
    CHECK(mask && mask->dtype == PTHCV_BOOL && mask->ndim == 3, "compare broadcasts to [2, 3, 4]");
    CHECK(!pthcv_where(mask, x, v5) && error_has("broadcast"), "where shapes: %s", pthcv_last_error());
    pthcv_tensor *vals = NULL, *idx = NULL;
    pthcv_tensor *e0 = pthcv_tensor_new(PTHCV_FLOAT32, 2, (int64_t[]){2, 0});
    CHECK(pthcv_max_dim(e0, 1, 0, 0, 0, &vals, &idx) != PTHCV_OK && error_has("empty") && !vals && !idx,
          "max over an empty dim: %s", pthcv_last_error());
    CHECK(pthcv_sort(x, 3, 0, 0, &vals, &idx) != PTHCV_OK && error_has("dimension 3"), "sort dim: %s",
          pthcv_last_error());
    /* int64 compares exactly; against float32 it is converted first, as torch */
    pthcv_tensor *big = pthcv_tensor_new(PTHCV_INT64, 1, (int64_t[]){2}),
                 *big2 = pthcv_tensor_new(PTHCV_INT64, 0, NULL);
    pthcv_tensor *f0 = pthcv_tensor_new(PTHCV_FLOAT32, 0, NULL);
    i64_data(big)[0] = 16777217;
    i64_data(big)[1] = -9007199254740993LL;
    i64_data(big2)[0] = 16777216;
    data(f0)[0] = 16777216.0f;
    pthcv_tensor *gi = pthcv_compare(big, big2, PTHCV_CMP_GT), *gf = pthcv_compare(big, f0, PTHCV_CMP_GT);
    unsigned char *pi = gi ? pthcv_tensor_data(gi) : NULL, *pf = gf ? pthcv_tensor_data(gf) : NULL;
    CHECK(pi && pf && pi[0] == 1 && pi[1] == 0 && pf[0] == 0 && pf[1] == 0, "int64 exact, int64 vs float32 in float32");
    /* 1-based indices: the same picks, and 0 refused, naming it and its place */
    pthcv_tensor *k1 = pthcv_tensor_new(PTHCV_INT64, 2, (int64_t[]){1, 2});
    i64_data(k1)[0] = 4;
    i64_data(k1)[1] = 1;
    pthcv_tensor *g1 = pthcv_gather(m34, 1, k1, 1);
    CHECK(g1 && data(g1)[0] == data(m34)[3] && data(g1)[1] == data(m34)[0], "gather, 1-based");
    i64_data(k1)[1] = 0;
    CHECK(!pthcv_gather(m34, 1, k1, 1) && error_has("index 0 at [0, 1]") && error_has("1..4"),
          "1-based gather refuses 0: %s", pthcv_last_error());
    pthcv_tensor *k1d = pthcv_tensor_view(k1, 1, (int64_t[]){2}, (int64_t[]){1}, 0);
    CHECK(!pthcv_index_select(m34, 0, k1d, 0) && error_has("index 4 at [0]") && error_has("0..2"),
          "index_select range: %s", pthcv_last_error());
    CHECK(!pthcv_gather(m34, 0, m34, 0) && error_has("int64"), "gather's index dtype: %s", pthcv_last_error());
    CHECK(!pthcv_index_select(m34, 0, k, 0) && error_has("1-d"), "index_select of a 3-d index: %s", pthcv_last_error());

    pthcv_tensor *all[] = {x, m34, v5, h, k, mask, e0, big, big2, f0, gi, gf, k1, g1, k1d};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pthcv_tensor_release(all[i]);
}

int main(int argc, char **argv)
{
    const char *dump = NULL, *compare = NULL;
    const char *dirs[16];
    int ndirs = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dump") == 0 && i + 1 < argc) dump = argv[++i];
        else if (strcmp(argv[i], "--compare") == 0 && i + 1 < argc) compare = argv[++i];
        else if (ndirs < 15) dirs[ndirs++] = argv[i];
    }
    battery();
    if (dump) {
        FILE *f = fopen(dump, "wb");
        CHECK(f && fwrite(results.v, sizeof(float), results.n, f) == results.n, "cannot write %s", dump);
        if (f) fclose(f);
    }
    if (compare) {
        FILE *f = fopen(compare, "rb");
        size_t n = 0, diff = 0, first = (size_t)-1;
        float v;
        while (f && fread(&v, sizeof v, 1, f) == 1) {
            if (n >= results.n || !same_bits(v, results.v[n])) {
                diff++;
                if (first == (size_t)-1) first = n;
            }
            n++;
        }
        if (f) fclose(f);
        CHECK(f && n == results.n && diff == 0,
              "SIMD and scalar builds differ: %zu of %zu values (first at %zd), %zu in the other build", diff,
              results.n, (ssize_t)first, n);
    }
    for (int i = 0; i < ndirs; i++) fixtures(dirs[i]);
    errors();
    math_errors();
    free(results.v);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
