/*
 * ops_pool.c -- 2-d pooling over the last two dimensions: pthcv_pool2d
 * (max / average with padding, dilation, ceil_mode, count_include_pad,
 * divisor_override) and pthcv_adaptive_pool2d (max / average, any output
 * size). All leading dimensions are independent planes.
 *
 * The rules are torch's, and the results its bits:
 *  - output size: floor((in + 2p - d(k-1) - 1 + (ceil ? s-1 : 0)) / s) + 1,
 *    and with ceil_mode one less when the last window would start at or past
 *    in + p (it must start inside the input or the left padding);
 *  - max: windows clipped to the input (dilated taps outside are skipped),
 *    -inf when empty, NaN when any tap is NaN;
 *  - average: the window is clipped to the padded input first (its size then
 *    is the count_include_pad divisor), then to the input (the other
 *    divisor); the sum is float32, row by row, left to right, then divided
 *    by the divisor; a window with no input element gives 0;
 *  - adaptive: output o covers [floor(o*in/out), ceil((o+1)*in/out)); the
 *    average is sum / kh / kw, except for a 1x1 output, which torch computes
 *    as a mean (see global_avg: equal to within rounding, not to the bit).
 * Average pooling has no dilation in torch; a dilation other than 1 is an
 * error there.
 *
 * Speed: a window that lies inside the input in the width direction is
 * computed together with its neighbours of the same output row, one lane
 * per output, each lane taking its taps in torch's order (so max keeps
 * torch's choice among equal values, -0.0 or +0.0, as well as its NaN):
 * AVX-512 / AVX2 with masked loads (ops_pool_simd.c), else the
 * auto-vectorised tap-by-tap passes below; the few border windows take the
 * plain loop.
 */
#include "ops.h"
#include "qpool.h"
#include <math.h>

/* floor(a / b) for b > 0 */
static int64_t div_floor(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

static int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, int ceil_mode)
{
    int64_t out = div_floor(in + 2 * p - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0), s) + 1;
    if (ceil_mode && (out - 1) * s >= in + p) out--;
    return out;
}

/* ---- the vectorised row steps ------------------------------------------------ */

/* acc[i] = max(acc[i], src[i * stride]) for i < n, NaN sticking */
PTHCV_SIMD
static void max_accum(float *acc, const float *src, int64_t n, int64_t stride)
{
    if (stride == 1) {
        for (int64_t i = 0; i < n; i++) {
            float v = src[i];
            acc[i] = ((v > acc[i]) | (v != v)) ? v : acc[i];
        }
    } else if (stride == 2) {
        for (int64_t i = 0; i < n; i++) {
            float v = src[2 * i];
            acc[i] = ((v > acc[i]) | (v != v)) ? v : acc[i];
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            float v = src[i * stride];
            acc[i] = ((v > acc[i]) | (v != v)) ? v : acc[i];
        }
    }
}

/* acc[i] += src[i * stride] for i < n */
PTHCV_SIMD
static void sum_accum(float *acc, const float *src, int64_t n, int64_t stride)
{
    if (stride == 1) {
        for (int64_t i = 0; i < n; i++) acc[i] += src[i];
    } else if (stride == 2) {
        for (int64_t i = 0; i < n; i++) acc[i] += src[2 * i];
    } else {
        for (int64_t i = 0; i < n; i++) acc[i] += src[i * stride];
    }
}

PTHCV_SIMD
static void div_row(float *y, int64_t n, float d)
{
    for (int64_t i = 0; i < n; i++) y[i] = y[i] / d;
}

/* ---- pool2d ------------------------------------------------------------------ */

typedef struct {
    const float *x;
    float *y;
    int64_t H, W, OH, OW;
    int64_t kh, kw, sh, sw, ph, pw, dh, dw;
    int kind, count_include_pad;
    int64_t divisor; /* 0: none */
    int64_t lo, hi;  /* ow in [lo, hi): every tap of the window is inside the width */
} pool_ctx;

/* One output row of max pooling: y[ow] for ow < OW. */
static void max_row(const pool_ctx *c, const float *plane, float *y, int64_t oh)
{
    int64_t h0 = oh * c->sh - c->ph, h1 = h0 + (c->kh - 1) * c->dh + 1;
    if (h1 > c->H) h1 = c->H;
    while (h0 < 0) h0 += c->dh;
    int64_t lo = c->lo, hi = c->hi;
    for (int64_t ow = 0; ow < c->OW; ow++) {
        if (ow == lo && lo < hi) ow = hi; /* the interior is done below */
        if (ow >= c->OW) break;
        int64_t w0 = ow * c->sw - c->pw, w1 = w0 + (c->kw - 1) * c->dw + 1;
        if (w1 > c->W) w1 = c->W;
        while (w0 < 0) w0 += c->dw;
        float m = -INFINITY;
        for (int64_t ih = h0; ih < h1; ih += c->dh)
            for (int64_t iw = w0; iw < w1; iw += c->dw) {
                float v = plane[ih * c->W + iw];
                m = ((v > m) | (v != v)) ? v : m;
            }
        y[ow] = m;
    }
    if (lo < hi) {
        const float *base = plane + h0 * c->W + lo * c->sw - c->pw;
        int64_t rows = h1 > h0 ? (h1 - h0 + c->dh - 1) / c->dh : 0;
        if (ops_pool_run_simd(y + lo, base, hi - lo, rows, c->dh * c->W, c->kw, c->sw, c->dw, 1, 1.0f)) return;
        for (int64_t ow = lo; ow < hi; ow++) y[ow] = -INFINITY;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t kx = 0; kx < c->kw; kx++)
                max_accum(y + lo, base + r * c->dh * c->W + kx * c->dw, hi - lo, c->sw);
    }
}

/* One output row of average pooling. */
static void avg_row(const pool_ctx *c, const float *plane, float *y, int64_t oh)
{
    int64_t h0 = oh * c->sh - c->ph, h1 = h0 + c->kh;
    if (h1 > c->H + c->ph) h1 = c->H + c->ph;
    int64_t pool_h = h1 - h0;
    if (h0 < 0) h0 = 0;
    if (h1 > c->H) h1 = c->H;
    int64_t lo = h0 < h1 ? c->lo : c->hi, hi = c->hi;
    for (int64_t ow = 0; ow < c->OW; ow++) {
        if (ow == lo && lo < hi) ow = hi;
        if (ow >= c->OW) break;
        int64_t w0 = ow * c->sw - c->pw, w1 = w0 + c->kw;
        if (w1 > c->W + c->pw) w1 = c->W + c->pw;
        int64_t pool = pool_h * (w1 - w0);
        if (w0 < 0) w0 = 0;
        if (w1 > c->W) w1 = c->W;
        if (h0 >= h1 || w0 >= w1) {
            y[ow] = 0.0f;
            continue;
        }
        int64_t div = c->divisor ? c->divisor : c->count_include_pad ? pool : (h1 - h0) * (w1 - w0);
        float s = 0.0f;
        for (int64_t ih = h0; ih < h1; ih++)
            for (int64_t iw = w0; iw < w1; iw++) s += plane[ih * c->W + iw];
        y[ow] = s / (float)div;
    }
    if (lo < hi) {
        int64_t div = c->divisor ? c->divisor : c->count_include_pad ? pool_h * c->kw : (h1 - h0) * c->kw;
        const float *base = plane + h0 * c->W + lo * c->sw - c->pw;
        if (ops_pool_run_simd(y + lo, base, hi - lo, h1 - h0, c->W, c->kw, c->sw, 1, 0, (float)div)) return;
        for (int64_t ow = lo; ow < hi; ow++) y[ow] = 0.0f;
        for (int64_t ih = h0; ih < h1; ih++)
            for (int64_t kx = 0; kx < c->kw; kx++)
                sum_accum(y + lo, plane + ih * c->W + lo * c->sw - c->pw + kx, hi - lo, c->sw);
        div_row(y + lo, hi - lo, (float)div);
    }
}

static void pool_task(void *vctx, int64_t begin, int64_t end)
{
    pool_ctx *c = vctx;
    for (int64_t p = begin; p < end; p++) {
        const float *plane = c->x + p * c->H * c->W;
        float *out = c->y + p * c->OH * c->OW;
        for (int64_t oh = 0; oh < c->OH; oh++) {
            if (c->kind == PTHCV_POOL_MAX) max_row(c, plane, out + oh * c->OW, oh);
            else avg_row(c, plane, out + oh * c->OW, oh);
        }
    }
}

pthcv_tensor *pthcv_pool2d(pthcv_tensor *x, const pthcv_pool2d_params *p)
{
    PTHCV_PROFILE_OP("pool2d");
    if (p)
        PTHCV_PROFILE_LABEL("pool2d %s %dx%d/%d", p->kind == PTHCV_POOL_MAX ? "max" : "avg", p->kernel[0], p->kernel[1],
                            p->stride[0]);
    /* int8 in, int8 out with the input's scale and zero point (max pooling: below, on the bytes) */
    if (ops_is_qactivation(x) && !(p && p->kind == PTHCV_POOL_MAX)) {
        pthcv_tensor *d = pthcv_tensor_dequantize(x);
        pthcv_tensor *y = d ? pthcv_pool2d(d, p) : NULL;
        pthcv_tensor_release(d);
        return ops_requantize_like(y, x);
    }
    const char *fn = !p             ? "pool2d"
        : p->kind == PTHCV_POOL_MAX ? "max_pool2d"
        : p->kind == PTHCV_POOL_AVG ? "avg_pool2d"
                                    : "pool2d";
    if (!p) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: no parameters", fn);
    if (p->kind != PTHCV_POOL_MAX && p->kind != PTHCV_POOL_AVG)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: unknown pooling kind %d", fn, (int)p->kind);
    for (int i = 0; i < 2; i++) {
        if (p->kernel[i] < 1 || p->stride[i] < 1 || p->dilation[i] < 1 || p->padding[i] < 0)
            return PTHCV_FAIL_NULL(PTHCV_ERR_ARG,
                                   "%s: kernel (%d, %d), stride (%d, %d) and dilation (%d, %d) must be positive "
                                   "and padding (%d, %d) not negative",
                                   fn, p->kernel[0], p->kernel[1], p->stride[0], p->stride[1], p->dilation[0],
                                   p->dilation[1], p->padding[0], p->padding[1]);
        if (p->padding[i] > p->kernel[i] / 2)
            return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: padding (%d, %d) must be at most half the kernel size (%d, %d)",
                                   fn, p->padding[0], p->padding[1], p->kernel[0], p->kernel[1]);
    }
    if (p->kind == PTHCV_POOL_AVG && (p->dilation[0] != 1 || p->dilation[1] != 1))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: average pooling has no dilation, got (%d, %d)", fn, p->dilation[0],
                               p->dilation[1]);
    if (p->kind == PTHCV_POOL_AVG && p->divisor_override < 0)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: divisor_override %d must be positive", fn, (int)p->divisor_override);
    if (x && x->ndim < 2)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: input %s needs at least 2 dimensions (..., H, W)", fn, ops_shape(x));
    if (!x) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: no input tensor", fn);
    const float *xd;
    pthcv_tensor *xc = NULL;
    int nd = x->ndim;
    pool_ctx c = {
        .H = x->shape[nd - 2],
        .W = x->shape[nd - 1],
        .kh = p->kernel[0],
        .kw = p->kernel[1],
        .sh = p->stride[0],
        .sw = p->stride[1],
        .ph = p->padding[0],
        .pw = p->padding[1],
        .dh = p->dilation[0],
        .dw = p->dilation[1],
        .kind = p->kind,
        .count_include_pad = p->count_include_pad != 0,
        .divisor = p->divisor_override,
    };
    c.OH = pool_out_size(c.H, c.kh, c.sh, c.ph, c.dh, p->ceil_mode);
    c.OW = pool_out_size(c.W, c.kw, c.sw, c.pw, c.dw, p->ceil_mode);
    int64_t reach = c.W - 1 + c.pw - (c.kw - 1) * c.dw; /* the last window start whose taps fit */
    c.lo = (c.pw + c.sw - 1) / c.sw;
    c.hi = reach >= 0 ? reach / c.sw + 1 : 0;
    if (c.hi > c.OW) c.hi = c.OW;
    if (c.lo > c.hi) c.lo = c.hi;
    pthcv_tensor *out = NULL;
    if (c.H < 1 || c.W < 1 || c.OH < 1 || c.OW < 1) {
        pthcv_fail(PTHCV_ERR_ARG,
                   "%s: input %s with kernel (%lld, %lld), stride (%lld, %lld), padding (%lld, %lld), "
                   "dilation (%lld, %lld) gives output size %lldx%lld, too small",
                   fn, ops_shape(x), (long long)c.kh, (long long)c.kw, (long long)c.sh, (long long)c.sw,
                   (long long)c.ph, (long long)c.pw, (long long)c.dh, (long long)c.dw, (long long)c.OH,
                   (long long)c.OW);
        goto done;
    }
    if (ops_is_qactivation(x)) { /* max on the bytes: it commutes with dequantization (qpool.c) */
        qpool_geom g = {c.H, c.W, c.OH, c.OW, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw, c.lo, c.hi};
        return qpool_max2d(x, &g);
    }
    if (!(xc = ops_input(x, fn, "input", &xd))) return NULL;
    c.x = xd;
    int64_t shape[PTHCV_MAX_DIMS];
    for (int d = 0; d < nd - 2; d++) shape[d] = x->shape[d];
    shape[nd - 2] = c.OH;
    shape[nd - 1] = c.OW;
    float *y;
    out = ops_output_whole(nd, shape, &y);
    if (!out || out->numel == 0) goto done;
    c.y = y;
    int64_t planes = out->numel / (c.OH * c.OW);
    pthcv_parallel_for(planes, ops_grain(c.OH * c.OW * c.kh * c.kw), pool_task, &c);
done:
    pthcv_tensor_release(xc);
    return out;
}

/* ---- adaptive pooling ------------------------------------------------------ */

/* torch's window of output o of `out` over `in`: [start, end) */
static int64_t start_index(int64_t o, int64_t out, int64_t in) { return (o / out) * in + ((o % out) * in) / out; }
static int64_t end_index(int64_t o, int64_t out, int64_t in) { return 1 + ((o + 1) * in - 1) / out; }

typedef struct {
    const float *x;
    float *y;
    int64_t H, W, OH, OW, planes;
    int kind;
} adaptive_ctx;

/* Global average pooling (output 1x1) is torch's x.mean((-1, -2)), whose
 * summation order depends on torch's build and CPU: here the plane's sum in
 * double (ops_sum_f64), divided by H*W and rounded once. */
static void global_avg(float *y, const float *x, int64_t n, int64_t count)
{
    for (int64_t p = 0; p < count; p++) y[p] = (float)(ops_sum_f64(x + p * n, n) / (double)n);
}

static void adaptive_task(void *vctx, int64_t begin, int64_t end)
{
    adaptive_ctx *c = vctx;
    if (c->kind == PTHCV_POOL_AVG && c->OH == 1 && c->OW == 1) {
        global_avg(c->y + begin, c->x + begin * c->H * c->W, c->H * c->W, end - begin);
        return;
    }
    for (int64_t p = begin; p < end; p++) {
        const float *plane = c->x + p * c->H * c->W;
        float *y = c->y + p * c->OH * c->OW;
        for (int64_t oh = 0; oh < c->OH; oh++) {
            int64_t h0 = start_index(oh, c->OH, c->H), h1 = end_index(oh, c->OH, c->H);
            for (int64_t ow = 0; ow < c->OW; ow++) {
                int64_t w0 = start_index(ow, c->OW, c->W), w1 = end_index(ow, c->OW, c->W);
                float r;
                if (c->kind == PTHCV_POOL_MAX) {
                    r = -INFINITY;
                    for (int64_t ih = h0; ih < h1; ih++)
                        for (int64_t iw = w0; iw < w1; iw++) {
                            float v = plane[ih * c->W + iw];
                            r = ((v > r) | (v != v)) ? v : r;
                        }
                } else {
                    r = 0.0f;
                    for (int64_t ih = h0; ih < h1; ih++)
                        for (int64_t iw = w0; iw < w1; iw++) r += plane[ih * c->W + iw];
                    r = r / (float)(h1 - h0) / (float)(w1 - w0);
                }
                y[oh * c->OW + ow] = r;
            }
        }
    }
}

pthcv_tensor *pthcv_adaptive_pool2d(pthcv_tensor *x, int32_t kind, int32_t out_h, int32_t out_w)
{
    PTHCV_PROFILE_OP("adaptive_pool2d");
    PTHCV_PROFILE_LABEL("adaptive_pool2d %s", kind == PTHCV_POOL_MAX ? "max" : "avg");
    if (ops_is_qactivation(x) && kind == PTHCV_POOL_AVG && out_h == 1 && out_w == 1 && x->ndim == 4)
        return pthcv_qglobal_avg_pool2d(x); /* torch's quantized mean on the bytes (quant_elementwise.c) */
    if (ops_is_qactivation(x)) { /* int8 in, int8 out with the input's scale and zero point */
        pthcv_tensor *d = pthcv_tensor_dequantize(x);
        pthcv_tensor *y = d ? pthcv_adaptive_pool2d(d, kind, out_h, out_w) : NULL;
        pthcv_tensor_release(d);
        return ops_requantize_like(y, x);
    }
    const char *fn = kind == PTHCV_POOL_MAX ? "adaptive_max_pool2d"
        : kind == PTHCV_POOL_AVG            ? "adaptive_avg_pool2d"
                                            : "adaptive_pool2d";
    if (kind != PTHCV_POOL_MAX && kind != PTHCV_POOL_AVG)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: unknown pooling kind %d", fn, (int)kind);
    if (out_h < 0 || out_w < 0)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: output size (%d, %d) must not be negative", fn, (int)out_h,
                               (int)out_w);
    if (x && x->ndim < 2)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: input %s needs at least 2 dimensions (..., H, W)", fn, ops_shape(x));
    if (x && (x->shape[x->ndim - 2] < 1 || x->shape[x->ndim - 1] < 1))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: input %s is empty in height or width", fn, ops_shape(x));
    const float *xd;
    pthcv_tensor *xc = ops_input(x, fn, "input", &xd);
    if (!xc) return NULL;
    int nd = x->ndim;
    int64_t shape[PTHCV_MAX_DIMS];
    for (int d = 0; d < nd - 2; d++) shape[d] = x->shape[d];
    shape[nd - 2] = out_h;
    shape[nd - 1] = out_w;
    float *y;
    pthcv_tensor *out = ops_output_whole(nd, shape, &y);
    if (out && out->numel > 0) {
        adaptive_ctx c = {xd, y, x->shape[nd - 2], x->shape[nd - 1], out_h, out_w, 0, kind};
        c.planes = out->numel / ((int64_t)out_h * out_w);
        int64_t per = c.H * c.W + c.OH * c.OW;
        pthcv_parallel_for(c.planes, ops_grain(per), adaptive_task, &c);
    }
    pthcv_tensor_release(xc);
    return out;
}
