/* gconv_test.c -- checks of the direct grouped 3x3 kernels (csrc/kernels/gconv*.c).
 *
 *   gconv_test
 *
 * For each case (2, 3, 4, 8 and 16 channels a group, other counts out;
 * maps from 1x1 to 17x17 and RegNet's 7x7, 14x14 and 56x56; stride 1 and
 * 2; padding 0, 1 and 2; bias, residual, fused and unfused activations;
 * batch 2) and each instruction set this CPU has:
 *   1. pthcv_gconv_forward against a double-precision direct reference
 *      written here, at 1, 2 and 3 threads, the results bit-identical;
 *   2. pthcv_conv2d_forward (which dispatches to it) bit-identical to the
 *      GEMM path of the same instruction set (the same layer prepared with
 *      PTHCV_GCONV=0): both sum bias, then (ci, ky, kx) in order, with the
 *      same rounding (gconv.h);
 *   3. the scalar kernel and the SIMD ones within 1e-5 of each other.
 * Then conv2d_forward_into a channel slice of a larger tensor, and the
 * envelope (pthcv_gconv_fits). Ends with "N passed, N failed"; exit status 1
 * if anything failed. An instruction set the CPU lacks prints "# skipped". */
#include "internal.h"
#include "kernels/gconv.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#include "check.h"

#include "random_tensor.h"

/* the largest |a - b| over the largest |b| (at least 1e-3) */
static double rel_err(const float *a, const float *b, int64_t n)
{
    double mx = 1e-3, err = 0;
    for (int64_t i = 0; i < n; i++) {
        if (fabs(b[i]) > mx) mx = fabs(b[i]);
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= err)) err = e; /* NaN counts as worst */
    }
    return err / mx;
}

typedef struct {
    const char *name;
    int n, groups, cin_g, cout_g, h, w, stride, pad, bias, res, act;
} gcase;

static void ref_gconv(const gcase *c, const float *x, const float *w, const float *b, const float *res, float *out,
                      int oh, int ow, const pthcv_activation *act)
{
    int cin = c->groups * c->cin_g, cout = c->groups * c->cout_g;
    for (int n = 0; n < c->n; n++)
        for (int oc = 0; oc < cout; oc++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    int g = oc / c->cout_g;
                    double s = b ? b[oc] : 0.0;
                    for (int ci = 0; ci < c->cin_g; ci++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                int iy = oy * c->stride - c->pad + ky, ix = ox * c->stride - c->pad + kx;
                                if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w) continue;
                                s += (double)w[((oc * c->cin_g + ci) * 3 + ky) * 3 + kx] *
                                    x[(((int64_t)n * cin + g * c->cin_g + ci) * c->h + iy) * c->w + ix];
                            }
                    int64_t o = (((int64_t)n * cout + oc) * oh + oy) * ow + ox;
                    float v = (float)s;
                    if (res) v += res[o];
                    out[o] = pthcv_act_scalar(v, act);
                }
}

static pthcv_activation act_of(int kind)
{
    pthcv_activation a = {kind, 0, 0};
    if (kind == PTHCV_ACT_CLAMP) a.alpha = -0.25f, a.beta = 0.5f;
    return a;
}

/* pthcv_gconv_forward straight, into out */
static void run_direct(const gcase *c, const float *x, const float *w, const float *b, const float *res,
                       const pthcv_activation *act, float *out, int oh, int ow)
{
    pthcv_gconv_args a = {.x = x,
                          .batch = c->n,
                          .h = c->h,
                          .w = c->w,
                          .ph = c->pad,
                          .pw = c->pad,
                          .groups = c->groups,
                          .cin_g = c->cin_g,
                          .cout_g = c->cout_g,
                          .stride = c->stride,
                          .weight = w,
                          .bias = b,
                          .act = *act,
                          .out = out,
                          .oh = oh,
                          .ow = ow,
                          .ocs = (int64_t)oh * ow,
                          .obs = (int64_t)c->groups * c->cout_g * oh * ow,
                          .res = res};
    CHECK(pthcv_gconv_forward(&a) == PTHCV_OK, "%s: gconv_forward: %s", c->name, pthcv_last_error());
}

static const int threads_list[] = {1, 2, 3};

static void run_case(const gcase *c)
{
    int cin = c->groups * c->cin_g, cout = c->groups * c->cout_g;
    int oh = (c->h + 2 * c->pad - 3) / c->stride + 1, ow = (c->w + 2 * c->pad - 3) / c->stride + 1;
    int64_t xs[4] = {c->n, cin, c->h, c->w}, ws[4] = {cout, c->cin_g, 3, 3}, bs[1] = {cout};
    int64_t ys[4] = {c->n, cout, oh, ow}, ny = (int64_t)c->n * cout * oh * ow;
    pthcv_tensor *x = random_tensor(4, xs), *w = random_tensor(4, ws), *b = c->bias ? random_tensor(1, bs) : NULL;
    pthcv_tensor *r = c->res ? random_tensor(4, ys) : NULL;
    const float *xd = pthcv_tensor_data(x), *wd = pthcv_tensor_data(w), *bd = b ? pthcv_tensor_data(b) : NULL;
    const float *rd = r ? pthcv_tensor_data(r) : NULL;
    pthcv_activation act = act_of(c->act);
    float *ref = malloc(sizeof(float) * (size_t)ny), *scalar = malloc(sizeof(float) * (size_t)ny);
    float *y[3];
    for (int i = 0; i < 3; i++) y[i] = malloc(sizeof(float) * (size_t)ny);
    ref_gconv(c, xd, wd, bd, rd, ref, oh, ow, &act);

    pthcv_conv2d_params p = {{c->stride, c->stride}, {c->pad, c->pad}, {1, 1}, c->groups, 0, act};
    CHECK(pthcv_gconv_fits(c->cin_g, c->cout_g, 3, 3, &p), "%s: in the envelope", c->name);
    pthcv_conv2d *direct = pthcv_conv2d_prepare(w, b, &p);
    setenv("PTHCV_GCONV", "0", 1);
    pthcv_conv2d *gemm = pthcv_conv2d_prepare(w, b, &p);
    unsetenv("PTHCV_GCONV");
    CHECK(direct && gemm, "%s: prepare: %s", c->name, pthcv_last_error());
    /* the direct path keeps the weights plain, float32 */
    CHECK(pthcv_conv2d_weight_bytes(direct) == (int64_t)sizeof(float) * cout * c->cin_g * 9,
          "%s: the direct path's weights (%lld bytes)", c->name, (long long)pthcv_conv2d_weight_bytes(direct));

    for (int isa = 0; direct && gemm && isa < PTHCV_ISA_COUNT; isa++) {
        if (pthcv_set_isa(isa_names[isa]) != PTHCV_OK) continue;
        const char *in = isa_names[isa];
        for (int ti = 0; ti < 3; ti++) {
            pthcv_set_num_threads(threads_list[ti]);
            run_direct(c, xd, wd, bd, rd, &act, y[ti], oh, ow);
        }
        size_t bytes = sizeof(float) * (size_t)ny;
        CHECK(memcmp(y[0], y[1], bytes) == 0 && memcmp(y[0], y[2], bytes) == 0,
              "%s [%s]: results differ between 1, 2 and 3 threads", c->name, in);
        double e = rel_err(y[0], ref, ny);
        CHECK(e <= 1e-5, "%s [%s]: off the double reference by %.3g of max", c->name, in, e);
        if (isa == PTHCV_ISA_SCALAR) {
            memcpy(scalar, y[0], bytes);
        } else {
            e = rel_err(y[0], scalar, ny);
            CHECK(e <= 1e-5, "%s [%s]: off the scalar kernel by %.3g of max", c->name, in, e);
        }
        /* through conv2d: the direct path, and the GEMM's bits */
        pthcv_set_num_threads(2);
        pthcv_tensor *yd = pthcv_conv2d_forward(direct, x, r), *yg = pthcv_conv2d_forward(gemm, x, r);
        CHECK(yd && yg, "%s [%s]: conv2d forward: %s", c->name, in, pthcv_last_error());
        if (yd && yg) {
            CHECK(memcmp(pthcv_tensor_data(yd), y[0], bytes) == 0, "%s [%s]: conv2d did not take the direct kernel",
                  c->name, in);
            CHECK(memcmp(pthcv_tensor_data(yd), pthcv_tensor_data(yg), bytes) == 0,
                  "%s [%s]: not the GEMM path's bits (%.3g of max off)", c->name, in,
                  rel_err(pthcv_tensor_data(yd), pthcv_tensor_data(yg), ny));
        }
        pthcv_tensor_release(yd);
        pthcv_tensor_release(yg);
    }
    pthcv_set_isa("auto");
    pthcv_set_num_threads(2);
    pthcv_conv2d_free(direct);
    pthcv_conv2d_free(gemm);
    pthcv_tensor *made[] = {x, w, b, r};
    for (int i = 0; i < 4; i++) pthcv_tensor_release(made[i]);
    float *bufs[] = {ref, scalar, y[0], y[1], y[2]};
    for (int i = 0; i < 5; i++) free(bufs[i]);
}

static void test_cases(void)
{
    static const gcase cases[] = {
        /* name                  n  g cin_g cout_g h   w  s pad bias res act */
        {"cin_g 2 5x6 s1 p1", 1, 3, 2, 2, 5, 6, 1, 1, 1, 0, PTHCV_ACT_RELU},
        {"cin_g 3 17x17 s1 p1", 1, 5, 3, 3, 17, 17, 1, 1, 1, 1, PTHCV_ACT_NONE},
        {"cin_g 3 17x17 s2 p1", 1, 2, 3, 5, 17, 17, 2, 1, 1, 0, PTHCV_ACT_SILU},
        {"cin_g 8 7x7 s1 p1", 1, 7, 8, 8, 7, 7, 1, 1, 1, 0, PTHCV_ACT_RELU},
        {"cin_g 8 14x14 s1 p1", 1, 5, 8, 8, 14, 14, 1, 1, 1, 1, PTHCV_ACT_RELU},
        {"cin_g 8 14x14 s2 p1", 1, 3, 8, 8, 14, 14, 2, 1, 1, 0, PTHCV_ACT_RELU},
        {"cin_g 8 56x56 s1 p1", 1, 2, 8, 8, 56, 56, 1, 1, 1, 0, PTHCV_ACT_RELU},
        {"cin_g 8 57x55 s2 p1", 1, 2, 8, 8, 57, 55, 2, 1, 1, 1, PTHCV_ACT_CLAMP},
        {"cin_g 16 9x13 s1 p1", 2, 3, 16, 16, 9, 13, 1, 1, 1, 1, PTHCV_ACT_RELU6},
        {"cin_g 16 15x16 s2 p0", 1, 2, 16, 16, 15, 16, 2, 0, 0, 0, PTHCV_ACT_NONE},
        {"cin_g 16 out 1", 1, 4, 16, 1, 11, 10, 1, 1, 1, 0, PTHCV_ACT_NONE},
        {"cin_g 4 out 7", 1, 3, 4, 7, 8, 9, 1, 1, 1, 1, PTHCV_ACT_HARDSWISH},
        {"cin_g 5 out 13 s2", 1, 2, 5, 13, 10, 11, 2, 1, 1, 0, PTHCV_ACT_RELU},
        {"1x1 map p1", 2, 4, 8, 8, 1, 1, 1, 1, 1, 1, PTHCV_ACT_RELU},
        {"3x3 map p0", 1, 4, 8, 8, 3, 3, 1, 0, 1, 0, PTHCV_ACT_NONE},
        {"2x2 map s2 p1", 1, 3, 2, 2, 2, 2, 2, 1, 1, 0, PTHCV_ACT_NONE},
        {"pad 2 s1", 1, 2, 3, 3, 6, 7, 1, 2, 1, 1, PTHCV_ACT_NONE},
        {"pad 2 s2", 1, 2, 8, 8, 9, 9, 2, 2, 0, 0, PTHCV_ACT_RELU},
        {"wide 4x33 s1", 1, 2, 8, 8, 4, 33, 1, 1, 1, 1, PTHCV_ACT_RELU},
        {"wide 5x40 s2", 1, 2, 8, 8, 5, 40, 2, 1, 1, 1, PTHCV_ACT_RELU},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

/* conv2d_forward_into a channel slice of a larger tensor (planes further
 * apart than one output), with a residual */
static void test_slice(void)
{
    int64_t xs[4] = {2, 16, 9, 9}, ws[4] = {16, 8, 3, 3}, ys[4] = {2, 16, 9, 9}, big[4] = {2, 40, 9, 9};
    pthcv_tensor *x = random_tensor(4, xs), *w = random_tensor(4, ws), *r = random_tensor(4, ys);
    pthcv_tensor *dst = random_tensor(4, big);
    pthcv_conv2d_params p = {{1, 1}, {1, 1}, {1, 1}, 2, 0, {PTHCV_ACT_RELU, 0, 0}};
    pthcv_conv2d *c = pthcv_conv2d_prepare(w, NULL, &p);
    pthcv_tensor *y = c ? pthcv_conv2d_forward(c, x, r) : NULL;
    int64_t vstride[4] = {40 * 81, 81, 9, 1};
    pthcv_tensor *v = pthcv_tensor_view(dst, 4, ys, vstride, 5 * 81);
    CHECK(y && v && pthcv_conv2d_forward_into(c, x, r, v) == PTHCV_OK, "slice: forward: %s", pthcv_last_error());
    if (y && v) {
        const float *yd = pthcv_tensor_data(y), *dd = pthcv_tensor_data(dst);
        int same = 1;
        for (int n = 0; n < 2; n++)
            same = same && memcmp(dd + n * 40 * 81 + 5 * 81, yd + n * 16 * 81, sizeof(float) * 16 * 81) == 0;
        CHECK(same, "slice: the channel slice holds the forward's output");
    }
    pthcv_tensor_release(y);
    pthcv_tensor_release(v);
    pthcv_tensor_release(dst);
    pthcv_tensor_release(x);
    pthcv_tensor_release(w);
    pthcv_tensor_release(r);
    pthcv_conv2d_free(c);
}

static void test_envelope(void)
{
    pthcv_conv2d_params p = {{1, 1}, {1, 1}, {1, 1}, 8, 0, {0, 0, 0}};
    CHECK(pthcv_gconv_fits(8, 8, 3, 3, &p), "3x3 s1, 8 a group: direct");
    CHECK(!pthcv_gconv_fits(1, 1, 3, 3, &p), "depthwise: not here (dwconv.h)");
    CHECK(!pthcv_gconv_fits(24, 24, 3, 3, &p), "24 a group: the GEMM");
    CHECK(!pthcv_gconv_fits(8, 8, 5, 5, &p), "5x5: the GEMM");
    p.stride[0] = p.stride[1] = 3;
    CHECK(!pthcv_gconv_fits(8, 8, 3, 3, &p), "stride 3: the GEMM");
    p.stride[0] = 1, p.stride[1] = 2;
    CHECK(!pthcv_gconv_fits(8, 8, 3, 3, &p), "stride (1, 2): the GEMM");
    p.stride[1] = 1, p.dilation[0] = p.dilation[1] = 2;
    CHECK(!pthcv_gconv_fits(8, 8, 3, 3, &p), "dilation 2: the GEMM");
    p.dilation[0] = p.dilation[1] = 1, p.groups = 1;
    CHECK(!pthcv_gconv_fits(8, 8, 3, 3, &p), "one group: Winograd or the GEMM");
}

int main(void)
{
    for (int isa = 1; isa < PTHCV_ISA_COUNT; isa++)
        if (pthcv_set_isa(isa_names[isa]) != PTHCV_OK) printf("# skipped: %s (not on this CPU)\n", isa_names[isa]);
    pthcv_set_isa("auto");
    test_cases();
    test_slice();
    test_envelope();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
