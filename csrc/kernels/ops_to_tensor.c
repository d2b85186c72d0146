/*
 * ops_to_tensor.c -- torchvision's to_tensor of an OpenCV picture
 * (pthcv.h, "Detection"; pthcv.detect's input): uint8 [H, W, 3] BGR ->
 * float32 [3, H, W] RGB, each value divided by 255 in float32, the values
 * of torch's img.permute(2, 0, 1).float().div(255) on the RGB picture.
 * The 256 quotients are computed once per call, and looked up per value.
 * Threads take rows; each value is computed alone, so the result is the
 * same at every thread count.
 */
#include "ops.h"

typedef struct {
    const uint8_t *p;
    int64_t row_stride, col_stride, channel_stride; /* in bytes (elements of uint8) */
    int64_t W, plane;
    const float *quotient; /* [256]: v / 255.0f */
    float *y;
} to_tensor_ctx;

static void to_tensor_rows(void *vc, int64_t begin, int64_t end)
{
    const to_tensor_ctx *c = vc;
    float *red = c->y, *green = c->y + c->plane, *blue = c->y + 2 * c->plane;
    for (int64_t h = begin; h < end; h++) {
        const uint8_t *row = c->p + h * c->row_stride;
        for (int64_t w = 0; w < c->W; w++) {
            const uint8_t *px = row + w * c->col_stride;
            int64_t at = h * c->W + w;
            blue[at] = c->quotient[px[0]];
            green[at] = c->quotient[px[c->channel_stride]];
            red[at] = c->quotient[px[2 * c->channel_stride]];
        }
    }
}

pthcv_tensor *pthcv_image_to_tensor(pthcv_tensor *image)
{
    PTHCV_PROFILE_OP("image_to_tensor");
    const char *fn = "pthcv_image_to_tensor";
    if (!image || image->dtype != PTHCV_UINT8 || image->ndim != 3 || image->shape[2] != 3)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: the picture must be uint8 [H, W, 3] (BGR), got %s %s", fn,
                               image ? pthcv_dtype_name(image->dtype) : "none", ops_shape(image));
    const uint8_t *p = pthcv_tensor_data(image);
    if (!p && image->numel > 0) return NULL;
    int64_t H = image->shape[0], W = image->shape[1], shape[3] = {3, H, W};
    float *y;
    pthcv_tensor *out = ops_output(3, shape, &y);
    if (out && H * W > 0) {
        float quotient[256];
        for (int v = 0; v < 256; v++) quotient[v] = (float)v / 255.0f;
        to_tensor_ctx c = {p, image->stride[0], image->stride[1], image->stride[2], W, H * W, quotient, y};
        pthcv_parallel_for(H, ops_grain(W * 3), to_tensor_rows, &c);
    }
    return out;
}
