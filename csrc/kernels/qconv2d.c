/*
 * qconv2d.c -- quantized (int8) convolution and linear layers, and
 * quantizing a float32 tensor; torch's quantized semantics:
 *   activations quint8 per tensor (scale s, zero point z: real = s (q - z)),
 *   weights qint8 per output channel or per tensor, zero points 0,
 *   bias float32, output quint8 with the layer's scale and zero point
 *   (or float32: the real value before rounding).
 *
 * prepare: the weights' int8 values are packed for the int8 GEMM (qgemm.h)
 * of the instruction set in use, with each output channel's sum of weights
 * (for the zero point) and scale; a depthwise layer keeps them as floats
 * (exact small integers) for the depthwise path.
 * forward:
 *   - depthwise (one input channel per group, stride 1 or 2, no dilation):
 *     each plane is widened to float x - z (exact), padded, and run through
 *     the float depthwise kernels (dwconv*.c) with the integer weights:
 *     every product and partial sum is an integer below 2^24, so the float
 *     sums are the exact integer sums whatever the order; then requantized;
 *   - everything else: the int8 GEMM per image and group, M = out/groups,
 *     K = in/groups * kh * kw, N = oh * ow, its X packed per block from the
 *     image (implicit im2col; padding is the zero point, i.e. real 0).
 * Requantization (and a fused ReLU / clamp, a quint8 residual) happens as
 * each tile is stored. All sums are exact integers, so results do not
 * depend on the instruction set, the thread count or the blocking.
 */
#include "qdwconv.h"
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct pthcv_qconv2d {
    int64_t cout, cin_g, kh, kw, groups, K;
    pthcv_conv2d_params p;
    int depthwise;
    const pthcv_qgemm_kernel *kernel;
    void *w; /* packed W per group (w_sstride bytes apart) or, depthwise, float [cout][kh*kw] */
    int64_t w_sstride;
    int32_t *wsum;  /* [cout] */
    double *wscale; /* [cout] */
    float *bias;    /* [cout], zeros when none */
    double out_scale;
    int32_t out_zp;
};

/* ---- weights ------------------------------------------------------------------------ */
/* The int8 values and the per-channel scales (float) of a qint8 weight tensor
 * whose dimension 0 is the output channel; 0, or an error. */
static int weights_of(const char *op, pthcv_tensor *weight, int64_t cout, int8_t **vals, double **scales)
{
    if (!weight || weight->dtype != PTHCV_QINT8)
        return pthcv_fail(PTHCV_ERR_ARG, "%s: weight must be qint8 (a quantized tensor), got %s", op,
                          weight ? pthcv_dtype_name(weight->dtype) : "nothing");
    int per_channel = weight->qscheme == PTHCV_QSCHEME_PER_CHANNEL_AFFINE ||
        weight->qscheme == PTHCV_QSCHEME_PER_CHANNEL_SYMMETRIC;
    if (!per_channel && weight->qscheme != PTHCV_QSCHEME_PER_TENSOR_AFFINE &&
        weight->qscheme != PTHCV_QSCHEME_PER_TENSOR_SYMMETRIC)
        return pthcv_fail(PTHCV_ERR_UNSUPPORTED,
                          "%s: weight quantization scheme %d is not supported (per tensor or per channel affine)", op,
                          weight->qscheme);
    if (per_channel && (weight->qaxis != 0 || !weight->qscales || weight->qscales->numel != cout))
        return pthcv_fail(PTHCV_ERR_ARG,
                          "%s: per-channel weight scales must run along dimension 0 (%lld channels), got axis %d", op,
                          (long long)cout, weight->qaxis);
    *vals = malloc((size_t)weight->numel);
    *scales = malloc(sizeof(double) * (size_t)cout);
    pthcv_tensor *wc = pthcv_tensor_contiguous(weight);
    const int8_t *wd = wc ? pthcv_tensor_data(wc) : NULL;
    pthcv_tensor *sc = per_channel ? pthcv_tensor_to(weight->qscales, PTHCV_FLOAT64) : NULL;
    pthcv_tensor *zc = per_channel && weight->qzero_points ? pthcv_tensor_to(weight->qzero_points, PTHCV_FLOAT64)
                                                           : NULL;
    const double *sd = sc ? pthcv_tensor_data(sc) : NULL, *zd = zc ? pthcv_tensor_data(zc) : NULL;
    int st = PTHCV_OK;
    if (!*vals || !*scales || !wd || (per_channel && (!sd || (weight->qzero_points && !zd)))) {
        st = pthcv_last_status() != PTHCV_OK ? pthcv_last_status()
                                             : pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory for the weights", op);
    } else {
        memcpy(*vals, wd, (size_t)weight->numel);
        for (int64_t c = 0; c < cout && st == PTHCV_OK; c++) {
            double s = per_channel ? sd[c] : weight->qscale,
                   z = per_channel ? (zd ? zd[c] : 0) : (double)weight->qzero_point;
            if (z != 0)
                st = pthcv_fail(PTHCV_ERR_UNSUPPORTED,
                                "%s: weight zero point %g for output channel %lld: only symmetric weights (zero point "
                                "0) are supported",
                                op, z, (long long)c);
            else if (!(s > 0) || !isfinite(s))
                st = pthcv_fail(PTHCV_ERR_ARG, "%s: weight scale %g for output channel %lld is not a positive number",
                                op, s, (long long)c);
            (*scales)[c] = s;
        }
    }
    pthcv_tensor_release(wc), pthcv_tensor_release(sc), pthcv_tensor_release(zc);
    if (st != PTHCV_OK) {
        free(*vals), free(*scales);
        *vals = NULL, *scales = NULL;
    }
    return st;
}

static int check_out_qparams(const char *op, double scale, int32_t zp)
{
    if (!(scale > 0) || !isfinite(scale) || zp < 0 || zp > 255)
        return pthcv_fail(PTHCV_ERR_ARG, "%s: output scale %g must be positive and zero point %d in [0, 255]", op,
                          scale, zp);
    return PTHCV_OK;
}

static float *bias_of(pthcv_tensor *bias, int64_t cout)
{
    float *b = calloc((size_t)cout, sizeof(float));
    if (!b || !bias) return b;
    pthcv_tensor *bc = pthcv_tensor_to(bias, PTHCV_FLOAT32);
    const float *bd = bc ? pthcv_tensor_data(bc) : NULL;
    if (bd) memcpy(b, bd, sizeof(float) * (size_t)cout);
    pthcv_tensor_release(bc);
    if (!bd) {
        free(b);
        return NULL;
    }
    return b;
}

pthcv_qconv2d *pthcv_qconv2d_prepare(pthcv_tensor *weight, pthcv_tensor *bias, const pthcv_conv2d_params *p,
                                     double out_scale, int32_t out_zero_point)
{
    const char *op = "qconv2d";
    if (!weight || !p) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "qconv2d: no weight or no parameters");
    if (weight->ndim != 4)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "qconv2d: weight must be [out, in/groups, kh, kw], got %d dimensions",
                               weight->ndim);
    int64_t cout = weight->shape[0], cin_g = weight->shape[1], kh = weight->shape[2], kw = weight->shape[3];
    if (p->groups < 1 || cout % p->groups != 0 || cout < 1 || cin_g < 1 || kh < 1 || kw < 1)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "qconv2d: weight [%lld, %lld, %lld, %lld] does not suit groups %d",
                               (long long)cout, (long long)cin_g, (long long)kh, (long long)kw, p->groups);
    for (int i = 0; i < 2; i++)
        if (p->stride[i] < 1 || p->dilation[i] < 1 || p->padding[i] < 0)
            return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "qconv2d: stride and dilation must be >= 1, padding >= 0");
    if (p->padding_mode != PTHCV_PAD_ZEROS)
        return PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED, "qconv2d: only zeros padding is supported");
    if (p->act.kind != PTHCV_ACT_NONE && p->act.kind != PTHCV_ACT_RELU && p->act.kind != PTHCV_ACT_RELU6 &&
        p->act.kind != PTHCV_ACT_CLAMP)
        return PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED,
                               "qconv2d: activation %s cannot be fused (none, relu, relu6 or clamp)",
                               pthcv_act_name(p->act.kind));
    if (bias && (bias->ndim != 1 || bias->shape[0] != cout || !pthcv_dtype_is_floating(bias->dtype)))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "qconv2d: bias must be a floating [%lld] tensor", (long long)cout);
    if (check_out_qparams(op, out_scale, out_zero_point) != PTHCV_OK) return NULL;

    pthcv_qconv2d *q = calloc(1, sizeof *q);
    if (!q) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "qconv2d: out of memory");
    q->cout = cout, q->cin_g = cin_g, q->kh = kh, q->kw = kw, q->groups = p->groups, q->p = *p, q->K = cin_g * kh * kw;
    q->out_scale = out_scale, q->out_zp = out_zero_point;
    q->depthwise = cin_g == 1 && p->groups > 1 && p->dilation[0] == 1 && p->dilation[1] == 1 &&
        p->stride[0] == p->stride[1] && p->stride[0] <= 2;
    int8_t *vals = NULL;
    if (weights_of(op, weight, cout, &vals, &q->wscale) != PTHCV_OK) goto fail;
    q->bias = bias_of(bias, cout);
    q->wsum = calloc((size_t)cout, sizeof(int32_t));
    if (!q->bias || !q->wsum) goto nomem;
    for (int64_t c = 0; c < cout; c++)
        for (int64_t i = 0; i < q->K; i++) q->wsum[c] += vals[c * q->K + i];
    if (q->depthwise) {
        float *w = malloc(sizeof(float) * (size_t)(cout * q->K));
        if (!w) goto nomem;
        for (int64_t i = 0; i < cout * q->K; i++) w[i] = (float)vals[i];
        q->w = w;
    } else {
        int64_t M = cout / p->groups;
        q->kernel = pthcv_qgemm_kernel_now();
        q->w_sstride = pthcv_qgemm_packed_w_bytes(q->kernel, M, q->K);
        q->w = pthcv_alloc_aligned((size_t)(q->w_sstride * p->groups));
        if (!q->w) goto nomem;
        for (int64_t g = 0; g < p->groups; g++)
            pthcv_qgemm_pack_w(q->kernel, (char *)q->w + g * q->w_sstride, vals + g * M * q->K, M, q->K);
    }
    free(vals);
    return q;
nomem:
    pthcv_fail(PTHCV_ERR_NOMEM, "qconv2d: out of memory");
fail:
    free(vals);
    pthcv_qconv2d_free(q);
    return NULL;
}

void pthcv_qconv2d_free(pthcv_qconv2d *q)
{
    if (!q) return;
    if (q->depthwise) free(q->w);
    else pthcv_free_aligned(q->w);
    free(q->wsum), free(q->wscale), free(q->bias);
    free(q);
}

/* ---- requantization parameters of one forward ------------------------------------------- */
typedef struct {
    float *mul, *add;
    int32_t *bq;
    pthcv_requant rq;
} qparams;

/* lo/hi of the stored value: the activation's clamp in the output's units */
static void clamp_of(const pthcv_activation *act, double sy, int32_t zy, int out_float, int32_t *lo, int32_t *hi,
                     float *flo, float *fhi)
{
    float a, b;
    pthcv_act_bounds(act, &a, &b);
    *flo = a, *fhi = b;
    double l = isinf(a) ? 0 : nearbyint(a / sy) + zy, h = isinf(b) ? 255 : nearbyint(b / sy) + zy;
    *lo = l < 0 ? 0 : l > 255 ? 255 : (int32_t)l;
    *hi = h < 0 ? 0 : h > 255 ? 255 : (int32_t)h;
    (void)out_float;
}

static int qparams_make(qparams *q, int64_t n, const double *wscale, const float *bias, const int32_t *wsum, double sx,
                        int32_t zx, double sy, int32_t zy, int out_float, const pthcv_activation *act)
{
    q->mul = malloc(sizeof(float) * 2 * (size_t)n);
    q->bq = malloc(sizeof(int32_t) * (size_t)n);
    if (!q->mul || !q->bq) return pthcv_fail(PTHCV_ERR_NOMEM, "out of memory");
    q->add = q->mul + n;
    if (out_float) sy = 1, zy = 0;
    for (int64_t c = 0; c < n; c++) {
        /* as torch (qnnpack) rounds them, in float: the bias in units of
         * sx * sw rounded to an integer (a float output adds it exactly
         * instead), the multiplier (sw sx) (1 / sy) */
        double b = nearbyintf(bias[c] * (1.0f / (float)(sx * wscale[c])));
        q->bq[c] = b < -2147483647.0 ? -2147483647 : b > 2147483647.0 ? 2147483647 : (int32_t)b;
        q->mul[c] = ((float)wscale[c] * (float)sx) * (1.0f / (float)sy); /* float, in torch's order: its bits */
        q->add[c] = (float)(bias[c] / sy);
    }
    memset(&q->rq, 0, sizeof q->rq);
    q->rq.mul = q->mul, q->rq.add = q->add, q->rq.bq = q->bq, q->rq.wsum = wsum, q->rq.zx = zx, q->rq.zy = zy,
    q->rq.out_float = out_float;
    clamp_of(act, sy, zy, out_float, &q->rq.lo, &q->rq.hi, &q->rq.flo, &q->rq.fhi);
    return PTHCV_OK;
}

/* quint8 per-tensor input: its scale and zero point; 0 or an error */
static int qinput(const char *op, const char *what, pthcv_tensor *x, double *s, int32_t *z)
{
    if (!x || x->dtype != PTHCV_QUINT8 ||
        (x->qscheme != PTHCV_QSCHEME_PER_TENSOR_AFFINE && x->qscheme != PTHCV_QSCHEME_PER_TENSOR_SYMMETRIC))
        return pthcv_fail(PTHCV_ERR_ARG, "%s: %s must be quint8 quantized per tensor, got %s", op, what,
                          x ? pthcv_dtype_name(x->dtype) : "nothing");
    if (!(x->qscale > 0) || x->qzero_point < 0 || x->qzero_point > 255)
        return pthcv_fail(PTHCV_ERR_ARG, "%s: %s has scale %g, zero point %lld", op, what, x->qscale,
                          (long long)x->qzero_point);
    *s = x->qscale, *z = (int32_t)x->qzero_point;
    return PTHCV_OK;
}

/* a new quint8 (scale, zp) or float32 tensor */
static pthcv_tensor *qoutput(int ndim, const int64_t *shape, int out_float, double scale, int32_t zp)
{
    pthcv_tensor *y = pthcv_tensor_new_uninit(out_float ? PTHCV_FLOAT32 : PTHCV_QUINT8, ndim, shape);
    if (y && !out_float) y->qscheme = PTHCV_QSCHEME_PER_TENSOR_AFFINE, y->qscale = scale, y->qzero_point = zp;
    return y;
}

/* ---- the GEMM path: implicit im2col into the int8 GEMM's X ---------------------------- */
typedef struct {
    const pthcv_qconv2d *q;
    const uint8_t *x;
    int64_t cin, h, w, oh, ow;
    uint8_t zx;
} qconv_ctx;

/* a 1x1 convolution of stride 1 without padding: X is the input itself */
static int is_plain_1x1(const pthcv_qconv2d *q)
{
    return q->kh == 1 && q->kw == 1 && q->p.stride[0] == 1 && q->p.stride[1] == 1 && q->p.padding[0] == 0 &&
        q->p.padding[1] == 0;
}

/* every second byte of s: d[i] = s[2 i] (gcc vectorises it with packs) */
PTHCV_SIMD static void copy_stride2(uint8_t *restrict d, const uint8_t *restrict s, int64_t n)
{
    for (int64_t i = 0; i < n; i++) d[i] = s[2 * i];
}

/* a / s rounded up, a >= 0, s >= 1: strides 1 and 2 without a division */
static inline int64_t ceil_div(int64_t a, int s) { return s == 1 ? a : s == 2 ? (a + 1) >> 1 : (a + s - 1) / s; }

/* Rows k0..k0+kc-1 (k = (ci, ky, kx); rows past K any value: their weights
 * are 0) and columns j0..j0+nc-1 (j = oy * ow + ox; past N: the zero point)
 * of problem p's virtual im2col matrix, through a plain uint8 block that
 * pthcv_qgemm_pack_x_rows interleaves into the kernel's layout. */
static int pack_x_im2col(const void *vctx, int64_t p, void *dst, int64_t k0, int64_t kc, int64_t j0, int64_t nc)
{
    const qconv_ctx *x = vctx;
    const pthcv_qconv2d *q = x->q;
    int64_t img = p / q->groups, g = p % q->groups, n = x->oh * x->ow;
    const uint8_t *in = x->x + (img * x->cin + g * q->cin_g) * x->h * x->w;
    const pthcv_qgemm_kernel *k = q->kernel;
    int sh = q->p.stride[0], sw = q->p.stride[1], dh = q->p.dilation[0], dw = q->p.dilation[1];
    int ph = q->p.padding[0], pw = q->p.padding[1];
    if (is_plain_1x1(q)) {
        pthcv_qgemm_pack_x_rows(k, dst, in, n, q->K, n, k0, kc, j0, nc, x->zx);
        return 0;
    }
    uint8_t *rows = (uint8_t *)pthcv_scratch(PTHCV_SCRATCH_QCONV_COLS, (size_t)((kc * nc + 3) / 4));
    if (!rows) return 1;
    /* the block's columns cut into runs of one output row each: start
     * column, input row and column of tap (0, 0) */
    enum { MAX_RUNS = 130 };
    int64_t run_c[MAX_RUNS + 1], run_iy[MAX_RUNS], run_ix[MAX_RUNS], nrun = 0;
    int64_t valid = n - j0 < nc ? n - j0 : nc;
    for (int64_t c = 0, oy = j0 / x->ow, ox = j0 % x->ow; c < valid && nrun < MAX_RUNS; oy++, ox = 0) {
        run_c[nrun] = c, run_iy[nrun] = oy * sh - ph, run_ix[nrun] = ox * sw - pw, nrun++;
        c += x->ow - ox;
    }
    if (nrun == MAX_RUNS && run_c[nrun - 1] + x->ow < valid) return 1; /* cannot happen: nc <= 128 */
    run_c[nrun] = valid;
    int64_t khw = q->kh * q->kw;
    /* the tap (ci, ky, kx) of row k0, then counted on row by row */
    int64_t ci = k0 / khw, ky = k0 % khw / q->kw, kx = k0 % q->kw;
    for (int64_t r = 0; r < kc; r++) {
        uint8_t *d = rows + r * nc;
        if (k0 + r >= q->K) { /* K padding: its weights are 0 */
            memset(d, x->zx, (size_t)nc);
            continue;
        }
        const uint8_t *plane = in + ci * x->h * x->w;
        const int64_t dy = ky * dh, dx = kx * dw;
        if (++kx == q->kw) {
            kx = 0;
            if (++ky == q->kh) ky = 0, ci++;
        }
        for (int64_t s = 0; s < nrun; s++) {
            int64_t c0 = run_c[s], len = (run_c[s + 1] < valid ? run_c[s + 1] : valid) - c0;
            int64_t iy = run_iy[s] + dy, ix0 = run_ix[s] + dx;
            if (iy < 0 || iy >= x->h) {
                memset(d + c0, x->zx, (size_t)len);
                continue;
            }
            const uint8_t *row = plane + iy * x->w;
            /* columns [0, lo) fall left of the image, [lo, hi) in it, [hi, len) right of it */
            int64_t lo = ix0 < 0 ? ceil_div(-ix0, sw) : 0, hi = ix0 < x->w ? ceil_div(x->w - ix0, sw) : 0;
            if (lo > len) lo = len;
            if (hi > len) hi = len;
            if (hi < lo) hi = lo;
            for (int64_t i = 0; i < lo; i++) d[c0 + i] = x->zx; /* a column or two: no call */
            if (sw == 1 && hi > lo) {
                memcpy(d + c0 + lo, row + ix0 + lo, (size_t)(hi - lo));
            } else if (sw == 2) {
                copy_stride2(d + c0 + lo, row + ix0 + 2 * lo, hi - lo);
            } else {
                for (int64_t i = lo; i < hi; i++) d[c0 + i] = row[ix0 + i * sw];
            }
            for (int64_t i = hi; i < len; i++) d[c0 + i] = x->zx;
        }
        if (valid < nc) memset(d + valid, x->zx, (size_t)(nc - valid));
    }
    pthcv_qgemm_pack_x_rows(k, dst, rows, nc, kc, nc, 0, kc, 0, nc, x->zx);
    return 0;
}

/* image n's outputs at out + n * out_istride elements (M * N: a tensor of
 * its own; more: its channels of a concatenation, groups 1 only) */
static int forward_qgemm(pthcv_qconv2d *q, const qconv_ctx *x, int64_t batch, void *out, int64_t out_istride,
                         const qparams *qp, const uint8_t *res)
{
    int64_t M = q->cout / q->groups, N = x->oh * x->ow;
    pthcv_qgemm_problem g = {
        .kernel = q->kernel,
        .M = M,
        .N = N,
        .K = q->K,
        .nprob = batch * q->groups,
        .nsets = q->groups,
        .w = q->w,
        .w_sstride = q->w_sstride,
        .pack_x = pack_x_im2col,
        .ctx = x,
        .out = out,
        .ldo = N,
        .out_pstride = q->groups == 1 ? out_istride : M * N,
        .rq = qp->rq,
        .res_pstride = M * N,
        /* the implicit im2col copies short runs (an output row each, with
         * borders) per K row: reckoned as 8 row panels' multiply-adds, so
         * the rows are split between threads only when the columns cannot
         * be; a 1x1 stride-1 X is only interleaved */
        .pack_cost = is_plain_1x1(q) ? 1 : 16,
    };
    g.rq.res = res;
    if (q->kernel->xtype == PTHCV_QX_S8) g.rq.zx -= 128;
    return pthcv_qgemm_run(&g);
}

/* ---- the depthwise path ---------------------------------------------------------------- */
typedef struct {
    const pthcv_qconv2d *q;
    const qconv_ctx *x;
    void *out;
    const uint8_t *res;
    const qparams *qp;
    void (*plane)(const pthcv_dw_args *);
    pthcv_qdw_plane_fn fused; /* or NULL: plane, then fsum */
    pthcv_qstore store;
    atomic_int failed;
} qdw_ctx;

pthcv_qdw_plane_fn pthcv_qdw_plane_for(int isa, int kh, int kw, int stride)
{
    if (!((kh == 3 && kw == 3) || (kh == 5 && kw == 5)) || (stride != 1 && stride != 2)) return NULL;
#if defined(__x86_64__)
    if (isa == PTHCV_ISA_AVX512) return pthcv_qdw_plane_avx512;
    if (isa == PTHCV_ISA_AVX2) return pthcv_qdw_plane_avx2;
#endif
#if defined(__aarch64__)
    if (isa == PTHCV_ISA_NEON) return pthcv_qdw_plane_neon;
#endif
    (void)isa;
    return NULL;
}

static void qdw_task(void *vctx, int64_t begin, int64_t end)
{
    qdw_ctx *d = vctx;
    const pthcv_qconv2d *q = d->q;
    const qconv_ctx *x = d->x;
    int ph = q->p.padding[0], pw = q->p.padding[1];
    int64_t hp = x->h + 2 * ph, wp = x->w + 2 * pw, plane_out = x->oh * x->ow;
    int64_t ldi = wp + PTHCV_DW_SLACK, size = hp * ldi + PTHCV_DW_SLACK;
    float *buf = pthcv_scratch(PTHCV_SCRATCH_DW, (size_t)(size + plane_out)); /* the plane, the sums if not fused */
    if (!buf) {
        atomic_store(&d->failed, 1);
        return;
    }
    float *acc = d->fused ? NULL : buf + size;
    memset(buf, 0, sizeof(float) * (size_t)size); /* the border is real 0: x - zx = 0 */
    int64_t mult = q->cout / q->groups;
    void (*widen)(float *, const uint8_t *, int64_t, float) = pthcv_qstore_now()->widen;
    size_t ob = d->qp->rq.out_float ? sizeof(float) : 1;
    for (int64_t t = begin; t < end; t++) {
        int64_t img = t / q->cout, oc = t % q->cout, ic = oc / mult;
        const uint8_t *src = x->x + (img * x->cin + ic) * x->h * x->w;
        for (int64_t y = 0; y < x->h; y++) widen(buf + (y + ph) * ldi + pw, src + y * x->w, x->w, (float)x->zx);
        pthcv_dw_args a = {
            .in = buf,
            .ldi = ldi,
            .stride = q->p.stride[0],
            .kh = (int)q->kh,
            .kw = (int)q->kw,
            .w = (const float *)q->w + oc * q->kh * q->kw,
            .bias = 0.0f,
            .out = acc,
            .res = NULL,
            .oh = x->oh,
            .ow = x->ow,
            .lo = -INFINITY,
            .hi = INFINITY,
        };
        const uint8_t *res = d->res ? d->res + t * plane_out : NULL;
        if (d->fused) {
            pthcv_qdw_args qa = {.dw = a,
                                 .s = &d->store,
                                 .off = (float)d->qp->rq.bq[oc],
                                 .mul = d->qp->rq.mul[oc],
                                 .res = res,
                                 .out = (uint8_t *)d->out + t * plane_out};
            d->fused(&qa);
            continue;
        }
        d->plane(&a);
        pthcv_qgemm_requant_fsum(&d->qp->rq, oc, acc, plane_out, (char *)d->out + t * plane_out * ob, res);
    }
}

static int forward_qdw(pthcv_qconv2d *q, const qconv_ctx *x, int64_t batch, void *out, const qparams *qp,
                       const uint8_t *res)
{
    qdw_ctx d = {.q = q, .x = x, .out = out, .res = res, .qp = qp};
    d.plane = pthcv_dw_plane_for(pthcv_isa());
    d.fused = qp->rq.out_float ? NULL : pthcv_qdw_plane_for(pthcv_isa(), (int)q->kh, (int)q->kw, q->p.stride[0]);
    pthcv_qgemm_qstore_of(&qp->rq, &d.store);
    atomic_init(&d.failed, 0);
    pthcv_parallel_for(batch * q->cout, 1, qdw_task, &d);
    if (atomic_load(&d.failed)) return pthcv_fail(PTHCV_ERR_NOMEM, "qconv2d: out of memory for the padded planes");
    return PTHCV_OK;
}

/* ---- forward ------------------------------------------------------------------------------ */
/* The output size of q over the quint8 input x, checked; 0 or an error. */
static int output_size(const pthcv_qconv2d *q, const pthcv_tensor *x, int64_t *oh, int64_t *ow)
{
    int64_t cin = q->cin_g * q->groups;
    if (x->ndim != 4 || x->shape[1] != cin)
        return pthcv_fail(PTHCV_ERR_ARG, "qconv2d: expected input [N, %lld, H, W], got %s", (long long)cin,
                          x->ndim == 4 ? "another channel count" : "another rank");
    int64_t h = x->shape[2], w = x->shape[3];
    int ph = q->p.padding[0], pw = q->p.padding[1];
    int64_t eh = q->p.dilation[0] * (q->kh - 1) + 1, ew = q->p.dilation[1] * (q->kw - 1) + 1;
    if (h + 2 * ph < eh || w + 2 * pw < ew)
        return pthcv_fail(PTHCV_ERR_ARG, "qconv2d: input %lldx%lld padded by (%d, %d) is smaller than the kernel",
                          (long long)h, (long long)w, ph, pw);
    *oh = (h + 2 * ph - eh) / q->p.stride[0] + 1, *ow = (w + 2 * pw - ew) / q->p.stride[1] + 1;
    return PTHCV_OK;
}

/* Runs q over x (contiguous quint8 data xd, scale sx, zero point zx) into
 * out, image n at out + n * out_istride elements; rd: a quint8 residual
 * of the output's shape (scale sr, zero point zr) or NULL. 0 or an error. */
static int qconv_run(pthcv_qconv2d *q, const pthcv_tensor *x, const uint8_t *xd, double sx, int32_t zx, void *out,
                     int64_t out_istride, int out_float, const uint8_t *rd, double sr, int32_t zr)
{
    int64_t oh, ow;
    if (output_size(q, x, &oh, &ow) != PTHCV_OK) return PTHCV_ERR_ARG;
    qparams qp = {0};
    int st = qparams_make(&qp, q->cout, q->wscale, q->bias, q->wsum, sx, zx, q->out_scale, q->out_zp, out_float,
                          &q->p.act);
    if (st == PTHCV_OK) {
        qp.rq.zr = zr, qp.rq.rmul = (float)(sr / q->out_scale);
        qconv_ctx cx = {.q = q, .x = xd, .cin = x->shape[1], .h = x->shape[2], .w = x->shape[3], .oh = oh, .ow = ow,
                        .zx = (uint8_t)zx};
        st = q->depthwise ? forward_qdw(q, &cx, x->shape[0], out, &qp, rd)
                          : forward_qgemm(q, &cx, x->shape[0], out, out_istride, &qp, rd);
    }
    free(qp.mul), free(qp.bq);
    return st;
}

pthcv_tensor *pthcv_qconv2d_forward(pthcv_qconv2d *q, pthcv_tensor *x, pthcv_tensor *residual, int32_t out_float)
{
    PTHCV_PROFILE_OP("qconv2d");
    if (!q) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "qconv2d: no convolution");
    double sx, sr = 0;
    int32_t zx, zr = 0;
    int64_t oh, ow;
    if (qinput("qconv2d", "input", x, &sx, &zx) != PTHCV_OK || output_size(q, x, &oh, &ow) != PTHCV_OK) return NULL;
    int64_t oshape[4] = {x->shape[0], q->cout, oh, ow};
    PTHCV_PROFILE_LABEL("qconv %lldx%lld/%d%s", (long long)q->kh, (long long)q->kw, q->p.stride[0],
                        q->depthwise ? " depthwise" : "");
    pthcv_tensor *xc = NULL, *rc = NULL, *y = NULL;
    if (residual) {
        if (out_float) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "qconv2d: a residual needs a quint8 output");
        if (qinput("qconv2d", "residual", residual, &sr, &zr) != PTHCV_OK) return NULL;
        int same = residual->ndim == 4;
        for (int i = 0; same && i < 4; i++) same = residual->shape[i] == oshape[i];
        if (!same) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "qconv2d: residual must have the output's shape");
        if (!(rc = pthcv_tensor_contiguous(residual))) goto done;
    }
    if (!(xc = pthcv_tensor_contiguous(x))) goto done;
    const uint8_t *xd = pthcv_tensor_data(xc), *rd = rc ? pthcv_tensor_data(rc) : NULL;
    if (!xd || (rc && !rd)) goto done;
    if (!(y = qoutput(4, oshape, out_float, q->out_scale, q->out_zp))) goto done;
    if (qconv_run(q, x, xd, sx, zx, pthcv_tensor_data(y), q->cout * oh * ow, out_float, rd, sr, zr) != PTHCV_OK) {
        pthcv_tensor_release(y);
        y = NULL;
    }
done:
    pthcv_tensor_release(xc), pthcv_tensor_release(rc);
    return y;
}

pthcv_tensor *pthcv_qconv2d_forward_cat(int32_t n, pthcv_qconv2d *const *qs, pthcv_tensor *x)
{
    PTHCV_PROFILE_OP("qconv2d");
    PTHCV_PROFILE_LABEL("qconv cat of %d", (int)n);
    if (n < 1 || !qs) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "qconv2d_cat: no convolutions");
    double sx;
    int32_t zx;
    if (qinput("qconv2d_cat", "input", x, &sx, &zx) != PTHCV_OK) return NULL;
    int64_t oh = 0, ow = 0, cout = 0;
    for (int32_t i = 0; i < n; i++) {
        const pthcv_qconv2d *q = qs[i];
        int64_t h, w;
        if (!q) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "qconv2d_cat: convolution %d is missing", (int)i);
        if (q->depthwise || q->groups != 1)
            return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "qconv2d_cat: convolution %d has groups %lld: 1 expected", (int)i,
                                   (long long)q->groups);
        if (q->out_scale != qs[0]->out_scale || q->out_zp != qs[0]->out_zp)
            return PTHCV_FAIL_NULL(PTHCV_ERR_ARG,
                                   "qconv2d_cat: convolution %d's output scale %g, zero point %d differ from the "
                                   "first's (%g, %d): one concatenation has one",
                                   (int)i, q->out_scale, (int)q->out_zp, qs[0]->out_scale, (int)qs[0]->out_zp);
        if (output_size(q, x, &h, &w) != PTHCV_OK) return NULL;
        if (i > 0 && (h != oh || w != ow))
            return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "qconv2d_cat: convolution %d gives %lldx%lld, the first %lldx%lld",
                                   (int)i, (long long)h, (long long)w, (long long)oh, (long long)ow);
        oh = h, ow = w, cout += q->cout;
    }
    int64_t oshape[4] = {x->shape[0], cout, oh, ow};
    pthcv_tensor *xc = pthcv_tensor_contiguous(x), *y = NULL;
    const uint8_t *xd = xc ? pthcv_tensor_data(xc) : NULL;
    if (xd && (y = qoutput(4, oshape, 0, qs[0]->out_scale, qs[0]->out_zp))) {
        uint8_t *yd = pthcv_tensor_data(y);
        for (int32_t i = 0, c0 = 0; i < n; c0 += (int32_t)qs[i]->cout, i++)
            if (qconv_run(qs[i], x, xd, sx, zx, yd + c0 * oh * ow, cout * oh * ow, 0, NULL, 0, 0) != PTHCV_OK) {
                pthcv_tensor_release(y);
                y = NULL;
                break;
            }
    }
    pthcv_tensor_release(xc);
    return y;
}

/* ---- linear --------------------------------------------------------------------------------- */
struct pthcv_qlinear {
    int64_t out, in;
    const pthcv_qgemm_kernel *kernel;
    void *w;
    int32_t *wsum;
    double *wscale;
    float *bias;
    double out_scale;
    int32_t out_zp;
    pthcv_activation act;
};

pthcv_qlinear *pthcv_qlinear_prepare(pthcv_tensor *weight, pthcv_tensor *bias, const pthcv_activation *act,
                                     double out_scale, int32_t out_zero_point)
{
    if (!weight || weight->ndim != 2)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "qlinear: weight must be [out_features, in_features]");
    int64_t out = weight->shape[0], in = weight->shape[1];
    pthcv_activation none = {PTHCV_ACT_NONE, 0, 0};
    if (!act) act = &none;
    if (act->kind != PTHCV_ACT_NONE && act->kind != PTHCV_ACT_RELU)
        return PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED, "qlinear: activation %s cannot be fused (none or relu)",
                               pthcv_act_name(act->kind));
    if (bias && (bias->ndim != 1 || bias->shape[0] != out || !pthcv_dtype_is_floating(bias->dtype)))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "qlinear: bias must be a floating [%lld] tensor", (long long)out);
    if (check_out_qparams("qlinear", out_scale, out_zero_point) != PTHCV_OK) return NULL;
    pthcv_qlinear *l = calloc(1, sizeof *l);
    if (!l) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "qlinear: out of memory");
    l->out = out, l->in = in, l->out_scale = out_scale, l->out_zp = out_zero_point, l->act = *act;
    int8_t *vals = NULL;
    if (weights_of("qlinear", weight, out, &vals, &l->wscale) != PTHCV_OK) goto fail;
    l->kernel = pthcv_qgemm_kernel_now();
    l->bias = bias_of(bias, out);
    l->wsum = calloc((size_t)out, sizeof(int32_t));
    l->w = pthcv_alloc_aligned((size_t)pthcv_qgemm_packed_w_bytes(l->kernel, out, in));
    if (!l->bias || !l->wsum || !l->w) {
        pthcv_fail(PTHCV_ERR_NOMEM, "qlinear: out of memory");
        goto fail;
    }
    for (int64_t o = 0; o < out; o++)
        for (int64_t i = 0; i < in; i++) l->wsum[o] += vals[o * in + i];
    pthcv_qgemm_pack_w(l->kernel, l->w, vals, out, in);
    free(vals);
    return l;
fail:
    free(vals);
    pthcv_qlinear_free(l);
    return NULL;
}

void pthcv_qlinear_free(pthcv_qlinear *l)
{
    if (!l) return;
    pthcv_free_aligned(l->w);
    free(l->wsum), free(l->wscale), free(l->bias);
    free(l);
}

typedef struct {
    const pthcv_qgemm_kernel *kernel;
    const uint8_t *x;
    int64_t in;
    uint8_t zx;
} qlin_ctx;

/* problem p is row p of x: X is that row as a column (K x 1) */
static int pack_x_row(const void *vctx, int64_t p, void *dst, int64_t k0, int64_t kc, int64_t j0, int64_t nc)
{
    const qlin_ctx *c = vctx;
    pthcv_qgemm_pack_x_rows(c->kernel, dst, c->x + p * c->in, 1, c->in, 1, k0, kc, j0, nc, c->zx);
    return 0;
}

pthcv_tensor *pthcv_qlinear_forward(pthcv_qlinear *l, pthcv_tensor *x, int32_t out_float)
{
    PTHCV_PROFILE_OP("qlinear");
    if (!l) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "qlinear: no layer");
    double sx;
    int32_t zx;
    if (qinput("qlinear", "input", x, &sx, &zx) != PTHCV_OK) return NULL;
    if (x->ndim < 1 || x->shape[x->ndim - 1] != l->in)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "qlinear: input's last dimension must be %lld", (long long)l->in);
    int64_t rows = x->numel / l->in, shape[PTHCV_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = l->out;
    pthcv_tensor *xc = pthcv_tensor_contiguous(x), *y = NULL;
    const uint8_t *xd = xc ? pthcv_tensor_data(xc) : NULL;
    qparams qp = {0};
    if (!xd ||
        qparams_make(&qp, l->out, l->wscale, l->bias, l->wsum, sx, zx, l->out_scale, l->out_zp, out_float, &l->act) !=
            PTHCV_OK)
        goto done;
    if (!(y = qoutput(x->ndim, shape, out_float, l->out_scale, l->out_zp))) goto done;
    qlin_ctx c = {.kernel = l->kernel, .x = xd, .in = l->in, .zx = (uint8_t)zx};
    pthcv_qgemm_problem g = {
        .kernel = l->kernel,
        .M = l->out,
        .N = 1,
        .K = l->in,
        .nprob = rows,
        .nsets = 1,
        .w = l->w,
        .pack_x = pack_x_row,
        .ctx = &c,
        .out = pthcv_tensor_data(y),
        .ldo = 1,
        .out_pstride = l->out,
        .rq = qp.rq,
    };
    if (l->kernel->xtype == PTHCV_QX_S8) g.rq.zx -= 128;
    if (pthcv_qgemm_run(&g) != PTHCV_OK) {
        pthcv_tensor_release(y);
        y = NULL;
    }
done:
    free(qp.mul), free(qp.bq);
    pthcv_tensor_release(xc);
    return y;
}
