/*
 * conv_transpose2d.c -- transposed 2-d convolution (pthcv_conv_transpose2d,
 * F.conv_transpose2d), computed directly: every input pixel scatters
 * x * w into the output window it reaches.
 *
 *   x [N, Cin, H, W] (or unbatched [Cin, H, W]), weight [Cin, Cout/groups, kh, kw],
 *   bias [Cout] or NULL;
 *   OH = (H - 1) * stride - 2 * padding + dilation * (kh - 1) + output_padding + 1
 *   (same for W); output_padding must be smaller than stride or dilation.
 *
 * Threads take whole output planes (n, oc); inside one, contributions are
 * added in a fixed order (input channel, kernel row, kernel column, input
 * row, input column), so the result does not depend on the thread count.
 */
#include "ops.h"

typedef struct {
    const float *x, *w, *bias;
    float *y;
    int64_t cin, cout, H, W, OH, OW, kh, kw;
    int64_t sh, sw, ph, pw, dh, dw, groups;
} convt_ctx;

/* y[i * stride] += a * x[i] for i < n */
PTHCV_SIMD
static void axpy_strided(float *y, int64_t stride, const float *x, int64_t n, float a)
{
    if (stride == 1) {
        for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
    } else {
        for (int64_t i = 0; i < n; i++) y[i * stride] += a * x[i];
    }
}

/* ceil(a / b) for b > 0 */
static int64_t div_ceil(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a > 0) ? q + 1 : q;
}

/* floor(a / b) for b > 0 */
static int64_t div_floor(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

static void convt_task(void *vctx, int64_t begin, int64_t end)
{
    convt_ctx *c = vctx;
    int64_t cin_g = c->cin / c->groups, cout_g = c->cout / c->groups;
    for (int64_t p = begin; p < end; p++) {
        int64_t n = p / c->cout, oc = p % c->cout, g = oc / cout_g, ocg = oc % cout_g;
        float *y = c->y + p * c->OH * c->OW;
        float b = c->bias ? c->bias[oc] : 0.0f;
        for (int64_t i = 0; i < c->OH * c->OW; i++) y[i] = b;
        for (int64_t ic = g * cin_g; ic < (g + 1) * cin_g; ic++) {
            const float *x = c->x + (n * c->cin + ic) * c->H * c->W;
            const float *w = c->w + (ic * cout_g + ocg) * c->kh * c->kw;
            for (int64_t ky = 0; ky < c->kh; ky++) {
                /* input rows ih with oh = ih * sh - ph + ky * dh inside [0, OH) */
                int64_t oy = ky * c->dh - c->ph;
                int64_t ih0 = div_ceil(-oy, c->sh), ih1 = div_floor(c->OH - 1 - oy, c->sh) + 1;
                if (ih0 < 0) ih0 = 0;
                if (ih1 > c->H) ih1 = c->H;
                for (int64_t kx = 0; kx < c->kw; kx++) {
                    float wv = w[ky * c->kw + kx];
                    int64_t ox = kx * c->dw - c->pw;
                    int64_t iw0 = div_ceil(-ox, c->sw), iw1 = div_floor(c->OW - 1 - ox, c->sw) + 1;
                    if (iw0 < 0) iw0 = 0;
                    if (iw1 > c->W) iw1 = c->W;
                    if (iw0 >= iw1) continue;
                    for (int64_t ih = ih0; ih < ih1; ih++) {
                        float *yrow = y + (ih * c->sh + oy) * c->OW + iw0 * c->sw + ox;
                        axpy_strided(yrow, c->sw, x + ih * c->W + iw0, iw1 - iw0, wv);
                    }
                }
            }
        }
    }
}

pthcv_tensor *pthcv_conv_transpose2d(pthcv_tensor *x, pthcv_tensor *weight, pthcv_tensor *bias, const int32_t stride[2],
                                     const int32_t padding[2], const int32_t output_padding[2],
                                     const int32_t dilation[2], int32_t groups)
{
    PTHCV_PROFILE_OP("conv_transpose2d");
    const char *fn = "conv_transpose2d";
    if (!stride || !padding || !output_padding || !dilation)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: stride, padding, output_padding and dilation are required", fn);
    for (int i = 0; i < 2; i++) {
        if (stride[i] < 1 || dilation[i] < 1 || padding[i] < 0 || output_padding[i] < 0)
            return PTHCV_FAIL_NULL(PTHCV_ERR_ARG,
                                   "%s: stride (%d, %d) and dilation (%d, %d) must be positive, padding (%d, %d) "
                                   "and output_padding (%d, %d) not negative",
                                   fn, stride[0], stride[1], dilation[0], dilation[1], padding[0], padding[1],
                                   output_padding[0], output_padding[1]);
        if (output_padding[i] >= stride[i] && output_padding[i] >= dilation[i])
            return PTHCV_FAIL_NULL(
                PTHCV_ERR_ARG, "%s: output_padding (%d, %d) must be smaller than stride (%d, %d) or dilation (%d, %d)",
                fn, output_padding[0], output_padding[1], stride[0], stride[1], dilation[0], dilation[1]);
    }
    if (groups < 1) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: groups %d must be positive", fn, (int)groups);
    if (x && x->ndim != 3 && x->ndim != 4)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: input %s must be [N, C, H, W] or [C, H, W]", fn, ops_shape(x));
    if (weight && weight->ndim != 4)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: weight %s must be [Cin, Cout/groups, kh, kw]", fn,
                               ops_shape(weight));
    const float *xd, *wd, *bd = NULL;
    pthcv_tensor *xc = ops_input(x, fn, "input", &xd);
    if (!xc) return NULL;
    pthcv_tensor *wc = ops_input(weight, fn, "weight", &wd), *bc = NULL, *out = NULL;
    if (!wc) goto done;
    int batched = x->ndim == 4;
    const int64_t *xs = x->shape + (batched ? 1 : 0);
    convt_ctx c = {
        .x = xd,
        .w = wd,
        .cin = xs[0],
        .H = xs[1],
        .W = xs[2],
        .kh = weight->shape[2],
        .kw = weight->shape[3],
        .cout = weight->shape[1] * groups,
        .sh = stride[0],
        .sw = stride[1],
        .ph = padding[0],
        .pw = padding[1],
        .dh = dilation[0],
        .dw = dilation[1],
        .groups = groups,
    };
    if (weight->shape[0] != c.cin || c.cin % groups) {
        pthcv_fail(PTHCV_ERR_ARG,
                   "%s: input %s and weight %s with %d groups: weight needs the %lld input channels "
                   "first, divisible by groups",
                   fn, ops_shape(x), ops_shape(weight), (int)groups, (long long)c.cin);
        goto done;
    }
    if (bias) {
        if (!(bc = ops_input(bias, fn, "bias", &bd))) goto done;
        if (bc->numel != c.cout) {
            pthcv_fail(PTHCV_ERR_ARG, "%s: bias %s for %lld output channels", fn, ops_shape(bias), (long long)c.cout);
            goto done;
        }
    }
    c.bias = bd;
    c.OH = (c.H - 1) * c.sh - 2 * c.ph + c.dh * (c.kh - 1) + output_padding[0] + 1;
    c.OW = (c.W - 1) * c.sw - 2 * c.pw + c.dw * (c.kw - 1) + output_padding[1] + 1;
    if (c.OH < 1 || c.OW < 1 || c.H < 1 || c.W < 1) {
        pthcv_fail(PTHCV_ERR_ARG, "%s: input %s with weight %s gives output size %lldx%lld, too small", fn,
                   ops_shape(x), ops_shape(weight), (long long)c.OH, (long long)c.OW);
        goto done;
    }
    int64_t shape[4], nbatch = batched ? x->shape[0] : 1;
    int nd = 0;
    if (batched) shape[nd++] = nbatch;
    shape[nd++] = c.cout;
    shape[nd++] = c.OH;
    shape[nd++] = c.OW;
    float *y;
    out = ops_output(nd, shape, &y);
    if (!out || out->numel == 0) goto done;
    c.y = y;
    int64_t work = (c.cin / groups) * c.kh * c.kw * c.H * c.W + c.OH * c.OW;
    pthcv_parallel_for(nbatch * c.cout, ops_grain(work), convt_task, &c);
done:
    pthcv_tensor_release(xc);
    pthcv_tensor_release(wc);
    pthcv_tensor_release(bc);
    return out;
}
