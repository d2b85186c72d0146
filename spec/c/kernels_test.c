/* kernels_test.c -- checks of the inference kernels (csrc/kernels/).
 *
 *   kernels_test FIXTURE_DIR...
 *
 * 1. conv2d and linear on every instruction set this CPU has, against a
 *    double-precision direct reference written here and against the scalar
 *    path, at 1, 2 and 3 threads (results must be bit-identical across
 *    thread counts); odd channel counts, borders, strides, dilation, groups,
 *    depthwise, padding modes, batch, every activation, residual.
 * 2. fold_batchnorm, pthcv_set_isa, the error messages.
 * 3. the cases in each FIXTURE_DIR/manifest.txt, written by torch
 *    (spec/fixtures/make_op_fixtures.py documents the format); ops this
 *    test does not know are left to the other tests.
 * Ends with "N passed, N failed"; exit status 1 if anything failed. An
 * instruction set the CPU lacks prints "# skipped: ..." (not a pass). */
#include "internal.h"
#include "kernels/kernels.h"
#include "kernels/dwconv.h"
#include "kernels/gemm.h"
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#include "check.h"

#include "random_tensor.h"

/* ---- data --------------------------------------------------------------------- */
/* max |a - b| <= tol * max(|ref|, 1e-3) over n values */
static int close_to(const float *a, const float *ref, int64_t n, double tol, double *worst)
{
    double mx = 1e-3, err = 0;
    for (int64_t i = 0; i < n; i++) {
        if (fabs(ref[i]) > mx) mx = fabs(ref[i]);
        double e = fabs((double)a[i] - ref[i]);
        if (!(e <= err)) err = e; /* NaN counts as worst */
    }
    *worst = err / mx;
    return err <= tol * mx;
}

/* ---- the reference convolution --------------------------------------------------- */
typedef struct {
    const char *name;
    int n, cin, h, w, cout, kh, kw, sh, sw, ph, pw, dh, dw, groups, mode, bias, res;
    pthcv_activation act;
} conv_case;

static int64_t ref_pad(int64_t i, int64_t n, int mode)
{
    if (i >= 0 && i < n) return i;
    if (mode == PTHCV_PAD_REFLECT) return i < 0 ? -i : 2 * (n - 1) - i;
    if (mode == PTHCV_PAD_REPLICATE) return i < 0 ? 0 : n - 1;
    return ((i % n) + n) % n;
}

static void ref_conv(const conv_case *c, const float *x, const float *w, const float *b, const float *res, float *out,
                     int oh, int ow)
{
    int cin_g = c->cin / c->groups, cout_g = c->cout / c->groups;
    for (int n = 0; n < c->n; n++)
        for (int oc = 0; oc < c->cout; oc++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    int g = oc / cout_g;
                    double s = b ? b[oc] : 0.0;
                    for (int ci = 0; ci < cin_g; ci++)
                        for (int ky = 0; ky < c->kh; ky++)
                            for (int kx = 0; kx < c->kw; kx++) {
                                int64_t iy = oy * c->sh - c->ph + ky * c->dh, ix = ox * c->sw - c->pw + kx * c->dw;
                                int inside = iy >= 0 && iy < c->h && ix >= 0 && ix < c->w;
                                if (!inside && c->mode == PTHCV_PAD_ZEROS) continue;
                                iy = ref_pad(iy, c->h, c->mode), ix = ref_pad(ix, c->w, c->mode);
                                s += (double)w[((oc * cin_g + ci) * c->kh + ky) * c->kw + kx] *
                                    x[(((int64_t)n * c->cin + g * cin_g + ci) * c->h + iy) * c->w + ix];
                            }
                    int64_t o = (((int64_t)n * c->cout + oc) * oh + oy) * ow + ox;
                    float v = (float)s;
                    if (res) v += res[o];
                    out[o] = pthcv_act_scalar(v, &c->act);
                }
}

#define ACT(k)          \
    {                   \
        (k), 0.0f, 0.0f \
    }

static int threads_list[] = {1, 2, 3};

static void run_conv_case(const conv_case *c)
{
    int64_t xs[4] = {c->n, c->cin, c->h, c->w}, ws[4] = {c->cout, c->cin / c->groups, c->kh, c->kw}, bs[1] = {c->cout};
    int oh = (c->h + 2 * c->ph - c->dh * (c->kh - 1) - 1) / c->sh + 1;
    int ow = (c->w + 2 * c->pw - c->dw * (c->kw - 1) - 1) / c->sw + 1;
    int64_t ys[4] = {c->n, c->cout, oh, ow};
    pthcv_tensor *x = random_tensor(4, xs), *w = random_tensor(4, ws), *b = c->bias ? random_tensor(1, bs) : NULL;
    pthcv_tensor *r = c->res ? random_tensor(4, ys) : NULL;
    int64_t ny = (int64_t)c->n * c->cout * oh * ow;
    float *ref = malloc(sizeof(float) * (size_t)ny), *scalar = malloc(sizeof(float) * (size_t)ny);
    ref_conv(c, pthcv_tensor_data(x), pthcv_tensor_data(w), b ? pthcv_tensor_data(b) : NULL,
             r ? pthcv_tensor_data(r) : NULL, ref, oh, ow);
    pthcv_conv2d_params p = {{c->sh, c->sw}, {c->ph, c->pw}, {c->dh, c->dw}, c->groups, c->mode, c->act};
    pthcv_conv2d *conv = pthcv_conv2d_prepare(w, b, &p);
    CHECK(conv != NULL, "%s: prepare: %s", c->name, pthcv_last_error());
    for (int isa = 0; conv && isa < PTHCV_ISA_COUNT; isa++) {
        if (pthcv_set_isa(isa_names[isa]) != PTHCV_OK) continue;
        float *first = NULL;
        int same = 1;
        for (int ti = 0; ti < 3; ti++) {
            pthcv_set_num_threads(threads_list[ti]);
            pthcv_tensor *y = pthcv_conv2d_forward(conv, x, r);
            if (!y) {
                CHECK(0, "%s [%s]: forward: %s", c->name, isa_names[isa], pthcv_last_error());
                same = 0;
                break;
            }
            int shape_ok = y->ndim == 4 && y->shape[0] == c->n && y->shape[1] == c->cout && y->shape[2] == oh &&
                y->shape[3] == ow;
            if (!shape_ok) {
                CHECK(0, "%s [%s]: output shape", c->name, isa_names[isa]);
                pthcv_tensor_release(y);
                same = 0;
                break;
            }
            const float *yd = pthcv_tensor_data(y);
            if (!first) {
                first = malloc(sizeof(float) * (size_t)ny);
                memcpy(first, yd, sizeof(float) * (size_t)ny);
            } else if (memcmp(first, yd, sizeof(float) * (size_t)ny) != 0) {
                same = 0;
            }
            pthcv_tensor_release(y);
        }
        if (first) {
            double worst;
            CHECK(same, "%s [%s]: results differ between 1, 2 and 3 threads", c->name, isa_names[isa]);
            CHECK(close_to(first, ref, ny, 1e-4, &worst), "%s [%s]: off the reference by %.3g of max", c->name,
                  isa_names[isa], worst);
            if (isa == 0) memcpy(scalar, first, sizeof(float) * (size_t)ny);
            else
                CHECK(close_to(first, scalar, ny, 1e-4, &worst), "%s [%s]: off the scalar path by %.3g", c->name,
                      isa_names[isa], worst);
        }
        free(first);
    }
    pthcv_set_isa("auto");
    pthcv_set_num_threads(2);
    pthcv_conv2d_free(conv);
    pthcv_tensor_release(x);
    pthcv_tensor_release(w);
    pthcv_tensor_release(b);
    pthcv_tensor_release(r);
    free(ref);
    free(scalar);
}

static const char *act_names[] = {"none", "relu",      "relu6",       "leaky_relu", "elu",       "sigmoid", "tanh",
                                  "silu", "hardswish", "hardsigmoid", "gelu",       "gelu_tanh", "clamp"};

static pthcv_activation act_of(int kind)
{
    pthcv_activation a = {kind, 0, 0};
    if (kind == PTHCV_ACT_LEAKY_RELU) a.alpha = 0.1f;
    if (kind == PTHCV_ACT_ELU) a.alpha = 1.3f;
    if (kind == PTHCV_ACT_CLAMP) a.alpha = -0.25f, a.beta = 0.5f;
    return a;
}

static void test_conv(void)
{
    static const conv_case cases[] = {
        /* name            n cin  h  w cout kh kw sh sw ph pw dh dw g  mode bias res act */
        {"1x1 s1", 2, 17, 9, 11, 33, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, ACT(0)},
        {"1x1 s1 wide", 1, 7, 40, 41, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_RELU)},
        {"1x1 s2", 1, 7, 9, 10, 3, 1, 1, 2, 2, 0, 0, 1, 1, 1, 0, 0, 0, ACT(0)},
        {"1x1 p1", 1, 3, 5, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, ACT(0)},
        {"3x3 s1 p1", 1, 3, 13, 15, 17, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, ACT(PTHCV_ACT_RELU)},
        {"3x3 s2 p1", 2, 17, 12, 9, 7, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 1, 1, ACT(0)},
        {"3x3 s3 p0", 1, 7, 17, 16, 3, 3, 3, 3, 3, 0, 0, 1, 1, 1, 0, 0, 0, ACT(0)},
        {"3x3 K>256", 1, 33, 8, 9, 17, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_RELU6)},
        {"5x5 d2 p2", 1, 7, 15, 14, 7, 5, 5, 1, 1, 2, 2, 2, 2, 1, 0, 1, 0, ACT(0)},
        {"5x5 K=1600", 1, 64, 6, 7, 16, 5, 5, 1, 1, 2, 2, 1, 1, 1, 0, 1, 0, ACT(0)},
        {"7x7 s2 p3", 1, 3, 23, 23, 33, 7, 7, 2, 2, 3, 3, 1, 1, 1, 0, 0, 0, ACT(PTHCV_ACT_RELU)},
        {"1x3 s(1,2)", 1, 3, 7, 12, 7, 1, 3, 1, 2, 0, 2, 1, 1, 1, 0, 1, 0, ACT(0)},
        {"3x1 d(2,1)", 1, 3, 11, 6, 7, 3, 1, 1, 1, 2, 0, 2, 1, 1, 0, 1, 0, ACT(0)},
        {"k>input", 1, 3, 2, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, ACT(0)},
        {"groups 3", 2, 33, 7, 8, 33, 3, 3, 1, 1, 1, 1, 1, 1, 3, 0, 1, 1, ACT(0)},
        {"groups 3 1x1", 1, 3, 5, 9, 3, 1, 1, 1, 1, 0, 0, 1, 1, 3, 0, 1, 0, ACT(0)},
        {"dw 3x3 s1", 2, 17, 14, 13, 17, 3, 3, 1, 1, 1, 1, 1, 1, 17, 0, 1, 1, ACT(PTHCV_ACT_RELU6)},
        {"dw 3x3 s2", 1, 17, 15, 18, 17, 3, 3, 2, 2, 1, 1, 1, 1, 17, 0, 1, 0, ACT(PTHCV_ACT_RELU6)},
        {"dw 3x3 s2 even", 1, 7, 16, 16, 7, 3, 3, 2, 2, 1, 1, 1, 1, 7, 0, 0, 0, ACT(0)},
        {"dw 5x5 s1", 1, 7, 11, 21, 7, 5, 5, 1, 1, 2, 2, 1, 1, 7, 0, 1, 0, ACT(0)},
        {"dw 5x5 s2", 1, 33, 9, 19, 33, 5, 5, 2, 2, 2, 2, 1, 1, 33, 0, 1, 0, ACT(0)},
        {"dw 7x7 s1 p3", 1, 3, 9, 9, 3, 7, 7, 1, 1, 3, 3, 1, 1, 3, 0, 1, 0, ACT(0)},
        {"dw 3x3 p0", 1, 3, 5, 30, 3, 3, 3, 1, 1, 0, 0, 1, 1, 3, 0, 1, 0, ACT(0)},
        {"dw mult 2", 1, 17, 8, 9, 34, 3, 3, 1, 1, 1, 1, 1, 1, 17, 0, 1, 0, ACT(0)},
        {"dw d2", 1, 7, 12, 12, 7, 3, 3, 1, 1, 2, 2, 2, 2, 7, 0, 1, 0, ACT(0)},
        {"dw s3", 1, 7, 12, 13, 7, 3, 3, 3, 3, 1, 1, 1, 1, 7, 0, 1, 0, ACT(0)},
        /* dilated depthwise (dwconv*.c's dilated kernels): odd sizes, strides, borders, residual */
        {"dw 5x5 d2 33", 1, 33, 33, 33, 33, 5, 5, 1, 1, 4, 4, 2, 2, 33, 0, 1, 1, ACT(PTHCV_ACT_HARDSWISH)},
        {"dw 5x5 d2 s2", 1, 17, 17, 19, 17, 5, 5, 2, 2, 4, 4, 2, 2, 17, 0, 1, 0, ACT(PTHCV_ACT_RELU)},
        {"dw 3x3 d3 p1", 2, 3, 13, 7, 3, 3, 3, 1, 1, 1, 1, 3, 3, 3, 0, 0, 1, ACT(0)},
        {"dw 3x3 d2 s2 p0", 1, 7, 16, 15, 7, 3, 3, 2, 2, 0, 0, 2, 2, 7, 0, 1, 1, ACT(PTHCV_ACT_RELU6)},
        {"dw 1ch d4 wide", 1, 1, 9, 40, 1, 3, 3, 1, 1, 4, 4, 4, 4, 1, 0, 1, 0, ACT(0)},
        {"dw 7x7 d2 mult 2", 1, 3, 17, 17, 6, 7, 7, 1, 1, 6, 6, 2, 2, 3, 0, 1, 0, ACT(0)},
        {"dw 3x3 d(2,1)", 1, 7, 11, 9, 7, 3, 3, 1, 1, 2, 1, 2, 1, 7, 0, 1, 0, ACT(0)},
        {"reflect dw d2", 1, 7, 9, 10, 7, 3, 3, 1, 1, 2, 2, 2, 2, 7, PTHCV_PAD_REFLECT, 1, 0, ACT(0)},
        {"reflect 3x3", 1, 3, 9, 10, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, PTHCV_PAD_REFLECT, 1, 0, ACT(0)},
        {"replicate 5x5", 1, 3, 9, 10, 7, 5, 5, 2, 2, 2, 2, 1, 1, 1, PTHCV_PAD_REPLICATE, 1, 0, ACT(0)},
        {"circular 3x3", 2, 3, 6, 7, 7, 3, 3, 1, 1, 1, 2, 1, 1, 1, PTHCV_PAD_CIRCULAR, 1, 1, ACT(0)},
        {"reflect dw", 1, 7, 8, 9, 7, 3, 3, 1, 1, 1, 1, 1, 1, 7, PTHCV_PAD_REFLECT, 1, 0, ACT(0)},
        /* small maps: pixels as rows of C^T (transposed store, per-group column bias) */
        {"7x7 map C^T", 2, 40, 7, 7, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_HARDSWISH)},
        {"7x7 groups C^T", 1, 32, 7, 7, 64, 1, 1, 1, 1, 0, 0, 1, 1, 2, 0, 1, 1, ACT(PTHCV_ACT_RELU6)},
        {"7x7 K>256 C^T", 1, 300, 9, 9, 48, 3, 3, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_SILU)},
        /* the im2col packed row of k by row of k across groups of panels; at 2 and 3 threads on
         * small maps (N within two column blocks, M >= 4 panels) packed once for all tasks */
        {"1x1 s2 wide", 1, 7, 40, 41, 17, 1, 1, 2, 2, 0, 0, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_RELU)},
        {"3x1 ow=1", 1, 3, 70, 1, 7, 3, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1, 0, ACT(0)},
        /* strided 1x1 without padding: the input sampled first, then the stride-1 packing */
        {"1x1 s(2,3) groups 3", 2, 6, 9, 11, 66, 1, 1, 2, 3, 0, 0, 1, 1, 3, 0, 1, 1, ACT(PTHCV_ACT_RELU)},
        {"1x1 s2 odd 33", 1, 33, 17, 15, 17, 1, 1, 2, 2, 0, 0, 1, 1, 1, 0, 1, 1, ACT(0)},
        {"3x3 s2 1-row", 1, 1, 3, 140, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 0, 0, ACT(0)},
        {"3x3 s2 shared B", 2, 17, 27, 23, 40, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_RELU)},
        {"3x3 s2 7x7 shared B", 1, 33, 14, 14, 130, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_RELU)},
        {"5x5 groups 2 shared B", 1, 14, 13, 11, 66, 5, 5, 1, 1, 2, 2, 1, 1, 2, 0, 1, 0, ACT(PTHCV_ACT_RELU6)},
        /* strided, kernel at least the stride, no dilation: the input split into its phases first */
        {"5x5 s2 groups 2 phased", 2, 14, 13, 11, 66, 5, 5, 2, 2, 2, 1, 1, 1, 2, 0, 1, 1, ACT(PTHCV_ACT_RELU)},
        {"4x4 s4 patches", 1, 3, 16, 20, 40, 4, 4, 4, 4, 0, 0, 1, 1, 1, 0, 1, 0, ACT(0)},
        {"3x3 s(2,1) p(1,2)", 1, 5, 11, 9, 9, 3, 3, 2, 1, 1, 2, 1, 1, 1, 0, 1, 1, ACT(0)},
        {"3x3 s3 p2 odd", 1, 4, 20, 17, 7, 3, 3, 3, 3, 2, 2, 1, 1, 1, 0, 1, 0, ACT(PTHCV_ACT_SILU)},
        {"2x2 s3 unphased", 1, 4, 14, 13, 7, 2, 2, 3, 3, 1, 1, 1, 1, 1, 0, 1, 0, ACT(0)},
        {"3x3 s2 d2 unphased", 1, 4, 15, 16, 7, 3, 3, 2, 2, 2, 2, 2, 2, 1, 0, 1, 0, ACT(0)},
        {"9x9 s2 p4 K=81", 1, 3, 30, 25, 16, 9, 9, 2, 2, 4, 4, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_RELU)},
        {"replicate 3x3 s2", 2, 6, 10, 9, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, PTHCV_PAD_REPLICATE, 1, 1, ACT(0)},
        {"stem 3x3 s2 p1", 1, 3, 45, 47, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 1, 0, ACT(PTHCV_ACT_HARDSWISH)},
        /* Winograd F(4,3): 3x3 s1, >= 8 channels; partial tiles, tiles not a multiple of MR or 8 */
        {"wino p1 odd", 2, 19, 13, 11, 21, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_RELU)},
        {"wino p0", 1, 8, 10, 9, 8, 3, 3, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, ACT(0)},
        {"wino p2 9x9", 1, 9, 9, 9, 17, 3, 3, 1, 1, 2, 2, 1, 1, 1, 0, 1, 0, ACT(PTHCV_ACT_RELU6)},
        {"wino K>256", 1, 300, 12, 9, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_SILU)},
        {"wino 30x29", 1, 16, 30, 29, 35, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_CLAMP)},
        {"wino 56x50", 1, 16, 56, 50, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_RELU)},
        {"wino 14x22", 2, 12, 14, 22, 13, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_HARDSWISH)},
        {"wino 14x14", 1, 40, 14, 14, 70, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, ACT(0)},
        {"wino reflect", 1, 8, 9, 10, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, PTHCV_PAD_REFLECT, 1, 0, ACT(0)},
        /* blocks the threads do not divide: halves of the output channels (the last past cout) */
        {"wino 56x56 c33", 1, 9, 56, 56, 33, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_RELU)},
        {"wino 60x57 c17", 1, 8, 60, 57, 17, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_SIGMOID)},
        /* Winograd F(2,3): small maps, >= 64 channels; odd sizes, partial quads, K slices */
        {"wino23 7x7", 1, 64, 7, 7, 70, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_RELU)},
        {"wino23 5x6", 2, 65, 5, 6, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_HARDSWISH)},
        {"wino23 K>256", 1, 300, 8, 8, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, ACT(PTHCV_ACT_SILU)},
        /* cin 513: K slices 171 x 3; 257: 129 + 128 (U packed slice by slice) */
        {"wino23 K=513", 1, 513, 7, 7, 67, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_RELU)},
        {"wino K=257", 1, 257, 13, 10, 33, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, ACT(PTHCV_ACT_RELU)},
        {"wino23 p0", 1, 64, 9, 9, 72, 3, 3, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, ACT(PTHCV_ACT_CLAMP)},
        {"wino23 7x13", 1, 96, 7, 13, 65, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, ACT(0)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_conv_case(&cases[i]);

    /* every activation, with bias and residual, on the GEMM, 1x1 and depthwise paths */
    for (int kind = PTHCV_ACT_NONE; kind <= PTHCV_ACT_CLAMP; kind++) {
        char n1[64], n2[64], n3[64];
        snprintf(n1, sizeof n1, "3x3 act %s", act_names[kind]);
        snprintf(n2, sizeof n2, "1x1 act %s", act_names[kind]);
        snprintf(n3, sizeof n3, "dw act %s", act_names[kind]);
        conv_case a = {n1, 1, 7, 9, 11, 17, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, act_of(kind)};
        conv_case b = {n2, 2, 17, 5, 7, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, act_of(kind)};
        conv_case d = {n3, 1, 17, 10, 19, 17, 3, 3, 1, 1, 1, 1, 1, 1, 17, 0, 1, 1, act_of(kind)};
        run_conv_case(&a);
        run_conv_case(&b);
        run_conv_case(&d);
    }
}

/* a non-contiguous input (a transposed view) and an unbatched one */
static void test_conv_layouts(void)
{
    int64_t xs[4] = {1, 3, 6, 8}, ws[4] = {5, 3, 3, 3};
    pthcv_tensor *x = random_tensor(4, xs), *w = random_tensor(4, ws);
    int64_t vs[4] = {1, 3, 8, 6}, vst[4] = {144, 48, 1, 8};
    pthcv_tensor *xt = pthcv_tensor_view(x, 4, vs, vst, 0);
    int64_t cs[4] = {1, 3, 8, 6};
    pthcv_tensor *xc = pthcv_tensor_new(PTHCV_FLOAT32, 4, cs);
    float *xd = pthcv_tensor_data(x), *cd = pthcv_tensor_data(xc);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 6; j++) cd[(c * 8 + i) * 6 + j] = xd[(c * 6 + j) * 8 + i];
    pthcv_conv2d_params p = {{1, 1}, {1, 1}, {1, 1}, 1, 0, ACT(0)};
    pthcv_conv2d *conv = pthcv_conv2d_prepare(w, NULL, &p);
    pthcv_tensor *y1 = pthcv_conv2d_forward(conv, xt, NULL), *y2 = pthcv_conv2d_forward(conv, xc, NULL);
    CHECK(y1 && y2 && memcmp(pthcv_tensor_data(y1), pthcv_tensor_data(y2), sizeof(float) * (size_t)y1->numel) == 0,
          "non-contiguous input gives the contiguous result");
    int64_t us[3] = {3, 8, 6};
    pthcv_tensor *xu = pthcv_tensor_view(xc, 3, us, NULL, 0);
    if (!xu) {
        int64_t ust[3] = {48, 6, 1};
        xu = pthcv_tensor_view(xc, 3, us, ust, 0);
    }
    pthcv_tensor *y3 = xu ? pthcv_conv2d_forward(conv, xu, NULL) : NULL;
    CHECK(y3 && y3->ndim == 3 && y3->shape[0] == 5 && y2 &&
              memcmp(pthcv_tensor_data(y3), pthcv_tensor_data(y2), sizeof(float) * (size_t)y2->numel) == 0,
          "unbatched [C, H, W] input gives [out, H', W']");
    pthcv_tensor_release(y1), pthcv_tensor_release(y2), pthcv_tensor_release(y3);
    pthcv_tensor_release(xu), pthcv_tensor_release(xt), pthcv_tensor_release(xc);
    pthcv_conv2d_free(conv);
    pthcv_tensor_release(x), pthcv_tensor_release(w);
}

static int error_has(const char *word) { return strstr(pthcv_last_error(), word) != NULL; }

/* One convolution first run on a 7x7 map (its weights change to the
 * transposed form, the first one freed), then on a 20x20 map (the first
 * form made again from it): each result equals a fresh convolution's. */
static void test_conv_forms(void)
{
    int64_t ws[4] = {64, 24, 3, 3}, bs[1] = {64}, small[4] = {1, 24, 13, 13}, big[4] = {1, 24, 40, 40};
    pthcv_tensor *w = random_tensor(4, ws), *b = random_tensor(1, bs);
    pthcv_tensor *xs = random_tensor(4, small), *xb = random_tensor(4, big);
    pthcv_conv2d_params p = {{2, 2}, {1, 1}, {1, 1}, 1, 0, ACT(PTHCV_ACT_RELU)};
    pthcv_conv2d *c = pthcv_conv2d_prepare(w, b, &p), *fresh1 = pthcv_conv2d_prepare(w, b, &p),
                 *fresh2 = pthcv_conv2d_prepare(w, b, &p);
    int64_t bytes0 = pthcv_conv2d_weight_bytes(c);
    pthcv_tensor *y1 = pthcv_conv2d_forward(c, xs, NULL), *r1 = pthcv_conv2d_forward(fresh1, xs, NULL);
    int64_t bytes1 = pthcv_conv2d_weight_bytes(c);
    pthcv_tensor *y2 = pthcv_conv2d_forward(c, xb, NULL), *r2 = pthcv_conv2d_forward(fresh2, xb, NULL);
    pthcv_tensor *back = pthcv_conv2d_weight(c);
    CHECK(y1 && r1 && y1->shape[2] == 7 &&
              memcmp(pthcv_tensor_data(y1), pthcv_tensor_data(r1), sizeof(float) * (size_t)r1->numel) == 0,
          "7x7 map: the transposed form gives a fresh convolution's result");
    CHECK(y2 && r2 && memcmp(pthcv_tensor_data(y2), pthcv_tensor_data(r2), sizeof(float) * (size_t)r2->numel) == 0,
          "20x20 map after a 7x7 one: the same result as a fresh convolution");
    CHECK(bytes0 > 0 && bytes1 > 0 && bytes1 <= bytes0 * 17 / 16,
          "one form kept after a first forward on a small map (%lld then %lld bytes)", (long long)bytes0,
          (long long)bytes1);
    CHECK(back && memcmp(pthcv_tensor_data(back), pthcv_tensor_data(w), sizeof(float) * (size_t)w->numel) == 0,
          "pthcv_conv2d_weight from the transposed form gives the weights back");
    pthcv_tensor_release(y1), pthcv_tensor_release(r1), pthcv_tensor_release(y2), pthcv_tensor_release(r2);
    pthcv_tensor_release(back);
    pthcv_conv2d_free(c), pthcv_conv2d_free(fresh1), pthcv_conv2d_free(fresh2);
    pthcv_tensor_release(w), pthcv_tensor_release(b), pthcv_tensor_release(xs), pthcv_tensor_release(xb);
}

static void test_conv_errors(void)
{
    int64_t ws[4] = {6, 4, 3, 3}, xs[4] = {1, 5, 8, 8}, bs[1] = {5};
    pthcv_tensor *w = random_tensor(4, ws), *x = random_tensor(4, xs), *b = random_tensor(1, bs);
    pthcv_conv2d_params p = {{1, 1}, {0, 0}, {1, 1}, 2, 0, ACT(0)};
    pthcv_conv2d *c = pthcv_conv2d_prepare(w, NULL, &p);
    CHECK(c != NULL, "prepare with groups 2: %s", pthcv_last_error());
    CHECK(pthcv_conv2d_forward(c, x, NULL) == NULL && error_has("[N, 8, H, W]") && error_has("[1, 5, 8, 8]"),
          "channel mismatch names expected and actual shapes: %s", pthcv_last_error());
    int64_t rs[4] = {1, 6, 5, 5}, xs2[4] = {1, 8, 8, 8};
    pthcv_tensor *r = random_tensor(4, rs), *x2 = random_tensor(4, xs2);
    CHECK(pthcv_conv2d_forward(c, x2, r) == NULL && error_has("[1, 6, 6, 6]") && error_has("[1, 6, 5, 5]"),
          "residual mismatch names both shapes: %s", pthcv_last_error());
    pthcv_conv2d_free(c);
    p.groups = 4;
    CHECK(pthcv_conv2d_prepare(w, NULL, &p) == NULL && error_has("divisible"), "out_channels %% groups: %s",
          pthcv_last_error());
    p.groups = 1;
    CHECK(pthcv_conv2d_prepare(w, b, &p) == NULL && error_has("bias") && error_has("[6]"), "bias size: %s",
          pthcv_last_error());
    p.stride[0] = 0;
    CHECK(pthcv_conv2d_prepare(w, NULL, &p) == NULL && error_has("stride"), "stride 0: %s", pthcv_last_error());
    p.stride[0] = 1;
    p.padding_mode = PTHCV_PAD_CONSTANT;
    CHECK(pthcv_conv2d_prepare(w, NULL, &p) == NULL && error_has("padding_mode"), "constant mode: %s",
          pthcv_last_error());
    p.padding_mode = PTHCV_PAD_REFLECT;
    p.padding[0] = p.padding[1] = 8;
    int64_t xs3[4] = {1, 4, 8, 8};
    pthcv_tensor *x3 = random_tensor(4, xs3);
    c = pthcv_conv2d_prepare(w, NULL, &p);
    CHECK(c && pthcv_conv2d_forward(c, x3, NULL) == NULL && error_has("too large"), "reflect pad >= size: %s",
          pthcv_last_error());
    pthcv_conv2d_free(c);
    p.padding_mode = 0;
    p.padding[0] = p.padding[1] = 0;
    int64_t xs4[4] = {1, 4, 2, 8};
    pthcv_tensor *x4 = random_tensor(4, xs4);
    c = pthcv_conv2d_prepare(w, NULL, &p);
    CHECK(c && pthcv_conv2d_forward(c, x4, NULL) == NULL && error_has("smaller than"), "input smaller than kernel: %s",
          pthcv_last_error());
    pthcv_conv2d_free(c);
    pthcv_tensor_release(w), pthcv_tensor_release(x), pthcv_tensor_release(b), pthcv_tensor_release(r);
    pthcv_tensor_release(x2), pthcv_tensor_release(x3), pthcv_tensor_release(x4);
}

/* ---- linear ---------------------------------------------------------------------- */
static void run_linear_case(int ndim, const int64_t *xshape, int64_t out, int bias, int kind)
{
    int64_t in = xshape[ndim - 1], ws[2] = {out, in}, bs[1] = {out};
    pthcv_tensor *x = random_tensor(ndim, xshape), *w = random_tensor(2, ws), *b = bias ? random_tensor(1, bs) : NULL;
    int64_t rows = in ? x->numel / in : 0;
    float *ref = malloc(sizeof(float) * (size_t)(rows * out + 1)),
          *scalar = malloc(sizeof(float) * (size_t)(rows * out + 1));
    const float *xd = pthcv_tensor_data(x), *wd = pthcv_tensor_data(w), *bd = b ? pthcv_tensor_data(b) : NULL;
    pthcv_activation act = act_of(kind);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t o = 0; o < out; o++) {
            double s = bd ? bd[o] : 0;
            for (int64_t k = 0; k < in; k++) s += (double)xd[i * in + k] * wd[o * in + k];
            ref[i * out + o] = pthcv_act_scalar((float)s, &act);
        }
    pthcv_linear *l = pthcv_linear_prepare(w, b, &act);
    char name[96];
    snprintf(name, sizeof name, "linear %dd in %lld out %lld bias %d %s", ndim, (long long)in, (long long)out, bias,
             act_names[kind]);
    CHECK(l != NULL, "%s: prepare: %s", name, pthcv_last_error());
    for (int isa = 0; l && isa < PTHCV_ISA_COUNT; isa++) {
        if (pthcv_set_isa(isa_names[isa]) != PTHCV_OK) continue;
        float *first = NULL;
        int same = 1;
        for (int ti = 0; ti < 3; ti++) {
            pthcv_set_num_threads(threads_list[ti]);
            pthcv_tensor *y = pthcv_linear_forward(l, x);
            if (!y || y->ndim != ndim || y->shape[ndim - 1] != out) {
                CHECK(0, "%s [%s]: forward: %s", name, isa_names[isa], y ? "shape" : pthcv_last_error());
                pthcv_tensor_release(y);
                same = 0;
                break;
            }
            if (!first) {
                first = malloc(sizeof(float) * (size_t)(rows * out + 1));
                memcpy(first, pthcv_tensor_data(y), sizeof(float) * (size_t)(rows * out));
            } else if (memcmp(first, pthcv_tensor_data(y), sizeof(float) * (size_t)(rows * out)) != 0) {
                same = 0;
            }
            pthcv_tensor_release(y);
        }
        if (first) {
            double worst;
            CHECK(same, "%s [%s]: results differ between thread counts", name, isa_names[isa]);
            CHECK(close_to(first, ref, rows * out, 1e-4, &worst), "%s [%s]: off the reference by %.3g", name,
                  isa_names[isa], worst);
            if (isa == 0) memcpy(scalar, first, sizeof(float) * (size_t)(rows * out));
            else
                CHECK(close_to(first, scalar, rows * out, 1e-4, &worst), "%s [%s]: off the scalar path by %.3g", name,
                      isa_names[isa], worst);
        }
        free(first);
    }
    pthcv_set_isa("auto");
    pthcv_set_num_threads(2);
    pthcv_linear_free(l);
    pthcv_tensor_release(x), pthcv_tensor_release(w), pthcv_tensor_release(b);
    free(ref), free(scalar);
}

static void test_linear(void)
{
    int64_t s1[1] = {33}, s2[2] = {7, 17}, s3[3] = {2, 3, 33}, s4[2] = {5, 300}, s5[2] = {70, 1};
    /* more rows than a cache block of M: one block up to twice that (a box
     * head's rois), several beyond; K over two slices */
    int64_t s6[2] = {151, 301}, s7[2] = {263, 257};
    run_linear_case(2, s6, 33, 1, PTHCV_ACT_RELU);
    run_linear_case(2, s7, 17, 1, PTHCV_ACT_NONE);
    run_linear_case(1, s1, 7, 1, PTHCV_ACT_NONE);
    run_linear_case(2, s2, 1, 0, PTHCV_ACT_NONE);
    run_linear_case(3, s3, 17, 1, PTHCV_ACT_RELU);
    run_linear_case(2, s4, 33, 1, PTHCV_ACT_GELU);
    run_linear_case(2, s5, 3, 1, PTHCV_ACT_SIGMOID);
    /* GELU, done in the AVX-512 kernel's store: edge tiles in M and N, K
     * of one step, a few, and two slices */
    int64_t g1[2] = {1, 7}, g2[2] = {3, 1}, g3[2] = {17, 33}, g4[2] = {33, 3}, g5[2] = {197, 300};
    run_linear_case(2, g1, 197, 1, PTHCV_ACT_GELU);
    run_linear_case(2, g2, 33, 0, PTHCV_ACT_GELU);
    run_linear_case(2, g3, 17, 1, PTHCV_ACT_GELU);
    run_linear_case(2, g4, 7, 1, PTHCV_ACT_GELU);
    run_linear_case(2, g5, 33, 1, PTHCV_ACT_GELU);
    for (int kind = PTHCV_ACT_NONE; kind <= PTHCV_ACT_CLAMP; kind++) run_linear_case(2, s2, 17, 1, kind);

    int64_t ws[2] = {4, 3}, xs[2] = {2, 5};
    pthcv_tensor *w = random_tensor(2, ws), *x = random_tensor(2, xs);
    pthcv_linear *l = pthcv_linear_prepare(w, NULL, NULL);
    CHECK(l && pthcv_linear_forward(l, x) == NULL && error_has("[..., 3]") && error_has("5"),
          "linear: in_features mismatch: %s", pthcv_last_error());
    pthcv_linear_free(l);
    pthcv_tensor_release(w), pthcv_tensor_release(x);
}

/* ---- fold_batchnorm ------------------------------------------------------------------ */
static void test_fold(void)
{
    int64_t ws[4] = {5, 3, 3, 3}, cs[1] = {5}, xs[4] = {1, 3, 7, 6};
    pthcv_tensor *w = random_tensor(4, ws), *b = random_tensor(1, cs), *m = random_tensor(1, cs);
    pthcv_tensor *v = random_tensor(1, cs), *g = random_tensor(1, cs), *be = random_tensor(1, cs);
    pthcv_tensor *x = random_tensor(4, xs);
    float *vd = pthcv_tensor_data(v);
    for (int i = 0; i < 5; i++) vd[i] = fabsf(vd[i]) + 0.1f;
    double eps = 1e-5;
    pthcv_tensor *nw = NULL, *nb = NULL;
    CHECK(pthcv_fold_batchnorm(w, b, m, v, g, be, eps, &nw, &nb) == PTHCV_OK, "fold: %s", pthcv_last_error());
    pthcv_conv2d_params p = {{1, 1}, {1, 1}, {1, 1}, 1, 0, ACT(0)};
    pthcv_conv2d *c0 = pthcv_conv2d_prepare(w, b, &p), *c1 = nw ? pthcv_conv2d_prepare(nw, nb, &p) : NULL;
    pthcv_tensor *y0 = pthcv_conv2d_forward(c0, x, NULL), *y1 = c1 ? pthcv_conv2d_forward(c1, x, NULL) : NULL;
    if (y0 && y1) {
        float *a = pthcv_tensor_data(y0), *f = pthcv_tensor_data(y1);
        const float *md = pthcv_tensor_data(m), *gd = pthcv_tensor_data(g), *bed = pthcv_tensor_data(be);
        int64_t plane = y0->shape[2] * y0->shape[3];
        for (int64_t i = 0; i < y0->numel; i++) {
            int o = (int)(i / plane);
            a[i] = (float)((a[i] - md[o]) / sqrt(vd[o] + eps) * gd[o] + bed[o]);
        }
        double worst;
        CHECK(close_to(f, a, y0->numel, 1e-5, &worst), "conv(folded) = bn(conv): off by %.3g", worst);
    } else {
        CHECK(0, "fold: convolutions failed: %s", pthcv_last_error());
    }
    /* affine=False and no conv bias */
    pthcv_tensor *nw2 = NULL, *nb2 = NULL;
    CHECK(pthcv_fold_batchnorm(w, NULL, m, v, NULL, NULL, eps, &nw2, &nb2) == PTHCV_OK && nb2 &&
              fabsf(((float *)pthcv_tensor_data(nb2))[2] -
                    (float)(-((float *)pthcv_tensor_data(m))[2] / sqrt(vd[2] + eps))) < 1e-6f,
          "fold without gamma, beta and bias");
    int64_t bad[1] = {4};
    pthcv_tensor *m4 = random_tensor(1, bad), *nw3 = NULL, *nb3 = NULL;
    CHECK(pthcv_fold_batchnorm(w, b, m4, v, g, be, eps, &nw3, &nb3) != PTHCV_OK && error_has("running_mean") &&
              error_has("[5]"),
          "fold: wrong running_mean size: %s", pthcv_last_error());
    pthcv_conv2d_free(c0), pthcv_conv2d_free(c1);
    pthcv_tensor_release(y0), pthcv_tensor_release(y1);
    pthcv_tensor *ts[] = {w, b, m, v, g, be, x, nw, nb, nw2, nb2, m4};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) pthcv_tensor_release(ts[i]);
}

/* ---- the AVX-512 kernel's GELU ----------------------------------------------------------
 * Its own formula (gemm_8x32_avx512.c), held to vm_gelu's bound
 * (spec/c/transformer_test.c): error below 3e-7 max(1, |x|) against
 * x Phi(x) in double; NaN, inf and -inf as torch's (NaN, inf, NaN). */
static void test_gelu_avx512(void)
{
#if defined(__x86_64__)
    if (!pthcv_isa_available(PTHCV_ISA_AVX512)) {
        printf("# skipped: no AVX-512 (its GELU is not run on this CPU)\n");
        return;
    }
    enum { N = 4096 };
    static float v[N], x0[N];
    double worst = 0, wx = 0;
    int n = 0;
    for (float x = -30.0f;; x += fmaxf(fabsf(x) * 3e-6f, 1e-6f)) {
        int end = x >= 30.0f;
        if (!end) x0[n] = v[n] = x, n++;
        if (n == N || (end && n)) {
            pthcv_gelu_avx512(v, n);
            for (int i = 0; i < n; i++) {
                double xd = x0[i], e = fabs(v[i] - 0.5 * xd * erfc(-xd / sqrt(2.0))) / fmax(1.0, fabs(xd));
                if (!(e <= worst)) worst = e, wx = xd;
            }
            n = 0;
        }
        if (end) break;
    }
    CHECK(worst < 3e-7, "gelu avx512: error %.3g at %.9g", worst, wx);
    float sp[19] = {NAN, INFINITY, -INFINITY, -40.0f, 0.0f, -0.0f, 1e30f, -1e30f, 1e-30f, -1e-30f,
                    5.0f, -5.0f, 0.5f, -0.5f, 2.0f, -2.0f, 3.0f, -3.0f, 40.0f}; /* 19: a masked tail */
    pthcv_gelu_avx512(sp, 19);
    CHECK(isnan(sp[0]) && sp[1] == INFINITY && isnan(sp[2]), "gelu avx512 (nan, inf, -inf) = (%g, %g, %g)", sp[0],
          sp[1], sp[2]);
    CHECK(sp[3] == 0.0f && sp[4] == 0.0f && sp[6] == 1e30f && sp[7] == 0.0f && sp[18] == 40.0f,
          "gelu avx512 far from 0: %g %g %g %g", sp[3], sp[6], sp[7], sp[18]);
    CHECK(fabsf(sp[8] - 0.5e-30f) < 1e-36f && fabsf(sp[9] + 0.5e-30f) < 1e-36f, "gelu avx512 near 0: %g %g", sp[8],
          sp[9]);
#endif
}

/* ---- the AVX-512 kernel's SiLU and Hardswish -------------------------------------------------
 * Done in the GEMM's store (gemm_8x32_avx512.c): the same bits as the
 * product without them followed by pthcv_act_row, on whole tiles, edge
 * rows in place, edge columns through the scratch tile, and tiles holding
 * values past exp's range (sums over 90 in size: SiLU's -0 and x). */
static void test_act_in_store(int kind)
{
#if defined(__x86_64__)
    if (!pthcv_isa_available(PTHCV_ISA_AVX512)) {
        printf("# skipped: no AVX-512 (its GEMM's %s is not run on this CPU)\n", act_names[kind]);
        return;
    }
    CHECK(pthcv_set_isa("avx512") == PTHCV_OK, "avx512 available");
    const int64_t shapes[][2] = {{37, 300}, {8, 64}, {3, 17}, {197, 33}};
    const int64_t outs[] = {45, 32, 7, 64};
    for (int c = 0; c < 4; c++) {
        for (int big = 0; big < 2; big++) {
            int64_t ws[2] = {outs[c], shapes[c][1]}, bs[1] = {outs[c]};
            pthcv_tensor *x = random_tensor(2, shapes[c]), *w = random_tensor(2, ws), *b = random_tensor(1, bs);
            if (big) { /* a few columns' sums far out of range, both signs */
                float *wd = pthcv_tensor_data(w);
                for (int64_t k = 0; k < ws[1]; k++) wd[k] *= 400.0f, wd[2 * ws[1] + k] *= -400.0f;
            }
            pthcv_activation none = act_of(PTHCV_ACT_NONE), act = act_of(kind);
            pthcv_linear *plain = pthcv_linear_prepare(w, b, &none), *fused = pthcv_linear_prepare(w, b, &act);
            for (int ti = 0; ti < 3 && plain && fused; ti++) {
                pthcv_set_num_threads(threads_list[ti]);
                pthcv_tensor *y0 = pthcv_linear_forward(plain, x), *y1 = pthcv_linear_forward(fused, x);
                int ok = y0 && y1;
                if (ok) {
                    pthcv_act_row(pthcv_tensor_data(y0), y0->numel, &act);
                    ok = memcmp(pthcv_tensor_data(y0), pthcv_tensor_data(y1), sizeof(float) * (size_t)y0->numel) == 0;
                }
                CHECK(ok, "%s in the avx512 store: [%lld, %lld] x %lld%s, %d threads: not pthcv_act_row's bits",
                      act_names[kind], (long long)shapes[c][0], (long long)shapes[c][1], (long long)outs[c], big ? " (out of range)" : "",
                      threads_list[ti]);
                pthcv_tensor_release(y0), pthcv_tensor_release(y1);
            }
            pthcv_linear_free(plain), pthcv_linear_free(fused);
            pthcv_tensor_release(x), pthcv_tensor_release(w), pthcv_tensor_release(b);
        }
    }
    pthcv_set_num_threads(2);
    pthcv_set_isa("auto");
#endif
}

/* ---- instruction sets ------------------------------------------------------------------- */
static void test_isa(void)
{
    printf("# cpu: %s\n", pthcv_cpu_info());
    CHECK(pthcv_set_isa("scalar") == PTHCV_OK && strstr(pthcv_cpu_info(), "using scalar"), "set_isa scalar");
    CHECK(pthcv_set_isa("sse9") != PTHCV_OK && error_has("unknown") && error_has("sse9"), "unknown isa: %s",
          pthcv_last_error());
#if defined(__x86_64__)
    CHECK(pthcv_set_isa("neon") == PTHCV_ERR_UNSUPPORTED && error_has("no neon"), "neon on x86: %s",
          pthcv_last_error());
    if (!pthcv_isa_available(PTHCV_ISA_AVX2)) printf("# skipped: no AVX2\n");
    if (pthcv_isa_available(PTHCV_ISA_AVX512)) {
        CHECK(pthcv_set_isa("avx512") == PTHCV_OK, "avx512 available");
    } else {
        CHECK(pthcv_set_isa("avx512") == PTHCV_ERR_UNSUPPORTED && error_has("no avx512"), "avx512 refused: %s",
              pthcv_last_error());
        printf("# skipped: no AVX-512 (its kernels are not run on this CPU)\n");
    }
#elif defined(__aarch64__)
    CHECK(pthcv_isa_available(PTHCV_ISA_NEON) && pthcv_set_isa("avx2") == PTHCV_ERR_UNSUPPORTED,
          "aarch64: neon, no avx2");
#endif
    CHECK(pthcv_set_isa("auto") == PTHCV_OK, "set_isa auto");
    for (int i = 0; i < 4; i++)
        if (pthcv_isa_available(i)) printf("# testing %s\n", isa_names[i]);
}

/* ---- torch fixtures ------------------------------------------------------------------------ */
/* A float32 little-endian C-order .npy, or NULL. */
static pthcv_tensor *read_npy(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char pre[10];
    pthcv_tensor *t = NULL;
    if (fread(pre, 1, 10, f) == 10 && memcmp(pre, "\x93NUMPY", 6) == 0) {
        size_t hl = pre[8] | (size_t)pre[9] << 8;
        if (pre[6] >= 2) { /* version 2: 4-byte header length */
            unsigned char more[2];
            if (fread(more, 1, 2, f) != 2) goto out;
            hl |= (size_t)more[0] << 16 | (size_t)more[1] << 24;
        }
        char *h = calloc(1, hl + 1);
        if (h && fread(h, 1, hl, f) == hl && strstr(h, "'<f4'") && strstr(h, "'fortran_order': False")) {
            const char *s = strstr(h, "'shape': (");
            int64_t shape[PTHCV_MAX_DIMS];
            int nd = 0;
            if (s) {
                s += 10;
                while (*s && *s != ')' && nd < PTHCV_MAX_DIMS) {
                    char *e;
                    long long v = strtoll(s, &e, 10);
                    if (e == s) break;
                    shape[nd++] = v;
                    s = e;
                    while (*s == ',' || *s == ' ') s++;
                }
                t = pthcv_tensor_new(PTHCV_FLOAT32, nd, shape);
                if (t && fread(pthcv_tensor_data(t), sizeof(float), (size_t)t->numel, f) != (size_t)t->numel) {
                    pthcv_tensor_release(t);
                    t = NULL;
                }
            }
        }
        free(h);
    }
out:
    fclose(f);
    return t;
}

static const char *field(char **kv, int n, const char *key)
{
    size_t l = strlen(key);
    for (int i = 0; i < n; i++)
        if (strncmp(kv[i], key, l) == 0 && kv[i][l] == '=') return kv[i] + l + 1;
    return NULL;
}

static void pair(const char *s, int32_t out[2], int dflt)
{
    out[0] = out[1] = dflt;
    if (s) sscanf(s, "%d,%d", &out[0], &out[1]);
}

static pthcv_activation parse_act(const char *s)
{
    pthcv_activation a = {0, 0, 0};
    if (!s) return a;
    char name[32] = "";
    float p1 = 0, p2 = 0;
    sscanf(s, "%31[a-z0-9_]:%f:%f", name, &p1, &p2);
    for (int k = 0; k <= PTHCV_ACT_CLAMP; k++)
        if (strcmp(name, act_names[k]) == 0) a.kind = k;
    a.alpha = p1, a.beta = p2;
    return a;
}

static int test_fixture_dir(const char *dir)
{
    char path[1024], line[2048];
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        CHECK(0, "no fixture manifest %s", path);
        return 0;
    }
    int ran = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char *tok[64];
        int n = 0;
        for (char *s = strtok(line, " \t\n"); s && n < 64; s = strtok(NULL, " \t\n")) tok[n++] = s;
        if (n < 3) continue;
        const char *op = tok[0], *name = tok[1];
        double tol = atof(tok[2]);
        char **kv = tok + 3;
        int nkv = n - 3;
        const char *fx = field(kv, nkv, "x"), *fw = field(kv, nkv, "weight"), *fb = field(kv, nkv, "bias");
        const char *fr = field(kv, nkv, "residual"), *fo = field(kv, nkv, "out");
        pthcv_tensor *x = fx ? read_npy(dir, fx) : NULL, *w = fw ? read_npy(dir, fw) : NULL;
        pthcv_tensor *b = fb ? read_npy(dir, fb) : NULL, *r = fr ? read_npy(dir, fr) : NULL;
        pthcv_tensor *expect = fo ? read_npy(dir, fo) : NULL, *y = NULL;
        pthcv_activation act = parse_act(field(kv, nkv, "act"));
        int known = 1;
        if (strcmp(op, "conv2d") == 0 || strcmp(op, "conv2d_bn") == 0) {
            pthcv_conv2d_params p = {{1, 1}, {0, 0}, {1, 1}, 1, 0, act};
            pair(field(kv, nkv, "stride"), p.stride, 1);
            pair(field(kv, nkv, "padding"), p.padding, 0);
            pair(field(kv, nkv, "dilation"), p.dilation, 1);
            const char *g = field(kv, nkv, "groups"), *mode = field(kv, nkv, "mode");
            p.groups = g ? atoi(g) : 1;
            static const char *modes[] = {"zeros", "reflect", "replicate", "circular"};
            for (int i = 0; mode && i < 4; i++)
                if (strcmp(mode, modes[i]) == 0) p.padding_mode = i;
            pthcv_tensor *nw = NULL, *nb = NULL;
            if (strcmp(op, "conv2d_bn") == 0 && w) {
                const char *fe = field(kv, nkv, "eps");
                pthcv_tensor *m = read_npy(dir, field(kv, nkv, "mean")), *v = read_npy(dir, field(kv, nkv, "var"));
                pthcv_tensor *ga = read_npy(dir, field(kv, nkv, "gamma")), *be = read_npy(dir, field(kv, nkv, "beta"));
                if (m && v && ga && be) pthcv_fold_batchnorm(w, b, m, v, ga, be, fe ? atof(fe) : 1e-5, &nw, &nb);
                pthcv_tensor_release(m), pthcv_tensor_release(v), pthcv_tensor_release(ga), pthcv_tensor_release(be);
            }
            pthcv_conv2d *c = w ? pthcv_conv2d_prepare(nw ? nw : w, nw ? nb : b, &p) : NULL;
            for (int isa = 0; c && x && expect && isa < PTHCV_ISA_COUNT; isa++) {
                if (pthcv_set_isa(isa_names[isa]) != PTHCV_OK) continue;
                y = pthcv_conv2d_forward(c, x, r);
                double worst = 0;
                CHECK(y && y->numel == expect->numel &&
                          close_to(pthcv_tensor_data(y), pthcv_tensor_data(expect), y->numel, tol, &worst),
                      "fixture %s/%s [%s]: %s (off by %.3g of max)", dir, name, isa_names[isa],
                      y ? "differs from torch" : pthcv_last_error(), worst);
                pthcv_tensor_release(y);
                y = NULL;
            }
            if (!c || !x || !expect)
                CHECK(0, "fixture %s/%s: cannot load or prepare: %s", dir, name, pthcv_last_error());
            pthcv_conv2d_free(c);
            pthcv_tensor_release(nw), pthcv_tensor_release(nb);
        } else if (strcmp(op, "linear") == 0) {
            pthcv_linear *l = w ? pthcv_linear_prepare(w, b, &act) : NULL;
            for (int isa = 0; l && x && expect && isa < PTHCV_ISA_COUNT; isa++) {
                if (pthcv_set_isa(isa_names[isa]) != PTHCV_OK) continue;
                y = pthcv_linear_forward(l, x);
                double worst = 0;
                CHECK(y && y->numel == expect->numel &&
                          close_to(pthcv_tensor_data(y), pthcv_tensor_data(expect), y->numel, tol, &worst),
                      "fixture %s/%s [%s]: %s (off by %.3g of max)", dir, name, isa_names[isa],
                      y ? "differs from torch" : pthcv_last_error(), worst);
                pthcv_tensor_release(y);
                y = NULL;
            }
            if (!l || !x || !expect)
                CHECK(0, "fixture %s/%s: cannot load or prepare: %s", dir, name, pthcv_last_error());
            pthcv_linear_free(l);
        } else {
            known = 0;
        }
        ran += known;
        pthcv_set_isa("auto");
        pthcv_tensor_release(x), pthcv_tensor_release(w), pthcv_tensor_release(b), pthcv_tensor_release(r);
        pthcv_tensor_release(expect);
    }
    fclose(f);
    printf("# %s: %d conv2d/linear fixture cases\n", dir, ran);
    return ran;
}

/* ---- the thread pool ------------------------------------------------------------------
 * Many jobs of every size at 1-4 threads (more threads than cores too),
 * nested calls, thread counts dropping between jobs: every index runs
 * exactly once, and chunks are whole ranges of at least `grain` indices
 * whose lengths differ by 1 at most (so that two threads get equal shares).
 * Each job's counters are fresh, so a chunk run under the wrong job would
 * show up as a miscount. */
typedef struct {
    atomic_int *hits;
    int64_t grain, n;
    atomic_int short_chunks, nested_bad;
    atomic_llong shortest, longest;
} pool_job;

static void nested_task(void *vctx, int64_t begin, int64_t end)
{
    atomic_int *c = vctx;
    atomic_fetch_add(c, (int)(end - begin));
}

static void pool_task(void *vctx, int64_t begin, int64_t end)
{
    pool_job *j = vctx;
    if (end - begin < j->grain && !(begin == 0 && end == j->n)) atomic_fetch_add(&j->short_chunks, 1);
    long long len = end - begin, m = atomic_load(&j->shortest);
    while (len < m && !atomic_compare_exchange_weak(&j->shortest, &m, len)) {}
    m = atomic_load(&j->longest);
    while (len > m && !atomic_compare_exchange_weak(&j->longest, &m, len)) {}
    for (int64_t i = begin; i < end; i++) atomic_fetch_add(&j->hits[i], 1);
    if (begin == 0) { /* a call from inside a task runs serially, on this thread */
        atomic_int c;
        atomic_init(&c, 0);
        pthcv_parallel_for(7, 1, nested_task, &c);
        if (atomic_load(&c) != 7) atomic_fetch_add(&j->nested_bad, 1);
    }
}

static void test_pool(void)
{
    static atomic_int hits[5000];
    int bad = 0, jobs = 0;
    for (int round = 0; round < 3000; round++) {
        int threads = 1 + round % 4;
        pthcv_set_num_threads(threads);
        pool_job j = {.hits = hits, .grain = 1 + round % 5, .n = 1 + (round * 7919) % 5000};
        atomic_init(&j.short_chunks, 0);
        atomic_init(&j.nested_bad, 0);
        atomic_init(&j.shortest, j.n);
        atomic_init(&j.longest, 0);
        for (int64_t i = 0; i < j.n; i++) atomic_init(&hits[i], 0);
        pthcv_parallel_for(j.n, j.grain, pool_task, &j);
        for (int64_t i = 0; i < j.n; i++) bad += atomic_load(&hits[i]) != 1;
        bad += atomic_load(&j.short_chunks) + atomic_load(&j.nested_bad);
        bad += atomic_load(&j.longest) - atomic_load(&j.shortest) > 1;
        jobs++;
    }
    CHECK(bad == 0, "thread pool: %d miscounted indices, short or uneven chunks or nested calls in %d jobs", bad, jobs);
    pthcv_set_num_threads(1);
}

/* ---- float16 weights (module:half()) ------------------------------------------------
 * A float16 pack computes with exactly the float32 values of its float16
 * weights: every path gives the same bits as a float32 pack of the rounded
 * weights (a 3x3 layer that would take Winograd runs on the GEMM: float16
 * transformed weights were 5e-3 off). */
static void half_pair(int ndim, const int64_t *shape, pthcv_tensor **h, pthcv_tensor **rounded)
{
    pthcv_tensor *f = random_tensor(ndim, shape);
    *h = pthcv_tensor_new(PTHCV_FLOAT16, ndim, shape);
    *rounded = pthcv_tensor_new(PTHCV_FLOAT32, ndim, shape);
    const float *fd = pthcv_tensor_data(f);
    uint16_t *hd = pthcv_tensor_data(*h);
    float *rd = pthcv_tensor_data(*rounded);
    for (int64_t i = 0; i < f->numel; i++) hd[i] = pthcv_float_to_half(fd[i]), rd[i] = pthcv_half_to_float(hd[i]);
    pthcv_tensor_release(f);
}

static void test_half(void)
{
    static const struct {
        const char *name;
        int cin, h, w, cout, k, stride, pad, groups, exact;
    } cases[] = {
        {"half 3x3 s2 (GEMM)", 10, 9, 11, 13, 3, 2, 1, 1, 1},
        {"half 1x1 (GEMM)", 24, 7, 6, 40, 1, 1, 0, 1, 1},
        {"half grouped (GEMM: 18 a group)", 36, 8, 8, 18, 3, 1, 1, 2, 1}, /* 2..16 a group: gconv.h, float32 */
        {"half depthwise", 9, 10, 9, 9, 3, 1, 1, 9, 1},
        {"half 3x3 (no Winograd)", 16, 20, 21, 20, 3, 1, 1, 1, 0},
        {"half 7x7 map (C^T)", 40, 7, 7, 64, 3, 1, 1, 1, 1},
        /* K = 297: two K slices of 149 and 148 (gemm.h: a packed operand
         * is stored slice by slice), as A and as C^T's B */
        {"half 3x3 s2 K=297 (GEMM)", 33, 15, 13, 20, 3, 2, 1, 1, 1},
        {"half 7x7 map K=297 (C^T)", 33, 7, 7, 64, 3, 1, 1, 1, 1},
    };
    for (int isa = 0; isa < PTHCV_ISA_COUNT; isa++) {
        if (pthcv_set_isa(isa_names[isa]) != PTHCV_OK) continue;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            int64_t ws[4] = {cases[i].cout, cases[i].cin / cases[i].groups, cases[i].k, cases[i].k};
            int64_t xs[4] = {1, cases[i].cin, cases[i].h, cases[i].w}, bs[1] = {cases[i].cout};
            pthcv_tensor *wh, *wr, *x = random_tensor(4, xs), *b = random_tensor(1, bs);
            half_pair(4, ws, &wh, &wr);
            pthcv_conv2d_params p = {{cases[i].stride, cases[i].stride},
                                     {cases[i].pad, cases[i].pad},
                                     {1, 1},
                                     cases[i].groups,
                                     0,
                                     ACT(PTHCV_ACT_RELU)};
            pthcv_conv2d *ch = pthcv_conv2d_prepare(wh, b, &p), *cf = pthcv_conv2d_prepare(wr, b, &p);
            CHECK(ch && cf, "%s [%s]: prepare: %s", cases[i].name, isa_names[isa], pthcv_last_error());
            if (ch && cf) {
                pthcv_set_num_threads(1);
                pthcv_tensor *yh = pthcv_conv2d_forward(ch, x, NULL), *yf = pthcv_conv2d_forward(cf, x, NULL);
                pthcv_set_num_threads(2);
                pthcv_tensor *yh2 = pthcv_conv2d_forward(ch, x, NULL);
                CHECK(yh && yf && yh2, "%s [%s]: forward: %s", cases[i].name, isa_names[isa], pthcv_last_error());
                if (yh && yf && yh2) {
                    size_t n = sizeof(float) * (size_t)yf->numel;
                    double worst;
                    CHECK(memcmp(pthcv_tensor_data(yh), pthcv_tensor_data(yh2), n) == 0,
                          "%s [%s]: 1 and 2 threads differ", cases[i].name, isa_names[isa]);
                    if (cases[i].exact)
                        CHECK(memcmp(pthcv_tensor_data(yh), pthcv_tensor_data(yf), n) == 0,
                              "%s [%s]: not the float32 result of the rounded weights", cases[i].name, isa_names[isa]);
                    else /* the float32 pack took Winograd, the float16 one the GEMM */
                        CHECK(close_to(pthcv_tensor_data(yh), pthcv_tensor_data(yf), yf->numel, 1e-5, &worst),
                              "%s [%s]: %.3g from the float32 result of the rounded weights", cases[i].name,
                              isa_names[isa], worst);
                }
                /* one pack (this instruction set's), float16: half the float32 pack's bytes;
                 * depthwise weights (a few KB) are float32 either way; the float32 3x3 pack
                 * also holds Winograd's 4x larger transformed weights */
                int64_t bh = pthcv_conv2d_weight_bytes(ch), bf = pthcv_conv2d_weight_bytes(cf);
                int dw = cases[i].groups == cases[i].cin && cases[i].groups > 1;
                CHECK(bh > 0 &&
                          (dw                   ? bh == bf
                               : cases[i].exact ? 2 * bh == bf
                                                : 2 * bh < bf),
                      "%s [%s]: float16 pack %lld bytes, float32 pack %lld", cases[i].name, isa_names[isa],
                      (long long)bh, (long long)bf);
                pthcv_tensor *back = pthcv_conv2d_weight(ch);
                CHECK(back &&
                          memcmp(pthcv_tensor_data(back), pthcv_tensor_data(wr), sizeof(float) * (size_t)wr->numel) ==
                              0,
                      "%s [%s]: pthcv_conv2d_weight gives the weights back", cases[i].name, isa_names[isa]);
                pthcv_tensor_release(back);
                pthcv_tensor_release(yh), pthcv_tensor_release(yf), pthcv_tensor_release(yh2);
            }
            pthcv_conv2d_free(ch), pthcv_conv2d_free(cf);
            pthcv_tensor_release(wh), pthcv_tensor_release(wr), pthcv_tensor_release(x), pthcv_tensor_release(b);
        }
        /* linear: W^T float16 as the GEMM's B */
        int64_t ws[2] = {37, 300}, xs[2] = {3, 300}, bs[1] = {37};
        pthcv_tensor *wh, *wr, *x = random_tensor(2, xs), *b = random_tensor(1, bs);
        half_pair(2, ws, &wh, &wr);
        pthcv_activation act = ACT(0);
        pthcv_linear *lh = pthcv_linear_prepare(wh, b, &act), *lf = pthcv_linear_prepare(wr, b, &act);
        pthcv_tensor *yh = lh ? pthcv_linear_forward(lh, x) : NULL, *yf = lf ? pthcv_linear_forward(lf, x) : NULL;
        CHECK(yh && yf && memcmp(pthcv_tensor_data(yh), pthcv_tensor_data(yf), sizeof(float) * (size_t)yf->numel) == 0,
              "half linear [%s]: the float32 result of the rounded weights (%s)", isa_names[isa],
              yh && yf ? "differs" : pthcv_last_error());
        CHECK(lh && lf && 2 * pthcv_linear_weight_bytes(lh) == pthcv_linear_weight_bytes(lf),
              "half linear [%s]: float16 pack is half the float32 pack", isa_names[isa]);
        pthcv_tensor_release(yh), pthcv_tensor_release(yf);
        pthcv_linear_free(lh), pthcv_linear_free(lf);
        pthcv_tensor_release(wh), pthcv_tensor_release(wr), pthcv_tensor_release(x), pthcv_tensor_release(b);
    }
    pthcv_set_num_threads(1);
    pthcv_set_isa("auto");
}

/* ---- Winograd transforms: every version gives the scalar one's bits ------------------ */
#include "kernels/qgemm.h"
#include "kernels/winograd.h"
static void test_wino_transforms(void)
{
#if !defined(__x86_64__)
    printf("# skipped: Winograd transform bits (the SIMD transforms are x86's)\n");
#else
    struct {
        const char *name;
        int a;
        pthcv_wino_in8_fn in_ref, in;
        pthcv_wino_out8_fn out_ref, out;
    } v[] = {
        {"F(4,3) avx2", 6, pthcv_wino_in8_scalar, pthcv_wino_in8_avx2, pthcv_wino_out8_scalar, pthcv_wino_out8_avx2},
        {"F(2,3) avx2", 4, pthcv_wino23_in8_scalar, pthcv_wino23_in8_avx2, pthcv_wino23_out8_scalar,
         pthcv_wino23_out8_avx2},
    };
    if (!pthcv_isa_available(PTHCV_ISA_AVX2)) {
        printf("# skipped: Winograd transform bits (no AVX2)\n");
        return;
    }
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        int m = v[i].a - 2, bad = 0, rounds = 0;
        enum { LD = 23, OLD = 19 };
        float plane[8 * LD], r1[36 * 8], r2[36 * 8], mm[36 * 9];
        float o1[2][4 * OLD], o2[2][4 * OLD], res[2][4 * OLD];
        for (int round = 0; round < 20; round++) {
            for (int j = 0; j < 8 * LD; j++) plane[j] = frand() * 100.0f;
            for (int j = 0; j < 36 * 9; j++) mm[j] = frand() * 100.0f;
            for (int j = 0; j < 4 * OLD; j++) res[0][j] = frand() * 100.0f, res[1][j] = frand() * 100.0f;
            v[i].in_ref(plane + 1, plane + 1 + 4 * m, LD, r1, 8);
            v[i].in(plane + 1, plane + 1 + 4 * m, LD, r2, 8);
            bad += memcmp(r1, r2, sizeof(float) * (size_t)(v[i].a * v[i].a * 8)) != 0;
            float r3[36 * 11];
            v[i].in(plane + 1, plane + 1 + 4 * m, LD, r3, 11); /* positions 11 floats apart, as in V */
            for (int xi = 0; xi < v[i].a * v[i].a; xi++)
                bad += memcmp(r3 + xi * 11, r1 + xi * 8, 8 * sizeof(float)) != 0;
            rounds++;
            /* the store: every part of a block (rows 1..m, columns 1..4m:
             * whole and cut tiles), no second quad, residual or not, clamp
             * or not (a NaN through the clamp too) */
            mm[round % 36 * 9 + round % 8] = round % 5 == 0 ? NAN : mm[round % 36 * 9 + round % 8];
            for (int rows = 1; rows <= m; rows++)
                for (int cols = 1; cols <= 4 * m; cols++) {
                    pthcv_wino_epi e = {.bias = 0.25f, .lo = -20.0f, .hi = 30.0f, .clamp = (rows + cols) % 2};
                    int withres = cols % 3 != 0, second = rows != 2;
                    for (int s = 0; s < 2; s++)
                        for (int j = 0; j < 4 * OLD; j++) o1[s][j] = o2[s][j] = -7.0f;
                    pthcv_wino_dst d1[2], d2[2];
                    for (int s = 0; s < 2; s++) {
                        d1[s] = (pthcv_wino_dst){o1[s], withres ? res[s] : NULL, OLD, s == 0 || second ? rows : 0,
                                                 cols};
                        d2[s] = d1[s];
                        d2[s].o = o2[s];
                    }
                    v[i].out_ref(mm, 9, &e, &d1[0], &d1[1]);
                    v[i].out(mm, 9, &e, &d2[0], &d2[1]);
                    bad += memcmp(o1, o2, sizeof o1) != 0;
                    rounds++;
                }
        }
        CHECK(bad == 0, "Winograd %s transforms: %d of %d differ from the scalar bits", v[i].name, bad, rounds);
    }
    /* the scalar store against its definition: bias + value, + residual,
     * clamped, nothing written outside rows x cols */
    {
        float mm[16 * 8], o[2][2 * 8], r[2][2 * 8];
        for (int j = 0; j < 16 * 8; j++) mm[j] = 0.0f;
        for (int l = 0; l < 8; l++) mm[5 * 8 + l] = (float)(l + 1) * 10.0f; /* xi 5 = (1, 1): y = m[1][1] */
        for (int j = 0; j < 16; j++) o[0][j] = o[1][j] = -1.0f, r[0][j] = 0.5f, r[1][j] = 1.0f;
        pthcv_wino_epi e = {.bias = 2.0f, .lo = 0.0f, .hi = 40.0f, .clamp = 1};
        pthcv_wino_dst da = {o[0], r[0], 8, 2, 7}, db = {o[1], NULL, 8, 1, 8};
        pthcv_wino23_out8_scalar(mm, 8, &e, &da, &db);
        /* F(2,3): A^T = [1 1 1 0; 0 1 -1 -1], so m[1][1] reaches all 4 outputs of its tile */
        CHECK(o[0][0] == 12.5f && o[0][8 + 1] == 12.5f && o[0][6] == 40.0f && o[0][7] == -1.0f && o[1][0] == 40.0f &&
                  o[1][8] == -1.0f,
              "Winograd F(2,3) scalar store: bias, residual, clamp, clipping (%g %g %g %g %g %g)", o[0][0], o[0][9],
              o[0][6], o[0][7], o[1][0], o[1][8]);
    }
#endif
}

/* ---- int8: quantized convolution, linear, quantize ----------------------------------------
 * The reference computes the exact integer sums and then the requantization
 * with the kernels' float operations in the kernels' order, so every
 * instruction set and thread count must give its bits exactly. */
typedef struct {
    const char *name;
    int n, cin, h, w, cout, k, stride, pad, dil, groups, act, res, out_float;
} qconv_case;

static pthcv_tensor *random_quint8(int ndim, const int64_t *shape, double scale, int zp)
{
    pthcv_tensor *t = pthcv_tensor_new(PTHCV_QUINT8, ndim, shape);
    uint8_t *d = pthcv_tensor_data(t);
    for (int64_t i = 0; i < t->numel; i++) d[i] = (uint8_t)((frand() + 1.0f) * 127.99f);
    t->qscheme = PTHCV_QSCHEME_PER_TENSOR_AFFINE, t->qscale = scale, t->qzero_point = zp;
    return t;
}

/* qint8 weights, per channel (scales 0.01..0.03) or per tensor */
static pthcv_tensor *random_qint8_weight(int ndim, const int64_t *shape, int per_channel)
{
    pthcv_tensor *t = pthcv_tensor_new(PTHCV_QINT8, ndim, shape);
    int8_t *d = pthcv_tensor_data(t);
    for (int64_t i = 0; i < t->numel; i++) d[i] = (int8_t)(frand() * 127.99f);
    if (per_channel) {
        int64_t cs[1] = {shape[0]};
        t->qscales = pthcv_tensor_new(PTHCV_FLOAT64, 1, cs);
        double *s = pthcv_tensor_data(t->qscales);
        for (int64_t c = 0; c < shape[0]; c++) s[c] = 0.02 + 0.01 * frand();
        t->qscheme = PTHCV_QSCHEME_PER_CHANNEL_SYMMETRIC, t->qaxis = 0;
    } else {
        t->qscheme = PTHCV_QSCHEME_PER_TENSOR_SYMMETRIC, t->qscale = 0.015;
    }
    return t;
}

static double wscale_of(const pthcv_tensor *w, int64_t c)
{
    return w->qscales ? ((const double *)pthcv_tensor_data(w->qscales))[c] : w->qscale;
}

/* the requantization of qgemm.c, value by value */
static float ref_requant(int64_t acc, double sx, double sw, float bias, double sy, int zy, int out_float, int act,
                         const uint8_t *r, double sr, int zr, uint8_t *q)
{
    if (out_float) sy = 1, zy = 0;
    int32_t bq = (int32_t)nearbyintf(bias * (1.0f / (float)(sx * sw)));
    float mul = ((float)sw * (float)sx) * (1.0f / (float)sy);
    float v = out_float ? (float)acc * mul + (float)(bias / sy) : (float)(acc + bq) * mul;
    if (r) v = v + (float)(*r - zr) * (float)(sr / sy);
    float lo = act == PTHCV_ACT_RELU || act == PTHCV_ACT_RELU6 ? (out_float ? 0.0f : (float)zy)
        : out_float                                            ? -INFINITY
                                                               : 0.0f;
    float hi = out_float         ? (act == PTHCV_ACT_RELU6 ? 6.0f : INFINITY)
        : act == PTHCV_ACT_RELU6 ? (float)fmin(255, nearbyint(6 / sy) + zy)
                                 : 255.0f;
    if (out_float) return v < lo ? lo : v > hi ? hi : v;
    lo -= (float)zy, hi -= (float)zy;
    v = v < lo ? lo : v > hi ? hi : v;
    *q = (uint8_t)(nearbyintf(v) + (float)zy);
    return v;
}

static void run_qconv_case(const qconv_case *c, int isa)
{
    int64_t xs[4] = {c->n, c->cin, c->h, c->w}, ws[4] = {c->cout, c->cin / c->groups, c->k, c->k}, bs[1] = {c->cout};
    int eff = c->dil * (c->k - 1) + 1;
    int oh = (c->h + 2 * c->pad - eff) / c->stride + 1, ow = (c->w + 2 * c->pad - eff) / c->stride + 1;
    int64_t ys[4] = {c->n, c->cout, oh, ow};
    double sx = 0.05, sy = 0.2, sr = 0.07;
    int zx = 9 + c->cin % 100, zy = 3 + c->cout % 120, zr = 130;
    pthcv_tensor *x = random_quint8(4, xs, sx, zx), *w = random_qint8_weight(4, ws, c->cout % 2 == 1 || c->groups > 1);
    pthcv_tensor *b = random_tensor(1, bs), *r = c->res ? random_quint8(4, ys, sr, zr) : NULL;
    pthcv_conv2d_params p = {{c->stride, c->stride}, {c->pad, c->pad}, {c->dil, c->dil}, c->groups, 0, ACT(c->act)};
    /* reference */
    int64_t ny = c->n * c->cout * oh * ow;
    float *ref = malloc(sizeof(float) * (size_t)ny);
    uint8_t *refq = malloc((size_t)ny);
    const uint8_t *xd = pthcv_tensor_data(x), *rd = r ? pthcv_tensor_data(r) : NULL;
    const int8_t *wd = pthcv_tensor_data(w);
    const float *bd = pthcv_tensor_data(b);
    int cin_g = c->cin / c->groups, cout_g = c->cout / c->groups;
    for (int n = 0; n < c->n; n++)
        for (int oc = 0; oc < c->cout; oc++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    int g = oc / cout_g;
                    int64_t acc = 0;
                    for (int ci = 0; ci < cin_g; ci++)
                        for (int ky = 0; ky < c->k; ky++)
                            for (int kx = 0; kx < c->k; kx++) {
                                int iy = oy * c->stride - c->pad + ky * c->dil,
                                    ix = ox * c->stride - c->pad + kx * c->dil;
                                int v = iy >= 0 && iy < c->h && ix >= 0 && ix < c->w
                                    ? xd[(((int64_t)n * c->cin + g * cin_g + ci) * c->h + iy) * c->w + ix]
                                    : zx;
                                acc += (int64_t)(v - zx) * wd[((oc * cin_g + ci) * c->k + ky) * c->k + kx];
                            }
                    int64_t o = (((int64_t)n * c->cout + oc) * oh + oy) * ow + ox;
                    ref[o] = ref_requant(acc, sx, wscale_of(w, oc), bd[oc], sy, zy, c->out_float, c->act,
                                         rd ? rd + o : NULL, sr, zr, refq + o);
                }
    pthcv_qconv2d *q = pthcv_qconv2d_prepare(w, b, &p, sy, zy);
    CHECK(q != NULL, "%s [%s]: prepare: %s", c->name, isa_names[isa], pthcv_last_error());
    for (int ti = 0; q && ti < 3; ti++) {
        pthcv_set_num_threads(threads_list[ti]);
        pthcv_tensor *y = pthcv_qconv2d_forward(q, x, r, c->out_float);
        CHECK(y != NULL, "%s [%s]: forward: %s", c->name, isa_names[isa], pthcv_last_error());
        if (!y) break;
        int same = y->ndim == 4;
        for (int i = 0; same && i < 4; i++) same = y->shape[i] == ys[i];
        CHECK(same && y->dtype == (c->out_float ? PTHCV_FLOAT32 : PTHCV_QUINT8), "%s: output shape or dtype", c->name);
        int64_t bad = 0;
        if (same && c->out_float) {
            const float *yd = pthcv_tensor_data(y);
            for (int64_t i = 0; i < ny; i++) bad += memcmp(&yd[i], &ref[i], sizeof(float)) != 0;
        } else if (same) {
            const uint8_t *yd = pthcv_tensor_data(y);
            for (int64_t i = 0; i < ny; i++) bad += yd[i] != refq[i];
            CHECK(y->qscale == sy && y->qzero_point == zy, "%s: output scale and zero point", c->name);
        }
        CHECK(bad == 0, "%s [%s, %d threads]: %lld of %lld values differ from the reference", c->name, isa_names[isa],
              threads_list[ti], (long long)bad, (long long)ny);
        pthcv_tensor_release(y);
    }
    pthcv_set_num_threads(1);
    pthcv_qconv2d_free(q);
    free(ref), free(refq);
    pthcv_tensor_release(x), pthcv_tensor_release(w), pthcv_tensor_release(b), pthcv_tensor_release(r);
}

static void test_qconv(void)
{
    static const qconv_case cases[] = {
        /* name           n cin  h   w cout k s  p  d  g  act                res out_float */
        {"q 1x1", 2, 17, 9, 11, 33, 1, 1, 0, 1, 1, PTHCV_ACT_NONE, 0, 0},
        {"q 1x1 relu", 1, 64, 7, 7, 70, 1, 1, 0, 1, 1, PTHCV_ACT_RELU, 1, 0},
        {"q 3x3 p1", 1, 3, 13, 15, 17, 3, 1, 1, 1, 1, PTHCV_ACT_RELU, 0, 0},
        {"q 3x3 p1 wide", 1, 5, 3, 131, 7, 3, 1, 1, 1, 1, PTHCV_ACT_RELU, 0, 0},
        {"q 5x5 p2 narrow", 1, 3, 6, 2, 5, 5, 1, 2, 1, 1, PTHCV_ACT_NONE, 0, 0},
        {"q 3x3 s2", 2, 7, 12, 9, 7, 3, 2, 1, 1, 1, PTHCV_ACT_RELU6, 1, 0},
        {"q 3x3 K>512", 1, 65, 6, 7, 33, 3, 1, 1, 1, 1, PTHCV_ACT_NONE, 1, 0},
        {"q 5x5 d2", 1, 7, 15, 14, 3, 5, 1, 2, 2, 1, PTHCV_ACT_NONE, 0, 1},
        {"q 7x7 s2", 1, 3, 23, 23, 33, 7, 2, 3, 1, 1, PTHCV_ACT_RELU, 0, 0},
        {"q groups", 2, 33, 7, 8, 33, 3, 1, 1, 1, 3, PTHCV_ACT_RELU, 1, 0},
        {"q float out", 1, 17, 5, 6, 1, 3, 1, 1, 1, 1, PTHCV_ACT_RELU, 0, 1},
        {"q dw 3x3", 2, 17, 14, 13, 17, 3, 1, 1, 1, 17, PTHCV_ACT_RELU6, 1, 0},
        {"q dw 3x3 s2", 1, 33, 15, 18, 33, 3, 2, 1, 1, 33, PTHCV_ACT_NONE, 0, 0},
        {"q dw 5x5", 1, 7, 11, 21, 7, 5, 1, 2, 1, 7, PTHCV_ACT_RELU, 0, 1},
        {"q dw 5x5 s2", 1, 3, 9, 19, 3, 5, 2, 2, 1, 3, PTHCV_ACT_NONE, 0, 0},
        {"q dw mult 2", 1, 1, 8, 9, 2, 3, 1, 1, 1, 1, PTHCV_ACT_NONE, 0, 0},
        /* odd channel counts and widths: the stores' vector tails (8 and 16
         * lanes), 1-pixel maps, borders on every side */
        {"q dw 1ch 1x1", 1, 1, 1, 1, 1, 3, 1, 1, 1, 1, PTHCV_ACT_RELU, 1, 0},
        {"q dw 3ch s2", 1, 3, 7, 7, 3, 3, 2, 1, 1, 3, PTHCV_ACT_RELU6, 1, 0},
        {"q dw 7ch 17x33", 1, 7, 17, 33, 7, 3, 1, 1, 1, 7, PTHCV_ACT_RELU6, 1, 0},
        {"q dw 33ch 33x17 s2", 2, 33, 33, 17, 33, 3, 2, 1, 1, 33, PTHCV_ACT_RELU, 0, 0},
        {"q dw 17ch 3x1", 1, 17, 3, 1, 17, 3, 1, 1, 1, 17, PTHCV_ACT_NONE, 1, 0},
        {"q 1x1 1px", 1, 33, 1, 1, 7, 1, 1, 0, 1, 1, PTHCV_ACT_NONE, 1, 0},
        {"q 1x1 3x5", 1, 3, 3, 5, 17, 1, 1, 0, 1, 1, PTHCV_ACT_RELU6, 1, 0},
    };
    for (int isa = 0; isa < 4; isa++) {
        if (pthcv_set_isa(isa_names[isa]) != PTHCV_OK) continue;
        printf("# int8 on %s: the %s kernel\n", isa_names[isa], pthcv_qgemm_kernel_now()->name);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_qconv_case(&cases[i], isa);
    }
    pthcv_set_isa("auto");
}

static void test_qlinear_quantize(void)
{
    for (int isa = 0; isa < 4; isa++) {
        if (pthcv_set_isa(isa_names[isa]) != PTHCV_OK) continue;
        int64_t in = 300, out = 37, xs[2] = {3, 300}, ws[2] = {37, 300}, bs[1] = {37};
        pthcv_tensor *x = random_quint8(2, xs, 0.03, 100), *w = random_qint8_weight(2, ws, 1),
                     *b = random_tensor(1, bs);
        pthcv_activation relu = ACT(PTHCV_ACT_RELU);
        pthcv_qlinear *l = pthcv_qlinear_prepare(w, b, &relu, 0.1, 7);
        pthcv_tensor *y = l ? pthcv_qlinear_forward(l, x, 0) : NULL, *yf = l ? pthcv_qlinear_forward(l, x, 1) : NULL;
        CHECK(y && yf, "qlinear [%s]: %s", isa_names[isa], pthcv_last_error());
        int bad = 0;
        for (int64_t r = 0; y && yf && r < 3; r++)
            for (int64_t o = 0; o < out; o++) {
                int64_t acc = 0;
                for (int64_t i = 0; i < in; i++)
                    acc += (int64_t)(((const uint8_t *)pthcv_tensor_data(x))[r * in + i] - 100) *
                        ((const int8_t *)pthcv_tensor_data(w))[o * in + i];
                uint8_t q;
                ref_requant(acc, 0.03, wscale_of(w, o), ((float *)pthcv_tensor_data(b))[o], 0.1, 7, 0, PTHCV_ACT_RELU,
                            NULL, 0, 0, &q);
                float f = ref_requant(acc, 0.03, wscale_of(w, o), ((float *)pthcv_tensor_data(b))[o], 0.1, 7, 1,
                                      PTHCV_ACT_RELU, NULL, 0, 0, &q);
                bad += ((const uint8_t *)pthcv_tensor_data(y))[r * out + o] != q;
                bad += ((const float *)pthcv_tensor_data(yf))[r * out + o] != f;
            }
        CHECK(bad == 0, "qlinear [%s]: %d values differ from the reference", isa_names[isa], bad);
        pthcv_tensor_release(y), pthcv_tensor_release(yf);
        pthcv_qlinear_free(l);
        pthcv_tensor_release(x), pthcv_tensor_release(w), pthcv_tensor_release(b);
    }
    pthcv_set_isa("auto");
    /* quantize: round half to even, clamp, then dequantize within half a step */
    int64_t s[1] = {1003};
    pthcv_tensor *f = random_tensor(1, s);
    float *fd = pthcv_tensor_data(f);
    fd[0] = 0.125f, fd[1] = 0.375f, fd[2] = -100.0f, fd[3] = 100.0f; /* 2.5 and 7.5 steps: to 2 and 8 */
    pthcv_tensor *q = pthcv_quantize_per_tensor(f, 0.05, 128);
    const uint8_t *qd = q ? pthcv_tensor_data(q) : NULL;
    CHECK(qd && qd[0] == 130 && qd[1] == 136 && qd[2] == 0 && qd[3] == 255, "quantize: half to even and clamped");
    int bad = 0;
    for (int64_t i = 4; qd && i < s[0]; i++) bad += fabs((qd[i] - 128) * 0.05 - fd[i]) > 0.025 + 1e-7;
    CHECK(qd && bad == 0 && q->qscale == 0.05 && q->qzero_point == 128,
          "quantize: %d values off by more than half a step", bad);
    pthcv_tensor_release(q);
    CHECK(pthcv_quantize_per_tensor(f, 0.0, 3) == NULL && error_has("scale"), "quantize: a zero scale is refused");
    pthcv_tensor_release(f);
}

/* ---- convolutions into one concatenated output ---------------------------------------
 * pthcv_conv2d_forward_cat gives the bits of the separate convolutions,
 * concatenated (GEMM, Winograd and depthwise paths; batch 2 writes image
 * by image into the slices). */
static void test_conv_cat(void)
{
    int64_t xs[4] = {2, 17, 14, 13};
    pthcv_tensor *x = random_tensor(4, xs);
    static const struct {
        int cout, k, groups;
    } shapes[] = {{33, 1, 1}, {20, 3, 1}, {17, 3, 17}, {7, 5, 1}};
    enum { N = 4 };
    pthcv_conv2d *cs[N];
    pthcv_tensor *ws[N], *ys[N];
    int64_t total = 0;
    for (int i = 0; i < N; i++) {
        int64_t s[4] = {shapes[i].cout, 17 / shapes[i].groups, shapes[i].k, shapes[i].k};
        ws[i] = random_tensor(4, s);
        pthcv_conv2d_params p = {
            {1, 1}, {shapes[i].k / 2, shapes[i].k / 2}, {1, 1}, shapes[i].groups, 0, ACT(PTHCV_ACT_RELU)};
        cs[i] = pthcv_conv2d_prepare(ws[i], NULL, &p);
        ys[i] = pthcv_conv2d_forward(cs[i], x, NULL);
        total += shapes[i].cout;
    }
    for (int t = 1; t <= 2; t++) {
        pthcv_set_num_threads(t);
        pthcv_tensor *y = pthcv_conv2d_forward_cat(N, cs, x);
        CHECK(y && y->shape[1] == total, "conv2d_cat: output [2, %lld, 14, 13] (%s)", (long long)total,
              y ? "shape" : pthcv_last_error());
        int bad = 0;
        for (int64_t img = 0; y && img < 2; img++)
            for (int i = 0, c0 = 0; i < N; c0 += shapes[i].cout, i++) {
                int64_t n = shapes[i].cout * 14 * 13;
                const float *a = (const float *)pthcv_tensor_data(y) + (img * total + c0) * 14 * 13;
                const float *b = (const float *)pthcv_tensor_data(ys[i]) + img * n;
                bad += memcmp(a, b, sizeof(float) * (size_t)n) != 0;
            }
        CHECK(bad == 0, "conv2d_cat [%d threads]: %d slices differ from the separate convolutions", t, bad);
        pthcv_tensor_release(y);
    }
    int64_t s2[4] = {4, 17, 3, 3};
    pthcv_tensor *w2 = random_tensor(4, s2);
    pthcv_conv2d_params p2 = {{2, 2}, {1, 1}, {1, 1}, 1, 0, ACT(0)};
    pthcv_conv2d *c2 = pthcv_conv2d_prepare(w2, NULL, &p2);
    pthcv_conv2d *pair[2] = {cs[0], c2};
    CHECK(pthcv_conv2d_forward_cat(2, pair, x) == NULL && error_has("7x7"),
          "conv2d_cat: outputs of other sizes are refused");
    pthcv_conv2d_free(c2), pthcv_tensor_release(w2);
    for (int i = 0; i < N; i++) pthcv_conv2d_free(cs[i]), pthcv_tensor_release(ws[i]), pthcv_tensor_release(ys[i]);
    pthcv_tensor_release(x);
    pthcv_set_num_threads(1);
}

/* ---- the op profile ------------------------------------------------------------------
 * Rows named by op and path, one call each; nothing recorded while off; a
 * report cut to a small buffer stays NUL-terminated and says its length. */
static void test_profile(void)
{
    int64_t xs[4] = {1, 8, 12, 12}, ws[4] = {8, 8, 3, 3}, dws[4] = {8, 1, 3, 3};
    pthcv_tensor *x = random_tensor(4, xs), *w = random_tensor(4, ws), *dw = random_tensor(4, dws);
    pthcv_conv2d_params p = {{1, 1}, {1, 1}, {1, 1}, 1, 0, ACT(0)};
    pthcv_conv2d_params pd = {{2, 2}, {1, 1}, {1, 1}, 8, 0, ACT(0)};
    pthcv_conv2d *c = pthcv_conv2d_prepare(w, NULL, &p), *d = pthcv_conv2d_prepare(dw, NULL, &pd);
    pthcv_activation relu = ACT(PTHCV_ACT_RELU);
    pthcv_profile_ops(1);
    pthcv_tensor *y = pthcv_conv2d_forward(c, x, NULL), *z = pthcv_conv2d_forward(d, x, NULL);
    pthcv_tensor *a = pthcv_activate(x, &relu);
    pthcv_profile_ops(0);
    pthcv_tensor *y2 = pthcv_conv2d_forward(c, x, NULL);
    char buf[4096];
    int64_t n = pthcv_profile_ops_report(buf, sizeof buf);
    CHECK(n == (int64_t)strlen(buf), "profile: report length %lld, text %zu", (long long)n, strlen(buf));
    CHECK(strstr(buf, "conv 3x3/1 winograd F(4,3)\t") && strstr(buf, "dwconv 3x3/2\t") &&
              strstr(buf, "activate relu\t"),
          "profile: rows by op and path, got:\n%s", buf);
    int rows = 0, calls_ok = 1;
    for (char *line = buf; *line; rows++) {
        char *tab = strrchr(strtok(line, "\n"), '\t');
        calls_ok &= tab && strcmp(tab, "\t1") == 0;
        line += strlen(line) + 1;
    }
    CHECK(rows == 3 && calls_ok, "profile: 3 rows of one call each (the call made while off not counted)");
    char small[10];
    int64_t m = pthcv_profile_ops_report(small, sizeof small);
    CHECK(m == n && strlen(small) == sizeof small - 1, "profile: a short buffer gets a cut, terminated report");
    pthcv_profile_ops(1);
    CHECK(pthcv_profile_ops_report(NULL, 0) == 0, "profile: starting again clears it");
    pthcv_profile_ops(0);
    pthcv_tensor_release(y), pthcv_tensor_release(z), pthcv_tensor_release(a), pthcv_tensor_release(y2);
    pthcv_conv2d_free(c), pthcv_conv2d_free(d);
    pthcv_tensor_release(x), pthcv_tensor_release(w), pthcv_tensor_release(dw);
}

/* ---- depthwise then pointwise in bands (dwpw.c) ------------------------------------------ */
typedef struct {
    const char *name;
    int n, cin, mult, h, w, k, stride, pad, cout, res;
    pthcv_activation act_dw, act_pw;
    int half; /* the pointwise weights float16 (module:half()) */
} dwpw_case;

/* y written by pthcv_dwpw_forward (into a channel slice of a wider tensor
 * when slice) must be the unfused result `want` bit for bit */
static int dwpw_same(pthcv_conv2d *dw, pthcv_conv2d *pw, pthcv_tensor *x, pthcv_tensor *r, int rows, int slice,
                     const float *want, int64_t ny)
{
    pthcv_tensor *y = NULL, *wide = NULL;
    if (slice) {
        /* the output as channels 1.. of a tensor with 3 more channels */
        int64_t n = x->shape[0], co;
        pthcv_tensor *u = pthcv_dwpw_forward(dw, pw, x, r, NULL, rows);
        if (!u) return 0;
        co = u->shape[1];
        int64_t oh = u->shape[2], ow = u->shape[3];
        pthcv_tensor_release(u);
        int64_t wshape[4] = {n, co + 3, oh, ow}, vshape[4] = {n, co, oh, ow};
        int64_t vstride[4] = {(co + 3) * oh * ow, oh * ow, ow, 1};
        wide = pthcv_tensor_new(PTHCV_FLOAT32, 4, wshape);
        pthcv_tensor *v = pthcv_tensor_view(wide, 4, vshape, vstride, oh * ow);
        y = pthcv_dwpw_forward(dw, pw, x, r, v, rows);
        if (y) {
            pthcv_tensor_release(y);
            y = pthcv_tensor_contiguous(v);
        }
        pthcv_tensor_release(v);
    } else {
        y = pthcv_dwpw_forward(dw, pw, x, r, NULL, rows);
    }
    int ok = y && y->numel == ny && memcmp(pthcv_tensor_data(y), want, sizeof(float) * (size_t)ny) == 0;
    pthcv_tensor_release(y);
    pthcv_tensor_release(wide);
    return ok;
}

static void run_dwpw_case(const dwpw_case *c)
{
    int cm = c->cin * c->mult;
    int64_t xs[4] = {c->n, c->cin, c->h, c->w}, dws[4] = {cm, 1, c->k, c->k}, pws[4] = {c->cout, cm, 1, 1};
    int64_t db[1] = {cm}, pb[1] = {c->cout};
    int oh = (c->h + 2 * c->pad - c->k) / c->stride + 1, ow = (c->w + 2 * c->pad - c->k) / c->stride + 1;
    int64_t ys[4] = {c->n, c->cout, oh, ow}, ny = (int64_t)c->n * c->cout * oh * ow;
    pthcv_tensor *x = random_tensor(4, xs), *wd = random_tensor(4, dws), *wp, *wph = NULL;
    if (c->half) half_pair(4, pws, &wph, &wp); /* wp: wph's values as float32, for the reference */
    else wp = random_tensor(4, pws);
    pthcv_tensor *bd = random_tensor(1, db), *bp = random_tensor(1, pb), *r = c->res ? random_tensor(4, ys) : NULL;
    pthcv_conv2d_params pd = {{c->stride, c->stride}, {c->pad, c->pad}, {1, 1}, c->cin, 0, c->act_dw};
    pthcv_conv2d_params pp = {{1, 1}, {0, 0}, {1, 1}, 1, 0, c->act_pw};
    pthcv_conv2d *dw = pthcv_conv2d_prepare(wd, bd, &pd), *pw = pthcv_conv2d_prepare(wph ? wph : wp, bp, &pp);
    CHECK(dw && pw, "dwpw %s: prepare: %s", c->name, pthcv_last_error());
    /* the double-precision reference of the two layers */
    conv_case cd = {"dw",   c->n,   c->cin, c->h, c->w,   cm, c->k, c->k, c->stride, c->stride,
                    c->pad, c->pad, 1,      1,    c->cin, 0,  1,    0,    c->act_dw};
    conv_case cp = {"pw", c->n, cm, oh, ow, c->cout, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, c->res, c->act_pw};
    float *mid = malloc(sizeof(float) * (size_t)(c->n * cm * oh * ow)), *ref = malloc(sizeof(float) * (size_t)ny);
    ref_conv(&cd, pthcv_tensor_data(x), pthcv_tensor_data(wd), pthcv_tensor_data(bd), NULL, mid, oh, ow);
    ref_conv(&cp, mid, pthcv_tensor_data(wp), pthcv_tensor_data(bp), r ? pthcv_tensor_data(r) : NULL, ref, oh, ow);
    for (int isa = 0; dw && pw && isa < PTHCV_ISA_COUNT; isa++) {
        if (pthcv_set_isa(isa_names[isa]) != PTHCV_OK) continue;
        pthcv_set_num_threads(1);
        pthcv_tensor *t = pthcv_conv2d_forward(dw, x, NULL), *u = t ? pthcv_conv2d_forward(pw, t, r) : NULL;
        CHECK(u != NULL, "dwpw %s [%s]: unfused: %s", c->name, isa_names[isa], pthcv_last_error());
        if (!u) {
            pthcv_tensor_release(t);
            continue;
        }
        const float *want = pthcv_tensor_data(u);
        double worst;
        CHECK(close_to(want, ref, ny, 1e-4, &worst), "dwpw %s [%s]: unfused off the reference by %.3g", c->name,
              isa_names[isa], worst);
        /* every band height (0: chosen), 1 to 3 threads, a new tensor and a slice */
        int bad = 0;
        for (int rows = 0; rows <= oh + 1; rows++)
            for (int ti = 0; ti < 3; ti++) {
                pthcv_set_num_threads(threads_list[ti]);
                for (int slice = 0; slice < 2; slice++)
                    if (!dwpw_same(dw, pw, x, r, rows, slice, want, ny)) {
                        if (!bad)
                            printf("# dwpw %s [%s]: rows %d, %d threads, slice %d differs: %s\n", c->name,
                                   isa_names[isa], rows, threads_list[ti], slice, pthcv_last_error());
                        bad++;
                    }
            }
        CHECK(bad == 0, "dwpw %s [%s]: %d runs differ from the unfused result", c->name, isa_names[isa], bad);
        pthcv_tensor_release(t);
        pthcv_tensor_release(u);
    }
    pthcv_set_isa("auto");
    pthcv_set_num_threads(2);
    pthcv_conv2d_free(dw), pthcv_conv2d_free(pw);
    pthcv_tensor_release(x), pthcv_tensor_release(wd), pthcv_tensor_release(wp), pthcv_tensor_release(wph);
    pthcv_tensor_release(bd), pthcv_tensor_release(bp), pthcv_tensor_release(r);
    free(mid), free(ref);
}

static void test_dwpw(void)
{
    static const dwpw_case cases[] = {
        /* name           n cin mult h  w  k  s  p cout res act_dw                   act_pw  half */
        /* one channel: conv2d runs it as a GEMM (groups 1), so dwpw runs the two forwards */
        {"c1 s1", 1, 1, 1, 9, 7, 3, 1, 1, 3, 0, ACT(PTHCV_ACT_RELU6), ACT(0), 0},
        {"c3 s2", 1, 3, 1, 11, 13, 3, 2, 1, 7, 1, ACT(PTHCV_ACT_RELU), ACT(0), 0},
        {"c7 s1 5x5", 2, 7, 1, 10, 9, 5, 1, 2, 17, 1, ACT(PTHCV_ACT_HARDSWISH), ACT(0), 0},
        {"c17 s2 5x5", 1, 17, 1, 13, 12, 5, 2, 2, 33, 0, ACT(PTHCV_ACT_SILU), ACT(PTHCV_ACT_RELU), 0},
        {"c33 s1", 1, 33, 1, 15, 14, 3, 1, 1, 17, 1, ACT(PTHCV_ACT_RELU6), {PTHCV_ACT_CLAMP, -0.25f, 0.5f}, 0},
        {"c300 K>256", 1, 300, 1, 6, 9, 3, 1, 1, 7, 1, ACT(0), ACT(PTHCV_ACT_HARDSWISH), 0},
        {"mult 2 p0", 1, 7, 2, 8, 11, 3, 1, 0, 3, 0, ACT(0), ACT(0), 0},
        {"wide 1 row", 1, 3, 1, 3, 70, 3, 2, 1, 17, 1, ACT(PTHCV_ACT_RELU), ACT(0), 0},
        {"half pointwise", 2, 17, 1, 9, 10, 3, 1, 1, 33, 1, ACT(PTHCV_ACT_RELU6), ACT(0), 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_dwpw_case(&cases[i]);

    /* errors: each names the problem */
    int64_t xs[4] = {1, 7, 8, 8}, dws[4] = {7, 1, 3, 3}, pws[4] = {5, 6, 1, 1};
    pthcv_tensor *x = random_tensor(4, xs), *wd = random_tensor(4, dws), *wp = random_tensor(4, pws);
    pthcv_conv2d_params pd = {{1, 1}, {1, 1}, {1, 1}, 7, 0, ACT(0)}, pp = {{1, 1}, {0, 0}, {1, 1}, 1, 0, ACT(0)};
    pthcv_conv2d *dw = pthcv_conv2d_prepare(wd, NULL, &pd), *pw = pthcv_conv2d_prepare(wp, NULL, &pp);
    pthcv_tensor *y = pthcv_dwpw_forward(dw, NULL, x, NULL, NULL, 0);
    CHECK(!y && strstr(pthcv_last_error(), "dwpw: no convolution"), "dwpw NULL: %s", pthcv_last_error());
    y = pthcv_dwpw_forward(dw, pw, x, NULL, NULL, -1);
    CHECK(!y && strstr(pthcv_last_error(), "band_rows must be >= 0"), "dwpw rows: %s", pthcv_last_error());
    y = pthcv_dwpw_forward(dw, pw, x, NULL, NULL, 2); /* 7 channels into a 1x1 of 6 */
    CHECK(!y && strstr(pthcv_last_error(), "expected float32 input [N, 6, H, W]"), "dwpw channels: %s",
          pthcv_last_error());
    pthcv_conv2d_free(dw), pthcv_conv2d_free(pw);
    pthcv_tensor_release(x), pthcv_tensor_release(wd), pthcv_tensor_release(wp);
}

/* ---- the depthwise plane kernels (dwconv.h) ----------------------------------------------
 * Each instruction set's kernel against a double-precision reference, for
 * 3x3 and 5x5 at strides 1 and 2 on every output height from 1 to 9 (every
 * remainder of the row blocks) and every width from 1 to 37 (every remainder
 * of 8- and 16-column vectors), with and without residual and clamp; and
 * the row blocks give the bits of the same rows computed one at a time. */
static void test_dw_planes(void)
{
    enum { MAXW = 37, MAXH = 9, LDI = 2 * MAXW + 5 + PTHCV_DW_SLACK };
    static float in[(2 * MAXH + 4) * LDI + PTHCV_DW_SLACK], res[MAXH * MAXW], full[MAXH * MAXW], rows[MAXH * MAXW];
    static double ref[MAXH * MAXW];
    float w[25];
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) in[i] = frand();
    for (int i = 0; i < MAXH * MAXW; i++) res[i] = frand();
    for (int i = 0; i < 25; i++) w[i] = frand();
    for (int isa = 1; isa < PTHCV_ISA_COUNT; isa++) {
        void (*plane)(const pthcv_dw_args *) = pthcv_dw_plane_for(isa);
        if (plane == pthcv_dw_plane_scalar || !pthcv_isa_available(isa)) continue;
        int bad = 0, badbits = 0, cases = 0;
        double worst = 0;
        for (int k = 3; k <= 5; k += 2)
            for (int s = 1; s <= 2; s++)
                for (int oh = 1; oh <= MAXH; oh++)
                    for (int ow = 1; ow <= MAXW; ow++) {
                        int with_res = (oh + ow) % 2, clamp = (oh * ow) % 3 == 0;
                        pthcv_dw_args a = {.in = in,
                                           .ldi = LDI,
                                           .stride = s,
                                           .kh = k,
                                           .kw = k,
                                           .w = w,
                                           .bias = 0.25f,
                                           .out = full,
                                           .res = with_res ? res : NULL,
                                           .oh = oh,
                                           .ow = ow,
                                           .lo = clamp ? -0.5f : -INFINITY,
                                           .hi = clamp ? 0.75f : INFINITY};
                        plane(&a);
                        for (int oy = 0; oy < oh; oy++) {
                            pthcv_dw_args r = a;
                            r.in = in + oy * s * LDI, r.out = rows + oy * ow, r.oh = 1;
                            r.res = with_res ? res + oy * ow : NULL;
                            plane(&r);
                            for (int ox = 0; ox < ow; ox++) {
                                double acc = 0.25;
                                for (int ky = 0; ky < k; ky++)
                                    for (int kx = 0; kx < k; kx++)
                                        acc += (double)w[ky * k + kx] * in[(oy * s + ky) * LDI + ox * s + kx];
                                if (with_res) acc += res[oy * ow + ox];
                                ref[oy * ow + ox] = clamp ? fmin(fmax(acc, -0.5), 0.75) : acc;
                            }
                        }
                        double err = 0;
                        for (int i = 0; i < oh * ow; i++)
                            err = fmax(err, fabs(full[i] - ref[i]) / fmax(fabs(ref[i]), 1.0));
                        bad += err > 1e-5;
                        worst = fmax(worst, err);
                        badbits += memcmp(full, rows, sizeof(float) * (size_t)(oh * ow)) != 0;
                        cases++;
                    }
        CHECK(bad == 0, "depthwise plane [%s]: %d of %d cases off the reference (worst %.3g)", isa_names[isa], bad,
              cases, worst);
        CHECK(badbits == 0, "depthwise plane [%s]: %d of %d cases differ from the same rows one at a time",
              isa_names[isa], badbits, cases);
    }
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_isa();
    test_conv();
    test_conv_layouts();
    test_conv_errors();
    test_conv_forms();
    test_linear();
    test_gelu_avx512();
    test_act_in_store(PTHCV_ACT_SILU);
    test_act_in_store(PTHCV_ACT_HARDSWISH);
    test_fold();
    test_pool();
    test_half();
    test_profile();
    test_wino_transforms();
    test_qconv();
    test_conv_cat();
    test_qlinear_quantize();
    test_dwpw();
    test_dw_planes();
    for (int i = 1; i < argc; i++) test_fixture_dir(argv[i]);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
