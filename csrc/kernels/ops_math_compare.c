/*
 * ops_math_compare.c -- comparisons, logical ops and where, with
 * broadcasting (pthcv_compare, pthcv_logical_not, pthcv_where).
 *
 * Operands are walked in place (any strides, ops_broadcast); an operand of
 * another type than the one the op computes in is converted first, as
 * torch's type promotion does: integers and bools compare as int64, which is
 * exact; with a floating operand, in float32 or float64 (promote below).
 * Results of the comparisons and logical ops are bool tensors (one byte, 0
 * or 1). All of it is exact, so every instruction set gives the same bits.
 */
#include "ops.h"
#include <string.h>

/* ---- type promotion ----------------------------------------------------------- */

enum { KIND_NONE = -1, KIND_BOOL = 0, KIND_INT = 1, KIND_FLOAT = 2 };

static int dtype_kind(int dtype)
{
    switch (dtype) {
    case PTHCV_BOOL: return KIND_BOOL;
    case PTHCV_UINT8:
    case PTHCV_INT8:
    case PTHCV_INT16:
    case PTHCV_INT32:
    case PTHCV_INT64: return KIND_INT;
    case PTHCV_FLOAT32:
    case PTHCV_FLOAT64: return KIND_FLOAT;
    default: return KIND_NONE;
    }
}

static int check_operand(const pthcv_tensor *t, const char *fn, const char *what)
{
    if (!t) return pthcv_fail(PTHCV_ERR_ARG, "%s: no %s tensor", fn, what), 0;
    if (dtype_kind(t->dtype) == KIND_NONE) {
        const char *name = pthcv_dtype_name(t->dtype);
        return pthcv_fail(PTHCV_ERR_UNSUPPORTED,
                          "%s: %s of dtype %s: comparisons take bool, uint8, int8, int16, int32, int64, float32 "
                          "or float64 (convert with .to)",
                          fn, what, name ? name : "unknown"),
               0;
    }
    return 1;
}

/* The dtype a and b are compared in, torch's rule for these types: the
 * highest kind wins; among floats, float64 if a float operand with dims is
 * float64 -- or, when no float operand has dims, a 0-d one is. */
static int promote(const pthcv_tensor *a, const pthcv_tensor *b)
{
    int ka = dtype_kind(a->dtype), kb = dtype_kind(b->dtype);
    if (ka < KIND_FLOAT && kb < KIND_FLOAT) return PTHCV_INT64;
    int dims_a = ka == KIND_FLOAT && a->ndim > 0, dims_b = kb == KIND_FLOAT && b->ndim > 0;
    int use_a = ka == KIND_FLOAT && (dims_a || !dims_b), use_b = kb == KIND_FLOAT && (dims_b || !dims_a);
    if ((use_a && a->dtype == PTHCV_FLOAT64) || (use_b && b->dtype == PTHCV_FLOAT64)) return PTHCV_FLOAT64;
    return PTHCV_FLOAT32;
}

/* t as dtype: t itself (retained) or a converted copy */
static pthcv_tensor *as_dtype(pthcv_tensor *t, int dtype)
{
    if (t->dtype == dtype) return pthcv_tensor_retain(t);
    return pthcv_tensor_to(t, dtype);
}

/* ---- the walk: rows of y = f(operands) ------------------------------------------ */

typedef void (*row_fn)(void *y, const void *const *in, const int64_t *stride, int64_t n, int op);

typedef struct {
    const ops_bcast *walk;
    const unsigned char *in[OPS_BCAST_MAX];
    int size[OPS_BCAST_MAX]; /* element sizes of the operands */
    unsigned char *y;
    int ysize, op;
    row_fn row;
} walk_ctx;

static void walk_task(void *vctx, int64_t begin, int64_t end)
{
    walk_ctx *c = vctx;
    const ops_bcast *w = c->walk;
    int64_t stride[OPS_BCAST_MAX];
    for (int k = 0; k < w->nops; k++) stride[k] = w->stride[k][w->ndim - 1];
    for (int64_t r = begin; r < end; r++) {
        int64_t off[OPS_BCAST_MAX];
        int64_t n = ops_bcast_row(w, r, off);
        const void *in[OPS_BCAST_MAX];
        for (int k = 0; k < w->nops; k++) in[k] = c->in[k] + off[k] * c->size[k];
        c->row(c->y + r * n * c->ysize, in, stride, n, c->op);
    }
}

/* A new tensor of dtype ydtype holding row() over the broadcast of xs. */
static pthcv_tensor *walk_run(int n, pthcv_tensor *const *xs, int ydtype, row_fn row, int op, const char *fn)
{
    ops_bcast w;
    int ndim;
    int64_t shape[PTHCV_MAX_DIMS];
    if (!ops_broadcast(&w, n, xs, fn, &ndim, shape)) return NULL;
    walk_ctx c = {.walk = &w, .ysize = pthcv_dtype_size(ydtype), .op = op, .row = row};
    for (int k = 0; k < n; k++) {
        c.size[k] = pthcv_dtype_size(xs[k]->dtype);
        if (xs[k]->numel && !(c.in[k] = pthcv_tensor_data(xs[k]))) return NULL;
    }
    pthcv_tensor *y = pthcv_tensor_new_uninit(ydtype, ndim, shape);
    if (!y || !y->numel) return y;
    if (!(c.y = pthcv_tensor_data(y))) {
        pthcv_tensor_release(y);
        return NULL;
    }
    int64_t rows = ops_bcast_rows(&w);
    pthcv_parallel_for(rows, ops_grain(w.numel / rows), walk_task, &c);
    return y;
}

/* ---- comparisons ------------------------------------------------------------------ */

/* y[i] = EXPR(u = a[i * sa], v = b[i * sb]); the stride patterns of a row of
 * two tensors and of a tensor against a 0-d one get loops that vectorise */
#define PAIR_LOOPS(T, EXPR)                     \
    do {                                        \
        const T *a = in[0], *b = in[1];         \
        int64_t sa = stride[0], sb = stride[1]; \
        if (sa == 1 && sb == 1) {               \
            for (int64_t i = 0; i < n; i++) {   \
                T u = a[i], v = b[i];           \
                y[i] = (EXPR);                  \
            }                                   \
        } else if (sa == 1 && sb == 0) {        \
            T v = b[0];                         \
            for (int64_t i = 0; i < n; i++) {   \
                T u = a[i];                     \
                y[i] = (EXPR);                  \
            }                                   \
        } else {                                \
            for (int64_t i = 0; i < n; i++) {   \
                T u = a[i * sa], v = b[i * sb]; \
                y[i] = (EXPR);                  \
            }                                   \
        }                                       \
    } while (0)

#define COMPARE_ROW(NAME, T)                                                                               \
    PTHCV_SIMD static void NAME(void *vy, const void *const *in, const int64_t *stride, int64_t n, int op) \
    {                                                                                                      \
        unsigned char *y = vy;                                                                             \
        switch (op) {                                                                                      \
        case PTHCV_CMP_EQ: PAIR_LOOPS(T, u == v); break;                                                   \
        case PTHCV_CMP_NE: PAIR_LOOPS(T, u != v); break;                                                   \
        case PTHCV_CMP_LT: PAIR_LOOPS(T, u < v); break;                                                    \
        case PTHCV_CMP_LE: PAIR_LOOPS(T, u <= v); break;                                                   \
        case PTHCV_CMP_GT: PAIR_LOOPS(T, u > v); break;                                                    \
        case PTHCV_CMP_GE: PAIR_LOOPS(T, u >= v); break;                                                   \
        }                                                                                                  \
    }
COMPARE_ROW(compare_f32, float)
COMPARE_ROW(compare_f64, double)
COMPARE_ROW(compare_i64, int64_t)

/* truth values (any byte != 0 is true) combined */
PTHCV_SIMD
static void logical_row(void *vy, const void *const *in, const int64_t *stride, int64_t n, int op)
{
    unsigned char *y = vy;
    switch (op) {
    case PTHCV_LOGICAL_AND: PAIR_LOOPS(unsigned char, (u != 0) & (v != 0)); break;
    case PTHCV_LOGICAL_OR: PAIR_LOOPS(unsigned char, (u != 0) | (v != 0)); break;
    case PTHCV_LOGICAL_XOR: PAIR_LOOPS(unsigned char, (u != 0) ^ (v != 0)); break;
    }
}

static pthcv_tensor *compare(pthcv_tensor *a, pthcv_tensor *b, int op, const char *fn)
{
    int dtype = promote(a, b);
    pthcv_tensor *ac = as_dtype(a, dtype), *bc = ac ? as_dtype(b, dtype) : NULL, *y = NULL;
    if (bc) {
        row_fn row = dtype == PTHCV_FLOAT32 ? compare_f32 : dtype == PTHCV_FLOAT64 ? compare_f64 : compare_i64;
        y = walk_run(2, (pthcv_tensor *[]){ac, bc}, PTHCV_BOOL, row, op, fn);
    }
    pthcv_tensor_release(ac);
    pthcv_tensor_release(bc);
    return y;
}

/* x's truth values as bool: x itself when bool, else x != 0 */
static pthcv_tensor *truth(pthcv_tensor *x, int op, const char *fn)
{
    if (x->dtype == PTHCV_BOOL) return pthcv_tensor_retain(x);
    pthcv_tensor *zero = pthcv_tensor_new(x->dtype, 0, NULL);
    pthcv_tensor *t = zero ? compare(x, zero, op, fn) : NULL;
    pthcv_tensor_release(zero);
    return t;
}

pthcv_tensor *pthcv_compare(pthcv_tensor *a, pthcv_tensor *b, int32_t op)
{
    static const char *const names[] = {"eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor"};
    const char *fn = op >= PTHCV_CMP_EQ && op <= PTHCV_LOGICAL_XOR ? names[op] : "comparison";
    if (op < PTHCV_CMP_EQ || op > PTHCV_LOGICAL_XOR)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: unknown operation %d", fn, (int)op);
    if (!check_operand(a, fn, "first operand") || !check_operand(b, fn, "second operand")) return NULL;
    if (op <= PTHCV_CMP_GE) return compare(a, b, op, fn);
    pthcv_tensor *ta = truth(a, PTHCV_CMP_NE, fn), *tb = ta ? truth(b, PTHCV_CMP_NE, fn) : NULL, *y = NULL;
    if (tb) y = walk_run(2, (pthcv_tensor *[]){ta, tb}, PTHCV_BOOL, logical_row, op, fn);
    pthcv_tensor_release(ta);
    pthcv_tensor_release(tb);
    return y;
}

PTHCV_SIMD
static void not_row(void *vy, const void *const *in, const int64_t *stride, int64_t n, int op)
{
    unsigned char *y = vy;
    const unsigned char *x = in[0];
    int64_t s = stride[0];
    for (int64_t i = 0; i < n; i++) y[i] = x[i * s] == 0;
}

pthcv_tensor *pthcv_logical_not(pthcv_tensor *x)
{
    const char *fn = "logical_not";
    if (!check_operand(x, fn, "input")) return NULL;
    if (x->dtype != PTHCV_BOOL) return truth(x, PTHCV_CMP_EQ, fn);
    return walk_run(1, &x, PTHCV_BOOL, not_row, 0, fn);
}

/* ---- where ------------------------------------------------------------------------- */

#define WHERE_LOOP(T)                                           \
    do {                                                        \
        T *y = vy;                                              \
        const unsigned char *c = in[0];                         \
        const T *a = in[1], *b = in[2];                         \
        int64_t sc = stride[0], sa = stride[1], sb = stride[2]; \
        if (sc == 1 && sa == 1 && sb == 1) {                    \
            for (int64_t i = 0; i < n; i++) {                   \
                T u = a[i], v = b[i];                           \
                y[i] = c[i] ? u : v;                            \
            }                                                   \
        } else if (sc == 1 && sa == 1 && sb == 0) {             \
            T v = b[0];                                         \
            for (int64_t i = 0; i < n; i++) {                   \
                T u = a[i];                                     \
                y[i] = c[i] ? u : v;                            \
            }                                                   \
        } else {                                                \
            for (int64_t i = 0; i < n; i++) {                   \
                T u = a[i * sa], v = b[i * sb];                 \
                y[i] = c[i * sc] ? u : v;                       \
            }                                                   \
        }                                                       \
    } while (0)

/* op: the element size; values are moved as bits, so the type does not matter */
PTHCV_SIMD
static void where_row(void *vy, const void *const *in, const int64_t *stride, int64_t n, int op)
{
    switch (op) {
    case 1: WHERE_LOOP(uint8_t); break;
    case 2: WHERE_LOOP(uint16_t); break;
    case 4: WHERE_LOOP(uint32_t); break;
    case 8: WHERE_LOOP(uint64_t); break;
    }
}

pthcv_tensor *pthcv_where(pthcv_tensor *cond, pthcv_tensor *a, pthcv_tensor *b)
{
    const char *fn = "where";
    if (!cond || !a || !b)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: no %s tensor", fn, !cond ? "condition" : !a ? "input" : "other");
    if (cond->dtype != PTHCV_BOOL) {
        const char *name = pthcv_dtype_name(cond->dtype);
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: the condition must be bool, got %s (a comparison gives one)", fn,
                               name ? name : "unknown");
    }
    int dtype = a->dtype;
    if (a->dtype != b->dtype) {
        if (!check_operand(a, fn, "input") || !check_operand(b, fn, "other")) return NULL;
        dtype = promote(a, b);
    }
    int size = pthcv_dtype_size(dtype);
    if (pthcv_dtype_is_quantized(dtype) || (size != 1 && size != 2 && size != 4 && size != 8)) {
        const char *name = pthcv_dtype_name(dtype);
        return PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED, "%s: values of dtype %s are not supported", fn,
                               name ? name : "unknown");
    }
    pthcv_tensor *ac = as_dtype(a, dtype), *bc = ac ? as_dtype(b, dtype) : NULL, *y = NULL;
    if (bc) y = walk_run(3, (pthcv_tensor *[]){cond, ac, bc}, dtype, where_row, size, fn);
    pthcv_tensor_release(ac);
    pthcv_tensor_release(bc);
    return y;
}
