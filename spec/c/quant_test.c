/* quant_test.c -- the int8 elementwise ops of quant_elementwise.c
 * (qhardswish, qhardsigmoid, qmul, qglobal_avg_pool2d), max_pool2d on
 * quint8 (qpool.c, at each instruction-set level) and quint8 dequantize against plain
 * references written from torch's formulas, value by value, on odd sizes
 * and at 1, 2 and 3 threads (identical bits). torch's own answers are
 * spec/quant_spec.lua's (the whole table of each activation, and torch's
 * int8 mobilenet_v3_large). */
#include "../../csrc/pthcv.h"
#include "../../csrc/kernels/qpool.h"
#include "check.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;
static uint32_t rng = 12345;

static uint8_t rand_u8(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (uint8_t)(rng >> 24);
}

static pthcv_tensor *random_quint8(int ndim, const int64_t *shape, double scale, int zp)
{
    pthcv_tensor *t = pthcv_tensor_new(PTHCV_QUINT8, ndim, shape);
    uint8_t *d = pthcv_tensor_data(t);
    for (int64_t i = 0; i < t->numel; i++) d[i] = rand_u8();
    t->qscheme = PTHCV_QSCHEME_PER_TENSOR_AFFINE, t->qscale = scale, t->qzero_point = zp;
    return t;
}

static uint8_t clamp_u8(long v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

/* QNNPACK's hardswish / hardsigmoid of one value, computed directly */
static uint8_t ref_hard(int swish, uint8_t q, float si, int zi, float so, int zo)
{
    float x = si * (float)((int)q - zi);
    float r = x + 3.0f;
    r = r > 6.0f ? 6.0f : r;
    r = r < 0.0f ? 0.0f : r;
    float f = swish ? x * r / 6.0f : r / 6.0f;
    return clamp_u8(lrintf((1.0f / so) * f) + zo);
}

static int same_qparams(const pthcv_tensor *y, double scale, int zp)
{
    return y && y->dtype == PTHCV_QUINT8 && y->qscale == scale && y->qzero_point == zp;
}

static void test_hard_activations(void)
{
    static const int64_t sizes[] = {1, 3, 7, 17, 33, 4099};
    static const struct {
        double si;
        int zi;
        double so;
        int zo;
    } qp[] = {{0.05, 128, 0.037, 17}, {0.0173, 3, 1.0 / 256, 0}, {0.11, 200, 0.02, 255}, {0.3, 0, 0.5, 0}};
    for (int t = 1; t <= 3; t++) {
        pthcv_set_num_threads(t);
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            for (size_t k = 0; k < sizeof qp / sizeof *qp; k++) {
                int64_t shape[2] = {sizes[s], 3};
                pthcv_tensor *x = random_quint8(2, shape, qp[k].si, qp[k].zi);
                for (int swish = 0; swish < 2; swish++) {
                    pthcv_tensor *y = swish ? pthcv_qhardswish(x, qp[k].so, qp[k].zo)
                                            : pthcv_qhardsigmoid(x, qp[k].so, qp[k].zo);
                    CHECK(same_qparams(y, qp[k].so, qp[k].zo), "hard%s: quint8 with the given qparams",
                          swish ? "swish" : "sigmoid");
                    if (!y) continue;
                    const uint8_t *xd = pthcv_tensor_data(x), *yd = pthcv_tensor_data(y);
                    int64_t bad = 0;
                    for (int64_t i = 0; i < x->numel; i++)
                        bad += yd[i] != ref_hard(swish, xd[i], (float)qp[k].si, qp[k].zi, (float)qp[k].so, qp[k].zo);
                    CHECK(bad == 0, "hard%s [%lld, 3], %d threads: %lld values differ from the reference",
                          swish ? "swish" : "sigmoid", (long long)sizes[s], t, (long long)bad);
                    pthcv_tensor_release(y);
                }
                pthcv_tensor_release(x);
            }
        }
    }
    pthcv_set_num_threads(1);
    /* at the zero point: hardsigmoid(0) = 0.5 = 128 / 256, hardswish(0) = 0 */
    int64_t one[1] = {1};
    pthcv_tensor *x = random_quint8(1, one, 0.1, 77);
    ((uint8_t *)pthcv_tensor_data(x))[0] = 77;
    pthcv_tensor *hs = pthcv_qhardsigmoid(x, 1.0 / 256, 0), *hw = pthcv_qhardswish(x, 0.05, 9);
    CHECK(hs && ((uint8_t *)pthcv_tensor_data(hs))[0] == 128, "hardsigmoid(0) is 128 at scale 1/256");
    CHECK(hw && ((uint8_t *)pthcv_tensor_data(hw))[0] == 9, "hardswish(0) is the output's zero point");
    pthcv_tensor_release(hs), pthcv_tensor_release(hw);
    CHECK(pthcv_qhardswish(x, 0, 0) == NULL && strstr(pthcv_last_error(), "scale"), "hardswish: scale 0 refused");
    CHECK(pthcv_qhardsigmoid(x, 0.1, 256) == NULL, "hardsigmoid: zero point 256 refused");
    pthcv_tensor_release(x);
    pthcv_tensor *f = pthcv_tensor_new(PTHCV_FLOAT32, 1, one);
    CHECK(pthcv_qhardswish(f, 0.1, 0) == NULL && strstr(pthcv_last_error(), "must be quint8"),
          "hardswish: float32 refused: %s", pthcv_last_error());
    pthcv_tensor_release(f);
}

/* torch's qmul of one pair */
static uint8_t ref_mul(uint8_t a, uint8_t b, double sa, int za, double sb, int zb, double s, int z)
{
    float multiplier = (float)sa * (float)sb * (1.0f / (float)s);
    int32_t prod = ((int32_t)a - za) * ((int32_t)b - zb);
    return clamp_u8(lrintf((float)prod * multiplier) + z);
}

static void test_qmul(void)
{
    static const int64_t channels[] = {1, 3, 7, 17, 33};
    static const int64_t planes[][2] = {{1, 1}, {3, 5}, {7, 7}, {14, 3}};
    for (int t = 1; t <= 3; t++) {
        pthcv_set_num_threads(t);
        for (size_t ci = 0; ci < sizeof channels / sizeof *channels; ci++) {
            for (size_t pi = 0; pi < sizeof planes / sizeof *planes; pi++) {
                int64_t c = channels[ci], h = planes[pi][0], w = planes[pi][1];
                int64_t xs[4] = {2, c, h, w}, fs[4] = {2, c, 1, 1};
                pthcv_tensor *x = random_quint8(4, xs, 0.031, 113), *f = random_quint8(4, fs, 1.0 / 256, 0);
                pthcv_tensor *same = random_quint8(4, xs, 0.017, 200);
                for (int form = 0; form < 3; form++) {
                    /* factor first (torchvision's skip_mul.mul(scale, input)), factor second, same shapes */
                    pthcv_tensor *a = form == 0 ? f : x, *b = form == 0 ? x : form == 1 ? f : same;
                    pthcv_tensor *y = pthcv_qmul(a, b, 0.0123, 5);
                    CHECK(same_qparams(y, 0.0123, 5) && y->numel == x->numel, "qmul: quint8 of the input's shape");
                    if (!y) continue;
                    const uint8_t *ad = pthcv_tensor_data(a), *bd = pthcv_tensor_data(b), *yd = pthcv_tensor_data(y);
                    int64_t bad = 0;
                    for (int64_t i = 0; i < x->numel; i++) {
                        int64_t plane = i / (h * w); /* index into the [2, c, 1, 1] factor */
                        uint8_t av = a == f ? ad[plane] : ad[i], bv = b == f ? bd[plane] : bd[i];
                        bad += yd[i] !=
                            ref_mul(av, bv, a->qscale, (int)a->qzero_point, b->qscale, (int)b->qzero_point, 0.0123, 5);
                    }
                    CHECK(bad == 0, "qmul form %d [2, %lld, %lld, %lld], %d threads: %lld values differ", form,
                          (long long)c, (long long)h, (long long)w, t, (long long)bad);
                    pthcv_tensor_release(y);
                }
                pthcv_tensor_release(x), pthcv_tensor_release(f), pthcv_tensor_release(same);
            }
        }
    }
    pthcv_set_num_threads(1);
    int64_t xs[4] = {1, 3, 3, 3}, bs[4] = {1, 3, 2, 1};
    pthcv_tensor *x = random_quint8(4, xs, 0.1, 0), *b = random_quint8(4, bs, 0.1, 0);
    CHECK(pthcv_qmul(x, b, 0.1, 0) == NULL && strstr(pthcv_last_error(), "per-channel factor"),
          "qmul: a factor that does not broadcast is refused: %s", pthcv_last_error());
    CHECK(pthcv_qmul(x, x, -1, 0) == NULL, "qmul: a negative scale is refused");
    pthcv_tensor_release(x), pthcv_tensor_release(b);
}

/* qglobal_avg_pool2d against torch's formula, and adaptive_pool2d to 1x1 on
 * quint8, which runs it */
static void test_qglobal_avg_pool2d(void)
{
    static const int64_t channels[] = {1, 3, 7, 17, 33};
    static const int64_t planes[][2] = {{1, 1}, {1, 2}, {2, 2}, {3, 3}, {7, 7}, {14, 14}, {5, 9}};
    static const int zps[] = {0, 77, 200, 255};
    for (int t = 1; t <= 3; t++) {
        pthcv_set_num_threads(t);
        for (size_t ci = 0; ci < sizeof channels / sizeof *channels; ci++) {
            for (size_t pi = 0; pi < sizeof planes / sizeof *planes; pi++) {
                for (size_t zi = 0; zi < sizeof zps / sizeof *zps; zi++) {
                    int64_t h = planes[pi][0], w = planes[pi][1], n = h * w, xs[4] = {2, channels[ci], h, w};
                    pthcv_tensor *x = random_quint8(4, xs, 0.0123, zps[zi]);
                    pthcv_tensor *y = pthcv_qglobal_avg_pool2d(x);
                    pthcv_tensor *ya = pthcv_adaptive_pool2d(x, PTHCV_POOL_AVG, 1, 1); /* nn.AdaptiveAvgPool2d(1) */
                    CHECK(y && ya && same_qparams(ya, 0.0123, zps[zi]) && ya->numel == y->numel &&
                              memcmp(pthcv_tensor_data(ya), pthcv_tensor_data(y), (size_t)y->numel) == 0,
                          "adaptive_pool2d avg to 1x1 of quint8 is qglobal_avg_pool2d");
                    pthcv_tensor_release(ya);
                    CHECK(same_qparams(y, 0.0123, zps[zi]) && y->ndim == 4 && y->shape[1] == channels[ci] &&
                              y->shape[2] == 1 && y->shape[3] == 1,
                          "qglobal_avg_pool2d: [N, C, 1, 1] with the input's qparams");
                    if (!y) continue;
                    const uint8_t *xd = pthcv_tensor_data(x), *yd = pthcv_tensor_data(y);
                    int64_t bad = 0, far = 0;
                    for (int64_t p = 0; p < y->numel; p++) {
                        int64_t sum = 0;
                        for (int64_t i = 0; i < n; i++) sum += xd[p * n + i];
                        float acc = (float)(sum - (int64_t)zps[zi] * n);
                        bad += yd[p] != clamp_u8(lrintf(acc * (1.0f / (float)n)) + zps[zi]);
                        far += fabs((double)yd[p] - (double)sum / (double)n) > 0.5 + 1e-9;
                    }
                    CHECK(bad == 0 && far == 0,
                          "qglobal_avg_pool2d [2, %lld, %lld, %lld] zp %d, %d threads: %lld differ, %lld beyond "
                          "half a step of the mean",
                          (long long)channels[ci], (long long)h, (long long)w, zps[zi], t, (long long)bad,
                          (long long)far);
                    pthcv_tensor_release(x), pthcv_tensor_release(y);
                }
            }
        }
    }
    pthcv_set_num_threads(1);
    int64_t s3[3] = {1, 3, 3};
    pthcv_tensor *x = random_quint8(3, s3, 0.1, 0);
    CHECK(pthcv_qglobal_avg_pool2d(x) == NULL && strstr(pthcv_last_error(), "[N, C, H, W]"),
          "qglobal_avg_pool2d: a 3-d input is refused: %s", pthcv_last_error());
    pthcv_tensor_release(x);
}

/* max_pool2d on quint8 (pooled on the stored integers) against a plain
 * reference of torch's quantized max pool: the window's largest integer,
 * padding ignored, the input's scale and zero point kept; and the contiguous
 * quint8 dequantize against (q - zp) * scale in float, also on a strided view. */
static void test_qmax_pool2d_and_dequantize(void)
{
    static const int64_t channels[] = {1, 3, 7, 17, 33};
    static const int64_t planes[][2] = {{1, 1}, {3, 3}, {7, 5}, {14, 14}, {17, 9}};
    for (int t = 1; t <= 3; t++) {
        pthcv_set_num_threads(t);
        for (size_t ci = 0; ci < sizeof channels / sizeof *channels; ci++) {
            for (size_t pi = 0; pi < sizeof planes / sizeof *planes; pi++) {
                int64_t h = planes[pi][0], w = planes[pi][1], xs[4] = {2, channels[ci], h, w};
                pthcv_tensor *x = random_quint8(4, xs, 0.037, 61);
                for (int k = 1; k <= 3; k += 2) {
                    for (int stride = 1; stride <= 2; stride++) {
                        pthcv_pool2d_params p = {PTHCV_POOL_MAX, {k, k}, {stride, stride}, {k / 2, k / 2}, {1, 1},
                                                 stride == 2, 0, 0};
                        pthcv_tensor *y = pthcv_pool2d(x, &p);
                        CHECK(y && same_qparams(y, 0.037, 61), "qmax_pool2d: quint8 with the input's qparams");
                        if (!y) continue;
                        const uint8_t *xd = pthcv_tensor_data(x), *yd = pthcv_tensor_data(y);
                        int64_t oh = y->shape[2], ow = y->shape[3], bad = 0;
                        for (int64_t pl = 0; pl < 2 * channels[ci]; pl++)
                            for (int64_t i = 0; i < oh; i++)
                                for (int64_t j = 0; j < ow; j++) {
                                    int m = -1;
                                    for (int64_t a = i * stride - k / 2; a < i * stride - k / 2 + k; a++)
                                        for (int64_t b = j * stride - k / 2; b < j * stride - k / 2 + k; b++)
                                            if (a >= 0 && a < h && b >= 0 && b < w && xd[(pl * h + a) * w + b] > m)
                                                m = xd[(pl * h + a) * w + b];
                                    bad += yd[(pl * oh + i) * ow + j] != m;
                                }
                        CHECK(bad == 0, "qmax_pool2d [2, %lld, %lld, %lld] %dx%d/%d, %d threads: %lld differ",
                              (long long)channels[ci], (long long)h, (long long)w, k, k, stride, t, (long long)bad);
                        pthcv_tensor_release(y);
                    }
                }
                pthcv_tensor *d = pthcv_tensor_dequantize(x);
                const uint8_t *xd = pthcv_tensor_data(x);
                int64_t bad = 0;
                for (int64_t i = 0; d && i < x->numel; i++)
                    bad += ((float *)pthcv_tensor_data(d))[i] != (float)((int)xd[i] - 61) * (float)0.037;
                CHECK(d && bad == 0, "dequantize quint8 [2, %lld, %lld, %lld]: %lld differ", (long long)channels[ci],
                      (long long)h, (long long)w, (long long)bad);
                pthcv_tensor_release(d);
                pthcv_tensor_release(x);
            }
        }
    }
    pthcv_set_num_threads(1);
    int64_t s2[2] = {5, 7}, st[2] = {7, 5}, tstride[2] = {1, 7};
    pthcv_tensor *x = random_quint8(2, s2, 0.5, 3), *xt = pthcv_tensor_view(x, 2, st, tstride, 0);
    pthcv_tensor *d = xt ? pthcv_tensor_dequantize(xt) : NULL;
    int64_t bad = 0;
    const uint8_t *xd = pthcv_tensor_data(x);
    for (int64_t i = 0; d && i < 7; i++)
        for (int64_t j = 0; j < 5; j++)
            bad += ((float *)pthcv_tensor_data(d))[i * 5 + j] != (float)((int)xd[j * 7 + i] - 3) * 0.5f;
    CHECK(d && bad == 0, "dequantize of a transposed quint8 view: %lld differ", (long long)bad);
    pthcv_tensor_release(d), pthcv_tensor_release(xt), pthcv_tensor_release(x);
}

/* torch's max_pool2d output size (ceil_mode: one less when the last window
 * would start at or past in + p), written out again for the reference */
static int64_t ref_pool_size(int64_t in, int k, int s, int p, int d, int ceil_mode)
{
    int64_t span = in + 2 * p - d * (k - 1) - 1;
    int64_t num = ceil_mode ? span + s - 1 : span;
    int64_t out = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1; /* floor division */
    if (ceil_mode && (out - 1) * s >= in + p) out--;
    return out;
}

/* The quint8 max pool's row kernels (qpool.c) at every instruction-set
 * level this machine has (scalar, AVX2, AVX-512 or NEON) and at 1, 2 and 3
 * threads against a direct window max, on odd widths (below and above a
 * vector, squeezenet's 111), kernels 2, 3 and 5, strides 1, 2 and 3,
 * padding up to half the kernel, dilation 1 and 2, ceil_mode on and off,
 * and on a transposed (non-contiguous) view. */
static void test_qmax_pool2d_levels(void)
{
    static const int64_t planes[][2] = {{1, 1}, {5, 3}, {9, 33}, {7, 65}, {13, 111}, {4, 200}};
    static const int channels[] = {1, 3, 17};
    int best = qpool_force_level(-1);
    int levels[4], nlev = 0;
    levels[nlev++] = 0;
    if (best == 2) levels[nlev++] = 1;
    if (best > 0) levels[nlev++] = best;
    for (int li = 0; li < nlev; li++) {
        int level = qpool_force_level(levels[li]);
        CHECK(level == levels[li], "qpool: level %d is available (got %d)", levels[li], level);
        for (int t = 1; t <= 3; t++) {
            pthcv_set_num_threads(t);
            int64_t checked = 0, bad = 0, fails = 0;
            for (size_t pi = 0; pi < sizeof planes / sizeof *planes; pi++)
                for (size_t ci = 0; ci < sizeof channels / sizeof *channels; ci++) {
                    int64_t h = planes[pi][0], w = planes[pi][1], xs[4] = {1, channels[ci], h, w};
                    pthcv_tensor *x = random_quint8(4, xs, 0.02, 7);
                    const uint8_t *xd = pthcv_tensor_data(x);
                    for (int k = 2; k <= 5; k += k == 3 ? 2 : 1)
                        for (int s = 1; s <= 3; s++)
                            for (int pad = 0; pad <= k / 2; pad++)
                                for (int d = 1; d <= 2; d++)
                                    for (int ceil_mode = 0; ceil_mode <= 1; ceil_mode++) {
                                        int64_t oh = ref_pool_size(h, k, s, pad, d, ceil_mode);
                                        int64_t ow = ref_pool_size(w, k, s, pad, d, ceil_mode);
                                        if (oh < 1 || ow < 1) continue;
                                        pthcv_pool2d_params p = {PTHCV_POOL_MAX, {k, k}, {s, s}, {pad, pad}, {d, d},
                                                                 ceil_mode, 0, 0};
                                        pthcv_tensor *y = pthcv_pool2d(x, &p);
                                        if (!y || !same_qparams(y, 0.02, 7) || y->shape[2] != oh || y->shape[3] != ow) {
                                            fails++;
                                            pthcv_tensor_release(y);
                                            continue;
                                        }
                                        const uint8_t *yd = pthcv_tensor_data(y);
                                        for (int64_t c = 0; c < channels[ci]; c++)
                                            for (int64_t i = 0; i < oh; i++)
                                                for (int64_t j = 0; j < ow; j++) {
                                                    int m = 0;
                                                    for (int a = 0; a < k; a++)
                                                        for (int b = 0; b < k; b++) {
                                                            int64_t r = i * s - pad + a * d, q = j * s - pad + b * d;
                                                            if (r >= 0 && r < h && q >= 0 && q < w &&
                                                                xd[(c * h + r) * w + q] > m)
                                                                m = xd[(c * h + r) * w + q];
                                                        }
                                                    bad += yd[(c * oh + i) * ow + j] != m;
                                                    checked++;
                                                }
                                        pthcv_tensor_release(y);
                                    }
                    pthcv_tensor_release(x);
                }
            CHECK(fails == 0 && bad == 0 && checked > 100000,
                  "qmax_pool2d at level %d, %d threads: %lld failed calls, %lld of %lld outputs differ", level, t,
                  (long long)fails, (long long)bad, (long long)checked);
        }
    }
    qpool_force_level(-1);
    pthcv_set_num_threads(1);
    /* a transposed view: pooled as its values, not its storage order */
    int64_t s2[4] = {1, 1, 9, 40}, st[4] = {1, 1, 40, 9}, tstride[4] = {360, 360, 1, 40};
    pthcv_tensor *x = random_quint8(4, s2, 0.5, 3), *xt = pthcv_tensor_view(x, 4, st, tstride, 0);
    pthcv_pool2d_params p = {PTHCV_POOL_MAX, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 1, 0, 0};
    pthcv_tensor *y = xt ? pthcv_pool2d(xt, &p) : NULL;
    const uint8_t *xd = pthcv_tensor_data(x);
    int64_t bad = 0;
    for (int64_t i = 0; y && i < y->shape[2]; i++)
        for (int64_t j = 0; j < y->shape[3]; j++) {
            int m = 0;
            for (int64_t r = 2 * i - 1; r <= 2 * i + 1; r++)
                for (int64_t q = 2 * j - 1; q <= 2 * j + 1; q++)
                    if (r >= 0 && r < 40 && q >= 0 && q < 9 && xd[q * 40 + r] > m) m = xd[q * 40 + r];
            bad += ((const uint8_t *)pthcv_tensor_data(y))[i * y->shape[3] + j] != m;
        }
    CHECK(y && y->shape[2] == 21 && y->shape[3] == 5 && bad == 0, "qmax_pool2d of a transposed view: %lld differ",
          (long long)bad);
    pthcv_tensor_release(y), pthcv_tensor_release(xt), pthcv_tensor_release(x);
}

/* ReLU, ReLU6 and clamp (hardtanh) of a quint8 tensor through
 * pthcv_activate: quint8 with the input's scale and zero point, each byte
 * clamp(q, round(lo / s) + zp, round(hi / s) + zp), as torch's quantized
 * relu / relu6 / hardtanh; at 1 and 2 threads, on a strided view too. */
static void test_qclamp_activations(void)
{
    static const struct {
        pthcv_activation act;
        float lo, hi;
    } acts[] = {{{PTHCV_ACT_RELU, 0, 0}, 0.0f, INFINITY},
                {{PTHCV_ACT_RELU6, 0, 0}, 0.0f, 6.0f},
                {{PTHCV_ACT_CLAMP, -0.37f, 0.81f}, -0.37f, 0.81f}};
    static const double scales[] = {0.05, 0.0117};
    static const int zps[] = {0, 100, 255};
    int64_t shape[4] = {1, 3, 17, 33 * 41};
    for (int t = 1; t <= 2; t++) {
        pthcv_set_num_threads(t);
        for (size_t a = 0; a < sizeof acts / sizeof *acts; a++)
            for (size_t si = 0; si < 2; si++)
                for (size_t zi = 0; zi < 3; zi++) {
                    double s = scales[si];
                    int zp = zps[zi];
                    pthcv_tensor *x = random_quint8(4, shape, s, zp), *y = pthcv_activate(x, &acts[a].act);
                    CHECK(y && same_qparams(y, s, zp), "qclamp %d: quint8 with the input's qparams", (int)a);
                    if (!y) continue;
                    long lo = isinf(acts[a].lo) ? 0 : lrint(nearbyint(acts[a].lo / s) + zp);
                    long hi = isinf(acts[a].hi) ? 255 : lrint(nearbyint(acts[a].hi / s) + zp);
                    lo = lo < 0 ? 0 : lo > 255 ? 255 : lo, hi = hi < lo ? lo : hi > 255 ? 255 : hi;
                    const uint8_t *xd = pthcv_tensor_data(x), *yd = pthcv_tensor_data(y);
                    int64_t bad = 0;
                    for (int64_t i = 0; i < x->numel; i++) bad += yd[i] != (xd[i] < lo ? lo : xd[i] > hi ? hi : xd[i]);
                    CHECK(bad == 0, "qclamp %d scale %g zp %d, %d threads: %lld differ", (int)a, s, zp, t,
                          (long long)bad);
                    pthcv_tensor_release(y), pthcv_tensor_release(x);
                }
    }
    pthcv_set_num_threads(1);
    int64_t s2[2] = {5, 7}, st[2] = {7, 5}, tstride[2] = {1, 7};
    pthcv_tensor *x = random_quint8(2, s2, 0.1, 50), *xt = pthcv_tensor_view(x, 2, st, tstride, 0);
    pthcv_tensor *y = xt ? pthcv_activate(xt, &acts[0].act) : NULL;
    const uint8_t *xd = pthcv_tensor_data(x);
    int64_t bad = 0;
    for (int64_t i = 0; y && i < 7; i++)
        for (int64_t j = 0; j < 5; j++) {
            uint8_t v = xd[j * 7 + i];
            bad += ((const uint8_t *)pthcv_tensor_data(y))[i * 5 + j] != (v < 50 ? 50 : v);
        }
    CHECK(y && bad == 0, "qclamp of a transposed quint8 view: %lld differ", (long long)bad);
    pthcv_tensor_release(y), pthcv_tensor_release(xt), pthcv_tensor_release(x);
}

/* pthcv_quantize_weight's per-channel symmetric qint8 weights dequantize
 * (they carry torch's zero points of 0) to within half a step of the
 * float weights; a channel of zeros keeps scale 1. */
static void test_quantize_weight(void)
{
    int64_t shape[] = {5, 3, 3, 3};
    pthcv_tensor *w = pthcv_tensor_new(PTHCV_FLOAT32, 4, shape);
    float *wd = pthcv_tensor_data(w);
    for (int64_t i = 0; i < w->numel; i++) wd[i] = i / 27 == 2 ? 0.0f : ((float)rand_u8() - 128.0f) / (float)(1 + i / 27);
    pthcv_tensor *q = pthcv_quantize_weight(w);
    pthcv_tensor *d = q ? pthcv_tensor_dequantize(q) : NULL;
    CHECK(d != NULL, "dequantize of quantize_weight's output: %s", pthcv_last_error());
    int64_t bad = 0;
    for (int64_t i = 0; d && i < w->numel; i++) {
        double scale = ((double *)pthcv_tensor_data(q->qscales))[i / 27];
        bad += fabs(((float *)pthcv_tensor_data(d))[i] - wd[i]) > scale * 0.5 + 1e-6;
    }
    CHECK(d && bad == 0, "quantize_weight then dequantize: %lld values off by more than half a step", (long long)bad);
    CHECK(q && ((double *)pthcv_tensor_data(q->qscales))[2] == 1.0, "a channel of zeros keeps scale 1");
    pthcv_tensor_release(d), pthcv_tensor_release(q), pthcv_tensor_release(w);
}

int main(void)
{
    test_quantize_weight();
    test_qmax_pool2d_and_dequantize();
    test_qmax_pool2d_levels();
    test_qclamp_activations();
    test_hard_activations();
    test_qmul();
    test_qglobal_avg_pool2d();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
