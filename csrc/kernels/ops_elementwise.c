/*
 * ops_elementwise.c -- activations, PReLU, and binary arithmetic with
 * broadcasting (pthcv_activate, pthcv_prelu, pthcv_binary,
 * pthcv_binary_scalar).
 *
 * Activations go through pthcv_act_row (activation.c), the one definition the
 * fused convolution and linear kernels use too, so a standalone ReLU and a
 * fused one give the same bits. Binary ops follow torch: float32 arithmetic,
 * a Python scalar rounded to float32 first, maximum/minimum propagating NaN.
 */
#include "ops.h"
#include <math.h>
#include <string.h>

/* ---- activations ---------------------------------------------------------- */

typedef struct {
    float *y;
    const pthcv_activation *act;
} act_ctx;

static void act_task(void *vctx, int64_t begin, int64_t end)
{
    act_ctx *c = vctx;
    pthcv_act_row(c->y + begin, end - begin, c->act);
}

/* A contiguous float32 copy of x that the caller owns alone: the one
 * pthcv_tensor_contiguous made, or a fresh copy when x already was
 * contiguous (then it is shared with others). */
static pthcv_tensor *private_copy(pthcv_tensor *x, const char *op, float **data)
{
    const float *src;
    pthcv_tensor *c = ops_input(x, op, "input", &src);
    if (!c) return NULL;
    if (c != x && c->refcount == 1) {
        *data = (float *)src;
        return c;
    }
    pthcv_tensor *y = ops_output_whole(c->ndim, c->shape, data);
    if (y && c->numel) memcpy(*data, src, (size_t)c->numel * sizeof(float));
    pthcv_tensor_release(c);
    return y;
}

pthcv_tensor *pthcv_activate(pthcv_tensor *x, const pthcv_activation *act)
{
    PTHCV_PROFILE_OP("activate");
    if (act) PTHCV_PROFILE_LABEL("activate %s", pthcv_act_name(act->kind));
    if (!pthcv_act_valid(act)) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "activation: unknown kind %d", (int)act->kind);
    if (ops_is_qactivation(x) && act &&
        (act->kind == PTHCV_ACT_RELU || act->kind == PTHCV_ACT_RELU6 || act->kind == PTHCV_ACT_CLAMP))
        return quant_clamp_activate(x, act); /* int8 stays int8, as torch's quantized relu (quantize.c) */
    float *y;
    pthcv_tensor *out = private_copy(x, pthcv_act_name(act ? act->kind : PTHCV_ACT_NONE), &y);
    if (!out) return NULL;
    if (act && act->kind != PTHCV_ACT_NONE) {
        act_ctx c = {y, act};
        pthcv_parallel_for(out->numel, 8192, act_task, &c);
    }
    return out;
}

/* ---- PReLU ------------------------------------------------------------------ */

typedef struct {
    const float *x, *w;
    float *y;
    int64_t channels, inner; /* weight index of element i: (i / inner) % channels */
} prelu_ctx;

PTHCV_SIMD
static void prelu_plane(float *y, const float *x, int64_t n, float w)
{
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : w * x[i];
}

/* over planes of `inner` elements sharing one weight */
static void prelu_task(void *vctx, int64_t begin, int64_t end)
{
    prelu_ctx *c = vctx;
    for (int64_t p = begin; p < end; p++)
        prelu_plane(c->y + p * c->inner, c->x + p * c->inner, c->inner, c->w[p % c->channels]);
}

pthcv_tensor *pthcv_prelu(pthcv_tensor *x, pthcv_tensor *weight)
{
    PTHCV_PROFILE_OP("prelu");
    const float *xd, *wd;
    pthcv_tensor *xc = ops_input(x, "prelu", "input", &xd);
    if (!xc) return NULL;
    pthcv_tensor *wc = ops_input(weight, "prelu", "weight", &wd);
    if (!wc) {
        pthcv_tensor_release(xc);
        return NULL;
    }
    pthcv_tensor *out = NULL;
    /* torch: one weight for all, or one per channel (dimension 1) */
    int64_t channels = wc->numel;
    int64_t have = x->ndim >= 2 ? x->shape[1] : 1;
    if (channels != 1 && channels != have) {
        pthcv_fail(PTHCV_ERR_ARG, "prelu: weight of %lld values for input %s: need 1 or %lld (channels, dimension 1)",
                   (long long)channels, ops_shape(x), (long long)have);
        goto done;
    }
    float *y;
    out = ops_output(x->ndim, x->shape, &y);
    if (!out || x->numel == 0) goto done;
    prelu_ctx c = {xd, wd, y, channels, 1};
    if (channels > 1)
        for (int d = 2; d < x->ndim; d++) c.inner *= x->shape[d];
    else c.inner = x->numel;
    pthcv_parallel_for(x->numel / c.inner, ops_grain(c.inner), prelu_task, &c);
done:
    pthcv_tensor_release(xc);
    pthcv_tensor_release(wc);
    return out;
}

/* ---- binary arithmetic ------------------------------------------------------ */

/* y[i] = a[i * sa] op b[i * sb] for i < n; strides 0 broadcast one value.
 * The common stride pairs get their own loops so they vectorise. */
#define BINARY_LOOPS(EXPR)                          \
    do {                                            \
        if (sa == 1 && sb == 1) {                   \
            for (int64_t i = 0; i < n; i++) {       \
                float u = a[i], v = b[i];           \
                y[i] = (EXPR);                      \
            }                                       \
        } else if (sa == 1 && sb == 0) {            \
            float v = b[0];                         \
            for (int64_t i = 0; i < n; i++) {       \
                float u = a[i];                     \
                y[i] = (EXPR);                      \
            }                                       \
        } else if (sa == 0 && sb == 1) {            \
            float u = a[0];                         \
            for (int64_t i = 0; i < n; i++) {       \
                float v = b[i];                     \
                y[i] = (EXPR);                      \
            }                                       \
        } else {                                    \
            for (int64_t i = 0; i < n; i++) {       \
                float u = a[i * sa], v = b[i * sb]; \
                y[i] = (EXPR);                      \
            }                                       \
        }                                           \
    } while (0)

PTHCV_SIMD
static void binary_row(float *y, const float *a, int64_t sa, const float *b, int64_t sb, int64_t n, int op)
{
    switch (op) {
    case PTHCV_BIN_ADD: BINARY_LOOPS(u + v); break;
    case PTHCV_BIN_SUB: BINARY_LOOPS(u - v); break;
    case PTHCV_BIN_MUL: BINARY_LOOPS(u * v); break;
    case PTHCV_BIN_DIV: BINARY_LOOPS(u / v); break;
    /* torch.maximum/minimum: NaN if either is NaN (u + v is then NaN) */
    case PTHCV_BIN_MAX: BINARY_LOOPS(((u != u) | (v != v)) ? u + v : u > v ? u : v); break;
    case PTHCV_BIN_MIN: BINARY_LOOPS(((u != u) | (v != v)) ? u + v : u < v ? u : v); break;
    }
}

typedef struct {
    const float *a, *b;
    float *y;
    int op, ndim; /* coalesced dimensions; the last is the row */
    int64_t shape[PTHCV_MAX_DIMS];
    int64_t sa[PTHCV_MAX_DIMS], sb[PTHCV_MAX_DIMS];
} binary_ctx;

static void binary_task(void *vctx, int64_t begin, int64_t end)
{
    binary_ctx *c = vctx;
    int last = c->ndim - 1;
    int64_t n = c->shape[last];
    for (int64_t r = begin; r < end; r++) {
        /* the row's offsets in a and b from its index over the outer dims */
        int64_t oa = 0, ob = 0, rest = r;
        for (int d = last - 1; d >= 0; d--) {
            int64_t i = rest % c->shape[d];
            rest /= c->shape[d];
            oa += i * c->sa[d];
            ob += i * c->sb[d];
        }
        binary_row(c->y + r * n, c->a + oa, c->sa[last], c->b + ob, c->sb[last], n, c->op);
    }
}

/* Runs y = a op b, where a and b are given by data pointers and broadcast
 * strides over the output shape (ndim dims, contiguous output). */
static void binary_run(float *y, const float *a, const int64_t *sa, const float *b, const int64_t *sb, int ndim,
                       const int64_t *shape, int op)
{
    binary_ctx c = {.a = a, .b = b, .y = y, .op = op, .ndim = 0};
    /* drop size-1 dims, merge neighbours that are one run in all three */
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        numel *= shape[d];
        if (shape[d] == 1) continue;
        int k = c.ndim;
        if (k > 0 && c.sa[k - 1] == sa[d] * shape[d] && c.sb[k - 1] == sb[d] * shape[d]) {
            c.shape[k - 1] *= shape[d];
            c.sa[k - 1] = sa[d];
            c.sb[k - 1] = sb[d];
            continue;
        }
        c.shape[k] = shape[d];
        c.sa[k] = sa[d];
        c.sb[k] = sb[d];
        c.ndim++;
    }
    if (numel == 0) return;
    if (c.ndim == 0) {
        c.ndim = 1;
        c.shape[0] = 1;
        c.sa[0] = c.sb[0] = 0;
    }
    int64_t n = c.shape[c.ndim - 1];
    pthcv_parallel_for(numel / n, ops_grain(n), binary_task, &c);
}

/* torch's name of a binary operation, for messages */
static const char *binary_op_name(int32_t op)
{
    static const char *const names[] = {"add", "sub", "mul", "div", "maximum", "minimum"};
    return op >= PTHCV_BIN_ADD && op <= PTHCV_BIN_MIN ? names[op] : "binary operation";
}

static int binary_op_ok(int32_t op, const char *fn)
{
    if (op < PTHCV_BIN_ADD || op > PTHCV_BIN_MIN)
        return pthcv_fail(PTHCV_ERR_ARG, "%s: unknown operation %d", fn, (int)op), 0;
    return 1;
}

static int check_float(pthcv_tensor *t, const char *fn, const char *what)
{
    if (!t) return pthcv_fail(PTHCV_ERR_ARG, "%s: no %s tensor", fn, what), 0;
    if (t->dtype != PTHCV_FLOAT32) {
        const char *name = pthcv_dtype_name(t->dtype);
        return pthcv_fail(PTHCV_ERR_UNSUPPORTED, "%s: %s must be float32, got %s", fn, what,
                          name ? name : "an unknown dtype"),
               0;
    }
    return 1;
}

pthcv_tensor *pthcv_binary(pthcv_tensor *a, pthcv_tensor *b, int32_t op)
{
    PTHCV_PROFILE_OP("binary");
    PTHCV_PROFILE_LABEL("binary %s", op == PTHCV_BIN_ADD ? "add" : op == PTHCV_BIN_MUL ? "mul" : "other");
    OPS_REAL(a);
    OPS_REAL(b);
    const char *fn = binary_op_name(op);
    if (!binary_op_ok(op, fn) || !check_float(a, fn, "first operand") || !check_float(b, fn, "second operand"))
        return NULL;
    /* broadcast: align from the right; sizes equal, or one of them 1 */
    int ndim = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t shape[PTHCV_MAX_DIMS], sa[PTHCV_MAX_DIMS], sb[PTHCV_MAX_DIMS];
    for (int d = 0; d < ndim; d++) {
        int da = d - (ndim - a->ndim), db = d - (ndim - b->ndim);
        int64_t na = da >= 0 ? a->shape[da] : 1, nb = db >= 0 ? b->shape[db] : 1;
        if (na != nb && na != 1 && nb != 1)
            return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: shapes %s and %s do not broadcast (dimension %d: %lld vs %lld)",
                                   fn, ops_shape(a), ops_shape(b), d, (long long)na, (long long)nb);
        shape[d] = na == 1 ? nb : na;
        sa[d] = na == 1 ? 0 : a->stride[da];
        sb[d] = nb == 1 ? 0 : b->stride[db];
    }
    const float *ad = pthcv_tensor_data(a), *bd = ad ? pthcv_tensor_data(b) : NULL;
    if (!ad || !bd) return NULL;
    float *y;
    pthcv_tensor *out = ops_output_whole(ndim, shape, &y);
    if (out) binary_run(y, ad, sa, bd, sb, ndim, shape, op);
    return out;
}

pthcv_tensor *pthcv_binary_scalar(pthcv_tensor *a, double s, int32_t op, int32_t scalar_first)
{
    PTHCV_PROFILE_OP("binary_scalar");
    OPS_REAL(a);
    if (!binary_op_ok(op, binary_op_name(op)) || !check_float(a, binary_op_name(op), "tensor")) return NULL;
    const float *ad = pthcv_tensor_data(a);
    if (!ad) return NULL;
    float *y;
    pthcv_tensor *out = ops_output_whole(a->ndim, a->shape, &y);
    if (!out) return NULL;
    float sf = (float)s; /* torch: the scalar takes the tensor's type */
    int64_t zero[PTHCV_MAX_DIMS] = {0};
    if (scalar_first) binary_run(y, &sf, zero, ad, a->stride, a->ndim, a->shape, op);
    else binary_run(y, ad, a->stride, &sf, zero, a->ndim, a->shape, op);
    return out;
}
