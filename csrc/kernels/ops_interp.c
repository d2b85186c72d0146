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
 * dimensions are independent planes; threads split output rows (the same
 * bits at any thread count: each value is computed by the formula).
 */
#include "ops.h"
#include <math.h>
#include <stdatomic.h>
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
    const int64_t *hidx, *widx; /* nearest: one index per output */
    ops_bilinear bl;            /* bilinear */
    atomic_int failed; /* a task could not get its row buffers */
} interp_ctx;

/* one input row's horizontal taps: t[o] = r[i0] l0 + r[i1] l1 */
PTHCV_SIMD
static void bilinear_h(float *t, const float *r, const int64_t *widx, const float *wlam, int64_t ow)
{
    for (int64_t o = 0; o < ow; o++) t[o] = r[widx[2 * o]] * wlam[2 * o] + r[widx[2 * o + 1]] * wlam[2 * o + 1];
}

/* the vertical step: y = t0 lh0 + t1 lh1 */
PTHCV_SIMD
static void bilinear_v(float *y, const float *t0, const float *t1, float lh0, float lh1, int64_t ow)
{
    for (int64_t o = 0; o < ow; o++) y[o] = t0[o] * lh0 + t1[o] * lh1;
}

int ops_bilinear_init(ops_bilinear *b, int64_t H, int64_t W, int64_t OH, int64_t OW, int align_corners,
                      double scale_h, double scale_w)
{
    *b = (ops_bilinear){.H = H, .W = W, .OH = OH, .OW = OW};
    b->hidx = malloc((size_t)(OH + OW) * 2 * sizeof *b->hidx);
    b->hlam = malloc((size_t)(OH + OW) * 2 * sizeof *b->hlam);
    if (!b->hidx || !b->hlam) {
        ops_bilinear_free(b);
        return pthcv_fail(PTHCV_ERR_NOMEM, "bilinear resize to %lldx%lld: out of memory", (long long)OH,
                          (long long)OW);
    }
    b->widx = b->hidx + 2 * OH, b->wlam = b->hlam + 2 * OH;
    linear_taps(H, OH, align_corners, scale_h, b->hidx, b->hlam);
    linear_taps(W, OW, align_corners, scale_w, b->widx, b->wlam);
    return PTHCV_OK;
}

void ops_bilinear_free(ops_bilinear *b)
{
    free(b->hidx);
    free(b->hlam);
    b->hidx = NULL, b->hlam = NULL;
}

int ops_bilinear_rows_init(ops_bilinear_rows *r, const ops_bilinear *b, int64_t group)
{
    *r = (ops_bilinear_rows){.group = group, .tag = {NULL, NULL}};
    r->t = malloc(sizeof(float) * (size_t)(2 * group * b->OW));
    return r->t != NULL;
}

void ops_bilinear_rows_free(ops_bilinear_rows *r)
{
    free(r->t);
    r->t = NULL;
}

/* slot s of r holds the horizontal taps of input row `row` (of the group's first plane) */
static void fill_slot(const ops_bilinear *b, ops_bilinear_rows *r, int s, const float *row)
{
    for (int64_t g = 0; g < r->group; g++)
        bilinear_h(r->t + (s * r->group + g) * b->OW, row + g * b->H * b->W, b->widx, b->wlam, b->OW);
    r->tag[s] = row;
}

void ops_bilinear_row(const ops_bilinear *b, ops_bilinear_rows *r, const float *x, int64_t oh, float *y,
                      int64_t ystride)
{
    const float *w0 = x + b->hidx[2 * oh] * b->W, *w1 = x + b->hidx[2 * oh + 1] * b->W;
    int s0 = r->tag[0] == w0 ? 0 : r->tag[1] == w0 ? 1 : -1;
    if (s0 < 0) fill_slot(b, r, s0 = r->tag[0] == w1 ? 1 : 0, w0); /* keep the row w1 may find */
    int s1 = r->tag[s0] == w1 ? s0 : r->tag[1 - s0] == w1 ? 1 - s0 : -1;
    if (s1 < 0) fill_slot(b, r, s1 = 1 - s0, w1);
    for (int64_t g = 0; g < r->group; g++)
        bilinear_v(y + g * ystride, r->t + (s0 * r->group + g) * b->OW, r->t + (s1 * r->group + g) * b->OW,
                   b->hlam[2 * oh], b->hlam[2 * oh + 1], b->OW);
}

/* over output rows of all planes */
static void interp_task(void *vctx, int64_t begin, int64_t end)
{
    interp_ctx *c = vctx;
    if (c->mode == PTHCV_INTERP_BILINEAR) {
        ops_bilinear_rows rows;
        if (!ops_bilinear_rows_init(&rows, &c->bl, 1)) {
            atomic_store(&c->failed, 1);
            return;
        }
        for (int64_t r = begin; r < end; r++)
            ops_bilinear_row(&c->bl, &rows, c->x + r / c->OH * c->H * c->W, r % c->OH, c->y + r * c->OW, 0);
        ops_bilinear_rows_free(&rows);
        return;
    }
    for (int64_t r = begin; r < end; r++) {
        int64_t p = r / c->OH, oh = r % c->OH;
        const float *row = c->x + p * c->H * c->W + c->hidx[oh] * c->W;
        float *y = c->y + r * c->OW;
        for (int64_t o = 0; o < c->OW; o++) y[o] = row[c->widx[o]];
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
    int64_t *idx = NULL;
    pthcv_tensor *out = NULL;
    if (mode == PTHCV_INTERP_NEAREST) {
        if (!(idx = malloc((size_t)(out_h + out_w) * sizeof *idx))) {
            pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", fn);
            goto done;
        }
        for (int64_t o = 0; o < out_h; o++) idx[o] = nearest_index(o, c.H, out_h, scale_h);
        for (int64_t o = 0; o < out_w; o++) idx[out_h + o] = nearest_index(o, c.W, out_w, scale_w);
        c.hidx = idx;
        c.widx = idx + out_h;
    } else if (ops_bilinear_init(&c.bl, c.H, c.W, out_h, out_w, align_corners, scale_h, scale_w) != PTHCV_OK) {
        goto done;
    }
    float *y;
    out = ops_output(nd, shape, &y);
    if (!out || out->numel == 0) goto done;
    c.y = y;
    atomic_init(&c.failed, 0);
    pthcv_parallel_for(out->numel / out_w, ops_grain(out_w * 4), interp_task, &c);
    if (atomic_load(&c.failed)) {
        pthcv_tensor_release(out);
        out = NULL;
        pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", fn);
    }
done:
    free(idx);
    ops_bilinear_free(&c.bl);
    pthcv_tensor_release(xc);
    return out;
}
