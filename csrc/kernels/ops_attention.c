/*
 * ops_attention.c -- scaled dot-product attention in one pass
 * (pthcv_attention): for each query row i,
 *
 *   s_j = scale * head_scale[h] * q_i . k_j + bias[i, j]
 *   p   = softmax(s)                      (over the S keys)
 *   o_i = sum_j p_j v_j
 *
 * with the score matrix never written to memory. q [..., L, D], k [..., S, D]
 * and v [..., S, Dv] share their leading dimensions (batch, heads, windows:
 * any number of them) and may be strided views (torch's packed qkv
 * projection, permuted, needs no copy) as long as each row is contiguous;
 * bias broadcasts to [..., L, S]. cosine: q and k rows are L2-normalised
 * first (x / max(|x|, 1e-12), torch's F.normalize), as Swin V2 does.
 *
 * Blocking: a task is one leading index and a block of QB query rows. K is
 * packed transposed into kT [D][S rounded up to 16] (kept while the thread's
 * next task has the same leading index), the block's query rows into
 * qs [QB][D] (times scale, or normalised), its scores into sc [QB][S']:
 * for ViT-B/16 (S = 197, D = 64) kT is 51 KB and sc 13 KB, so the scores
 * stay in L1/L2 from the product to the softmax to the product with V.
 * Tiles of 4 rows x 16 scores are summed in registers. Every score is a sum
 * over d in order, every output a sum over j in order, softmax as
 * ops_softmax.c's rows (max, exp, lane sums) with vm_exp: results do not
 * depend on the blocking, the thread count or the instruction set.
 */
#include "ops.h"
#include "vmath.h"
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { QB = 16, TR = 4, TC = 16 }; /* query rows per task; score tile rows x columns (TR: score_tile) */

typedef struct {
    const float *q, *k, *v, *bias, *hscale;
    float *out, *weights;
    int64_t L, S, D, Dv, Spad, nqb, heads; /* heads: size of dim -3 (for head_scale, heads_last) */
    int nlead;
    int64_t lead[PTHCV_MAX_DIMS];
    /* element strides per leading dim, then of the rows */
    int64_t sq[PTHCV_MAX_DIMS], sk[PTHCV_MAX_DIMS], sv[PTHCV_MAX_DIMS], sb[PTHCV_MAX_DIMS];
    int64_t q_row, k_row, v_row, b_row, b_col;
    float qscale, post; /* qscale folded into q rows; post multiplies scores (cosine) */
    int cosine, heads_last;
    atomic_int failed;
} attn_ctx;

/* ---- row helpers (vectorised) --------------------------------------------- */

PTHCV_SIMD
static void scaled_copy(float *dst, const float *src, int64_t n, float s)
{
    for (int64_t i = 0; i < n; i++) dst[i] = src[i] * s;
}

PTHCV_SIMD
static void divided_copy(float *dst, const float *src, int64_t n, float s)
{
    for (int64_t i = 0; i < n; i++) dst[i] = src[i] / s;
}

/* torch's F.normalize denominator: max(|x|_2, 1e-12), the sum in double */
static float l2_denominator(const float *x, int64_t n)
{
    double ss = ops_sumsq_dev_f64(x, n, 0.0);
    double d = sqrt(ss);
    return (float)(d > 1e-12 ? d : 1e-12);
}

/* sc[r][c] = sum over d of a[r][d] * kT[d][c] for a TR x TC tile (TR = 4),
 * the four rows' sums in registers: GCC vector types, whose operations
 * are the same IEEE float operations lane by lane in every build. */
typedef float vf16 __attribute__((vector_size(TC * sizeof(float))));

PTHCV_SIMD
static void score_tile(float *sc, int64_t ldsc, const float *a, int64_t D, const float *kT, int64_t ldk)
{
    vf16 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    for (int64_t d = 0; d < D; d++) {
        vf16 kv;
        memcpy(&kv, kT + d * ldk, sizeof kv);
        s0 += a[d] * kv;
        s1 += a[D + d] * kv;
        s2 += a[2 * D + d] * kv;
        s3 += a[3 * D + d] * kv;
    }
    memcpy(sc, &s0, sizeof s0);
    memcpy(sc + ldsc, &s1, sizeof s1);
    memcpy(sc + 2 * ldsc, &s2, sizeof s2);
    memcpy(sc + 3 * ldsc, &s3, sizeof s3);
}

/* s = s * post + bias (bias may be NULL; its step along s may be 0) */
PTHCV_SIMD
static void finish_scores(float *s, int64_t n, float post, const float *bias, int64_t step)
{
    if (post != 1.0f)
        for (int64_t j = 0; j < n; j++) s[j] *= post;
    if (!bias) return;
    if (step == 1)
        for (int64_t j = 0; j < n; j++) s[j] += bias[j];
    else
        for (int64_t j = 0; j < n; j++) s[j] += bias[j * step];
}

PTHCV_SIMD
static void exp_shifted(float *s, int64_t n, float m)
{
    for (int64_t j = 0; j < n; j++) s[j] = vm_exp(s[j] - m);
}

PTHCV_SIMD
static void scale_in_place(float *s, int64_t n, float f)
{
    for (int64_t j = 0; j < n; j++) s[j] *= f;
}

/* o[r][e0..e0+TC) = sum over j of p[r][j] v[j][e0..] for TR rows (o[r]
 * pointing at the row's output, rows past the block's last point at its
 * first and are not stored: `rows` of them are), the sums in registers, in
 * order over j from 0 (weighted_sum's order, so its tail gives the same bits) */
PTHCV_SIMD
static void value_tile(float *const *o, int rows, int64_t e0, const float *p, int64_t ldp, int64_t S, const float *v,
                       int64_t v_row)
{
    vf16 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    const float *p0 = p, *p1 = p + ldp, *p2 = p + 2 * ldp, *p3 = p + 3 * ldp;
    for (int64_t j = 0; j < S; j++) {
        vf16 vv;
        memcpy(&vv, v + j * v_row + e0, sizeof vv);
        s0 += p0[j] * vv;
        s1 += p1[j] * vv;
        s2 += p2[j] * vv;
        s3 += p3[j] * vv;
    }
    memcpy(o[0] + e0, &s0, sizeof s0);
    if (rows > 1) memcpy(o[1] + e0, &s1, sizeof s1);
    if (rows > 2) memcpy(o[2] + e0, &s2, sizeof s2);
    if (rows > 3) memcpy(o[3] + e0, &s3, sizeof s3);
}

/* o[r] = sum over j of p[r][j] v[j] for `rows` output rows of dv values:
 * TR x TC tiles in registers (value_tile), the columns past the last whole
 * TC by rows of products added in the same order. p has at least
 * rows rounded up to TR rows of ldp (the block's score rows). */
PTHCV_SIMD
static void weighted_sum(float *const *o, int rows, const float *p, int64_t ldp, int64_t S, const float *v,
                         int64_t v_row, int64_t dv)
{
    int64_t whole = dv / TC * TC;
    for (int r0 = 0; r0 < rows; r0 += TR) {
        int n = rows - r0 < TR ? rows - r0 : TR;
        float *orow[TR];
        for (int r = 0; r < TR; r++) orow[r] = o[r0 + (r < n ? r : 0)];
        for (int64_t e0 = 0; e0 < whole; e0 += TC) value_tile(orow, n, e0, p + r0 * ldp, ldp, S, v, v_row);
    }
    if (whole == dv) return;
    for (int r = 0; r < rows; r++) memset(o[r] + whole, 0, (size_t)(dv - whole) * sizeof(float));
    for (int64_t j = 0; j < S; j++) {
        const float *vj = v + j * v_row;
        for (int r = 0; r < rows; r++) {
            float w = p[r * ldp + j];
            float *orow = o[r];
            for (int64_t e = whole; e < dv; e++) orow[e] += w * vj[e];
        }
    }
}

/* ---- the task ----------------------------------------------------------------- */

/* element offsets of leading index b in q, k, v and bias */
static void lead_offsets(const attn_ctx *c, int64_t b, int64_t *oq, int64_t *ok, int64_t *ov, int64_t *ob)
{
    *oq = *ok = *ov = *ob = 0;
    for (int d = c->nlead - 1; d >= 0; d--) {
        int64_t i = b % c->lead[d];
        b /= c->lead[d];
        *oq += i * c->sq[d];
        *ok += i * c->sk[d];
        *ov += i * c->sv[d];
        *ob += i * c->sb[d];
    }
}

/* kT[d][j] = k[j][d] (normalised rows when cosine), columns S..Spad-1 zero */
static void pack_keys(const attn_ctx *c, float *kT, const float *k, float *tmp)
{
    for (int64_t j = 0; j < c->S; j++) {
        const float *kj = k + j * c->k_row;
        if (c->cosine) {
            divided_copy(tmp, kj, c->D, l2_denominator(kj, c->D));
            kj = tmp;
        }
        for (int64_t d = 0; d < c->D; d++) kT[d * c->Spad + j] = kj[d];
    }
    for (int64_t d = 0; d < c->D; d++)
        for (int64_t j = c->S; j < c->Spad; j++) kT[d * c->Spad + j] = 0.0f;
}

/* where output row i of leading index b goes */
static float *out_row(const attn_ctx *c, int64_t b, int64_t i)
{
    if (c->heads_last) { /* [..., L, H, Dv] */
        int64_t h = b % c->heads, outer = b / c->heads;
        return c->out + ((outer * c->L + i) * c->heads + h) * c->Dv;
    }
    return c->out + (b * c->L + i) * c->Dv;
}

static void attn_block(attn_ctx *c, int64_t b, int64_t i0, int rows, const float *kT, float *qs, float *sc)
{
    int64_t oq, ok, ov, ob;
    lead_offsets(c, b, &oq, &ok, &ov, &ob);
    (void)ok;
    for (int r = 0; r < rows; r++) {
        const float *qi = c->q + oq + (i0 + r) * c->q_row;
        if (c->cosine) divided_copy(qs + r * c->D, qi, c->D, l2_denominator(qi, c->D));
        else scaled_copy(qs + r * c->D, qi, c->D, c->qscale);
    }
    int padded = (rows + TR - 1) / TR * TR;
    memset(qs + rows * c->D, 0, (size_t)((padded - rows) * c->D) * sizeof(float));
    for (int r0 = 0; r0 < padded; r0 += TR)
        for (int64_t j0 = 0; j0 < c->Spad; j0 += TC)
            score_tile(sc + r0 * c->Spad + j0, c->Spad, qs + r0 * c->D, c->D, kT + j0, c->Spad);
    float post = c->post * (c->hscale ? c->hscale[b % c->heads] : 1.0f);
    float *orows[QB];
    for (int r = 0; r < rows; r++) {
        float *s = sc + r * c->Spad;
        const float *brow = c->bias ? c->bias + ob + (i0 + r) * c->b_row : NULL;
        finish_scores(s, c->S, post, brow, c->b_col);
        float m = ops_max_f32(s, c->S);
        exp_shifted(s, c->S, m);
        scale_in_place(s, c->S, 1.0f / ops_sum_f32(s, c->S));
        if (c->weights) memcpy(c->weights + (b * c->L + i0 + r) * c->S, s, (size_t)c->S * sizeof(float));
        orows[r] = out_row(c, b, i0 + r);
    }
    weighted_sum(orows, rows, sc, c->Spad, c->S, c->v + ov, c->v_row, c->Dv);
}

static void attn_task(void *vctx, int64_t begin, int64_t end)
{
    attn_ctx *c = vctx;
    size_t floats = (size_t)(c->D * c->Spad + QB * c->D + QB * c->Spad + c->D);
    float *buf = malloc(floats * sizeof(float));
    if (!buf) {
        atomic_store(&c->failed, 1);
        return;
    }
    float *kT = buf, *qs = kT + c->D * c->Spad, *sc = qs + QB * c->D, *tmp = sc + QB * c->Spad;
    int64_t packed = -1;
    for (int64_t t = begin; t < end; t++) {
        int64_t b = t / c->nqb, i0 = (t % c->nqb) * QB;
        int rows = (int)(c->L - i0 < QB ? c->L - i0 : QB);
        if (b != packed) {
            int64_t oq, ok, ov, ob;
            lead_offsets(c, b, &oq, &ok, &ov, &ob);
            pack_keys(c, kT, c->k + ok, tmp);
            packed = b;
        }
        attn_block(c, b, i0, rows, kT, qs, sc);
    }
    free(buf);
}

/* ---- checks and set-up ------------------------------------------------------------ */

/* q, k or v as a float32 tensor whose rows are contiguous: t itself
 * (retained) or a contiguous copy. */
static pthcv_tensor *rows_input(pthcv_tensor *t, const char *what, const float **data)
{
    const char *fn = "pthcv_attention";
    if (!t) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: no %s tensor", fn, what);
    if (t->dtype != PTHCV_FLOAT32) {
        const char *name = pthcv_dtype_name(t->dtype);
        return PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED, "%s: %s must be float32, got %s", fn, what,
                               name ? name : "an unknown dtype");
    }
    if (t->ndim < 2)
        return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "%s: %s %s needs at least 2 dimensions [..., rows, features]", fn, what,
                               ops_shape(t));
    pthcv_tensor *r = t->stride[t->ndim - 1] == 1 || t->shape[t->ndim - 1] <= 1 ? pthcv_tensor_retain(t)
                                                                                : pthcv_tensor_contiguous(t);
    if (!r) return NULL;
    *data = pthcv_tensor_data(r);
    if (!*data) {
        pthcv_tensor_release(r);
        return NULL;
    }
    return r;
}

/* The shapes agree; fills the leading dims and row strides of c. */
static int check_shapes(attn_ctx *c, pthcv_tensor *q, pthcv_tensor *k, pthcv_tensor *v, const pthcv_tensor *qi,
                        const pthcv_tensor *ki, const pthcv_tensor *vi)
{
    const char *fn = "pthcv_attention";
    int nd = q->ndim;
    if (k->ndim != nd || v->ndim != nd)
        return pthcv_fail(PTHCV_ERR_ARG, "%s: query %s, key %s and value %s need the same number of dimensions", fn,
                          ops_shape(q), ops_shape(k), ops_shape(v));
    for (int d = 0; d < nd - 2; d++)
        if (k->shape[d] != q->shape[d] || v->shape[d] != q->shape[d])
            return pthcv_fail(PTHCV_ERR_ARG, "%s: the leading dimensions of query %s, key %s and value %s differ", fn,
                              ops_shape(q), ops_shape(k), ops_shape(v));
    c->L = q->shape[nd - 2], c->D = q->shape[nd - 1];
    c->S = k->shape[nd - 2], c->Dv = v->shape[nd - 1];
    if (k->shape[nd - 1] != c->D)
        return pthcv_fail(PTHCV_ERR_ARG, "%s: query %s and key %s differ in features (%lld vs %lld)", fn, ops_shape(q),
                          ops_shape(k), (long long)c->D, (long long)k->shape[nd - 1]);
    if (v->shape[nd - 2] != c->S)
        return pthcv_fail(PTHCV_ERR_ARG, "%s: key %s and value %s differ in length (%lld vs %lld)", fn, ops_shape(k),
                          ops_shape(v), (long long)c->S, (long long)v->shape[nd - 2]);
    if (c->S == 0) return pthcv_fail(PTHCV_ERR_ARG, "%s: key %s has no rows: a softmax over nothing", fn, ops_shape(k));
    c->nlead = nd - 2;
    for (int d = 0; d < nd - 2; d++) {
        c->lead[d] = q->shape[d];
        c->sq[d] = qi->stride[d], c->sk[d] = ki->stride[d], c->sv[d] = vi->stride[d];
    }
    c->q_row = qi->stride[nd - 2], c->k_row = ki->stride[nd - 2], c->v_row = vi->stride[nd - 2];
    c->heads = nd >= 3 ? q->shape[nd - 3] : 1;
    return PTHCV_OK;
}

/* bias broadcast to [..., L, S]: strides with 0 on broadcast dimensions */
static int bias_strides(attn_ctx *c, const pthcv_tensor *bias, const pthcv_tensor *q)
{
    int nd = q->ndim, off = nd - bias->ndim;
    if (off < 0)
        return pthcv_fail(PTHCV_ERR_ARG,
                          "pthcv_attention: bias %s has more dimensions than the scores [..., %lld, %lld]",
                          ops_shape(bias), (long long)c->L, (long long)c->S);
    int64_t st[PTHCV_MAX_DIMS];
    for (int d = 0; d < nd; d++) {
        int64_t want = d < nd - 2 ? q->shape[d] : d == nd - 2 ? c->L : c->S;
        int bd = d - off;
        int64_t have = bd >= 0 ? bias->shape[bd] : 1;
        if (have != want && have != 1)
            return pthcv_fail(PTHCV_ERR_ARG,
                              "pthcv_attention: bias %s does not broadcast to the scores "
                              "[..., %lld, %lld] of query %s (dimension %d: %lld vs %lld)",
                              ops_shape(bias), (long long)c->L, (long long)c->S, ops_shape(q), d, (long long)have,
                              (long long)want);
        st[d] = bd >= 0 && have != 1 ? bias->stride[bd] : 0;
    }
    for (int d = 0; d < nd - 2; d++) c->sb[d] = st[d];
    c->b_row = st[nd - 2], c->b_col = st[nd - 1];
    return PTHCV_OK;
}

static int check_head_scale(attn_ctx *c, pthcv_tensor *hs, const pthcv_tensor *q)
{
    if (hs->dtype != PTHCV_FLOAT32 || q->ndim < 3 || hs->numel != c->heads)
        return pthcv_fail(PTHCV_ERR_ARG,
                          "pthcv_attention: head_scale must be float32 with one value per head "
                          "(dimension -3 of query %s), got %s %s",
                          ops_shape(q), pthcv_dtype_name(hs->dtype), ops_shape(hs));
    return PTHCV_OK;
}

pthcv_tensor *pthcv_attention(pthcv_tensor *q, pthcv_tensor *k, pthcv_tensor *v, pthcv_tensor *bias,
                              pthcv_tensor *head_scale, const pthcv_attention_params *p, pthcv_tensor **weights)
{
    const char *fn = "pthcv_attention";
    if (weights) *weights = NULL;
    const float *qd = NULL, *kd = NULL, *vd = NULL, *bd = NULL, *hd = NULL;
    pthcv_tensor *qi = rows_input(q, "query", &qd);
    pthcv_tensor *ki = qi ? rows_input(k, "key", &kd) : NULL;
    pthcv_tensor *vi = ki ? rows_input(v, "value", &vd) : NULL;
    pthcv_tensor *hc = NULL, *out = NULL, *w = NULL;
    attn_ctx c = {0};
    if (!vi || check_shapes(&c, q, k, v, qi, ki, vi) != PTHCV_OK) goto done;
    if (p && p->heads_last && q->ndim < 3) {
        pthcv_fail(PTHCV_ERR_ARG, "%s: heads_last needs a heads dimension (query %s)", fn, ops_shape(q));
        goto done;
    }
    if (bias) {
        if (bias->dtype != PTHCV_FLOAT32) {
            pthcv_fail(PTHCV_ERR_UNSUPPORTED, "%s: bias must be float32, got %s", fn, pthcv_dtype_name(bias->dtype));
            goto done;
        }
        if (bias_strides(&c, bias, q) != PTHCV_OK || !(bd = pthcv_tensor_data(bias))) goto done;
    }
    if (head_scale) {
        if (check_head_scale(&c, head_scale, q) != PTHCV_OK || !(hc = ops_input(head_scale, fn, "head_scale", &hd)))
            goto done;
    }
    double scale = p && p->scale != 0.0 ? p->scale : 1.0 / sqrt((double)(c.D > 0 ? c.D : 1));
    c.cosine = p && p->cosine;
    c.heads_last = p && p->heads_last;
    c.qscale = c.cosine ? 1.0f : (float)scale;
    c.post = c.cosine ? (float)scale : 1.0f;
    c.q = qd, c.k = kd, c.v = vd, c.bias = bd, c.hscale = hd;
    int nd = q->ndim;
    int64_t shape[PTHCV_MAX_DIMS];
    memcpy(shape, q->shape, sizeof(int64_t) * (size_t)nd);
    shape[nd - 1] = c.Dv;
    if (c.heads_last) { /* [..., H, L, Dv] -> [..., L, H, Dv] */
        shape[nd - 3] = c.L;
        shape[nd - 2] = c.heads;
    }
    float *od, *wd = NULL;
    out = ops_output(nd, shape, &od);
    if (!out) goto done;
    if (weights) {
        memcpy(shape, q->shape, sizeof(int64_t) * (size_t)nd);
        shape[nd - 1] = c.S;
        if (!(w = ops_output(nd, shape, &wd))) goto fail;
    }
    c.out = od, c.weights = wd;
    c.Spad = (c.S + TC - 1) / TC * TC;
    c.nqb = (c.L + QB - 1) / QB;
    int64_t nbatch = 1;
    for (int d = 0; d < c.nlead; d++) nbatch *= c.lead[d];
    if (out->numel > 0 || (w && w->numel > 0)) {
        pthcv_parallel_for(nbatch * c.nqb, ops_grain(QB * c.Spad * (c.D + c.Dv)), attn_task, &c);
        if (atomic_load(&c.failed)) {
            pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory for the blocks of query %s and key %s", fn, ops_shape(q),
                       ops_shape(k));
            goto fail;
        }
    }
    if (weights) *weights = w;
    goto done;
fail:
    pthcv_tensor_release(out);
    pthcv_tensor_release(w);
    out = NULL;
done:
    pthcv_tensor_release(qi);
    pthcv_tensor_release(ki);
    pthcv_tensor_release(vi);
    pthcv_tensor_release(hc);
    return out;
}
