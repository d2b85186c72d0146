/*
 * ops_masks.c -- the R-CNN heads' last steps (pthcv.h, "Detection"):
 * Mask R-CNN's masks pasted into the image and Keypoint R-CNN's keypoints
 * read from their heatmaps, as torchvision.models.detection.roi_heads does.
 *
 * paste_masks_in_image, per mask [M, M] and box (image coordinates):
 *   the mask zero-padded by `padding` on each side, the box scaled about
 *   its centre by s = (M + 2 padding) / M (float32), its corners truncated
 *   to integers; the padded mask resized (bilinear, align_corners=False, as
 *   F.interpolate) to (y2 - y1 + 1) x (x2 - x1 + 1) (at least 1 x 1) and
 *   written at (x1, y1), clipped to the image; zeros elsewhere.
 * heatmaps_to_keypoints, per roi and keypoint: the heatmap resized
 *   (bicubic, A = -0.75, align_corners=False, as F.interpolate) to
 *   ceil(h) x ceil(w) of the roi (sides at least 1), its first maximum
 *   (row-major; NaN counts as the largest) at (x_int, y_int) gives
 *   x = (x_int + 0.5) * (w / ceil(w)) + x1, likewise y, and the score is the
 *   resized map's value there.
 */
#include "ops.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- paste_masks ------------------------------------------------------------------ */

typedef struct {
    const float *masks, *boxes;
    float *out;
    int64_t M, H, W, padding;
    float scale;
    _Atomic int failed;
} paste_ctx;

/* the box of mask i, expanded and truncated (expand_boxes, .to(int64)) */
static void expanded_box(const paste_ctx *c, int64_t i, int64_t b[4])
{
    const float *p = c->boxes + 4 * i;
    float w_half = (p[2] - p[0]) * 0.5f, h_half = (p[3] - p[1]) * 0.5f;
    float x_c = (p[2] + p[0]) * 0.5f, y_c = (p[3] + p[1]) * 0.5f;
    w_half *= c->scale;
    h_half *= c->scale;
    float e[4] = {x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half};
    for (int k = 0; k < 4; k++) /* out-of-range values saturate instead of being undefined */
        b[k] = isnan(e[k]) ? 0 : e[k] >= 9.0e18f ? INT64_MAX / 4 : e[k] <= -9.0e18f ? -INT64_MAX / 4 : (int64_t)e[k];
}

/* one mask resized and written into its image plane (already zero) */
static int paste_one(const paste_ctx *c, int64_t i)
{
    int64_t b[4];
    expanded_box(c, i, b);
    int64_t w = b[2] - b[0] + 1, h = b[3] - b[1] + 1;
    w = w > 1 ? w : 1;
    h = h > 1 ? h : 1;
    int64_t x0 = b[0] > 0 ? b[0] : 0, x1 = b[2] + 1 < c->W ? b[2] + 1 : c->W;
    int64_t y0 = b[1] > 0 ? b[1] : 0, y1 = b[3] + 1 < c->H ? b[3] + 1 : c->H;
    if (x1 <= x0 || y1 <= y0) return 1; /* nothing of the box is inside the image */
    if (w > INT32_MAX || h > INT32_MAX) return 0;
    int64_t P = c->M + 2 * c->padding, shape[4] = {1, 1, P, P};
    pthcv_tensor *padded = pthcv_tensor_new(PTHCV_FLOAT32, 4, shape);
    float *pd = padded ? pthcv_tensor_data(padded) : NULL;
    if (!pd) {
        pthcv_tensor_release(padded);
        return 0;
    }
    const float *m = c->masks + i * c->M * c->M;
    for (int64_t r = 0; r < c->M; r++)
        memcpy(pd + (r + c->padding) * P + c->padding, m + r * c->M, (size_t)c->M * sizeof *m);
    pthcv_tensor *resized = pthcv_interpolate(padded, (int32_t)h, (int32_t)w, PTHCV_INTERP_BILINEAR, 0, 0.0, 0.0);
    pthcv_tensor_release(padded);
    const float *rd = resized ? pthcv_tensor_data(resized) : NULL;
    if (!rd) {
        pthcv_tensor_release(resized);
        return 0;
    }
    float *plane = c->out + i * c->H * c->W;
    for (int64_t y = y0; y < y1; y++)
        memcpy(plane + y * c->W + x0, rd + (y - b[1]) * w + (x0 - b[0]), (size_t)(x1 - x0) * sizeof *rd);
    pthcv_tensor_release(resized);
    return 1;
}

static void paste_task(void *vc, int64_t begin, int64_t end)
{
    paste_ctx *c = vc;
    for (int64_t i = begin; i < end; i++)
        if (!paste_one(c, i)) c->failed = 1;
}

pthcv_tensor *pthcv_paste_masks(pthcv_tensor *masks, pthcv_tensor *boxes, int64_t height, int64_t width,
                                int32_t padding)
{
    const char *fn = "pthcv_paste_masks";
    if (masks &&
        (masks->ndim != 4 || masks->shape[1] != 1 || masks->shape[2] != masks->shape[3] || masks->shape[2] < 1))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: masks must be [N, 1, M, M], got %s", fn, ops_shape(masks));
    if (boxes && masks && (boxes->ndim != 2 || boxes->shape[1] != 4 || boxes->shape[0] != masks->shape[0]))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: boxes must be [%lld, 4] like the masks, got %s", fn,
                               (long long)masks->shape[0], ops_shape(boxes));
    if (height < 1 || width < 1 || height > INT32_MAX || width > INT32_MAX || padding < 0 || padding > 1024)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: image size %lld x %lld or padding %d out of range", fn,
                               (long long)height, (long long)width, padding);
    const float *m, *b;
    pthcv_tensor *mc = ops_input(masks, fn, "masks", &m), *bc = mc ? ops_input(boxes, fn, "boxes", &b) : NULL;
    pthcv_tensor *out = NULL;
    if (bc) {
        int64_t shape[4] = {mc->shape[0], 1, height, width};
        out = pthcv_tensor_new(PTHCV_FLOAT32, 4, shape); /* zeroed */
        float *y = out ? pthcv_tensor_data(out) : NULL;
        int64_t M = mc->shape[2];
        paste_ctx c = {m, b, y, M, height, width, padding, (float)((double)(M + 2 * padding) / (double)M), 0};
        if (y && shape[0] > 0) pthcv_parallel_for(shape[0], 1, paste_task, &c);
        if (out && (!y || c.failed)) {
            pthcv_tensor_release(out);
            out = PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "%s: out of memory resizing %lld masks", fn, (long long)shape[0]);
        }
    }
    pthcv_tensor_release(mc);
    pthcv_tensor_release(bc);
    return out;
}

/* ---- heatmaps_to_keypoints ------------------------------------------------------------ */

/* torch's bicubic taps of one axis: for output o, 4 source indices (clamped
 * to the input) and weights (upsample_bicubic2d, align_corners=False) */
static void cubic_taps(int64_t in, int64_t out, int64_t *idx, float *wt)
{
    const float A = -0.75f;
    float scale = (float)in / (float)out;
    for (int64_t o = 0; o < out; o++) {
        float real = scale * ((float)o + 0.5f) - 0.5f;
        int64_t i0 = (int64_t)floorf(real);
        float t = real - (float)i0, x1 = t + 1.0f, x2 = 1.0f - t, x3 = x2 + 1.0f;
        wt[4 * o] = ((A * x1 - 5.0f * A) * x1 + 8.0f * A) * x1 - 4.0f * A;
        wt[4 * o + 1] = ((A + 2.0f) * t - (A + 3.0f)) * t * t + 1.0f;
        wt[4 * o + 2] = ((A + 2.0f) * x2 - (A + 3.0f)) * x2 * x2 + 1.0f;
        wt[4 * o + 3] = ((A * x3 - 5.0f * A) * x3 + 8.0f * A) * x3 - 4.0f * A;
        for (int j = 0; j < 4; j++) {
            int64_t k = i0 + j - 1;
            idx[4 * o + j] = k < 0 ? 0 : k > in - 1 ? in - 1 : k;
        }
    }
}

typedef struct {
    const float *maps, *rois;
    float *kp, *scores;
    int64_t K, S;
    _Atomic int failed;
} keypoint_ctx;

/* the value of the resized map at (row oy, column ox) */
static inline float cubic_at(const float *map, int64_t S, const int64_t *hi, const float *hw, const int64_t *wi,
                             const float *ww, int64_t oy, int64_t ox)
{
    float acc = 0.0f;
    for (int a = 0; a < 4; a++) {
        const float *row = map + hi[4 * oy + a] * S;
        const int64_t *w = wi + 4 * ox;
        const float *wv = ww + 4 * ox;
        float t = row[w[0]] * wv[0];
        t += row[w[1]] * wv[1];
        t += row[w[2]] * wv[2];
        t += row[w[3]] * wv[3];
        if (a == 0) acc = t * hw[4 * oy];
        else acc += t * hw[4 * oy + a];
    }
    return acc;
}

static int keypoints_one(const keypoint_ctx *c, int64_t r)
{
    const float *roi = c->rois + 4 * r;
    float w = roi[2] - roi[0], h = roi[3] - roi[1];
    w = w < 1.0f ? 1.0f : w; /* clamp(min=1) */
    h = h < 1.0f ? 1.0f : h;
    float wc = ceilf(w), hc = ceilf(h);
    if (!(wc <= 65536.0f && hc <= 65536.0f)) return 0;
    int64_t mw = (int64_t)wc, mh = (int64_t)hc;
    float wcorr = w / (float)mw, hcorr = h / (float)mh;
    int64_t *hi = malloc((size_t)(mh + mw) * 4 * sizeof *hi);
    float *hw = malloc((size_t)(mh + mw) * 4 * sizeof *hw);
    if (!hi || !hw) {
        free(hi);
        free(hw);
        return 0;
    }
    int64_t *wi = hi + 4 * mh;
    float *ww = hw + 4 * mh;
    cubic_taps(c->S, mh, hi, hw);
    cubic_taps(c->S, mw, wi, ww);
    for (int64_t k = 0; k < c->K; k++) {
        const float *map = c->maps + (r * c->K + k) * c->S * c->S;
        float best = 0.0f;
        int64_t bx = -1, by = 0;
        for (int64_t y = 0; y < mh && !(bx >= 0 && isnan(best)); y++)
            for (int64_t x = 0; x < mw; x++) {
                float v = cubic_at(map, c->S, hi, hw, wi, ww, y, x);
                if (bx < 0 || (isnan(v) && !isnan(best)) || v > best) {
                    best = v, bx = x, by = y;
                    if (isnan(v)) break;
                }
            }
        float *o = c->kp + (r * c->K + k) * 3;
        o[0] = ((float)bx + 0.5f) * wcorr + roi[0];
        o[1] = ((float)by + 0.5f) * hcorr + roi[1];
        o[2] = 1.0f;
        c->scores[r * c->K + k] = best;
    }
    free(hi);
    free(hw);
    return 1;
}

static void keypoints_task(void *vc, int64_t begin, int64_t end)
{
    keypoint_ctx *c = vc;
    for (int64_t r = begin; r < end; r++)
        if (!keypoints_one(c, r)) c->failed = 1;
}

int pthcv_heatmaps_to_keypoints(pthcv_tensor *maps, pthcv_tensor *rois, pthcv_tensor **keypoints, pthcv_tensor **scores)
{
    const char *fn = "pthcv_heatmaps_to_keypoints";
    if (!keypoints || !scores) return pthcv_fail(PTHCV_ERR_ARG, "%s: no place for the results", fn);
    *keypoints = *scores = NULL;
    if (maps && (maps->ndim != 4 || maps->shape[2] != maps->shape[3] || maps->shape[2] < 1))
        return pthcv_fail(PTHCV_ERR_ARG, "%s: maps must be [R, K, S, S], got %s", fn, ops_shape(maps));
    if (maps && rois && (rois->ndim != 2 || rois->shape[1] != 4 || rois->shape[0] != maps->shape[0]))
        return pthcv_fail(PTHCV_ERR_ARG, "%s: rois must be [%lld, 4] like the maps, got %s", fn,
                          (long long)maps->shape[0], ops_shape(rois));
    const float *m, *b;
    pthcv_tensor *mc = ops_input(maps, fn, "maps", &m), *bc = mc ? ops_input(rois, fn, "rois", &b) : NULL;
    int status = pthcv_last_status();
    if (bc) {
        int64_t R = mc->shape[0], K = mc->shape[1], kshape[3] = {R, K, 3}, sshape[2] = {R, K};
        float *kp, *sc;
        *keypoints = ops_output(3, kshape, &kp);
        *scores = *keypoints ? ops_output(2, sshape, &sc) : NULL;
        status = pthcv_last_status();
        if (*scores) {
            keypoint_ctx c = {m, b, kp, sc, K, mc->shape[2], 0};
            if (R * K > 0) pthcv_parallel_for(R, 1, keypoints_task, &c);
            status = c.failed ? pthcv_fail(PTHCV_ERR_LIMIT,
                                           "%s: a roi is not finite, or larger than 65536 pixels a side, or "
                                           "memory ran out",
                                           fn)
                              : PTHCV_OK;
        }
        if (status != PTHCV_OK) {
            pthcv_tensor_release(*keypoints);
            pthcv_tensor_release(*scores);
            *keypoints = *scores = NULL;
        }
    }
    pthcv_tensor_release(mc);
    pthcv_tensor_release(bc);
    return status;
}
