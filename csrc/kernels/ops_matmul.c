/*
 * ops_matmul.c -- torch.matmul (pthcv_matmul): dot product (1-d x 1-d),
 * matrix-vector, vector-matrix, matrix product, and batched products whose
 * batch dimensions broadcast. A 1-d first operand is a row [1, k] and a 1-d
 * second one a column [k, 1], the added dimension removed from the result.
 *
 * The 2-d product is a plain blocked loop (mm_rows): C row by row, each
 * element summed over k in order, vectorised across the columns of C. It is
 * the place to plug in a faster GEMM. Threads split batches and row blocks,
 * never the k sum.
 */
#include "ops.h"
#include <string.h>

enum { ROWS = 8, KB = 256, NB = 1024 }; /* rows per task, k and n blocks */

/* sum of a[i] * b[i], lane by lane */
PTHCV_SIMD
static float dot(const float *a, const float *b, int64_t n)
{
    float acc[OPS_LANES] = {0};
    int64_t i = 0;
    for (; i + OPS_LANES <= n; i += OPS_LANES)
        for (int j = 0; j < OPS_LANES; j++) acc[j] += a[i + j] * b[i + j];
    for (int j = 0; i + j < n; j++) acc[j] += a[i + j] * b[i + j];
    float s = 0.0f;
    for (int j = 0; j < OPS_LANES; j++) s += acc[j];
    return s;
}

/* C[i, :] = A[i, :] B for rows i in [m0, m1); A [m, k], B [k, n], C [m, n],
 * all row-major and contiguous. */
PTHCV_SIMD
static void mm_rows(float *C, const float *A, const float *B, int64_t m0, int64_t m1, int64_t n, int64_t k)
{
    if (n == 1) {
        for (int64_t i = m0; i < m1; i++) C[i] = dot(A + i * k, B, k);
        return;
    }
    for (int64_t i = m0; i < m1; i++) memset(C + i * n, 0, (size_t)n * sizeof *C);
    for (int64_t j0 = 0; j0 < n; j0 += NB) {
        int64_t j1 = j0 + NB < n ? j0 + NB : n;
        for (int64_t p0 = 0; p0 < k; p0 += KB) {
            int64_t p1 = p0 + KB < k ? p0 + KB : k;
            for (int64_t i = m0; i < m1; i++) {
                float *c = C + i * n;
                for (int64_t p = p0; p < p1; p++) {
                    float a = A[i * k + p];
                    const float *b = B + p * n;
                    for (int64_t j = j0; j < j1; j++) c[j] += a * b[j];
                }
            }
        }
    }
}

typedef struct {
    const float *a, *b;
    float *c;
    int64_t m, n, k, mblocks;
    int nbatch;                                                             /* broadcast batch dimensions */
    int64_t bshape[PTHCV_MAX_DIMS], sa[PTHCV_MAX_DIMS], sb[PTHCV_MAX_DIMS]; /* strides in matrices */
} matmul_ctx;

static void matmul_task(void *vctx, int64_t begin, int64_t end)
{
    matmul_ctx *c = vctx;
    for (int64_t t = begin; t < end; t++) {
        int64_t batch = t / c->mblocks, m0 = (t % c->mblocks) * ROWS;
        int64_t m1 = m0 + ROWS < c->m ? m0 + ROWS : c->m;
        int64_t ia = 0, ib = 0, rest = batch;
        for (int d = c->nbatch - 1; d >= 0; d--) {
            int64_t i = rest % c->bshape[d];
            rest /= c->bshape[d];
            ia += i * c->sa[d];
            ib += i * c->sb[d];
        }
        mm_rows(c->c + batch * c->m * c->n, c->a + ia * c->m * c->k, c->b + ib * c->k * c->n, m0, m1, c->n, c->k);
    }
}

pthcv_tensor *pthcv_matmul(pthcv_tensor *a, pthcv_tensor *b)
{
    PTHCV_PROFILE_OP("matmul");
    const char *fn = "matmul";
    const float *ad, *bd;
    pthcv_tensor *ac = ops_input(a, fn, "first operand", &ad);
    if (!ac) return NULL;
    pthcv_tensor *bc = ops_input(b, fn, "second operand", &bd);
    if (!bc) {
        pthcv_tensor_release(ac);
        return NULL;
    }
    pthcv_tensor *out = NULL;
    int da = a->ndim, db = b->ndim;
    if (da < 1 || db < 1) {
        pthcv_fail(PTHCV_ERR_ARG, "%s: both operands need at least 1 dimension, got %s and %s", fn, ops_shape(a),
                   ops_shape(b));
        goto done;
    }
    matmul_ctx c = {.a = ad, .b = bd};
    c.m = da == 1 ? 1 : a->shape[da - 2];
    c.k = a->shape[da - 1];
    int64_t kb = db == 1 ? b->shape[0] : b->shape[db - 2];
    c.n = db == 1 ? 1 : b->shape[db - 1];
    if (c.k != kb) {
        pthcv_fail(PTHCV_ERR_ARG, "%s: shapes %s and %s cannot be multiplied (%lld vs %lld)", fn, ops_shape(a),
                   ops_shape(b), (long long)c.k, (long long)kb);
        goto done;
    }
    /* batch dimensions: all but the matrix ones, broadcast from the right */
    int ba = da > 2 ? da - 2 : 0, bb = db > 2 ? db - 2 : 0;
    c.nbatch = ba > bb ? ba : bb;
    int64_t run_a = 1, run_b = 1, nb = 1;
    for (int d = c.nbatch - 1; d >= 0; d--) {
        int ia = d - (c.nbatch - ba), ib = d - (c.nbatch - bb);
        int64_t na = ia >= 0 ? a->shape[ia] : 1, nbb = ib >= 0 ? b->shape[ib] : 1;
        if (na != nbb && na != 1 && nbb != 1) {
            pthcv_fail(PTHCV_ERR_ARG, "%s: batch dimensions of %s and %s do not broadcast (%lld vs %lld)", fn,
                       ops_shape(a), ops_shape(b), (long long)na, (long long)nbb);
            goto done;
        }
        c.bshape[d] = na == 1 ? nbb : na;
        c.sa[d] = na == 1 ? 0 : run_a;
        c.sb[d] = nbb == 1 ? 0 : run_b;
        run_a *= na;
        run_b *= nbb;
        nb *= c.bshape[d];
    }
    int64_t shape[PTHCV_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < c.nbatch; d++) shape[nd++] = c.bshape[d];
    if (da > 1) shape[nd++] = c.m;
    if (db > 1) shape[nd++] = c.n;
    float *y;
    out = ops_output(nd, shape, &y);
    if (!out || out->numel == 0) goto done;
    c.c = y;
    if (c.k == 0) {
        memset(y, 0, (size_t)out->numel * sizeof *y);
        goto done;
    }
    c.mblocks = (c.m + ROWS - 1) / ROWS;
    pthcv_parallel_for(nb * c.mblocks, ops_grain(ROWS * c.n * c.k), matmul_task, &c);
done:
    pthcv_tensor_release(ac);
    pthcv_tensor_release(bc);
    return out;
}
