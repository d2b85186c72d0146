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
 * thread count.
 */
#include "ops.h"
#include "vmath.h"

enum { BLOCK = 256 };

typedef struct {
    const float *x;
    int64_t channels, plane;
    uint8_t *classes;
    float *scores; /* NULL: not wanted */
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

pthcv_tensor *pthcv_class_map(pthcv_tensor *logits, pthcv_tensor **scores)
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
    int64_t shape[2] = {h, w};
    float *sd = NULL;
    classes = pthcv_tensor_new(PTHCV_UINT8, 2, shape);
    if (classes && scores && !(sc = ops_output(2, shape, &sd))) {
        pthcv_tensor_release(classes);
        classes = NULL;
    }
    if (classes) {
        class_map_ctx c = {x, channels, h * w, pthcv_tensor_data(classes), sd};
        pthcv_parallel_for((h * w + BLOCK - 1) / BLOCK, ops_grain(BLOCK * channels), class_task, &c);
        if (scores) *scores = sc;
    }
done:
    pthcv_tensor_release(xc);
    return classes;
}
