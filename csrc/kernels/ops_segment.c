/*
 * ops_segment.c -- a segmentation model's class map (pthcv_class_map): per
 * pixel of the logits [C, H, W], the index of the largest channel value (the
 * first on ties, a NaN counting as the largest, as torch.argmax) and that
 * class's softmax probability 1 / sum_k exp(x_k - max) (vm_exp, the sum in
 * channel order, float32).
 *
 * Blocks of up to BLOCK pixels go through the channels together, vectorised
 * across the pixels (PTHCV_SIMD; every clone and the scalar build give the
 * same bits); threads split blocks, so the result does not depend on the
 * thread count. Given another size, the logits are first resized to it
 * (bilinear, align_corners false: F.interpolate's values, the same bits)
 * one output row of all channels at a time, never as a whole tensor.
 */
#include "ops.h"
#include "vmath.h"
#include <stdatomic.h>
#include <stdlib.h>

enum { BLOCK = 256 };

typedef struct {
    const float *x;
    int64_t channels, plane;
    uint8_t *classes;
    float *scores;   /* NULL: not wanted */
    ops_bilinear bl; /* resizing: the taps (bl.OW = 0: none) */
    atomic_int failed;
} class_map_ctx;

PTHCV_SIMD
static void class_block(const float *x, int64_t channels, int64_t plane, int64_t w, uint8_t *classes, float *scores)
{
    float best[BLOCK], sum[BLOCK];
    int32_t index[BLOCK];
    for (int64_t j = 0; j < w; j++) best[j] = x[j], index[j] = 0;
    for (int64_t k = 1; k < channels; k++)
        for (int64_t j = 0; j < w; j++) {
            float v = x[k * plane + j];
            int take = (v > best[j]) | ((v != v) & (best[j] == best[j]));
            best[j] = take ? v : best[j];
            index[j] = take ? (int32_t)k : index[j];
        }
    for (int64_t j = 0; j < w; j++) classes[j] = (uint8_t)index[j];
    if (!scores) return;
    for (int64_t j = 0; j < w; j++) sum[j] = 0.0f;
    for (int64_t k = 0; k < channels; k++)
        for (int64_t j = 0; j < w; j++) sum[j] += vm_exp(x[k * plane + j] - best[j]);
    for (int64_t j = 0; j < w; j++) scores[j] = 1.0f / sum[j];
}

static void class_task(void *vctx, int64_t begin, int64_t end)
{
    class_map_ctx *c = vctx;
    for (int64_t b = begin; b < end; b++) {
        int64_t j = b * BLOCK, w = c->plane - j < BLOCK ? c->plane - j : BLOCK;
        class_block(c->x + j, c->channels, c->plane, w, c->classes + j, c->scores ? c->scores + j : NULL);
    }
}

/* resizing: output rows [begin, end), each made for all channels, then classed */
static void resized_task(void *vctx, int64_t begin, int64_t end)
{
    class_map_ctx *c = vctx;
    int64_t ow = c->bl.OW;
    ops_bilinear_rows rows;
    float *row = malloc(sizeof(float) * (size_t)(c->channels * ow));
    if (!row || !ops_bilinear_rows_init(&rows, &c->bl, c->channels)) {
        free(row);
        atomic_store(&c->failed, 1);
        return;
    }
    for (int64_t oh = begin; oh < end; oh++) {
        ops_bilinear_row(&c->bl, &rows, c->x, oh, row, ow);
        for (int64_t j = 0; j < ow; j += BLOCK)
            class_block(row + j, c->channels, ow, ow - j < BLOCK ? ow - j : BLOCK, c->classes + oh * ow + j,
                        c->scores ? c->scores + oh * ow + j : NULL);
    }
    ops_bilinear_rows_free(&rows);
    free(row);
}

pthcv_tensor *pthcv_class_map(pthcv_tensor *logits, int32_t out_h, int32_t out_w, pthcv_tensor **scores)
{
    PTHCV_PROFILE_OP("class_map");
    if (scores) *scores = NULL;
    const float *x;
    pthcv_tensor *xc = ops_input(logits, "class_map", "logits", &x);
    if (!xc) return NULL;
    pthcv_tensor *classes = NULL, *sc = NULL;
    int batched = xc->ndim == 4;
    if (!(xc->ndim == 3 || (batched && xc->shape[0] == 1)) || xc->shape[batched] < 1) {
        pthcv_fail(PTHCV_ERR_ARG, "class_map: logits must be [C, H, W] or [1, C, H, W] with C >= 1, got %s",
                   ops_shape(xc));
        goto done;
    }
    int64_t channels = xc->shape[batched], h = xc->shape[batched + 1], w = xc->shape[batched + 2];
    if (channels > 256) {
        pthcv_fail(PTHCV_ERR_ARG, "class_map: %lld classes do not fit the uint8 class map (at most 256), logits %s",
                   (long long)channels, ops_shape(xc));
        goto done;
    }
    if (out_h < 0 || out_w < 0 || (out_h == 0) != (out_w == 0)) {
        pthcv_fail(PTHCV_ERR_ARG, "class_map: the output size (%d, %d) must be positive, or (0, 0) for the logits' own",
                   (int)out_h, (int)out_w);
        goto done;
    }
    class_map_ctx c = {.x = x, .channels = channels, .plane = h * w};
    atomic_init(&c.failed, 0);
    int resized = out_h > 0; /* the same size too: the formula's values (a NaN neighbour spreads) */
    if (resized && ops_bilinear_init(&c.bl, h, w, out_h, out_w, 0, 0.0, 0.0) != PTHCV_OK) goto done;
    if (resized) h = out_h, w = out_w;
    int64_t shape[2] = {h, w};
    float *sd = NULL;
    classes = pthcv_tensor_new(PTHCV_UINT8, 2, shape);
    if (classes && scores && !(sc = ops_output(2, shape, &sd))) {
        pthcv_tensor_release(classes);
        classes = NULL;
    }
    if (classes) {
        c.classes = pthcv_tensor_data(classes), c.scores = sd;
        if (resized) pthcv_parallel_for(h, ops_grain(w * channels), resized_task, &c);
        else pthcv_parallel_for((h * w + BLOCK - 1) / BLOCK, ops_grain(BLOCK * channels), class_task, &c);
        if (scores) *scores = sc;
    }
    if (atomic_load(&c.failed)) {
        pthcv_tensor_release(classes);
        pthcv_tensor_release(sc);
        classes = NULL;
        if (scores) *scores = NULL;
        pthcv_fail(PTHCV_ERR_NOMEM, "class_map: out of memory for the resized rows");
    }
    ops_bilinear_free(&c.bl);
done:
    pthcv_tensor_release(xc);
    return classes;
}
