/*
 * ops_interp.c -- resizing over the last two dimensions (pthcv_interpolate,
 * F.interpolate's 'nearest' and 'bilinear' modes), with torch's index rules
 * in float32 so that the same source pixels and weights come out:
 *
 *   scale = 1/scale_factor when the caller gave one (> 0), else in/out
 *   nearest:  src = out == in ? dst : out == 2*in ? dst/2
 *                 : min(floor(dst * scale), in - 1)
 *   bilinear: align_corners: src = dst * (in-1)/(out-1)   (0 when out == 1)
 *             otherwise:     src = max(scale * (dst + 0.5) - 0.5, 0)
 *             i0 = (int)src, i1 = i0 + (i0 < in-1), l1 = clamp(src - i0, 0, 1)
 *             (src and l1 in double from the float32 scale, as torch does:
 *             float32 positions are off by up to 6e-5 pixel at 600 pixels)
 *             y = (x[h0,w0] l0w + x[h0,w1] l1w) l0h + (x[h1,w0] l0w + x[h1,w1] l1w) l1h
 *
 * With align_corners the scale factor is not used (as in torch). Leading
 * dimensions are independent planes; threads split output rows.
 */
#include "ops.h"
#include <math.h>
#include <stdlib.h>

static float scale_value(double given, int64_t in, int64_t out)
{
    return given > 0.0 ? (float)(1.0 / given) : (float)in / (float)out;
}

static int64_t nearest_index(int64_t dst, int64_t in, int64_t out, double given)
{
    if (out == in) return dst;
    if (out == 2 * in) return dst >> 1;
    float scale = scale_value(given, in, out);
    int64_t src = (int64_t)floorf((float)dst * scale);
    return src < in - 1 ? src : in - 1;
}

/* bilinear taps of one axis: idx[2*o], idx[2*o+1] and weights lam[2*o], lam[2*o+1].
 * The scale is float32, the source position and its fraction double (torch
 * 1.13's CPU kernel: float scale times (dst + 0.5) as a double), the weights
 * rounded to float32 at the end. */
static void linear_taps(int64_t in, int64_t out, int align_corners, double given, int64_t *idx, float *lam)
{
    float scale;
    if (align_corners) scale = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
    else scale = scale_value(given, in, out);
    for (int64_t o = 0; o < out; o++) {
        double src;
        if (align_corners) {
            src = (double)scale * (double)o;
        } else {
            src = (double)scale * ((double)o + 0.5) - 0.5;
            if (src < 0.0) src = 0.0;
        }
        int64_t i0 = (int64_t)src;
        double l1 = src - (double)i0;
        l1 = l1 < 0.0 ? 0.0 : l1 > 1.0 ? 1.0 : l1;
        idx[2 * o] = i0;
        idx[2 * o + 1] = i0 + (i0 < in - 1 ? 1 : 0);
        lam[2 * o] = (float)(1.0 - l1);
        lam[2 * o + 1] = (float)l1;
    }
}

typedef struct {
    const float *x;
    float *y;
    int64_t H, W, OH, OW;
    int mode;
    const int64_t *hidx, *widx; /* nearest: one index per output; bilinear: two */
    const float *hlam, *wlam;
} interp_ctx;

PTHCV_SIMD
static void bilinear_row(float *y, const float *r0, const float *r1, float lh0, float lh1, const int64_t *widx,
                         const float *wlam, int64_t ow)
{
    for (int64_t o = 0; o < ow; o++) {
        int64_t i0 = widx[2 * o], i1 = widx[2 * o + 1];
        float l0 = wlam[2 * o], l1 = wlam[2 * o + 1];
        float t0 = r0[i0] * l0 + r0[i1] * l1;
        float t1 = r1[i0] * l0 + r1[i1] * l1;
        y[o] = t0 * lh0 + t1 * lh1;
    }
}

/* over output rows of all planes */
static void interp_task(void *vctx, int64_t begin, int64_t end)
{
    interp_ctx *c = vctx;
    for (int64_t r = begin; r < end; r++) {
        int64_t p = r / c->OH, oh = r % c->OH;
        const float *plane = c->x + p * c->H * c->W;
        float *y = c->y + r * c->OW;
        if (c->mode == PTHCV_INTERP_NEAREST) {
            const float *row = plane + c->hidx[oh] * c->W;
            for (int64_t o = 0; o < c->OW; o++) y[o] = row[c->widx[o]];
        } else {
            bilinear_row(y, plane + c->hidx[2 * oh] * c->W, plane + c->hidx[2 * oh + 1] * c->W, c->hlam[2 * oh],
                         c->hlam[2 * oh + 1], c->widx, c->wlam, c->OW);
        }
    }
}

pthcv_tensor *pthcv_interpolate(pthcv_tensor *x, int32_t out_h, int32_t out_w, int32_t mode, int32_t align_corners,
                                double scale_h, double scale_w)
{
    PTHCV_PROFILE_OP("interpolate");
    const char *fn = "interpolate";
    if (mode != PTHCV_INTERP_NEAREST && mode != PTHCV_INTERP_BILINEAR)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: unknown mode %d", fn, (int)mode);
    if (out_h < 1 || out_w < 1)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: output size (%d, %d) must be positive", fn, (int)out_h, (int)out_w);
    if (x && x->ndim < 2)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: input %s needs at least 2 dimensions (..., H, W)", fn, ops_shape(x));
    if (x && (x->shape[x->ndim - 2] < 1 || x->shape[x->ndim - 1] < 1))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: input %s is empty in height or width", fn, ops_shape(x));
    const float *xd;
    pthcv_tensor *xc = ops_input(x, fn, "input", &xd);
    if (!xc) return NULL;
    int nd = x->ndim;
    interp_ctx c = {.x = xd, .H = x->shape[nd - 2], .W = x->shape[nd - 1], .OH = out_h, .OW = out_w, .mode = mode};
    int64_t shape[PTHCV_MAX_DIMS];
    for (int d = 0; d < nd - 2; d++) shape[d] = x->shape[d];
    shape[nd - 2] = out_h;
    shape[nd - 1] = out_w;
    int64_t *idx = malloc((size_t)(out_h + out_w) * 2 * sizeof *idx);
    float *lam = malloc((size_t)(out_h + out_w) * 2 * sizeof *lam);
    pthcv_tensor *out = NULL;
    if (!idx || !lam) {
        pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", fn);
        goto done;
    }
    if (mode == PTHCV_INTERP_NEAREST) {
        for (int64_t o = 0; o < out_h; o++) idx[o] = nearest_index(o, c.H, out_h, scale_h);
        for (int64_t o = 0; o < out_w; o++) idx[out_h + o] = nearest_index(o, c.W, out_w, scale_w);
        c.hidx = idx;
        c.widx = idx + out_h;
    } else {
        linear_taps(c.H, out_h, align_corners, scale_h, idx, lam);
        linear_taps(c.W, out_w, align_corners, scale_w, idx + 2 * out_h, lam + 2 * out_h);
        c.hidx = idx;
        c.widx = idx + 2 * out_h;
        c.hlam = lam;
        c.wlam = lam + 2 * out_h;
    }
    float *y;
    out = ops_output(nd, shape, &y);
    if (!out || out->numel == 0) goto done;
    c.y = y;
    pthcv_parallel_for(out->numel / out_w, ops_grain(out_w * 4), interp_task, &c);
done:
    free(idx);
    free(lam);
    pthcv_tensor_release(xc);
    return out;
}
