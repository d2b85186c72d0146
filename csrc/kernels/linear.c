/*
 * linear.c -- y = act(x W^T + b) over the last dimension of x (any rank).
 *
 * As a GEMM: M = the rows of x (all leading dimensions), N = out_features,
 * K = in_features. W^T is the constant B operand, packed at prepare time
 * for the current instruction set (others on first use, from it), float32
 * or float16 (module:half(): converted per block); x is packed per block. The bias is a per-column bias, added in the micro-kernel.
 */
#include "gemm.h"
#include "ops.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct pthcv_linear {
    int64_t out, in;
    int half;           /* weights kept as float16 */
    pthcv_gemm_const w; /* W^T as the GEMM's B (in x out), the only copy */
    int w_made;
    float *bias; /* [out] or NULL */
    pthcv_activation act;
};

pthcv_linear *pthcv_linear_prepare(pthcv_tensor *weight, pthcv_tensor *bias, const pthcv_activation *act)
{
    if (!weight || (weight->dtype != PTHCV_FLOAT32 && weight->dtype != PTHCV_FLOAT16) || weight->ndim != 2)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG,
                               "linear: weight must be float32 or float16 [out_features, in_features], got %s",
                               weight ? pthcv_dtype_name(weight->dtype) : "nothing");
    int64_t out = weight->shape[0], in = weight->shape[1];
    if (bias && (bias->dtype != PTHCV_FLOAT32 || bias->ndim != 1 || bias->shape[0] != out))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG,
                               "linear: bias must be float32 [%lld], got %s with %d dimensions (%lld values)",
                               (long long)out, pthcv_dtype_name(bias->dtype), bias->ndim, (long long)bias->numel);
    if (!pthcv_act_valid(act)) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "linear: unknown activation kind %d", act->kind);
    pthcv_linear *l = calloc(1, sizeof *l);
    if (!l) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "linear: out of memory");
    l->out = out, l->in = in;
    l->half = weight->dtype == PTHCV_FLOAT16;
    if (act) l->act = *act;
    pthcv_tensor *wc = pthcv_tensor_contiguous(weight), *bc = bias ? pthcv_tensor_contiguous(bias) : NULL;
    const void *wd = wc ? pthcv_tensor_data(wc) : NULL;
    const float *bd = bc ? pthcv_tensor_data(bc) : NULL;
    float *w = malloc(sizeof(float) * (size_t)(out * in > 0 ? out * in : 1));
    l->bias = bias ? malloc(sizeof(float) * (size_t)(out > 0 ? out : 1)) : NULL;
    int ok = wd && w && (!bias || (bd && l->bias));
    if (ok) {
        if (l->half) pthcv_halves_to_floats(w, wd, out * in);
        else memcpy(w, wd, sizeof(float) * (size_t)(out * in));
        if (bias) memcpy(l->bias, bd, sizeof(float) * (size_t)out);
        /* B(k, j) = W[j][k] */
        ok = pthcv_gemm_const_init(&l->w, pthcv_gemm_kernel_for(pthcv_isa()), 1, l->half, 1, in, out, w, 0, 1, in) ==
            PTHCV_OK;
        l->w_made = 1;
    }
    free(w);
    pthcv_tensor_release(wc);
    pthcv_tensor_release(bc);
    if (!ok) {
        pthcv_linear_free(l);
        if (pthcv_last_status() == PTHCV_OK) pthcv_fail(PTHCV_ERR_NOMEM, "linear: out of memory");
        return NULL;
    }
    return l;
}

void pthcv_linear_free(pthcv_linear *l)
{
    if (!l) return;
    if (l->w_made) pthcv_gemm_const_free(&l->w);
    free(l->bias);
    free(l);
}

typedef struct {
    const float *x;
    int64_t rows, in;
    const pthcv_gemm_kernel *k;
} lin_ctx;

/* Rows i0.. of x, k from k0, as MR-row panels. */
static void pack_rows(const void *vctx, int64_t p, float *dst, int64_t i0, int64_t mc, int64_t k0, int64_t kc, int mr)
{
    const lin_ctx *x = vctx;
    for (int64_t ir = 0; ir < mc; ir += mr) {
        float *d = dst + ir / mr * kc * mr;
        if (x->k->pack_rows) { /* the kernel's own (vectorised) packer */
            int64_t left = x->rows - (i0 + ir);
            if (left <= 0) x->k->pack_rows(d, x->x, x->in, 0, kc);
            else x->k->pack_rows(d, x->x + (i0 + ir) * x->in + k0, x->in, (int)(left < mr ? left : mr), kc);
            continue;
        }
        for (int r = 0; r < mr; r++) {
            int64_t i = i0 + ir + r;
            if (i < x->rows) {
                const float *src = x->x + i * x->in + k0;
                for (int64_t kk = 0; kk < kc; kk++) d[kk * mr + r] = src[kk];
            } else {
                for (int64_t kk = 0; kk < kc; kk++) d[kk * mr + r] = 0.0f;
            }
        }
    }
}

pthcv_tensor *pthcv_linear_forward(pthcv_linear *l, pthcv_tensor *x)
{
    PTHCV_PROFILE_OP("linear");
    OPS_REAL(x);
    if (!l || !x) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "linear: no layer or no input");
    if (x->dtype != PTHCV_FLOAT32 || x->ndim < 1 || x->shape[x->ndim - 1] != l->in)
        return PTHCV_FAIL_NULL(
            PTHCV_ERR_ARG,
            "linear: expected float32 input [..., %lld] (weight [%lld, %lld]), got %s with last dimension %lld",
            (long long)l->in, (long long)l->out, (long long)l->in, pthcv_dtype_name(x->dtype),
            (long long)(x->ndim ? x->shape[x->ndim - 1] : 0));
    const pthcv_gemm_kernel *k = pthcv_gemm_kernel_for(pthcv_isa());
    int64_t sstride;
    const void *b = pthcv_gemm_const_get(&l->w, k, &sstride);
    if (!b) return PTHCV_FAIL_NULL(PTHCV_ERR_NOMEM, "linear: out of memory packing the weights");
    pthcv_tensor *xc = pthcv_tensor_contiguous(x);
    const float *xd = xc ? pthcv_tensor_data(xc) : NULL;
    int64_t shape[PTHCV_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 1] = l->out;
    pthcv_tensor *y = xd ? pthcv_tensor_new_uninit(PTHCV_FLOAT32, x->ndim, shape) : NULL; /* written whole */
    float *yd = y ? pthcv_tensor_data(y) : NULL;
    if (yd) {
        lin_ctx cx = {xd, l->in ? x->numel / l->in : 0, l->in, k};
        if (l->in == 0) { /* no input features: numel says nothing about the rows */
            cx.rows = 1;
            for (int i = 0; i < x->ndim - 1; i++) cx.rows *= x->shape[i];
        }
        pthcv_gemm_problem g = {
            .kernel = k,
            .M = cx.rows,
            .N = l->out,
            .K = l->in,
            .nprob = 1,
            .nsets = 1,
            .pack_a = pack_rows,
            .b_packed = l->half ? NULL : b,
            .b_half = l->half ? b : NULL,
            .b_sstride = sstride,
            .ctx = &cx,
            .c = yd,
            .ldc = l->out,
            .bias_col = l->bias,
            .act = l->act,
        };
        if (pthcv_gemm_run(&g) != PTHCV_OK) {
            pthcv_tensor_release(y);
            y = NULL;
        }
    }
    pthcv_tensor_release(xc);
    return y;
}

int64_t pthcv_linear_weight_bytes(pthcv_linear *l) { return l && l->w_made ? pthcv_gemm_const_bytes(&l->w) : 0; }
