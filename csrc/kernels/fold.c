/*
 * fold.c -- BatchNorm (eval mode) folded into the preceding convolution or
 * linear layer, in double precision:
 *   s = gamma / sqrt(running_var + eps)
 *   W'[o, ...] = W[o, ...] * s[o]
 *   b'[o]      = (b[o] - running_mean[o]) * s[o] + beta[o]
 * gamma/beta NULL: 1/0 (affine=False); bias NULL: 0. Results are float32.
 */
#include "kernels.h"
#include <math.h>
#include <stdlib.h>

/* A float64 contiguous copy of a 1-d tensor of n values, or NULL (error set). */
static pthcv_tensor *vec64(pthcv_tensor *t, int64_t n, const char *what)
{
    if (!t) return NULL;
    if (!pthcv_dtype_is_floating(t->dtype) || t->ndim != 1 || t->shape[0] != n)
        return PTHCV_FAIL_NULL(
            PTHCV_ERR_ARG,
            "fold_batchnorm: %s must be a floating tensor [%lld], got %s with %d dimensions (%lld values)", what,
            (long long)n, pthcv_dtype_name(t->dtype), t->ndim, (long long)t->numel);
    return pthcv_tensor_to(t, PTHCV_FLOAT64);
}

int pthcv_fold_batchnorm(pthcv_tensor *weight, pthcv_tensor *bias, pthcv_tensor *running_mean,
                         pthcv_tensor *running_var, pthcv_tensor *gamma, pthcv_tensor *beta, double eps,
                         pthcv_tensor **new_weight, pthcv_tensor **new_bias)
{
    if (!weight || !running_mean || !running_var || !new_weight || !new_bias)
        return pthcv_fail(PTHCV_ERR_ARG,
                          "fold_batchnorm: weight, running_mean, running_var and the outputs are required");
    *new_weight = *new_bias = NULL;
    if (!pthcv_dtype_is_floating(weight->dtype) || weight->ndim < 1)
        return pthcv_fail(PTHCV_ERR_ARG,
                          "fold_batchnorm: weight must be a floating tensor [out, ...], got %s with %d dimensions",
                          pthcv_dtype_name(weight->dtype), weight->ndim);
    int64_t n = weight->shape[0], per = n ? weight->numel / n : 0;
    pthcv_tensor *w = NULL, *b = NULL, *m = NULL, *v = NULL, *g = NULL, *be = NULL, *ow = NULL, *ob = NULL;
    int st = PTHCV_OK;
    if (!(w = pthcv_tensor_to(weight, PTHCV_FLOAT64)) || (bias && !(b = vec64(bias, n, "bias"))) ||
        !(m = vec64(running_mean, n, "running_mean")) || !(v = vec64(running_var, n, "running_var")) ||
        (gamma && !(g = vec64(gamma, n, "weight (gamma)"))) || (beta && !(be = vec64(beta, n, "bias (beta)"))) ||
        !(ow = pthcv_tensor_new(PTHCV_FLOAT32, weight->ndim, weight->shape)) ||
        !(ob = pthcv_tensor_new(PTHCV_FLOAT32, 1, &n))) {
        st = pthcv_last_status() ? pthcv_last_status() : PTHCV_ERR_NOMEM;
        goto done;
    }
    const double *wd = pthcv_tensor_data(w), *bd = b ? pthcv_tensor_data(b) : NULL;
    const double *md = pthcv_tensor_data(m), *vd = pthcv_tensor_data(v);
    const double *gd = g ? pthcv_tensor_data(g) : NULL, *bed = be ? pthcv_tensor_data(be) : NULL;
    float *owd = pthcv_tensor_data(ow), *obd = pthcv_tensor_data(ob);
    if (!wd || !md || !vd || (b && !bd) || (g && !gd) || (be && !bed) || !owd || !obd) {
        st = pthcv_last_status() ? pthcv_last_status() : PTHCV_ERR_IO;
        goto done;
    }
    for (int64_t o = 0; o < n; o++) {
        double s = (gd ? gd[o] : 1.0) / sqrt(vd[o] + eps);
        for (int64_t i = 0; i < per; i++) owd[o * per + i] = (float)(wd[o * per + i] * s);
        obd[o] = (float)(((bd ? bd[o] : 0.0) - md[o]) * s + (bed ? bed[o] : 0.0));
    }
    *new_weight = ow;
    *new_bias = ob;
    ow = ob = NULL;
done:
    pthcv_tensor_release(w);
    pthcv_tensor_release(b);
    pthcv_tensor_release(m);
    pthcv_tensor_release(v);
    pthcv_tensor_release(g);
    pthcv_tensor_release(be);
    pthcv_tensor_release(ow);
    pthcv_tensor_release(ob);
    return st;
}
