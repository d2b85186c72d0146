/*
 * quant_elementwise.c -- the int8 ops of torch's quantized MobileNetV3
 * besides convolutions and linear layers, each with the arithmetic torch
 * 1.13 uses for quint8 tensors with the qnnpack engine, so the same bits:
 *   hardswish, hardsigmoid: a 256-entry table per call, made as QNNPACK's
 *     pytorch_qnnp_create_hard{swish,sigmoid}_nc_q8 makes it (float32,
 *     rounded half to even, clamped to [0, 255]);
 *   mul: torch's qmul_kernel (its multiplier in float32, lrintf), with the
 *     one operand broadcast over the other's trailing dimensions
 *     (squeeze-excitation's [N, C, 1, 1] channel scale);
 *   global average pool: torch's quantized adaptive_avg_pool2d to 1x1, which
 *     keeps the input's scale and zero point.
 * Activations are quint8 quantized per tensor (ops_is_qactivation).
 */
#include "kernels.h"
#include "ops.h"
#include <math.h>

#define QUANT_GRAIN 4096

static pthcv_tensor *fail_operand(const char *fn, const char *what, const pthcv_tensor *t)
{
    return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: %s must be quint8 quantized per tensor, got %s", fn, what,
                           t ? pthcv_dtype_name(t->dtype) : "nothing");
}

static int bad_qparams(double scale, int32_t zero_point)
{
    return !(scale > 0) || !isfinite(scale) || zero_point < 0 || zero_point > 255;
}

/* a new quint8 tensor of shape (ndim, shape) with (scale, zero_point) */
static pthcv_tensor *new_quint8(int ndim, const int64_t *shape, double scale, int64_t zero_point)
{
    pthcv_tensor *y = pthcv_tensor_new_uninit(PTHCV_QUINT8, ndim, shape);
    if (y) y->qscheme = PTHCV_QSCHEME_PER_TENSOR_AFFINE, y->qscale = scale, y->qzero_point = zero_point;
    return y;
}

/* ---- hardswish, hardsigmoid: QNNPACK's tables ------------------------------------------------ */
static uint8_t lut_round(float scaled, int32_t zero_point)
{
    long y = lrintf(scaled) + (long)zero_point;
    return (uint8_t)(y < 0 ? 0 : y > 255 ? 255 : y);
}

/* QNNPACK's table: x = in_scale (i - in_zero_point), hardsigmoid(x) =
 * clamp(x + 3, 0, 6) / 6, hardswish(x) = x clamp(x + 3, 0, 6) / 6, each
 * in float32 in that order, times 1 / out_scale, rounded, shifted, clamped */
static void make_table(uint8_t table[256], int swish, float in_scale, int32_t in_zero_point, float out_scale,
                       int32_t out_zero_point)
{
    const float inverse_output_scale = 1.0f / out_scale;
    for (int32_t i = 0; i < 256; i++) {
        const float x = in_scale * (float)(i - in_zero_point);
        const float x2 = x + 3.0f;
        const float x3 = x2 > 6.0f ? 6.0f : x2;
        const float x4 = x3 < 0.0f ? 0.0f : x3;
        const float x5 = swish ? x * x4 / 6.0f : x4 / 6.0f;
        table[i] = lut_round(inverse_output_scale * x5, out_zero_point);
    }
}

typedef struct {
    const uint8_t *x, *table;
    uint8_t *y;
} lut_ctx;

static void lut_task(void *vc, int64_t begin, int64_t end)
{
    const lut_ctx *c = vc;
    for (int64_t i = begin; i < end; i++) c->y[i] = c->table[c->x[i]];
}

static pthcv_tensor *lookup(const char *fn, int swish, pthcv_tensor *x, double scale, int32_t zero_point)
{
    if (!ops_is_qactivation(x)) return fail_operand(fn, "input", x);
    if (bad_qparams(scale, zero_point))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: scale %g must be positive and zero point %d in [0, 255]", fn, scale,
                               zero_point);
    if (x->numel == 0) return new_quint8(x->ndim, x->shape, scale, zero_point);
    uint8_t table[256];
    make_table(table, swish, (float)x->qscale, (int32_t)x->qzero_point, (float)scale, zero_point);
    pthcv_tensor *xc = pthcv_tensor_contiguous(x);
    const uint8_t *xd = xc ? pthcv_tensor_data(xc) : NULL;
    pthcv_tensor *y = xd ? new_quint8(x->ndim, x->shape, scale, zero_point) : NULL;
    if (y) {
        lut_ctx c = {xd, table, pthcv_tensor_data(y)};
        pthcv_parallel_for(x->numel, QUANT_GRAIN, lut_task, &c);
    }
    pthcv_tensor_release(xc);
    return y;
}

pthcv_tensor *pthcv_qhardswish(pthcv_tensor *x, double scale, int32_t zero_point)
{
    PTHCV_PROFILE_OP("qhardswish");
    return lookup("qhardswish", 1, x, scale, zero_point);
}

pthcv_tensor *pthcv_qhardsigmoid(pthcv_tensor *x, double scale, int32_t zero_point)
{
    PTHCV_PROFILE_OP("qhardsigmoid");
    return lookup("qhardsigmoid", 0, x, scale, zero_point);
}

/* ---- mul --------------------------------------------------------------------------------------
 * Over rows: big is [rows, inner] and small [rows] (or [rows, inner] when
 * inner is 1 for it too: the same shape). */
typedef struct {
    const uint8_t *big, *small;
    uint8_t *y;
    int64_t inner, small_step;
    int32_t zbig, zsmall, zy;
    float multiplier;
} mul_ctx;

PTHCV_SIMD static void mul_row(uint8_t *restrict y, const uint8_t *restrict b, int64_t n, int32_t factor, int32_t zb,
                               float multiplier, int32_t zy)
{
    for (int64_t i = 0; i < n; i++) {
        float v = (float)(factor * ((int32_t)b[i] - zb)) * multiplier;
        long q = lrintf(v) + zy;
        y[i] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
    }
}

static void mul_task(void *vc, int64_t begin, int64_t end)
{
    const mul_ctx *c = vc;
    if (c->small_step == 1) { /* same shapes: one row of everything */
        for (int64_t i = begin; i < end; i++)
            mul_row(c->y + i, c->big + i, 1, (int32_t)c->small[i] - c->zsmall, c->zbig, c->multiplier, c->zy);
        return;
    }
    for (int64_t r = begin; r < end; r++)
        mul_row(c->y + r * c->inner, c->big + r * c->inner, c->inner, (int32_t)c->small[r] - c->zsmall, c->zbig,
                c->multiplier, c->zy);
}

/* the inner size over which small broadcasts against big (1 for equal
 * shapes), or -1 when small is not big's leading dimensions then ones */
static int64_t broadcast_inner(const pthcv_tensor *big, const pthcv_tensor *small)
{
    if (big->ndim != small->ndim) return -1;
    int k = small->ndim;
    while (k > 0 && small->shape[k - 1] == 1) k--;
    int64_t inner = 1;
    for (int i = 0; i < big->ndim; i++) {
        if (i < k && small->shape[i] != big->shape[i]) return -1;
        if (i >= k) inner *= big->shape[i];
    }
    return inner;
}

pthcv_tensor *pthcv_qmul(pthcv_tensor *a, pthcv_tensor *b, double scale, int32_t zero_point)
{
    PTHCV_PROFILE_OP("qmul");
    const char *fn = "qmul";
    if (!ops_is_qactivation(a)) return fail_operand(fn, "operand 1", a);
    if (!ops_is_qactivation(b)) return fail_operand(fn, "operand 2", b);
    if (bad_qparams(scale, zero_point))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: scale %g must be positive and zero point %d in [0, 255]", fn, scale,
                               zero_point);
    pthcv_tensor *big = b->numel >= a->numel ? b : a, *small = big == b ? a : b;
    int64_t inner = broadcast_inner(big, small);
    if (inner < 0)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG,
                               "%s: the operands' shapes differ and the smaller is not the larger's leading "
                               "dimensions followed by ones (a per-channel factor)",
                               fn);
    if (big->numel == 0) return new_quint8(big->ndim, big->shape, scale, zero_point);
    /* torch: self_scale * other_scale * (1 / scale), in float32, left to right */
    float multiplier = (float)a->qscale * (float)b->qscale * (1.0f / (float)scale);
    pthcv_tensor *bc = pthcv_tensor_contiguous(big), *sc = bc ? pthcv_tensor_contiguous(small) : NULL;
    const uint8_t *bd = sc ? pthcv_tensor_data(bc) : NULL, *sd = bd ? pthcv_tensor_data(sc) : NULL;
    pthcv_tensor *y = sd ? new_quint8(big->ndim, big->shape, scale, zero_point) : NULL;
    if (y) {
        int same = small->numel == big->numel;
        mul_ctx c = {.big = bd,
                     .small = sd,
                     .y = pthcv_tensor_data(y),
                     .inner = same ? 1 : inner,
                     .small_step = same ? 1 : 0,
                     .zbig = (int32_t)big->qzero_point,
                     .zsmall = (int32_t)small->qzero_point,
                     .zy = zero_point,
                     .multiplier = multiplier};
        int64_t rows = same ? big->numel : small->numel;
        pthcv_parallel_for(rows, same ? QUANT_GRAIN : 1 + QUANT_GRAIN / (inner > 0 ? inner : 1), mul_task, &c);
    }
    pthcv_tensor_release(bc), pthcv_tensor_release(sc);
    return y;
}

/* ---- global average pool ------------------------------------------------------------------------
 * torch's quantized adaptive_avg_pool2d to 1x1: per plane of n values,
 * zero_point + round_half_even(float(sum - zero_point * n) * (1 / n)). */
typedef struct {
    const uint8_t *x;
    uint8_t *y;
    int64_t plane;
    int32_t zero_point;
} pool_ctx;

static void pool_task(void *vc, int64_t begin, int64_t end)
{
    const pool_ctx *c = vc;
    const float inv = 1.0f / (float)c->plane;
    for (int64_t r = begin; r < end; r++) {
        const uint8_t *p = c->x + r * c->plane;
        int64_t sum = 0;
        for (int64_t i = 0; i < c->plane; i++) sum += p[i];
        long q = lrintf((float)(sum - (int64_t)c->zero_point * c->plane) * inv) + c->zero_point;
        c->y[r] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
    }
}

pthcv_tensor *pthcv_qglobal_avg_pool2d(pthcv_tensor *x)
{
    PTHCV_PROFILE_OP("qglobal_avg_pool2d");
    const char *fn = "qglobal_avg_pool2d";
    if (!ops_is_qactivation(x)) return fail_operand(fn, "input", x);
    if (x->ndim != 4 || x->shape[2] < 1 || x->shape[3] < 1)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: input must be [N, C, H, W] with H, W >= 1, got %d dimensions", fn,
                               x->ndim);
    int64_t plane = x->shape[2] * x->shape[3];
    if (plane > (INT64_C(1) << 23))
        return PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED, "%s: a plane of %lld values is more than 2^23", fn,
                               (long long)plane);
    int64_t shape[4] = {x->shape[0], x->shape[1], 1, 1};
    if (x->numel == 0) return new_quint8(4, shape, x->qscale, x->qzero_point);
    pthcv_tensor *xc = pthcv_tensor_contiguous(x);
    const uint8_t *xd = xc ? pthcv_tensor_data(xc) : NULL;
    pthcv_tensor *y = xd ? new_quint8(4, shape, x->qscale, x->qzero_point) : NULL;
    if (y) {
        pool_ctx c = {xd, pthcv_tensor_data(y), plane, (int32_t)x->qzero_point};
        pthcv_parallel_for(shape[0] * shape[1], 1 + QUANT_GRAIN / plane, pool_task, &c);
    }
    pthcv_tensor_release(xc);
    return y;
}
