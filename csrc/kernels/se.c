/*
 * se.c -- squeeze-excitation in one call (pthcv_squeeze_excitation), the
 * fused step pthcv.nn.plan makes of torchvision's SqueezeExcitation:
 *
 *   s = mean over (H, W) of x          adaptive_avg_pool2d(x, 1)
 *   h = act1(W1 s + b1)                 fc1 (a 1x1 convolution), activation
 *   z = act2(W2 h + b2)                 fc2, scale activation (sigmoid, ...)
 *   y = x * z                           broadcast over (H, W)
 *
 * per image, without the four intermediate tensors and the kernel calls of
 * the 1x1 convolutions on 1x1 maps. The mean is the global average pool's
 * (ops_sum_f64 of the plane, divided once: the same bits as
 * pthcv_adaptive_pool2d), the product is pthcv_binary's (the same bits);
 * the two small matrix-vector products sum in float32, channel k in lane
 * k % OPS_LANES (a 1x1 convolution's GEMM sums in its own blocked order:
 * equal to within rounding). The pool and the product are split over
 * threads by planes, the matrix-vector products by rows (large ones only:
 * OPS_GRAIN), and each value is computed the same way on any thread, so
 * results do not depend on the thread count.
 */
#include "ops.h"
#include <stdlib.h>

typedef struct {
    const float *x;
    float *y;
    float *v; /* pool: the means out; scale: the factors in, one per plane */
    int64_t hw;
} se_ctx;

static void pool_task(void *vctx, int64_t begin, int64_t end)
{
    se_ctx *c = vctx;
    for (int64_t p = begin; p < end; p++) c->v[p] = (float)(ops_sum_f64(c->x + p * c->hw, c->hw) / (double)c->hw);
}

PTHCV_SIMD
static void scale_plane(float *y, const float *x, float s, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * s;
}

static void scale_task(void *vctx, int64_t begin, int64_t end)
{
    se_ctx *c = vctx;
    for (int64_t p = begin; p < end; p++) scale_plane(c->y + p * c->hw, c->x + p * c->hw, c->v[p], c->hw);
}

/* Rows of a matrix-vector product: the sum over k of w[r][k] * in[k] for
 * SE_ROWS rows r at once (w + r * cols). Product k goes to lane
 * k % OPS_LANES, the lanes are added in order at the end (ops_sum_f32's
 * scheme), so every clone gives the same bits, and a row's sum does not
 * depend on the rows beside it. One sum in channel order was a chain of
 * dependent additions, 4 cycles a product, for weights read once per image;
 * the lanes and the rows side by side keep the adders busy
 * (docs/performance.md, "The small networks against ncnn"). */
enum { SE_ROWS = 4 };

PTHCV_SIMD
static void dot_rows(float *sums, const float *w, int64_t cols, const float *in, int nrows)
{
    /* four rows side by side, each in its own lanes; rows past nrows repeat
     * row 0 and are dropped */
    float a0[OPS_LANES] = {0}, a1[OPS_LANES] = {0}, a2[OPS_LANES] = {0}, a3[OPS_LANES] = {0};
    const float *w0 = w, *w1 = nrows > 1 ? w + cols : w, *w2 = nrows > 2 ? w + 2 * cols : w;
    const float *w3 = nrows > 3 ? w + 3 * cols : w;
    int64_t k = 0;
    for (; k + OPS_LANES <= cols; k += OPS_LANES)
        for (int j = 0; j < OPS_LANES; j++) {
            float x = in[k + j];
            a0[j] += w0[k + j] * x;
            a1[j] += w1[k + j] * x;
            a2[j] += w2[k + j] * x;
            a3[j] += w3[k + j] * x;
        }
    for (int j = 0; k + j < cols; j++) {
        float x = in[k + j];
        a0[j] += w0[k + j] * x;
        a1[j] += w1[k + j] * x;
        a2[j] += w2[k + j] * x;
        a3[j] += w3[k + j] * x;
    }
    float s[SE_ROWS] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int j = 0; j < OPS_LANES; j++) {
        s[0] += a0[j];
        s[1] += a1[j];
        s[2] += a2[j];
        s[3] += a3[j];
    }
    for (int r = 0; r < nrows; r++) sums[r] = s[r];
}

typedef struct {
    float *out;
    const float *w, *b, *in;
    int64_t rows, cols;
    const pthcv_activation *act;
} matvec_ctx;

/* row blocks begin..end-1 (SE_ROWS rows each): the sums plus bias, then
 * the activation over the range's rows at once (pthcv_act_row: the bits of
 * pthcv_act_scalar, vectorised; the scalar call per row was 6-12 us of an
 * squeeze-excitation's 40 on efficientnet_b0's wide gates) */
static void matvec_task(void *vctx, int64_t begin, int64_t end)
{
    const matvec_ctx *m = vctx;
    int64_t first = begin * SE_ROWS, last = end * SE_ROWS < m->rows ? end * SE_ROWS : m->rows;
    for (int64_t r0 = first; r0 < last; r0 += SE_ROWS) {
        float sums[SE_ROWS];
        int n = m->rows - r0 < SE_ROWS ? (int)(m->rows - r0) : SE_ROWS;
        dot_rows(sums, m->w + r0 * m->cols, m->cols, m->in, n);
        for (int r = 0; r < n; r++) m->out[r0 + r] = m->b ? sums[r] + m->b[r0 + r] : sums[r];
    }
    if (last > first) pthcv_act_row(m->out + first, last - first, m->act);
}

/* out[r] = act(b[r] + sum_k w[r][k] * in[k]) for r < rows. The row blocks
 * are split over threads where the weights are large (their reading from
 * memory is then the cost); a row's sum is the same on any thread. */
static void matvec(float *out, const float *w, const float *b, const float *in, int64_t rows, int64_t cols,
                   const pthcv_activation *act)
{
    matvec_ctx m = {.out = out, .w = w, .b = b, .in = in, .rows = rows, .cols = cols, .act = act};
    pthcv_parallel_for((rows + SE_ROWS - 1) / SE_ROWS, ops_grain(SE_ROWS * cols), matvec_task, &m);
}

/* A weight of `rows` x `cols` values (any shape: [rows, cols] or the 1x1
 * convolution's [rows, cols, 1, 1]) and its bias, checked, as float32. */
static int weights_of(pthcv_tensor *w, pthcv_tensor *b, int64_t rows, int64_t cols, const char *name, pthcv_tensor **wc,
                      const float **wd, pthcv_tensor **bc, const float **bd)
{
    const char *fn = "squeeze_excitation";
    if (!w || w->dtype != PTHCV_FLOAT32 || w->ndim < 2 || w->shape[0] != rows || w->numel != rows * cols)
        return pthcv_fail(PTHCV_ERR_ARG, "%s: %s must be float32 [%lld, %lld] (or [%lld, %lld, 1, 1]), got %s", fn,
                          name, (long long)rows, (long long)cols, (long long)rows, (long long)cols, ops_shape(w));
    if (b && (b->dtype != PTHCV_FLOAT32 || b->numel != rows))
        return pthcv_fail(PTHCV_ERR_ARG, "%s: the bias of %s must be float32 [%lld], got %s", fn, name, (long long)rows,
                          ops_shape(b));
    if (!(*wc = ops_input(w, fn, name, wd))) return pthcv_last_status();
    if (b && !(*bc = ops_input(b, fn, name, bd))) return pthcv_last_status();
    return PTHCV_OK;
}

pthcv_tensor *pthcv_squeeze_excitation(pthcv_tensor *x, pthcv_tensor *w1, pthcv_tensor *b1,
                                       const pthcv_activation *act1, pthcv_tensor *w2, pthcv_tensor *b2,
                                       const pthcv_activation *act2)
{
    PTHCV_PROFILE_OP("squeeze_excitation");
    const char *fn = "squeeze_excitation";
    if (!x || (x->ndim != 4 && x->ndim != 3))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: expected an input [N, C, H, W] or [C, H, W], got %s", fn,
                               ops_shape(x));
    if (!act1 || !act2 || !pthcv_act_valid(act1) || !pthcv_act_valid(act2))
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: unknown activation", fn);
    int nd = x->ndim;
    int64_t n = nd == 4 ? x->shape[0] : 1, ch = x->shape[nd - 3], hw = x->shape[nd - 2] * x->shape[nd - 1];
    int64_t sq = w1 && w1->ndim >= 1 ? w1->shape[0] : 0;
    if (sq < 1 || hw < 1)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: empty input %s or squeeze weight %s", fn, ops_shape(x),
                               ops_shape(w1));
    pthcv_tensor *xc = NULL, *w1c = NULL, *b1c = NULL, *w2c = NULL, *b2c = NULL, *y = NULL;
    const float *xd = NULL, *w1d = NULL, *b1d = NULL, *w2d = NULL, *b2d = NULL;
    float *yd = NULL, *buf = NULL;
    int ok = 0;
    if (weights_of(w1, b1, sq, ch, "fc1", &w1c, &w1d, &b1c, &b1d) != PTHCV_OK ||
        weights_of(w2, b2, ch, sq, "fc2", &w2c, &w2d, &b2c, &b2d) != PTHCV_OK)
        goto done;
    if (!(xc = ops_input(x, fn, "input", &xd)) || !(y = ops_output_whole(nd, x->shape, &yd))) goto done;
    /* the means of every plane, then per image the squeezed vector (sq) and the factors (ch) */
    if (!(buf = malloc(sizeof(float) * (size_t)(n * ch + sq + ch)))) {
        pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", fn);
        goto done;
    }
    float *means = buf, *hidden = buf + n * ch, *factors = hidden + sq;
    se_ctx c = {.x = xd, .y = yd, .v = means, .hw = hw};
    pthcv_parallel_for(n * ch, ops_grain(hw), pool_task, &c);
    for (int64_t i = 0; i < n; i++) {
        matvec(hidden, w1d, b1d, means + i * ch, sq, ch, act1);
        matvec(factors, w2d, b2d, hidden, ch, sq, act2);
        for (int64_t k = 0; k < ch; k++)
            means[i * ch + k] = factors[k]; /* means of image i are used: the factors take their place */
    }
    pthcv_parallel_for(n * ch, ops_grain(hw), scale_task, &c);
    ok = 1;
done:
    if (!ok) {
        pthcv_tensor_release(y);
        y = NULL;
    }
    free(buf);
    pthcv_tensor_release(xc);
    pthcv_tensor_release(w1c);
    pthcv_tensor_release(b1c);
    pthcv_tensor_release(w2c);
    pthcv_tensor_release(b2c);
    return y;
}
