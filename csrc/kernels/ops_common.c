/* ops_common.c -- helpers of the non-convolution ops (see ops.h). */
#include "ops.h"
#include <math.h>
#include <string.h>

int ops_is_qactivation(const pthcv_tensor *x)
{
    return x && x->dtype == PTHCV_QUINT8 &&
        (x->qscheme == PTHCV_QSCHEME_PER_TENSOR_AFFINE || x->qscheme == PTHCV_QSCHEME_PER_TENSOR_SYMMETRIC);
}

pthcv_tensor *ops_requantize_like(pthcv_tensor *y, const pthcv_tensor *like)
{
    if (!y) return NULL;
    pthcv_tensor *q = pthcv_quantize_per_tensor(y, like->qscale, (int32_t)like->qzero_point);
    pthcv_tensor_release(y);
    return q;
}

pthcv_tensor *ops_dequantized(pthcv_tensor **t)
{
    if (!*t || !pthcv_dtype_is_quantized((*t)->dtype)) return NULL;
    pthcv_tensor *d = pthcv_tensor_dequantize(*t);
    if (d) *t = d;
    return d;
}

pthcv_tensor *ops_input(pthcv_tensor *x, const char *op, const char *what, const float **data)
{
    if (!x) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: no %s tensor", op, what);
    if (pthcv_dtype_is_quantized(x->dtype)) { /* its real values (OPS_REAL) */
        pthcv_tensor *d = pthcv_tensor_dequantize(x);
        if (!d) return NULL;
        pthcv_tensor *c = ops_input(d, op, what, data);
        pthcv_tensor_release(d);
        return c;
    }
    if (x->dtype != PTHCV_FLOAT32) {
        const char *name = pthcv_dtype_name(x->dtype);
        return PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED, "%s: %s must be float32, got %s", op, what,
                               name ? name : "an unknown dtype");
    }
    pthcv_tensor *c = pthcv_tensor_contiguous(x);
    if (!c) return NULL;
    const float *p = pthcv_tensor_data(c);
    if (!p) {
        pthcv_tensor_release(c);
        return NULL;
    }
    *data = p;
    return c;
}

static pthcv_tensor *output_of(pthcv_tensor *t, float **data)
{
    if (!t) return NULL;
    *data = pthcv_tensor_data(t);
    if (!*data) {
        pthcv_tensor_release(t);
        return NULL;
    }
    return t;
}

pthcv_tensor *ops_output(int ndim, const int64_t *shape, float **data)
{
    return output_of(pthcv_tensor_new(PTHCV_FLOAT32, ndim, shape), data);
}

pthcv_tensor *ops_output_whole(int ndim, const int64_t *shape, float **data)
{
    return output_of(pthcv_tensor_new_uninit(PTHCV_FLOAT32, ndim, shape), data);
}

const char *ops_shape(const pthcv_tensor *t)
{
    static _Thread_local char bufs[4][200];
    static _Thread_local int next;
    char *b = bufs[next++ & 3];
    if (!t) return strcpy(b, "(none)");
    return pthcv_format_dims(b, sizeof bufs[0], t->ndim, t->shape);
}

const char *ops_pad_mode_name(int mode)
{
    switch (mode) {
    case PTHCV_PAD_ZEROS: return "zeros";
    case PTHCV_PAD_CONSTANT: return "constant";
    case PTHCV_PAD_REFLECT: return "reflect";
    case PTHCV_PAD_REPLICATE: return "replicate";
    case PTHCV_PAD_CIRCULAR: return "circular";
    default: return "unknown";
    }
}

int ops_dim(int dim, int ndim)
{
    int n = ndim > 0 ? ndim : 1;
    if (dim < -n || dim >= n) return -1;
    return dim < 0 ? dim + n : dim;
}

PTHCV_SIMD
float ops_sum_f32(const float *x, int64_t n)
{
    float acc[OPS_LANES] = {0};
    int64_t i = 0;
    for (; i + OPS_LANES <= n; i += OPS_LANES)
        for (int j = 0; j < OPS_LANES; j++) acc[j] += x[i + j];
    for (int j = 0; i + j < n; j++) acc[j] += x[i + j];
    float s = 0.0f;
    for (int j = 0; j < OPS_LANES; j++) s += acc[j];
    return s;
}

PTHCV_SIMD
double ops_sum_f64(const float *x, int64_t n)
{
    double acc[OPS_LANES] = {0};
    int64_t i = 0;
    for (; i + OPS_LANES <= n; i += OPS_LANES)
        for (int j = 0; j < OPS_LANES; j++) acc[j] += (double)x[i + j];
    for (int j = 0; i + j < n; j++) acc[j] += (double)x[i + j];
    double s = 0.0;
    for (int j = 0; j < OPS_LANES; j++) s += acc[j];
    return s;
}

PTHCV_SIMD
double ops_sumsq_dev_f64(const float *x, int64_t n, double mean)
{
    double acc[OPS_LANES] = {0};
    int64_t i = 0;
    for (; i + OPS_LANES <= n; i += OPS_LANES)
        for (int j = 0; j < OPS_LANES; j++) {
            double d = (double)x[i + j] - mean;
            acc[j] += d * d;
        }
    for (int j = 0; i + j < n; j++) {
        double d = (double)x[i + j] - mean;
        acc[j] += d * d;
    }
    double s = 0.0;
    for (int j = 0; j < OPS_LANES; j++) s += acc[j];
    return s;
}

/* m = v when v > m or v is NaN: a NaN, once in, stays (v > NaN is false). */
PTHCV_SIMD
float ops_max_f32(const float *x, int64_t n)
{
    float acc[OPS_LANES];
    for (int j = 0; j < OPS_LANES; j++) acc[j] = -INFINITY;
    int64_t i = 0;
    for (; i + OPS_LANES <= n; i += OPS_LANES)
        for (int j = 0; j < OPS_LANES; j++) {
            float v = x[i + j];
            acc[j] = (v > acc[j] || v != v) ? v : acc[j];
        }
    for (int j = 0; i + j < n; j++) {
        float v = x[i + j];
        acc[j] = (v > acc[j] || v != v) ? v : acc[j];
    }
    float m = acc[0];
    for (int j = 1; j < OPS_LANES; j++) m = (acc[j] > m || acc[j] != acc[j]) ? acc[j] : m;
    return m;
}

PTHCV_SIMD
float ops_min_f32(const float *x, int64_t n)
{
    float acc[OPS_LANES];
    for (int j = 0; j < OPS_LANES; j++) acc[j] = INFINITY;
    int64_t i = 0;
    for (; i + OPS_LANES <= n; i += OPS_LANES)
        for (int j = 0; j < OPS_LANES; j++) {
            float v = x[i + j];
            acc[j] = (v < acc[j] || v != v) ? v : acc[j];
        }
    for (int j = 0; i + j < n; j++) {
        float v = x[i + j];
        acc[j] = (v < acc[j] || v != v) ? v : acc[j];
    }
    float m = acc[0];
    for (int j = 1; j < OPS_LANES; j++) m = (acc[j] < m || acc[j] != acc[j]) ? acc[j] : m;
    return m;
}

void ops_copy_strided(float *dst, const int64_t *dst_stride, const float *src, const int64_t *src_stride, int ndim,
                      const int64_t *shape)
{
    if (ndim == 0) {
        *dst = *src;
        return;
    }
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) return;
    int last = ndim - 1;
    int64_t n = shape[last], ds = dst_stride[last], ss = src_stride[last];
    int64_t idx[PTHCV_MAX_DIMS] = {0};
    for (;;) {
        if (ds == 1 && ss == 1) memcpy(dst, src, (size_t)n * sizeof *dst);
        else
            for (int64_t i = 0; i < n; i++) dst[i * ds] = src[i * ss];
        /* next index over the outer dimensions, odometer style */
        int d = last - 1;
        for (; d >= 0; d--) {
            dst += dst_stride[d];
            src += src_stride[d];
            if (++idx[d] < shape[d]) break;
            dst -= dst_stride[d] * shape[d];
            src -= src_stride[d] * shape[d];
            idx[d] = 0;
        }
        if (d < 0) return;
    }
}
