/*
 * ops_roi.c -- pooling of regions (torchvision.ops.roi_align, roi_pool) and
 * the two region outputs of the R-CNN heads: masks pasted into the image
 * (paste_masks_in_image) and keypoints read from heatmaps
 * (heatmaps_to_keypoints). pthcv.h, "Detection", has the contracts.
 *
 * The arithmetic is torchvision's CPU kernels' in float32, operation for
 * operation, so results are its bits:
 *
 * roi_align, per roi (batch b, x1, y1, x2, y2), offset = aligned ? 0.5 : 0:
 *   start = x1 * scale - offset, size = (x2 - x1 ...) , !aligned: size >= 1
 *   bin = size / pooled, grid = sampling_ratio > 0 ? it : ceil(size / pooled)
 *   sample (ph, iy) at y = start + ph * bin + (iy + .5) * bin / grid_h
 *   outside [-1, H] x [-1, W]: weight 0; else clamped at 0, y_low = (int)y,
 *   at the last row y_high = y_low = H - 1; bilinear weights hy*hx, hy*lx,
 *   ly*hx, ly*lx; out = sum over samples of (((w1 v1 + w2 v2) + w3 v3) +
 *   w4 v4), divided by max(grid_h * grid_w, 1).
 * roi_pool: corners round(x * scale), size max(end - start + 1, 1), bins
 *   [floor(p * bin), ceil((p + 1) * bin)) offset and clipped to the map;
 *   the maximum, 0 for an empty bin.
 *
 * Threads split the rois (masks, heatmaps); each is computed alone, so the
 * results do not depend on the thread count.
 *
 * roi_align reads its samples one of two ways, with the same bits: from the
 * planes, a channel at a time (four gathers per sample and channel), or,
 * when the rois sample the maps more often than the maps have pixels (an
 * R-CNN box head: 150 rois x 196 samples on a 10 x 14 map), from a
 * channels-last copy of the maps, where a sample's four pixels are four
 * rows of C floats summed into a row of C sums, vectorised across channels
 * (each channel still sees torchvision's sequence of operations).
 */
#include "ops.h"
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* input [N, C, H, W] and rois [K, 5], checked; batch indices in range */
static int roi_inputs(pthcv_tensor *input, pthcv_tensor *rois, const char *fn, pthcv_tensor **xc, const float **x,
                      pthcv_tensor **rc, const float **r)
{
    *xc = *rc = NULL;
    if (input && input->ndim != 4)
        return pthcv_fail(PTHCV_ERR_ARG, "%s: input must be [N, C, H, W], got %s", fn, ops_shape(input));
    if (rois && (rois->ndim != 2 || rois->shape[1] != 5))
        return pthcv_fail(PTHCV_ERR_ARG, "%s: rois must be [K, 5] (batch index, x1, y1, x2, y2), got %s", fn,
                          ops_shape(rois));
    if (!(*xc = ops_input(input, fn, "input", x)) || !(*rc = ops_input(rois, fn, "rois", r)))
        return pthcv_last_status();
    for (int64_t k = 0; k < (*rc)->shape[0]; k++) {
        float b = (*r)[5 * k];
        if (!(b >= 0.0f && b < (float)input->shape[0]))
            return pthcv_fail(PTHCV_ERR_ARG, "%s: roi %lld names batch element %g of an input of %lld", fn,
                              (long long)k, b, (long long)input->shape[0]);
    }
    return PTHCV_OK;
}

/* ---- roi_align ------------------------------------------------------------------ */

typedef struct {
    int64_t pos[4];
    float w[4];
} roi_sample;

typedef struct {
    const float *x, *rois;
    const float *x_hwc; /* the maps channels last, [N, H, W, C], or NULL: read the planes */
    float *y;
    int64_t C, H, W, ph, pw;
    float scale;
    int sampling_ratio, aligned;
    _Atomic int failed; /* a task could not get its scratch memory */
} roi_align_ctx;

/* one roi's sampling geometry */
typedef struct {
    float start_w, start_h, bin_w, bin_h;
    int64_t grid_w, grid_h;
} roi_geometry;

/* limit on one roi's samples (pooled cells x grid): its scratch memory */
enum { MAX_ROI_SAMPLES = 1 << 24 };

static int64_t grid_of(int sampling_ratio, float size, int64_t pooled)
{
    if (sampling_ratio > 0) return sampling_ratio;
    float g = ceilf(size / (float)pooled);
    return g >= 1.0f && g <= (float)MAX_ROI_SAMPLES ? (int64_t)g : g > 0.0f ? MAX_ROI_SAMPLES + 1 : 0;
}

static roi_geometry roi_geometry_of(const roi_align_ctx *c, const float *r)
{
    roi_geometry g;
    float offset = c->aligned ? 0.5f : 0.0f;
    g.start_w = r[1] * c->scale - offset;
    g.start_h = r[2] * c->scale - offset;
    float rw = r[3] * c->scale - offset - g.start_w, rh = r[4] * c->scale - offset - g.start_h;
    if (!c->aligned) {
        rw = rw > 1.0f ? rw : 1.0f; /* std::max(rw, 1) */
        rh = rh > 1.0f ? rh : 1.0f;
    }
    g.bin_h = rh / (float)c->ph;
    g.bin_w = rw / (float)c->pw;
    g.grid_h = grid_of(c->sampling_ratio, rh, c->ph);
    g.grid_w = grid_of(c->sampling_ratio, rw, c->pw);
    return g;
}

static int64_t roi_samples(const roi_align_ctx *c, const roi_geometry *g)
{
    int64_t per_cell = g->grid_h * g->grid_w;
    if (g->grid_h > MAX_ROI_SAMPLES || g->grid_w > MAX_ROI_SAMPLES || per_cell > MAX_ROI_SAMPLES / (c->ph * c->pw))
        return -1;
    return per_cell * c->ph * c->pw;
}

/* one sample's pixels and weights (torchvision's pre_calc_for_bilinear_interpolate) */
static roi_sample bilinear_sample(float y, float x, int64_t H, int64_t W)
{
    roi_sample s = {{0, 0, 0, 0}, {0, 0, 0, 0}};
    if (!(y >= -1.0f && y <= (float)H && x >= -1.0f && x <= (float)W))
        return s; /* outside (or NaN): contributes nothing */
    y = y <= 0.0f ? 0.0f : y;
    x = x <= 0.0f ? 0.0f : x;
    int64_t y_low = (int64_t)y, x_low = (int64_t)x, y_high, x_high;
    if (y_low >= H - 1) {
        y_high = y_low = H - 1;
        y = (float)y_low;
    } else {
        y_high = y_low + 1;
    }
    if (x_low >= W - 1) {
        x_high = x_low = W - 1;
        x = (float)x_low;
    } else {
        x_high = x_low + 1;
    }
    float ly = y - (float)y_low, lx = x - (float)x_low;
    float hy = 1.0f - ly, hx = 1.0f - lx;
    s.pos[0] = y_low * W + x_low;
    s.pos[1] = y_low * W + x_high;
    s.pos[2] = y_high * W + x_low;
    s.pos[3] = y_high * W + x_high;
    s.w[0] = hy * hx;
    s.w[1] = hy * lx;
    s.w[2] = ly * hx;
    s.w[3] = ly * lx;
    return s;
}

/* the samples of roi k, cell by cell, each cell's grid row by row */
static void roi_align_samples(const roi_align_ctx *c, const roi_geometry *g, roi_sample *samples)
{
    int64_t n = 0;
    for (int64_t ph = 0; ph < c->ph; ph++)
        for (int64_t pw = 0; pw < c->pw; pw++)
            for (int64_t iy = 0; iy < g->grid_h; iy++) {
                float yy = g->start_h + (float)ph * g->bin_h + ((float)iy + 0.5f) * g->bin_h / (float)g->grid_h;
                for (int64_t ix = 0; ix < g->grid_w; ix++) {
                    float xx = g->start_w + (float)pw * g->bin_w + ((float)ix + 0.5f) * g->bin_w / (float)g->grid_w;
                    samples[n++] = bilinear_sample(yy, xx, c->H, c->W);
                }
            }
}

/* from the planes: out [C, cells] of one roi */
static void roi_align_planes(const roi_align_ctx *c, const float *img, const roi_sample *samples, int64_t per_cell,
                             float *out)
{
    int64_t plane = c->H * c->W, cells = c->ph * c->pw;
    float count = (float)(per_cell > 1 ? per_cell : 1);
    for (int64_t ch = 0; ch < c->C; ch++) {
        const float *p = img + ch * plane;
        const roi_sample *s = samples;
        for (int64_t cell = 0; cell < cells; cell++) {
            float v = 0.0f;
            for (int64_t i = 0; i < per_cell; i++, s++)
                v += s->w[0] * p[s->pos[0]] + s->w[1] * p[s->pos[1]] + s->w[2] * p[s->pos[2]] + s->w[3] * p[s->pos[3]];
            out[ch * cells + cell] = v / count;
        }
    }
}

/* from a channels-last map img [H, W, C]: one cell's n samples summed into
 * sum [C] and divided by count, each channel as roi_align_planes does it */
PTHCV_SIMD static void roi_align_cell_hwc(const float *img, int64_t C, const roi_sample *s, int64_t n, float count,
                                          float *restrict sum)
{
    for (int64_t ch = 0; ch < C; ch++) sum[ch] = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        const float *p0 = img + s[i].pos[0] * C, *p1 = img + s[i].pos[1] * C;
        const float *p2 = img + s[i].pos[2] * C, *p3 = img + s[i].pos[3] * C;
        float w0 = s[i].w[0], w1 = s[i].w[1], w2 = s[i].w[2], w3 = s[i].w[3];
        for (int64_t ch = 0; ch < C; ch++) sum[ch] += w0 * p0[ch] + w1 * p1[ch] + w2 * p2[ch] + w3 * p3[ch];
    }
    for (int64_t ch = 0; ch < C; ch++) sum[ch] /= count;
}

/* cells summed a block at a time, then stored channel by channel: a run of
 * CELL_BLOCK floats per channel row of out, not one float per row per cell */
enum { CELL_BLOCK = 8 };

/* from the channels-last maps: out [C, cells] of one roi; sum: CELL_BLOCK * C floats */
static void roi_align_hwc(const roi_align_ctx *c, const float *img, const roi_sample *samples, int64_t per_cell,
                          float *sum, float *out)
{
    int64_t cells = c->ph * c->pw, C = c->C;
    float count = (float)(per_cell > 1 ? per_cell : 1);
    for (int64_t c0 = 0; c0 < cells; c0 += CELL_BLOCK) {
        int64_t n = cells - c0 < CELL_BLOCK ? cells - c0 : CELL_BLOCK;
        for (int64_t j = 0; j < n; j++)
            roi_align_cell_hwc(img, C, samples + (c0 + j) * per_cell, per_cell, count, sum + j * C);
        for (int64_t ch = 0; ch < C; ch++)
            for (int64_t j = 0; j < n; j++) out[ch * cells + c0 + j] = sum[j * C + ch];
    }
}

static void roi_align_task(void *vc, int64_t begin, int64_t end)
{
    roi_align_ctx *c = vc;
    roi_sample *samples = NULL;
    int64_t cap = 0, cells = c->ph * c->pw, map = c->C * c->H * c->W;
    float *sum = c->x_hwc ? malloc(sizeof(float) * (size_t)(CELL_BLOCK * c->C)) : NULL;
    if (c->x_hwc && !sum) goto fail;
    for (int64_t k = begin; k < end; k++) {
        const float *r = c->rois + 5 * k;
        roi_geometry g = roi_geometry_of(c, r);
        int64_t need = roi_samples(c, &g); /* checked by the caller */
        if (need > cap) {
            free(samples);
            cap = need;
            if (!(samples = malloc((size_t)cap * sizeof *samples))) goto fail;
        }
        roi_align_samples(c, &g, samples);
        float *out = c->y + k * c->C * cells;
        if (c->x_hwc) roi_align_hwc(c, c->x_hwc + (int64_t)r[0] * map, samples, g.grid_h * g.grid_w, sum, out);
        else roi_align_planes(c, c->x + (int64_t)r[0] * map, samples, g.grid_h * g.grid_w, out);
    }
    free(samples);
    free(sum);
    return;
fail:
    free(samples);
    free(sum);
    c->failed = 1;
}

/* rows [begin, end) of the N * H rows of x [N, C, H, W] into hwc [N, H, W, C] */
typedef struct {
    const float *x;
    float *hwc;
    int64_t C, H, W;
} hwc_ctx;

static void to_hwc_task(void *vc, int64_t begin, int64_t end)
{
    const hwc_ctx *t = vc;
    for (int64_t row = begin; row < end; row++) {
        int64_t n = row / t->H, h = row % t->H;
        const float *src = t->x + (n * t->C * t->H + h) * t->W;
        float *dst = t->hwc + row * t->W * t->C;
        for (int64_t ch = 0; ch < t->C; ch++)
            for (int64_t w = 0; w < t->W; w++) dst[w * t->C + ch] = src[ch * t->H * t->W + w];
    }
}

pthcv_tensor *pthcv_roi_align(pthcv_tensor *input, pthcv_tensor *rois, double spatial_scale, int32_t out_h,
                              int32_t out_w, int32_t sampling_ratio, int32_t aligned)
{
    PTHCV_PROFILE_OP("roi_align");
    const char *fn = "pthcv_roi_align";
    if (out_h < 1 || out_w < 1 || (int64_t)out_h * out_w > MAX_ROI_SAMPLES)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: output size (%d, %d) must be positive and at most %d cells", fn,
                               out_h, out_w, MAX_ROI_SAMPLES);
    pthcv_tensor *xc, *rc, *out = NULL;
    const float *x, *r;
    if (roi_inputs(input, rois, fn, &xc, &x, &rc, &r) != PTHCV_OK) goto done;
    roi_align_ctx c = {.x = x,
                       .rois = r,
                       .C = xc->shape[1],
                       .H = xc->shape[2],
                       .W = xc->shape[3],
                       .ph = out_h,
                       .pw = out_w,
                       .scale = (float)spatial_scale,
                       .sampling_ratio = sampling_ratio,
                       .aligned = aligned != 0};
    int64_t samples = 0; /* per channel, over all the rois (each at most MAX_ROI_SAMPLES) */
    for (int64_t k = 0; k < rc->shape[0]; k++) {
        roi_geometry g = roi_geometry_of(&c, r + 5 * k);
        int64_t need = roi_samples(&c, &g);
        samples = need >= 0 && samples < INT64_MAX - need ? samples + need : INT64_MAX;
        if (need < 0) {
            pthcv_fail(PTHCV_ERR_LIMIT,
                       "%s: roi %lld (%g, %g, %g, %g) at scale %g needs a %lld x %lld sampling grid "
                       "per bin, more than %d samples in all",
                       fn, (long long)k, r[5 * k + 1], r[5 * k + 2], r[5 * k + 3], r[5 * k + 4], spatial_scale,
                       (long long)g.grid_h, (long long)g.grid_w, MAX_ROI_SAMPLES);
            goto done;
        }
    }
    int64_t shape[4] = {rc->shape[0], xc->shape[1], out_h, out_w};
    float *y;
    out = ops_output(4, shape, &y);
    float *hwc = NULL;
    if (out && out->numel > 0 && c.H > 0 && c.W > 0) {
        c.y = y;
        /* channels last when the rois read the maps' pixels more than once
         * on average (the copy costs one read and write of each); the same
         * bits either way */
        int64_t pixels = xc->shape[0] * c.H * c.W;
        if (c.C > 1 && pixels <= samples && (hwc = malloc(sizeof(float) * (size_t)(pixels * c.C)))) {
            hwc_ctx t = {x, hwc, c.C, c.H, c.W};
            pthcv_parallel_for(xc->shape[0] * c.H, 1, to_hwc_task, &t);
            c.x_hwc = hwc;
        }
        pthcv_parallel_for(shape[0], 1, roi_align_task, &c);
        if (c.failed) {
            pthcv_tensor_release(out);
            out = PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory for the sampling grids", fn);
        }
    }
    free(hwc);
done:
    pthcv_tensor_release(xc);
    pthcv_tensor_release(rc);
    return out;
}

/* ---- roi_pool ---------------------------------------------------------------------- */

typedef struct {
    const float *x, *rois;
    float *y;
    int64_t C, H, W, ph, pw;
    float scale;
} roi_pool_ctx;

static int64_t clip_i(int64_t v, int64_t hi) { return v < 0 ? 0 : v > hi ? hi : v; }

/* an integral float as an integer; NaN 0 and out-of-range values saturated
 * (a cast of those is undefined; the coordinates end up clipped to the map
 * anyway) */
static int64_t to_i(float v)
{
    return v != v ? 0 : v > 4.0e15f ? (int64_t)4e15 : v < -4.0e15f ? -(int64_t)4e15 : (int64_t)v;
}

static void roi_pool_task(void *vc, int64_t begin, int64_t end)
{
    roi_pool_ctx *c = vc;
    for (int64_t k = begin; k < end; k++) {
        const float *r = c->rois + 5 * k;
        int64_t sw = to_i(roundf(r[1] * c->scale)), sh = to_i(roundf(r[2] * c->scale));
        int64_t ew = to_i(roundf(r[3] * c->scale)), eh = to_i(roundf(r[4] * c->scale));
        int64_t rw = ew - sw + 1 > 1 ? ew - sw + 1 : 1, rh = eh - sh + 1 > 1 ? eh - sh + 1 : 1;
        float bh = (float)rh / (float)c->ph, bw = (float)rw / (float)c->pw;
        const float *img = c->x + (int64_t)r[0] * c->C * c->H * c->W;
        float *out = c->y + k * c->C * c->ph * c->pw;
        for (int64_t ph = 0; ph < c->ph; ph++)
            for (int64_t pw = 0; pw < c->pw; pw++) {
                int64_t h0 = clip_i(to_i(floorf((float)ph * bh)) + sh, c->H);
                int64_t h1 = clip_i(to_i(ceilf((float)(ph + 1) * bh)) + sh, c->H);
                int64_t w0 = clip_i(to_i(floorf((float)pw * bw)) + sw, c->W);
                int64_t w1 = clip_i(to_i(ceilf((float)(pw + 1) * bw)) + sw, c->W);
                int empty = h1 <= h0 || w1 <= w0;
                for (int64_t ch = 0; ch < c->C; ch++) {
                    const float *p = img + ch * c->H * c->W;
                    float m = empty ? 0.0f : -FLT_MAX;
                    for (int64_t h = h0; h < h1; h++)
                        for (int64_t w = w0; w < w1; w++) m = p[h * c->W + w] > m ? p[h * c->W + w] : m;
                    out[(ch * c->ph + ph) * c->pw + pw] = m;
                }
            }
    }
}

pthcv_tensor *pthcv_roi_pool(pthcv_tensor *input, pthcv_tensor *rois, double spatial_scale, int32_t out_h,
                             int32_t out_w)
{
    const char *fn = "pthcv_roi_pool";
    if (out_h < 1 || out_w < 1)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: output size (%d, %d) must be positive", fn, out_h, out_w);
    pthcv_tensor *xc, *rc, *out = NULL;
    const float *x, *r;
    if (roi_inputs(input, rois, fn, &xc, &x, &rc, &r) == PTHCV_OK) {
        int64_t shape[4] = {rc->shape[0], xc->shape[1], out_h, out_w};
        float *y;
        out = ops_output(4, shape, &y);
        if (out && out->numel > 0) {
            roi_pool_ctx c = {x, r, y, xc->shape[1], xc->shape[2], xc->shape[3], out_h, out_w, (float)spatial_scale};
            pthcv_parallel_for(shape[0], 1, roi_pool_task, &c);
        }
    }
    pthcv_tensor_release(xc);
    pthcv_tensor_release(rc);
    return out;
}
