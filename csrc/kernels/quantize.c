/*
 * quantize.c -- float32 to int8: activations per tensor (quint8) and
 * weights per output channel (qint8, symmetric), with torch's rounding
 * (half to even). Used by pthcv.quant and by the float ops that give an
 * int8 input back as int8 (pooling keeps its input's scale and zero point).
 */
#include "kernels.h"
#include "ops.h"
#include <math.h>
#include <string.h>

/* ---- quantize ------------------------------------------------------------------------------- */
PTHCV_SIMD static void quantize_row(uint8_t *restrict d, const float *restrict s, int64_t n, float inv, float zp)
{
    const float magic = 12582912.0f;
    const float lo = -zp, hi = 255.0f - zp;
    for (int64_t i = 0; i < n; i++) {
        float v = s[i] * inv;
        v = v > lo ? v : lo; /* NaN compares false: it becomes lo, stored as 0 */
        v = v < hi ? v : hi;
        d[i] = (uint8_t)(int32_t)((v + magic) - magic + zp); /* in [0, 255]: no branch, so the loop vectorises */
    }
}

pthcv_tensor *pthcv_quantize_per_tensor(pthcv_tensor *x, double scale, int32_t zero_point)
{
    PTHCV_PROFILE_OP("quantize");
    if (!x || x->dtype != PTHCV_FLOAT32)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "quantize_per_tensor: input must be float32, got %s",
                               x ? pthcv_dtype_name(x->dtype) : "nothing");
    if (!(scale > 0) || !isfinite(scale) || zero_point < 0 || zero_point > 255)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG,
                               "quantize_per_tensor: scale %g must be positive and zero point %d in [0, 255]", scale,
                               zero_point);
    pthcv_tensor *xc = pthcv_tensor_contiguous(x);
    const float *xd = xc ? pthcv_tensor_data(xc) : NULL;
    pthcv_tensor *y = xd ? pthcv_tensor_new_uninit(PTHCV_QUINT8, x->ndim, x->shape) : NULL;
    if (y) y->qscheme = PTHCV_QSCHEME_PER_TENSOR_AFFINE, y->qscale = scale, y->qzero_point = zero_point;
    if (y) quantize_row(pthcv_tensor_data(y), xd, x->numel, 1.0f / (float)scale, (float)zero_point);
    pthcv_tensor_release(xc);
    return y;
}

/* ---- weights to int8 ------------------------------------------------------------------------ */
pthcv_tensor *pthcv_quantize_weight(pthcv_tensor *w)
{
    if (!w || w->dtype != PTHCV_FLOAT32 || w->ndim < 1 || w->shape[0] < 1)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG,
                               "quantize_weight: weight must be float32 with an output-channel dimension, got %s",
                               w ? pthcv_dtype_name(w->dtype) : "nothing");
    pthcv_tensor *wc = pthcv_tensor_contiguous(w);
    const float *wd = wc ? pthcv_tensor_data(wc) : NULL;
    int64_t cout = w->shape[0], per = w->numel / cout, cs[1] = {cout};
    pthcv_tensor *q = wd ? pthcv_tensor_new(PTHCV_QINT8, w->ndim, w->shape) : NULL;
    pthcv_tensor *s = q ? pthcv_tensor_new(PTHCV_FLOAT64, 1, cs) : NULL;
    /* zero points of 0, as torch's per-channel symmetric tensors carry them */
    pthcv_tensor *z = s ? pthcv_tensor_new(PTHCV_INT64, 1, cs) : NULL;
    if (!z) {
        pthcv_tensor_release(wc), pthcv_tensor_release(q), pthcv_tensor_release(s);
        return NULL;
    }
    int8_t *qd = pthcv_tensor_data(q);
    double *sd = pthcv_tensor_data(s);
    for (int64_t c = 0; c < cout; c++) {
        double m = 0;
        for (int64_t i = 0; i < per; i++) m = fmax(m, fabs(wd[c * per + i]));
        if (!isfinite(m)) {
            pthcv_tensor_release(wc), pthcv_tensor_release(q), pthcv_tensor_release(s), pthcv_tensor_release(z);
            return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "quantize_weight: output channel %lld has a value that is not finite",
                                   (long long)c);
        }
        sd[c] = m > 0 ? m / 127.0 : 1.0;
        for (int64_t i = 0; i < per; i++) {
            double v = nearbyint(wd[c * per + i] / sd[c]);
            qd[c * per + i] = (int8_t)(v < -127 ? -127 : v > 127 ? 127 : v);
        }
    }
    pthcv_tensor_release(wc);
    q->qscheme = PTHCV_QSCHEME_PER_CHANNEL_SYMMETRIC, q->qaxis = 0, q->qscales = s, q->qzero_points = z;
    return q;
}

/* ---- int8 add --------------------------------------------------------------------------------
 * QNNPACK's fixed-point add (pytorch_qnnp_compute_add_quantization_params):
 * each input's scale over the output's as a 22-bit multiplier with a shared
 * shift, the sum rounded half away from zero. */
static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

PTHCV_SIMD static void qadd_row(uint8_t *restrict y, const uint8_t *restrict a, const uint8_t *restrict b, int64_t n,
                                int32_t zpp, int32_t am, int32_t bm, uint32_t shift, int32_t mask, int32_t threshold,
                                int32_t zy, int32_t lo, int32_t hi)
{
    for (int64_t i = 0; i < n; i++) {
        int32_t acc = zpp + (int32_t)a[i] * am + (int32_t)b[i] * bm;
        int32_t rem = (acc & mask) - (int32_t)(acc < 0);
        int32_t v = (acc >> shift) + (int32_t)(rem > threshold) + zy;
        y[i] = (uint8_t)(v < lo ? lo : v > hi ? hi : v);
    }
}

pthcv_tensor *pthcv_qadd(pthcv_tensor *a, pthcv_tensor *b, double scale, int32_t zero_point, int32_t relu)
{
    PTHCV_PROFILE_OP("qadd");
    const char *fn = "qadd";
    for (int i = 0; i < 2; i++) {
        const pthcv_tensor *t = i ? b : a;
        if (!t || t->dtype != PTHCV_QUINT8 || t->qscheme == PTHCV_QSCHEME_NONE || !(t->qscale > 0))
            return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: operand %d must be quint8 quantized per tensor, got %s", fn,
                                   i + 1, t ? pthcv_dtype_name(t->dtype) : "nothing");
    }
    int same = a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++) same = a->shape[i] == b->shape[i];
    if (!same) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: the operands' shapes differ", fn);
    if (!(scale > 0) || !isfinite(scale) || zero_point < 0 || zero_point > 255)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: scale %g must be positive and zero point %d in [0, 255]", fn, scale,
                               zero_point);
    float as = (float)a->qscale / (float)scale, bs = (float)b->qscale / (float)scale;
    float mx = as > bs ? as : bs;
    int32_t exponent = (int32_t)(float_bits(mx) >> 23) - 127;
    if (exponent > 8 || exponent < -14)
        return PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED, "%s: input scale over output scale %g is out of QNNPACK's range",
                               fn, mx);
    uint32_t shift = (uint32_t)(21 - exponent);
    int32_t am = (int32_t)lrintf(bits_float(float_bits(as) + (shift << 23)));
    int32_t bm = (int32_t)lrintf(bits_float(float_bits(bs) + (shift << 23)));
    int32_t zpp = -(am * (int32_t)a->qzero_point + bm * (int32_t)b->qzero_point);
    int32_t mask = (int32_t)((UINT32_C(1) << shift) - 1);
    pthcv_tensor *ac = pthcv_tensor_contiguous(a), *bc = ac ? pthcv_tensor_contiguous(b) : NULL;
    const uint8_t *ad = bc ? pthcv_tensor_data(ac) : NULL, *bd = ad ? pthcv_tensor_data(bc) : NULL;
    pthcv_tensor *y = bd ? pthcv_tensor_new_uninit(PTHCV_QUINT8, a->ndim, a->shape) : NULL;
    if (y) {
        y->qscheme = PTHCV_QSCHEME_PER_TENSOR_AFFINE, y->qscale = scale, y->qzero_point = zero_point;
        qadd_row(pthcv_tensor_data(y), ad, bd, a->numel, zpp, am, bm, shift, mask, mask >> 1, zero_point,
                 relu ? zero_point : 0, 255);
    }
    pthcv_tensor_release(ac), pthcv_tensor_release(bc);
    return y;
}

/* ---- clamp-type activations on the bytes ---------------------------------------------------- */
typedef struct {
    const uint8_t *x;
    uint8_t *y;
    uint8_t lo, hi;
} qclamp_ctx;

PTHCV_SIMD static void qclamp_run(uint8_t *restrict y, const uint8_t *restrict x, int64_t n, uint8_t lo, uint8_t hi)
{
    for (int64_t i = 0; i < n; i++) {
        uint8_t v = x[i] < lo ? lo : x[i];
        y[i] = v > hi ? hi : v;
    }
}

static void qclamp_task(void *vc, int64_t begin, int64_t end)
{
    const qclamp_ctx *c = vc;
    qclamp_run(c->y + begin, c->x + begin, end - begin, c->lo, c->hi);
}

/* a real bound in x's units, rounded as qconv2d's fused clamp rounds it */
static uint8_t bound_level(float b, const pthcv_tensor *x, uint8_t if_inf)
{
    if (isinf(b)) return if_inf;
    double l = nearbyint(b / x->qscale) + (double)x->qzero_point;
    return (uint8_t)(l < 0 ? 0 : l > 255 ? 255 : l);
}

pthcv_tensor *quant_clamp_activate(pthcv_tensor *x, const pthcv_activation *act)
{
    float lo = -INFINITY, hi = INFINITY;
    if (act->kind == PTHCV_ACT_RELU6) hi = 6.0f;
    if (act->kind == PTHCV_ACT_CLAMP) lo = act->alpha, hi = act->beta;
    if (act->kind != PTHCV_ACT_CLAMP) lo = 0.0f;
    pthcv_tensor *xc = pthcv_tensor_contiguous(x);
    const uint8_t *xd = xc ? pthcv_tensor_data(xc) : NULL;
    pthcv_tensor *y = xd || (xc && xc->numel == 0) ? pthcv_tensor_new_uninit(PTHCV_QUINT8, x->ndim, x->shape) : NULL;
    if (y) {
        y->qscheme = PTHCV_QSCHEME_PER_TENSOR_AFFINE, y->qscale = x->qscale, y->qzero_point = x->qzero_point;
        qclamp_ctx c = {xd, pthcv_tensor_data(y), bound_level(lo, x, 0), bound_level(hi, x, 255)};
        if (c.hi < c.lo) c.hi = c.lo; /* a range below the lowest level: torch's clamp gives min */
        if (y->numel) pthcv_parallel_for(y->numel, 1 << 16, qclamp_task, &c);
    }
    pthcv_tensor_release(xc);
    return y;
}
