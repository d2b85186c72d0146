/* transformer_test.c -- checks of the transformer kernels: vmath.h (exp,
 * GELU), pthcv_attention (csrc/kernels/ops_attention.c) and
 * pthcv_layer_norm_channels (ops_layernorm.c).
 *
 *   transformer_test [--dump FILE] [--compare FILE]
 *
 * 1. vm_exp, vm_sigmoid, vm_gelu and vm_gelu_tanh against libm in double
 *    over a sweep of the float range and at the edges (NaN, infinities,
 *    under/overflow); sigmoid, SiLU and GELU through pthcv_activate (the
 *    vectorised row) equal pthcv_act_scalar bit for bit.
 * 2. pthcv_attention against a double-precision reference written here,
 *    on odd sizes (1, 3, 7, 17, 33 rows and features, ViT-B/16's 197 x 64),
 *    with broadcast biases, -inf masks, cosine attention with per-head
 *    scales, strided views of a packed qkv projection, heads_last and the
 *    weights output; 1 and 3 threads must give the same bits.
 *    --dump writes every result to FILE, --compare checks them bit for bit
 *    against such a file: the Makefile builds this test with the SIMD
 *    clones and as a scalar build and compares the two.
 * 3. pthcv_layer_norm_channels against a double reference and against
 *    pthcv_layer_norm of the channels-last copy, odd channel and pixel
 *    counts (blocks of 256 pixels crossed), with and without affine.
 * 4. Argument errors name the shapes involved.
 * Ends with "N passed, N failed"; exit status 1 if anything failed. */
#include "internal.h"
#include "kernels/kernels.h"
#include "kernels/vmath.h"
#include "check.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

static uint64_t rng = 88172645463325252ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

static pthcv_tensor *random_tensor(int ndim, const int64_t *shape, float amp)
{
    pthcv_tensor *t = pthcv_tensor_new(PTHCV_FLOAT32, ndim, shape);
    float *d = pthcv_tensor_data(t);
    for (int64_t i = 0; i < t->numel; i++) d[i] = frand() * amp;
    return t;
}

#define SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), ((int64_t[]){__VA_ARGS__})

static int same_bits(float a, float b) { return (a != a && b != b) || memcmp(&a, &b, sizeof a) == 0; }

static int error_has(const char *s) { return strstr(pthcv_last_error(), s) != NULL; }

/* results kept for --dump / --compare */
static struct {
    float *v;
    size_t n, cap;
} results;
static void keep(const pthcv_tensor *t)
{
    const float *d = pthcv_tensor_data((pthcv_tensor *)t);
    if (results.n + (size_t)t->numel > results.cap) {
        results.cap = (results.n + (size_t)t->numel) * 2;
        results.v = realloc(results.v, results.cap * sizeof(float));
    }
    memcpy(results.v + results.n, d, (size_t)t->numel * sizeof(float));
    results.n += (size_t)t->numel;
}

/* ---- 1. vmath ------------------------------------------------------------------ */

static double gelu_ref(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }
static double gelu_tanh_ref(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
}

static void test_vmath(void)
{
    double worst = 0, wx = 0;
    for (float x = -86.6f; x < 88.7f; x += fmaxf(fabsf(x) * 3e-6f, 1e-6f)) {
        double e = exp((double)x), r = fabs(vm_exp(x) - e) / e;
        if (r > worst) worst = r, wx = x;
    }
    CHECK(worst < 2.5e-7, "vm_exp: relative error %.3g at %.9g", worst, wx);
    CHECK(vm_exp(0.0f) == 1.0f && vm_exp(-87.0f) == 0.0f && vm_exp(-INFINITY) == 0.0f, "vm_exp(0, -87, -inf)");
    CHECK(isinf(vm_exp(88.73f)) && isinf(vm_exp(INFINITY)) && isnan(vm_exp(NAN)), "vm_exp(88.73, inf, nan)");
    CHECK(isfinite(vm_exp(88.72f)) && fabs(vm_exp(88.72f) / exp((double)88.72f) - 1) < 2.5e-7, "vm_exp(88.72) = %g",
          vm_exp(88.72f));

    double ws = 0, sx = 0;
    for (float x = -80.0f; x < 80.0f; x += fmaxf(fabsf(x) * 3e-6f, 1e-6f)) {
        double r = 1.0 / (1.0 + exp(-(double)x)), e = fabs(vm_sigmoid(x) - r) / r;
        if (e > ws) ws = e, sx = x;
    }
    CHECK(ws < 3e-7, "vm_sigmoid: relative error %.3g at %.9g", ws, sx);
    CHECK(vm_sigmoid(-200.0f) == 0.0f && vm_sigmoid(200.0f) == 1.0f && isnan(vm_sigmoid(NAN)), "vm_sigmoid edges");

    double wg = 0, wt = 0, gx = 0, tx = 0;
    for (float x = -30.0f; x < 30.0f; x += fmaxf(fabsf(x) * 3e-6f, 1e-6f)) {
        double g = fabs(vm_gelu(x) - gelu_ref(x)) / fmax(1.0, fabs(x));
        double t = fabs(vm_gelu_tanh(x) - gelu_tanh_ref(x)) / fmax(1.0, fabs(x));
        if (g > wg) wg = g, gx = x;
        if (t > wt) wt = t, tx = x;
    }
    CHECK(wg < 3e-7, "vm_gelu: error %.3g at %.9g", wg, gx);
    CHECK(wt < 3e-7, "vm_gelu_tanh: error %.3g at %.9g", wt, tx);
    CHECK(isnan(vm_gelu(NAN)) && vm_gelu(INFINITY) == INFINITY && isnan(vm_gelu(-INFINITY)),
          "vm_gelu(nan, inf, -inf) as torch's (NaN, inf, NaN)");
    CHECK(vm_gelu(-40.0f) == 0.0f && vm_gelu_tanh(-40.0f) == 0.0f, "GELU far below 0 is 0");

    /* the row (SIMD clones) and the scalar definition agree bit for bit */
    int64_t n = 1031;
    pthcv_tensor *x = pthcv_tensor_new(PTHCV_FLOAT32, 1, &n);
    float *xd = pthcv_tensor_data(x);
    for (int64_t i = 0; i < n; i++) xd[i] = frand() * 9.0f;
    xd[0] = NAN, xd[1] = INFINITY, xd[2] = -INFINITY, xd[3] = 0.0f, xd[4] = -0.0f;
    const int kinds[] = {PTHCV_ACT_SIGMOID, PTHCV_ACT_SILU, PTHCV_ACT_GELU, PTHCV_ACT_GELU_TANH};
    for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++) {
        int kind = kinds[ki];
        pthcv_activation a = {kind, 0, 0};
        pthcv_tensor *y = pthcv_activate(x, &a);
        const float *yd = pthcv_tensor_data(y);
        int same = 1;
        for (int64_t i = 0; i < n; i++) same &= same_bits(yd[i], pthcv_act_scalar(xd[i], &a));
        CHECK(same, "activation kind %d: pthcv_act_row differs from pthcv_act_scalar", kind);
        keep(y);
        pthcv_tensor_release(y);
    }
    pthcv_tensor_release(x);
}

/* ---- 2. attention --------------------------------------------------------------- */

/* element (b, i, j) of a bias broadcast to [B..., L, S] (NULL: 0) */
static double bias_at(const pthcv_tensor *bias, int nd, const int64_t *qshape, int64_t b, int64_t i, int64_t j)
{
    if (!bias) return 0.0;
    int64_t idx[PTHCV_MAX_DIMS];
    for (int d = nd - 3; d >= 0; d--) idx[d] = b % qshape[d], b /= qshape[d];
    idx[nd - 2] = i, idx[nd - 1] = j;
    int64_t off = 0;
    int shift = nd - bias->ndim;
    for (int d = shift; d < nd; d++)
        if (bias->shape[d - shift] != 1) off += idx[d] * bias->stride[d - shift];
    return ((const float *)pthcv_tensor_data((pthcv_tensor *)bias))[off];
}

/* element e of row r of a [..., rows, n] tensor with any strides */
static double row_at(const pthcv_tensor *t, int64_t b, int64_t r, int64_t e)
{
    int nd = t->ndim;
    int64_t off = r * t->stride[nd - 2] + e * t->stride[nd - 1];
    for (int d = nd - 3; d >= 0; d--) off += (b % t->shape[d]) * t->stride[d], b /= t->shape[d];
    return ((const float *)pthcv_tensor_data((pthcv_tensor *)t))[off];
}

/* the reference: out [B, L, Dv] and weights [B, L, S] in double, B the
 * product of the leading dims */
static void attention_ref(const pthcv_tensor *q, const pthcv_tensor *k, const pthcv_tensor *v, const pthcv_tensor *bias,
                          const float *hs, double scale, int cosine, double *out, double *w)
{
    int nd = q->ndim;
    int64_t L = q->shape[nd - 2], D = q->shape[nd - 1], S = k->shape[nd - 2], Dv = v->shape[nd - 1];
    int64_t B = q->numel / (L * D), H = nd >= 3 ? q->shape[nd - 3] : 1;
    double *s = malloc(sizeof(double) * (size_t)S);
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < L; i++) {
            double qn = 0;
            for (int64_t d = 0; d < D; d++) qn += row_at(q, b, i, d) * row_at(q, b, i, d);
            qn = cosine ? fmax(sqrt(qn), 1e-12) : 1.0;
            double m = -INFINITY;
            for (int64_t j = 0; j < S; j++) {
                double kn = 0, dot = 0;
                for (int64_t d = 0; d < D; d++) {
                    kn += row_at(k, b, j, d) * row_at(k, b, j, d);
                    dot += row_at(q, b, i, d) * row_at(k, b, j, d);
                }
                kn = cosine ? fmax(sqrt(kn), 1e-12) : 1.0;
                s[j] = dot / (qn * kn) * scale * (hs ? hs[b % H] : 1.0) + bias_at(bias, nd, q->shape, b, i, j);
                if (s[j] > m || s[j] != s[j]) m = s[j];
            }
            double sum = 0;
            for (int64_t j = 0; j < S; j++) sum += (s[j] = exp(s[j] - m));
            for (int64_t j = 0; j < S; j++) s[j] /= sum;
            if (w)
                for (int64_t j = 0; j < S; j++) w[(b * L + i) * S + j] = s[j];
            for (int64_t e = 0; e < Dv; e++) {
                double acc = 0;
                for (int64_t j = 0; j < S; j++) acc += s[j] * row_at(v, b, j, e);
                out[(b * L + i) * Dv + e] = acc;
            }
        }
    free(s);
}

/* got vs the reference (out in [B, L, Dv] order, or [outer, L, H, Dv]) */
static double max_error(const pthcv_tensor *got, const double *ref, int64_t B, int64_t L, int64_t Dv, int64_t H,
                        int heads_last)
{
    const float *g = pthcv_tensor_data((pthcv_tensor *)got);
    double err = 0, mx = 1e-3;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < L; i++)
            for (int64_t e = 0; e < Dv; e++) {
                int64_t gi = heads_last ? (((b / H) * L + i) * H + b % H) * Dv + e : (b * L + i) * Dv + e;
                double r = ref[(b * L + i) * Dv + e];
                double d = fabs(g[gi] - r);
                if (!(d <= err)) err = d;
                if (fabs(r) > mx) mx = fabs(r);
            }
    return err / mx;
}

typedef struct {
    const char *name;
    pthcv_tensor *q, *k, *v, *bias, *hs;
    pthcv_attention_params p;
    int weights;
} attn_case;

static void run_case(attn_case *c)
{
    int nd = c->q->ndim;
    int64_t L = c->q->shape[nd - 2], D = c->q->shape[nd - 1], Dv = c->v->shape[nd - 1];
    int64_t S = c->k->shape[nd - 2], B = c->q->numel / (L * D > 0 ? L * D : 1);
    int64_t H = nd >= 3 ? c->q->shape[nd - 3] : 1;
    double scale = c->p.scale != 0 ? c->p.scale : 1.0 / sqrt((double)D);
    double *ref = malloc(sizeof(double) * (size_t)(B * L * Dv + 1));
    double *wref = malloc(sizeof(double) * (size_t)(B * L * S + 1));
    const float *hs = c->hs ? pthcv_tensor_data(c->hs) : NULL;
    attention_ref(c->q, c->k, c->v, c->bias, hs, scale, c->p.cosine, ref, wref);
    pthcv_tensor *w1 = NULL, *w3 = NULL;
    pthcv_set_num_threads(1);
    pthcv_tensor *y1 = pthcv_attention(c->q, c->k, c->v, c->bias, c->hs, &c->p, c->weights ? &w1 : NULL);
    pthcv_set_num_threads(3);
    pthcv_tensor *y3 = pthcv_attention(c->q, c->k, c->v, c->bias, c->hs, &c->p, c->weights ? &w3 : NULL);
    CHECK(y1 && y3, "%s: %s", c->name, pthcv_last_error());
    if (y1 && y3) {
        double err = max_error(y1, ref, B, L, Dv, H, c->p.heads_last);
        CHECK(err < 2e-6, "%s: error %.3g of the largest output", c->name, err);
        int same = y1->numel == y3->numel;
        for (int64_t i = 0; same && i < y1->numel; i++)
            same = same_bits(((float *)pthcv_tensor_data(y1))[i], ((float *)pthcv_tensor_data(y3))[i]);
        CHECK(same, "%s: 1 and 3 threads differ", c->name);
        keep(y1);
    }
    if (c->weights) {
        CHECK(w1 && w3 && w1->numel == B * L * S, "%s: no weights", c->name);
        if (w1) {
            const float *wd = pthcv_tensor_data(w1);
            double err = 0;
            for (int64_t i = 0; i < B * L * S; i++) err = fmax(err, fabs(wd[i] - wref[i]));
            CHECK(err < 1e-6, "%s: weights off by %.3g", c->name, err);
            keep(w1);
        }
    }
    pthcv_tensor *all[] = {y1, y3, w1, w3, c->q, c->k, c->v, c->bias, c->hs};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pthcv_tensor_release(all[i]);
    free(ref);
    free(wref);
}

/* q, k, v as strided views of one packed projection [B, L, 3, H, D]
 * permuted to [B, H, L, D] each (torch's in_proj output, chunked) */
static void packed_views(int64_t B, int64_t L, int64_t H, int64_t D, pthcv_tensor **q, pthcv_tensor **k,
                         pthcv_tensor **v)
{
    pthcv_tensor *qkv = random_tensor(SHAPE(B, L, 3 * H * D), 2.0f);
    int64_t shape[4] = {B, H, L, D}, stride[4] = {L * 3 * H * D, D, 3 * H * D, 1};
    *q = pthcv_tensor_view(qkv, 4, shape, stride, 0);
    *k = pthcv_tensor_view(qkv, 4, shape, stride, H * D);
    *v = pthcv_tensor_view(qkv, 4, shape, stride, 2 * H * D);
    pthcv_tensor_release(qkv);
}

static void test_attention(void)
{
    attn_case cases[16];
    int n = 0;
    cases[n++] = (attn_case){"1x1x1",
                             random_tensor(SHAPE(1, 1, 1), 1),
                             random_tensor(SHAPE(1, 1, 1), 1),
                             random_tensor(SHAPE(1, 1, 1), 1),
                             NULL,
                             NULL,
                             {0, 0, 0},
                             1};
    cases[n++] = (attn_case){"2-d, 7 x 17 keys, D 3",
                             random_tensor(SHAPE(7, 3), 2),
                             random_tensor(SHAPE(17, 3), 2),
                             random_tensor(SHAPE(17, 5), 1),
                             NULL,
                             NULL,
                             {0.7, 0, 0},
                             1};
    cases[n++] = (attn_case){"[2, 3, 17, 33] with a [17, 33] bias",
                             random_tensor(SHAPE(2, 3, 17, 33), 1),
                             random_tensor(SHAPE(2, 3, 33, 33), 1),
                             random_tensor(SHAPE(2, 3, 33, 7), 1),
                             random_tensor(SHAPE(17, 33), 3),
                             NULL,
                             {0, 0, 0},
                             1};
    /* Swin: [B, nW, H, L, L] scores + [nW, 1, L, L] shift mask + [H, L, L] relative bias */
    pthcv_tensor *mask = random_tensor(SHAPE(3, 1, 49, 49), 1);
    float *md = pthcv_tensor_data(mask);
    for (int64_t i = 0; i < mask->numel; i++) md[i] = md[i] > 0.3f ? -100.0f : 0.0f;
    cases[n++] = (attn_case){"Swin window, shift mask",
                             random_tensor(SHAPE(2, 3, 2, 49, 32), 2),
                             random_tensor(SHAPE(2, 3, 2, 49, 32), 2),
                             random_tensor(SHAPE(2, 3, 2, 49, 32), 1),
                             mask,
                             NULL,
                             {0, 0, 1},
                             0};
    pthcv_tensor *hs = random_tensor(SHAPE(3), 1);
    float *hd = pthcv_tensor_data(hs);
    for (int i = 0; i < 3; i++) hd[i] = 10.0f + 5.0f * hd[i];
    cases[n++] = (attn_case){"Swin V2 cosine, head scales",
                             random_tensor(SHAPE(4, 3, 16, 8), 2),
                             random_tensor(SHAPE(4, 3, 16, 8), 2),
                             random_tensor(SHAPE(4, 3, 16, 8), 1),
                             random_tensor(SHAPE(3, 16, 16), 8),
                             hs,
                             {1.0, 1, 1},
                             1};
    /* key padding: [B, 1, 1, S] with -inf on padded keys */
    pthcv_tensor *kpm = pthcv_tensor_new(PTHCV_FLOAT32, 4, (int64_t[]){2, 1, 1, 7});
    float *kd = pthcv_tensor_data(kpm);
    kd[5] = kd[6] = kd[7 + 0] = -INFINITY;
    cases[n++] = (attn_case){"key padding -inf",
                             random_tensor(SHAPE(2, 3, 5, 4), 1),
                             random_tensor(SHAPE(2, 3, 7, 4), 1),
                             random_tensor(SHAPE(2, 3, 7, 6), 1),
                             kpm,
                             NULL,
                             {0, 0, 0},
                             1};
    pthcv_tensor *q, *k, *v;
    packed_views(1, 197, 12, 64, &q, &k, &v);
    cases[n++] = (attn_case){"ViT-B/16 packed qkv views", q, k, v, NULL, NULL, {0, 0, 1}, 0};
    packed_views(3, 33, 1, 7, &q, &k, &v);
    cases[n++] = (attn_case){"packed, one head, 33 x 7", q, k, v, NULL, NULL, {0, 0, 0}, 1};
    for (int i = 0; i < n; i++) run_case(&cases[i]);

    /* a row masked out entirely is NaN, as torch's softmax over -inf */
    pthcv_tensor *q1 = random_tensor(SHAPE(2, 3), 1), *k1 = random_tensor(SHAPE(4, 3), 1),
                 *v1 = random_tensor(SHAPE(4, 2), 1);
    pthcv_tensor *b1 = pthcv_tensor_new(PTHCV_FLOAT32, 2, (int64_t[]){2, 4});
    float *bd = pthcv_tensor_data(b1);
    for (int j = 0; j < 4; j++) bd[j] = -INFINITY;
    pthcv_tensor *y = pthcv_attention(q1, k1, v1, b1, NULL, NULL, NULL);
    const float *yd = y ? pthcv_tensor_data(y) : NULL;
    CHECK(yd && isnan(yd[0]) && isnan(yd[1]) && isfinite(yd[2]) && isfinite(yd[3]), "a fully masked row is NaN");

    /* errors */
    pthcv_tensor *i64 = pthcv_tensor_new(PTHCV_INT64, 2, (int64_t[]){2, 3});
    CHECK(!pthcv_attention(i64, k1, v1, NULL, NULL, NULL, NULL) && error_has("int64"), "dtype: %s", pthcv_last_error());
    CHECK(!pthcv_attention(q1, v1, v1, NULL, NULL, NULL, NULL) && error_has("[4, 2]") && error_has("[2, 3]"),
          "features differ: %s", pthcv_last_error());
    CHECK(!pthcv_attention(q1, k1, q1, NULL, NULL, NULL, NULL) && error_has("length"), "lengths differ: %s",
          pthcv_last_error());
    pthcv_tensor *b2 = pthcv_tensor_new(PTHCV_FLOAT32, 2, (int64_t[]){3, 4});
    CHECK(!pthcv_attention(q1, k1, v1, b2, NULL, NULL, NULL) && error_has("[3, 4]") && error_has("broadcast"),
          "bias shape: %s", pthcv_last_error());
    CHECK(!pthcv_attention(q1, k1, v1, NULL, NULL, &(pthcv_attention_params){0, 0, 1}, NULL) && error_has("heads_last"),
          "heads_last on 2-d: %s", pthcv_last_error());
    CHECK(!pthcv_attention(q1, k1, v1, NULL, b1, NULL, NULL) && error_has("head_scale"), "head_scale: %s",
          pthcv_last_error());
    pthcv_tensor *k0 = pthcv_tensor_new(PTHCV_FLOAT32, 2, (int64_t[]){0, 3}),
                 *v0 = pthcv_tensor_new(PTHCV_FLOAT32, 2, (int64_t[]){0, 2});
    CHECK(!pthcv_attention(q1, k0, v0, NULL, NULL, NULL, NULL) && error_has("no rows"), "no keys: %s",
          pthcv_last_error());
    CHECK(!pthcv_attention(NULL, k1, v1, NULL, NULL, NULL, NULL) && pthcv_last_status() == PTHCV_ERR_ARG, "NULL query");
    pthcv_tensor *all[] = {q1, k1, v1, b1, y, i64, b2, k0, v0};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pthcv_tensor_release(all[i]);
}

/* ---- 3. LayerNorm over channels ---------------------------------------------------- */

/* [N, C, P] -> [N, P, C] contiguous */
static pthcv_tensor *channels_last(pthcv_tensor *x)
{
    int64_t n = x->shape[0], c = x->shape[1], p = x->numel / (n * c);
    pthcv_tensor *v = pthcv_tensor_view(x, 3, (int64_t[]){n, p, c}, (int64_t[]){c * p, 1, p}, x->offset);
    pthcv_tensor *r = pthcv_tensor_contiguous(v);
    pthcv_tensor_release(v);
    return r;
}

static void test_layer_norm_channels(void)
{
    const int64_t shapes[][4] = {{1, 1, 1, 1}, {2, 3, 5, 7}, {1, 7, 17, 17}, {2, 17, 1, 300}, {1, 33, 9, 31}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t *sh = shapes[s];
        int64_t C = sh[1], P = sh[2] * sh[3];
        pthcv_tensor *x = random_tensor(4, sh, 3.0f);
        float *xd = pthcv_tensor_data(x);
        for (int64_t i = 0; i < x->numel; i += 5) xd[i] += 4.0f; /* a mean away from 0 */
        pthcv_tensor *w = random_tensor(1, &C, 1.0f), *b = random_tensor(1, &C, 1.0f);
        for (int with_affine = 0; with_affine < 2; with_affine++) {
            pthcv_tensor *ww = with_affine ? w : NULL, *bb = with_affine ? b : NULL;
            pthcv_set_num_threads(1);
            pthcv_tensor *y1 = pthcv_layer_norm_channels(x, ww, bb, 1e-6);
            pthcv_set_num_threads(3);
            pthcv_tensor *y3 = pthcv_layer_norm_channels(x, ww, bb, 1e-6);
            CHECK(y1 && y3, "layer_norm_channels %lldx%lldx%lldx%lld: %s", (long long)sh[0], (long long)C,
                  (long long)sh[2], (long long)sh[3], pthcv_last_error());
            if (!y1 || !y3) continue;
            /* the double reference, and pthcv_layer_norm over the channels-last copy */
            pthcv_tensor *xl = channels_last(x), *yl = pthcv_layer_norm(xl, 1, ww, bb, 1e-6);
            const float *g1 = pthcv_tensor_data(y1), *g3 = pthcv_tensor_data(y3), *gl = pthcv_tensor_data(yl);
            double err = 0, err_rows = 0;
            int same = 1;
            for (int64_t n = 0; n < sh[0]; n++)
                for (int64_t p = 0; p < P; p++) {
                    double m = 0, v = 0;
                    for (int64_t c = 0; c < C; c++) m += xd[(n * C + c) * P + p];
                    m /= (double)C;
                    for (int64_t c = 0; c < C; c++) v += pow(xd[(n * C + c) * P + p] - m, 2);
                    double rstd = 1.0 / sqrt(v / (double)C + 1e-6);
                    for (int64_t c = 0; c < C; c++) {
                        int64_t i = (n * C + c) * P + p;
                        double want = (xd[i] - m) * rstd;
                        if (with_affine)
                            want = want * ((float *)pthcv_tensor_data(w))[c] + ((float *)pthcv_tensor_data(b))[c];
                        err = fmax(err, fabs(g1[i] - want));
                        err_rows = fmax(err_rows, fabs(g1[i] - gl[(n * P + p) * C + c]));
                        same &= same_bits(g1[i], g3[i]);
                    }
                }
            CHECK(err < 2e-6, "layer_norm_channels C=%lld P=%lld: error %.3g", (long long)C, (long long)P, err);
            CHECK(err_rows < 1e-6, "layer_norm_channels vs pthcv_layer_norm of the channels-last copy: %.3g", err_rows);
            CHECK(same, "layer_norm_channels C=%lld: 1 and 3 threads differ", (long long)C);
            keep(y1);
            pthcv_tensor *all[] = {y1, y3, xl, yl};
            for (size_t i = 0; i < 4; i++) pthcv_tensor_release(all[i]);
        }
        pthcv_tensor_release(x);
        pthcv_tensor_release(w);
        pthcv_tensor_release(b);
    }
    pthcv_tensor *x = random_tensor(SHAPE(1, 4, 3, 3), 1), *w5 = random_tensor(SHAPE(5), 1),
                 *v = random_tensor(SHAPE(4), 1);
    CHECK(!pthcv_layer_norm_channels(x, w5, NULL, 1e-5) && error_has("[5]") && error_has("4 channels"),
          "weight size: %s", pthcv_last_error());
    CHECK(!pthcv_layer_norm_channels(v, NULL, NULL, 1e-5) && error_has("[4]"), "1-d input: %s", pthcv_last_error());
    pthcv_tensor_release(x);
    pthcv_tensor_release(w5);
    pthcv_tensor_release(v);
}

int main(int argc, char **argv)
{
    const char *dump = NULL, *compare = NULL;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--dump") == 0) dump = argv[++i];
        else if (strcmp(argv[i], "--compare") == 0) compare = argv[++i];
    }
    test_vmath();
    test_attention();
    test_layer_norm_channels();
    if (dump) {
        FILE *f = fopen(dump, "wb");
        CHECK(f && fwrite(results.v, sizeof(float), results.n, f) == results.n, "cannot write %s", dump);
        if (f) fclose(f);
    }
    if (compare) {
        FILE *f = fopen(compare, "rb");
        size_t n = 0, diff = 0;
        float x;
        while (f && fread(&x, sizeof x, 1, f) == 1) {
            if (n >= results.n || !same_bits(x, results.v[n])) diff++;
            n++;
        }
        if (f) fclose(f);
        CHECK(f && n == results.n && diff == 0, "SIMD and scalar builds differ: %zu of %zu values (%zu in the other)",
              diff, results.n, n);
    }
    free(results.v);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
