/*
 * ops_ssd.c -- SSD's per-class candidates (pthcv.h, "Detection"): the loop
 * of torchvision 0.14's SSD.postprocess_detections before batched_nms, for
 * one image,
 *
 *     for label in range(1, num_classes):
 *         score = scores[:, label]
 *         keep_idxs = score > self.score_thresh      # in float32
 *         score, box = score[keep_idxs], boxes[keep_idxs]
 *         score, idxs = score.topk(min(self.topk_candidates, score.numel()))
 *         box = box[idxs]
 *
 * and the boxes, scores and labels of the classes concatenated in label
 * order. The comparison is torch's: a float32 tensor against a Python
 * number rounds the number to float32 (NaN scores never pass). The top-k is
 * torch.topk's, equal scores included: ops_topk_desc (ops_order.c) replays
 * it on the passing scores in anchor order, the very tensor torch ranks.
 *
 * Most classes need not rank all their scores: when the k best are
 * distinct and none of them equals a score left out, every top-k algorithm
 * returns them in the same order, so the replay can run on the scores at
 * or above a floor the k-th best reaches (a bucket of 1/8 octave, from a
 * histogram of the scores' top bits). Whether the answer was unique is
 * checked afterwards; when it was not, the class is ranked again over all
 * its scores.
 *
 * Threads take ranges of classes. Each class is selected alone into its
 * own slot and the slots are joined in label order afterwards, so the
 * result does not depend on the thread count.
 */
#include "ops.h"
#include "ops_order.h"
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const float *scores; /* [A, C], row per anchor */
    float *columns;      /* [C, A]: the scores transposed, a class per row */
    int64_t A, C;
    int64_t k;           /* min(topk_candidates, A): the room of a class's slot */
    float lim;           /* the score threshold in float32 */
    ops_ranked *best;    /* [C - 1][k]: class c's candidates at slot c - 1 */
    int64_t *count;      /* [C - 1]: how many each slot holds */
    atomic_int no_memory;
} select_ctx;

enum { BUCKET_SHIFT = 20, BUCKETS = 1 << (32 - BUCKET_SHIFT) }; /* sign, exponent, 3 mantissa bits */

/* the bucket of a score: increasing with the score (-0 below +0) */
static uint32_t bucket_of(float s)
{
    uint32_t u;
    memcpy(&u, &s, sizeof u);
    return ((u & 0x80000000u) ? ~u : u | 0x80000000u) >> BUCKET_SHIFT;
}

/* v[0..n) (no NaN; 0 < k <= n) cut to the scores whose bucket is at or
 * above the k-th best's, in their order, into `top` (returns how many);
 * *below = the largest score cut (-inf when none). */
static int64_t at_or_above_kth_bucket(const ops_ranked *v, int64_t n, int64_t k, ops_ranked *top, float *below)
{
    int64_t count[BUCKETS] = {0};
    for (int64_t i = 0; i < n; i++) count[bucket_of(v[i].value)]++;
    uint32_t kth_bucket = BUCKETS - 1;
    for (int64_t seen = count[kth_bucket]; seen < k;) seen += count[--kth_bucket]; /* n >= k: it stops */
    int64_t m = 0;
    *below = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (bucket_of(v[i].value) >= kth_bucket) top[m++] = v[i];
        else if (v[i].value > *below) *below = v[i].value;
    }
    return m;
}

/* after ops_topk_desc(v, m, k): 1 if its k are strictly decreasing and the
 * k-th is above v[k..m) and above `below` (the top k has one answer) */
static int unique_top_k(const ops_ranked *v, int64_t m, int64_t k, float below)
{
    for (int64_t i = 1; i < k; i++)
        if (!(v[i].value < v[i - 1].value)) return 0;
    for (int64_t i = k; i < m; i++)
        if (!(v[i].value < v[k - 1].value)) return 0;
    return below < v[k - 1].value;
}

/* classes 1 + [begin, end): for each, the passing scores in anchor order,
 * ranked by torch.topk, their first min(k, passing) kept in the slot */
static void select_classes(void *vc, int64_t begin, int64_t end)
{
    select_ctx *c = vc;
    ops_ranked *passing = malloc((size_t)(c->A ? c->A : 1) * sizeof *passing);
    ops_ranked *top = malloc((size_t)(c->A ? c->A : 1) * sizeof *top);
    if (!passing || !top) {
        atomic_store(&c->no_memory, 1);
        free(passing);
        free(top);
        return;
    }
    for (int64_t slot = begin; slot < end; slot++) {
        const float *column = c->columns + (1 + slot) * c->A;
        int64_t n = 0;
        for (int64_t a = 0; a < c->A; a++) {
            float s = column[a];
            if (s > c->lim) {
                passing[n].value = s;
                passing[n++].index = a;
            }
        }
        int64_t k = n < c->k ? n : c->k;
        ops_ranked *ranked = passing;
        if (k > 0) {
            float below;
            int64_t m = at_or_above_kth_bucket(passing, n, k, top, &below);
            ops_topk_desc(top, m, k);
            if (unique_top_k(top, m, k, below)) ranked = top;
            else ops_topk_desc(passing, n, k);
        }
        memcpy(c->best + slot * c->k, ranked, (size_t)k * sizeof *ranked);
        c->count[slot] = k;
    }
    free(passing);
    free(top);
}

enum { TRANSPOSE_BLOCK = 16 }; /* anchors a task writes per class at a time: a cache line */

/* anchor blocks [begin, end) of scores [A, C] written into columns [C, A] */
static void transpose_blocks(void *vc, int64_t begin, int64_t end)
{
    select_ctx *c = vc;
    for (int64_t blk = begin; blk < end; blk++) {
        int64_t a0 = blk * TRANSPOSE_BLOCK, a1 = a0 + TRANSPOSE_BLOCK < c->A ? a0 + TRANSPOSE_BLOCK : c->A;
        for (int64_t k = 1; k < c->C; k++)
            for (int64_t a = a0; a < a1; a++) c->columns[k * c->A + a] = c->scores[a * c->C + k];
    }
}

/* the slots joined in label order into boxes [M, 4], scores [M], labels
 * [M]; 0 when a result cannot be allocated (error set) */
static int join_slots(const select_ctx *c, const float *boxes, pthcv_tensor **out_boxes, pthcv_tensor **out_scores,
                      pthcv_tensor **out_labels)
{
    int64_t m = 0;
    for (int64_t slot = 0; slot < c->C - 1; slot++) m += c->count[slot];
    int64_t box_shape[2] = {m, 4};
    float *b, *s;
    *out_boxes = ops_output(2, box_shape, &b);
    *out_scores = *out_boxes ? ops_output(1, &m, &s) : NULL;
    *out_labels = *out_scores ? pthcv_tensor_new(PTHCV_INT64, 1, &m) : NULL;
    int64_t *l = *out_labels ? pthcv_tensor_data(*out_labels) : NULL;
    if (!*out_labels || (m > 0 && !l)) return 0;
    int64_t at = 0;
    for (int64_t slot = 0; slot < c->C - 1; slot++) {
        const ops_ranked *v = c->best + slot * c->k;
        for (int64_t i = 0; i < c->count[slot]; i++, at++) {
            memcpy(b + 4 * at, boxes + 4 * v[i].index, 4 * sizeof *b);
            s[at] = v[i].value;
            l[at] = slot + 1;
        }
    }
    return 1;
}

static int check_select_args(pthcv_tensor *scores, pthcv_tensor *boxes, int64_t topk_candidates, const char *fn)
{
    if (!scores || scores->ndim != 2)
        return pthcv_fail(PTHCV_ERR_ARG, "%s: scores must be [anchors, classes], got %s", fn, ops_shape(scores));
    if (!boxes || boxes->ndim != 2 || boxes->shape[1] != 4 || boxes->shape[0] != scores->shape[0])
        return pthcv_fail(PTHCV_ERR_ARG, "%s: boxes must be [%lld, 4] (x1, y1, x2, y2), one per anchor, got %s", fn,
                          (long long)scores->shape[0], ops_shape(boxes));
    if (topk_candidates < 0)
        return pthcv_fail(PTHCV_ERR_ARG, "%s: topk_candidates must be >= 0, got %lld", fn, (long long)topk_candidates);
    return PTHCV_OK;
}

int pthcv_ssd_candidates(pthcv_tensor *scores, pthcv_tensor *boxes, double score_thresh, int64_t topk_candidates,
                         pthcv_tensor **out_boxes, pthcv_tensor **out_scores, pthcv_tensor **out_labels)
{
    const char *fn = "pthcv_ssd_candidates";
    if (!out_boxes || !out_scores || !out_labels) return pthcv_fail(PTHCV_ERR_ARG, "%s: no place for the results", fn);
    *out_boxes = *out_scores = *out_labels = NULL;
    int status = check_select_args(scores, boxes, topk_candidates, fn);
    if (status != PTHCV_OK) return status;
    const float *s, *b;
    pthcv_tensor *sc = ops_input(scores, fn, "scores", &s), *bc = sc ? ops_input(boxes, fn, "boxes", &b) : NULL;
    select_ctx c = {.scores = s, .lim = (float)score_thresh};
    status = pthcv_last_status();
    if (bc) {
        c.A = sc->shape[0], c.C = sc->shape[1];
        c.k = topk_candidates < c.A ? topk_candidates : c.A;
        int64_t classes = c.C > 1 ? c.C - 1 : 0;
        size_t room = (size_t)(classes * c.k); /* <= A * C: the scores' own size */
        c.best = malloc((room ? room : 1) * sizeof *c.best);
        c.count = calloc((size_t)(classes ? classes : 1), sizeof *c.count);
        c.columns = malloc((size_t)(sc->numel ? sc->numel : 1) * sizeof *c.columns);
        if (c.best && c.count && c.columns && classes > 0) {
            int64_t blocks = (c.A + TRANSPOSE_BLOCK - 1) / TRANSPOSE_BLOCK;
            pthcv_parallel_for(blocks, ops_grain(TRANSPOSE_BLOCK * c.C), transpose_blocks, &c);
            pthcv_parallel_for(classes, 1, select_classes, &c);
        }
        if (!c.best || !c.count || !c.columns || atomic_load(&c.no_memory))
            status = pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory for %lld anchors x %lld classes", fn,
                                (long long)c.A, (long long)c.C);
        else if (!join_slots(&c, b, out_boxes, out_scores, out_labels))
            status = pthcv_last_status();
        else
            status = PTHCV_OK;
        if (status != PTHCV_OK) {
            pthcv_tensor_release(*out_boxes);
            pthcv_tensor_release(*out_scores);
            pthcv_tensor_release(*out_labels);
            *out_boxes = *out_scores = *out_labels = NULL;
        }
    }
    free(c.best);
    free(c.count);
    free(c.columns);
    pthcv_tensor_release(sc);
    pthcv_tensor_release(bc);
    return status;
}
